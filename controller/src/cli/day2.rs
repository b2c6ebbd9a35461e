//! Day-2 commands against the cluster (installed as `kubectl-strata`, they are `kubectl strata
//! status|logs|rebuild`): what each config, its builds and its pool are doing; a build's step
//! logs; a rebuild. They read with the caller's kubeconfig and rights, like kubectl.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::reflector::Lookup;
use serde_json::json;
use strata_crds::contract::{annotations, builder_pod, labels, mco};
use strata_crds::{MachineOSBuild, MachineOSConfig, condition_types as ct};

/// Where Strata runs its builds, unless told otherwise.
const DEFAULT_NAMESPACE: &str = "strata-system";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One MachineOSConfig: its conditions, its builds and its pool's machines. Without it, a
    /// line per MachineOSConfig.
    pub config: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The MachineOSBuild.
    pub build: String,
    /// Only this step's log (pull, build, boot or push).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(builder_pod::STEPS))]
    pub step: Option<String>,
    /// The namespace Strata runs its builder pods in.
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The MachineOSConfig whose current inputs build again (its image is pushed and pinned
    /// anew; the machines roll when the digest differs).
    pub config: String,
}

/// Runs `command` on a current-thread runtime, printing its error.
pub fn run<F>(what: &str, command: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("strata {what}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("strata {what}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn status(args: &StatusArgs) -> anyhow::Result<String> {
    let client = kube::Client::try_default().await?;
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    let Some(name) = &args.config else {
        let list = configs.list(&ListParams::default()).await?;
        return Ok(configs_table(&list.items));
    };
    let config = configs.get(name).await?;
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    // By its spec, not the label: a label value is cut to 63 characters.
    let mut builds: Vec<MachineOSBuild> = builds
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.machine_os_config.name == *name)
        .collect();
    builds.sort_by_key(|b| std::cmp::Reverse(b.metadata.creation_timestamp.clone()));
    let pools =
        kube::api::Api::<kube::api::DynamicObject>::all_with(client, &mco::machine_config_pool());
    let pool = pools
        .get_opt(&config.spec.machine_config_pool.name)
        .await
        .ok()
        .flatten();
    Ok(config_detail(&config, &builds, pool.as_ref()))
}

pub async fn logs(args: &LogsArgs) -> anyhow::Result<String> {
    let client = kube::Client::try_default().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let mut found = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            labels::BUILD,
            // A label value is the name cut to 63 characters, keeping its hash.
            crate::controller::names::fit_63(&args.build)
        )))
        .await?
        .items;
    if found.is_empty() {
        // A succeeded build's step logs, kept once its pod went.
        let kept = Api::<ConfigMap>::namespaced(client.clone(), &args.namespace)
            .get_opt(&crate::controller::names::logs_configmap(&args.build))
            .await?
            .and_then(|cm| cm.data);
        if let Some(data) = kept {
            let mut out = format!(
                "# the builder pod of {} is gone; the end of each step's log, kept when it succeeded:\n",
                args.build
            );
            for step in builder_pod::STEPS {
                if args.step.as_deref().is_some_and(|s| s != step) {
                    continue;
                }
                if let Some(text) = data.get(step) {
                    let _ = writeln!(out, "# {step}");
                    out.push_str(text);
                }
            }
            return Ok(out);
        }
        let build = Api::<MachineOSBuild>::all(client)
            .get_opt(&args.build)
            .await?;
        let Some(build) = build else {
            anyhow::bail!("no MachineOSBuild {}", args.build);
        };
        let tail = build
            .status
            .and_then(|s| s.failure)
            .map(|f| f.log_tail)
            .filter(|t| !t.is_empty());
        return Ok(match tail {
            Some(tail) => format!(
                "# the builder pod of {} is gone; the end of its failed step's log (status.failure.logTail):\n{tail}\n",
                args.build
            ),
            None => format!(
                "# the builder pod of {} is gone (its Job goes once the build succeeded or was superseded) and no logs were kept; `kubectl describe smosb {}` has its Events\n",
                args.build, args.build
            ),
        });
    }
    // The newest attempt last.
    found.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    let mut out = String::new();
    for pod in &found {
        let pod_name = pod.name().unwrap_or_default().into_owned();
        for step in builder_pod::steps_of(pod) {
            if args.step.as_deref().is_some_and(|s| s != step) {
                continue;
            }
            let params = LogParams {
                container: Some(step.to_string()),
                ..LogParams::default()
            };
            let _ = writeln!(out, "# {pod_name} {step}");
            match pods.logs(&pod_name, &params).await {
                Ok(text) => out.push_str(&text),
                // A step not started yet has no log.
                Err(kube::Error::Api(status)) if status.code == 400 => {
                    let _ = writeln!(out, "(not started)");
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(out)
}

pub async fn rebuild(args: &RebuildArgs) -> anyhow::Result<String> {
    let client = kube::Client::try_default().await?;
    let configs: Api<MachineOSConfig> = Api::all(client);
    let patch = json!({"metadata": {"annotations": {annotations::REBUILD: ""}}});
    configs
        .patch(&args.config, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(format!(
        "machineosconfig.strata.dev/{} will build again: `kubectl strata status {}` follows it\n",
        args.config, args.config
    ))
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `status`/`reason` of a condition, `-` when absent.
fn short(condition: Option<&Condition>) -> String {
    condition.map_or("-".into(), |c| match c.reason.as_str() {
        "" => c.status.clone(),
        reason => format!("{}/{reason}", c.status),
    })
}

/// A line per MachineOSConfig: its pool, Ready, PoolUpdated, current build and image.
pub fn configs_table(configs: &[MachineOSConfig]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "POOL".into(),
        "READY".into(),
        "POOL UPDATED".into(),
        "BUILD".into(),
        "IMAGE".into(),
    ]];
    for config in configs {
        let status = config.status.clone().unwrap_or_default();
        rows.push([
            config.metadata.name.clone().unwrap_or_default(),
            config.spec.machine_config_pool.name.clone(),
            short(condition(&status.conditions, ct::READY)),
            short(condition(&status.conditions, ct::POOL_UPDATED)),
            status
                .machine_os_build
                .map_or_else(|| "-".into(), |b| b.name),
            status.current_image_pull_spec.unwrap_or_else(|| "-".into()),
        ]);
    }
    columns(&rows)
}

/// One MachineOSConfig: its conditions with their messages, its builds (newest first) and its
/// pool's machine counts.
pub fn config_detail(
    config: &MachineOSConfig,
    builds: &[MachineOSBuild],
    pool: Option<&kube::api::DynamicObject>,
) -> String {
    let status = config.status.clone().unwrap_or_default();
    let mut out = String::new();
    let name = config.metadata.name.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "MachineOSConfig {name} (pool {})",
        config.spec.machine_config_pool.name
    );
    let _ = writeln!(
        out,
        "Image: {}",
        status
            .current_image_pull_spec
            .as_deref()
            .unwrap_or("none pinned yet")
    );
    let _ = writeln!(out, "\nConditions:");
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "  {:<15} {:<5} {:<22} {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    let _ = writeln!(out, "\nBuilds (newest first):");
    let mut rows = vec![[
        "NAME".to_string(),
        "PHASE".into(),
        "STARTED".into(),
        "FINISHED".into(),
        "IMAGE OR FAILURE".into(),
    ]];
    for build in builds {
        let status = build.status.clone().unwrap_or_default();
        let time = |t: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map_or("-".into(), |t| t.0.to_string())
        };
        let outcome = match (&status.digested_image_push_spec, &status.failure) {
            (Some(image), _) => image.clone(),
            (None, Some(f)) => format!("{}: {}", f.reason, f.message),
            (None, None) => "-".into(),
        };
        rows.push([
            build.metadata.name.clone().unwrap_or_default(),
            build.phase().map_or("-".into(), |p| format!("{p:?}")),
            time(status.build_start.clone()),
            time(status.build_end.clone()),
            outcome,
        ]);
    }
    out.push_str(&indent(&columns(&rows)));
    if let Some(pool) = pool {
        let count = |key: &str| pool.data["status"][key].as_i64().unwrap_or(0);
        let _ = writeln!(
            out,
            "\nPool {}: {} machines, {} updated, {} degraded",
            config.spec.machine_config_pool.name,
            count("machineCount"),
            count("updatedMachineCount"),
            count("degradedMachineCount")
        );
    }
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Rows as left-aligned columns, two spaces apart.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> MachineOSConfig {
        serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSConfig",
            "metadata": {"name": "worker"},
            "spec": {"machineConfigPool": {"name": "worker"},
                     "imageBuilder": {"imageBuilderType": "Job"},
                     "renderedImagePushSecret": {"name": "push"},
                     "renderedImagePushSpec": "registry.example.com/os/worker:latest"},
            "status": {
                "currentImagePullSpec": format!("registry.example.com/os/worker@sha256:{}", "a".repeat(64)),
                "machineOSBuild": {"group": "strata.dev", "resource": "machineosbuilds", "name": "worker-1234"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Pinned", "message": "pool worker is pinned", "lastTransitionTime": "2026-12-07T06:00:00Z"},
                    {"type": "PoolUpdated", "status": "False", "reason": "Rolling", "message": "1 of 2 machines run it", "lastTransitionTime": "2026-12-07T06:00:00Z"}
                ]}
        }))
        .unwrap()
    }

    fn build(name: &str, failed: bool) -> MachineOSBuild {
        let status = if failed {
            json!({"conditions": [{"type": "Failed", "status": "True", "reason": "StepFailed", "message": "", "lastTransitionTime": "2026-12-07T06:00:00Z"}],
                   "failure": {"reason": "StepFailed", "message": "step RUN false failed (fragment line 2)", "logTail": ""}})
        } else {
            json!({"conditions": [{"type": "Succeeded", "status": "True", "reason": "Pushed", "message": "", "lastTransitionTime": "2026-12-07T06:00:00Z"}],
                   "buildStart": "2026-12-07T05:58:00Z", "buildEnd": "2026-12-07T06:00:00Z",
                   "digestedImagePushSpec": format!("registry.example.com/os/worker@sha256:{}", "a".repeat(64))})
        };
        serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "MachineOSBuild",
            "metadata": {"name": name},
            "spec": {"machineOSConfig": {"name": "worker"}, "machineConfigPool": {"name": "worker"},
                     "renderedImagePushSpec": "registry.example.com/os/worker:x",
                     "containerFile": [], "baseImage": "b@sha256:00"},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_table_has_a_line_per_config_with_its_conditions_and_image() {
        let table = configs_table(&[config()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2, "{table}");
        assert!(lines[0].starts_with("NAME") && lines[0].contains("POOL UPDATED"));
        for cell in [
            "worker",
            "True/Pinned",
            "False/Rolling",
            "worker-1234",
            "@sha256:aaaa",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing: {table}");
        }
    }

    #[test]
    fn the_detail_names_conditions_builds_and_the_pools_machines() {
        let pool: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
            "metadata": {"name": "worker"},
            "status": {"machineCount": 2, "updatedMachineCount": 1, "degradedMachineCount": 0}
        }))
        .unwrap();
        let text = config_detail(
            &config(),
            &[build("worker-2", true), build("worker-1", false)],
            Some(&pool),
        );
        for needle in [
            "MachineOSConfig worker (pool worker)",
            "1 of 2 machines run it",
            "worker-2  Failed",
            "StepFailed: step RUN false failed (fragment line 2)",
            "worker-1  Succeeded",
            "Pool worker: 2 machines, 1 updated, 0 degraded",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let newest = text.find("worker-2").unwrap();
        assert!(newest < text.find("worker-1 ").unwrap());
    }
}
