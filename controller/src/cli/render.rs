//! `strata render`: what the controller would build for a MachineOSConfig, without a cluster.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::Value;
use strata_crds::MachineOSConfig;

use crate::controller::settings::{RELEASE_CONFIGMAP, RELEASE_KEY, RELEASE_NAMESPACE};
use crate::render::{BuildInputs, render, validate_config};

use super::EXIT_INVALID_INPUT;

/// apiVersions accepted in the file: ours, and OpenShift's (same shape), so an existing
/// OpenShift MachineOSConfig can be previewed unchanged.
const API_VERSIONS: &[&str] = &[
    "strata.dev/v1alpha1",
    "machineconfiguration.openshift.io/v1",
];

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "config"])))]
pub struct RenderArgs {
    /// The MachineOSConfig YAML file (`-` for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The MachineOSConfig of this name in the cluster of your kubeconfig; the base is the one
    /// its current build uses (the release's, resolved by the controller) unless --base-image
    /// is given.
    #[arg(long, value_name = "NAME")]
    pub config: Option<String>,
    /// The OS base image, pinned by digest: REPO@sha256:<64 hex>. Ignored when the
    /// MachineOSConfig sets spec.baseImage. Needed with --filename.
    #[arg(long, value_name = "REF@sha256:DIGEST")]
    pub base_image: Option<String>,
    /// What to print.
    #[arg(short, long, value_enum, default_value_t = Output::Containerfile)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The rendered Containerfile.
    Containerfile,
    /// JSON: buildName, inputsHash, containerfile.
    Json,
}

pub fn run(args: &RenderArgs) -> ExitCode {
    let source = match (&args.file, &args.config) {
        (Some(file), _) => load(file)
            .and_then(|config| {
                let base = args.base_image.clone().ok_or_else(|| {
                    "--base-image REPO@sha256:… is needed with --filename".to_string()
                })?;
                Ok((config, base))
            })
            .map_err(|e| format!("{}: {e}", file.display())),
        (None, Some(name)) => from_cluster(name, args.base_image.as_deref()),
        (None, None) => Err("give --filename or --config".into()),
    };
    let rendered = source.and_then(|(config, base)| {
        let inputs = BuildInputs::from_config(&config, &base);
        render(&inputs).map_err(|e| e.to_string())
    });
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(err) => {
            eprintln!("strata render: {err}");
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let text = match args.output {
        Output::Containerfile => rendered.containerfile,
        Output::Json => match serde_json::to_string_pretty(&rendered) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("strata render: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata render: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The MachineOSConfig `name` from the cluster, and the base to render it on: `base_image`, or
/// the one its current build uses, or (no build yet) the release's when it names it by digest.
fn from_cluster(name: &str, base_image: Option<&str>) -> Result<(MachineOSConfig, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| format!("cannot reach the cluster: {e}"))?;
        let config = kube::Api::<MachineOSConfig>::all(client.clone())
            .get(name)
            .await
            .map_err(|e| format!("machineosconfig {name}: {e}"))?;
        if let Some(base) = base_image {
            return Ok((config, base.to_string()));
        }
        let build = config
            .status
            .as_ref()
            .and_then(|s| s.machine_os_build.as_ref())
            .map(|b| b.name.clone());
        if let Some(build) = build {
            let build = kube::Api::<strata_crds::MachineOSBuild>::all(client)
                .get(&build)
                .await
                .map_err(|e| format!("machineosbuild {build}: {e}"))?;
            return Ok((config, build.spec.base_image));
        }
        // No build yet: the release's base, as OpenShift names it (by digest).
        let release = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
            client,
            RELEASE_NAMESPACE,
        )
        .get(RELEASE_CONFIGMAP)
        .await
        .map_err(|e| format!("the release's base ({RELEASE_NAMESPACE}/{RELEASE_CONFIGMAP}): {e}; give --base-image REPO@sha256:…"))?;
        let base = release
            .data
            .and_then(|d| d.get(RELEASE_KEY).cloned())
            .filter(|b| b.contains("@sha256:"))
            .ok_or_else(|| {
                format!("{RELEASE_NAMESPACE}/{RELEASE_CONFIGMAP} names no base by digest under {RELEASE_KEY}: give --base-image REPO@sha256:…")
            })?;
        Ok((config, base))
    })
}

/// Reads and checks a MachineOSConfig: YAML syntax (with line numbers), apiVersion and kind,
/// unknown fields (rejected, as `kubectl apply` does), then the CRD's rules (with field paths).
pub fn load(file: &std::path::Path) -> Result<MachineOSConfig, String> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| format!("cannot read: {e}"))?;
    parse_config(&text)
}

/// See [`load`].
pub fn parse_config(text: &str) -> Result<MachineOSConfig, String> {
    let raw: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    let api_version = raw
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !API_VERSIONS.contains(&api_version) {
        return Err(format!(
            "apiVersion: '{api_version}' is not one of {}",
            API_VERSIONS.join(", ")
        ));
    }
    let kind = raw.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != "MachineOSConfig" {
        return Err(format!("kind: '{kind}' is not MachineOSConfig"));
    }
    let config: MachineOSConfig = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let known = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    if let Some(path) = unknown_field(&raw, &known, "") {
        return Err(format!("{path}: unknown field"));
    }
    validate_config(&config).map_err(|e| e.to_string())?;
    Ok(config)
}

/// The first field path present in `raw` but dropped by deserialising (under spec; status and
/// metadata belong to the server).
fn unknown_field(raw: &Value, known: &Value, path: &str) -> Option<String> {
    match (raw, known) {
        (Value::Object(raw), Value::Object(known)) => raw.iter().find_map(|(key, value)| {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match known.get(key) {
                _ if path.is_empty() && (key == "metadata" || key == "status") => None,
                Some(known_value) => unknown_field(value, known_value, &child),
                None if value.is_null() => None,
                None => Some(child),
            }
        }),
        (Value::Array(raw), Value::Array(known)) => raw
            .iter()
            .zip(known)
            .enumerate()
            .find_map(|(i, (r, k))| unknown_field(r, k, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "apiVersion: strata.dev/v1alpha1\nkind: MachineOSConfig\nmetadata:\n  name: worker\nspec:\n  machineConfigPool:\n    name: worker\n  imageBuilder:\n    imageBuilderType: Job\n  renderedImagePushSecret:\n    name: push\n  renderedImagePushSpec: registry.example.com/os/worker:latest\n";

    #[test]
    fn valid_config_loads() {
        let config = parse_config(VALID).unwrap();
        assert_eq!(config.spec.machine_config_pool.name, "worker");
    }

    #[test]
    fn openshift_api_version_is_accepted() {
        parse_config(&VALID.replace(
            "strata.dev/v1alpha1",
            "machineconfiguration.openshift.io/v1",
        ))
        .unwrap();
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse_config(
            &VALID.replace("  imageBuilder:", "  containerFiles: []\n  imageBuilder:"),
        )
        .unwrap_err();
        assert_eq!(err, "spec.containerFiles: unknown field");
        let err = parse_config(&format!(
            "{VALID}  containerFile:\n  - content: RUN x\n    arch: AMD64\n"
        ))
        .unwrap_err();
        assert_eq!(err, "spec.containerFile[0].arch: unknown field");
    }

    #[test]
    fn field_errors_carry_the_path() {
        let err =
            parse_config(&VALID.replace("name: worker\nspec", "name: infra\nspec")).unwrap_err();
        assert!(err.starts_with("metadata.name: "), "{err}");
        let err = parse_config(&VALID.replace("os/worker:latest", "os/worker")).unwrap_err();
        assert!(err.starts_with("spec.renderedImagePushSpec: "), "{err}");
        let err = parse_config(&VALID.replace("kind: MachineOSConfig", "kind: MachineConfig"))
            .unwrap_err();
        assert!(err.starts_with("kind: "), "{err}");
    }

    #[test]
    fn yaml_syntax_errors_have_a_line() {
        let err = parse_config("apiVersion: strata.dev/v1alpha1\nkind: [unclosed\n").unwrap_err();
        assert!(err.contains("line 2") || err.contains("2:"), "{err}");
    }
}
