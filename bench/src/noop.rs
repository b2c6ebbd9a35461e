//! `strata-bench noop-builder build <step>`: the scale run's builder. Builder Jobs run it in
//! place of `strata build <step>` (the no-op builder image has it as its entrypoint), so that 500
//! builds measure the controller, not buildah: the build step only reads the build's inputs hash
//! from the rendered Containerfile (the push step cannot see the Containerfile); the push step
//! pushes a one-layer image whose config carries that hash — which the controller checks before
//! it pins — and writes the builder contract's success message.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use sha2::{Digest, Sha256};
use strata_crds::contract::{
    FailureClass, TerminationMessage, builder_pod, exit_code, image_labels,
};

fn hand_over() -> PathBuf {
    PathBuf::from(builder_pod::WORK_DIR).join("bench-inputs-hash")
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// Runs the step named last in `args`; returns the exit code.
pub async fn main(args: &[String]) -> i32 {
    let step = args.last().map(String::as_str).unwrap_or_default();
    let result = match step {
        builder_pod::PULL => Ok(None),
        builder_pod::BUILD => read_inputs_hash().map(|()| None),
        builder_pod::PUSH => push_with_retries().await.map(Some),
        other => Err(anyhow::anyhow!("unknown step {other:?}")),
    };
    let message = match result {
        Ok(None) => return exit_code::SUCCESS,
        Ok(Some(message)) => message,
        Err(err) => TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "BenchNoopFailed".into(),
            message: format!("{err:#}"),
            log_tail: String::new(),
            boot_check: None,
        },
    };
    let code = match &message {
        TerminationMessage::Success { .. } => exit_code::SUCCESS,
        TerminationMessage::Failure { class, .. } => class.exit_code(),
    };
    let line = message.to_line();
    let path = env("STRATA_TERMINATION_LOG", "/dev/termination-log");
    let _ = std::fs::write(path, format!("{line}\n"));
    println!("strata-bench noop-builder: {line}");
    code
}

/// The inputs hash in the rendered Containerfile's LABEL line.
pub fn inputs_hash(containerfile: &str) -> Option<String> {
    let needle = format!("{}=\"", image_labels::INPUTS_HASH);
    let at = containerfile.find(&needle)? + needle.len();
    let rest = &containerfile[at..];
    Some(rest[..rest.find('"')?].to_string())
}

fn read_inputs_hash() -> Result<()> {
    let path = env(
        "STRATA_CONTAINERFILE",
        &format!("{}/Containerfile", builder_pod::CONTAINERFILE_DIR),
    );
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let hash = inputs_hash(&text).context("no inputs-hash label in the Containerfile")?;
    std::fs::write(hand_over(), hash)?;
    Ok(())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Hundreds of these pods push the same empty layer to one repository at once, and the
/// registry's uploads of one blob race (400 DIGEST_INVALID, seen at 500 configs): try again.
async fn push_with_retries() -> Result<TerminationMessage> {
    let mut attempt = 1;
    loop {
        match push().await {
            Ok(message) => return Ok(message),
            Err(err) if attempt < 5 => {
                eprintln!("strata-bench noop-builder: push attempt {attempt} failed: {err:#}");
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn push() -> Result<TerminationMessage> {
    let hash = std::fs::read_to_string(hand_over()).context("the build step left no hash")?;
    let image = env("STRATA_IMAGE", "");
    if image.is_empty() {
        bail!("STRATA_IMAGE is not set");
    }
    let insecure: Vec<String> = env("STRATA_INSECURE_REGISTRIES", "")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure),
        ..ClientConfig::default()
    });
    let reference: oci_client::Reference = image.parse()?;
    // An empty tar archive: two zero blocks.
    let layer = vec![0u8; 1024];
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {image_labels::INPUTS_HASH: hash.trim()}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))?;
    let digest = sha256(&manifest);
    client
        .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
        .await;
    client.push_blob(&reference, layer, &layer_digest).await?;
    client.push_blob(&reference, config, &config_digest).await?;
    client
        .push_manifest_raw(
            &reference,
            manifest,
            "application/vnd.oci.image.manifest.v1+json".parse()?,
        )
        .await?;
    Ok(TerminationMessage::Success {
        files: Vec::new(),
        digest,
        size_bytes: 1024,
        phases: Vec::new(),
        boot_check: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_hash_from_the_label_line() {
        let cf = "FROM x\nLABEL strata.dev/base-image=\"x\" strata.dev/machine-os-config=\"a\" strata.dev/inputs-hash=\"4f94\"\n";
        assert_eq!(inputs_hash(cf).as_deref(), Some("4f94"));
        assert_eq!(inputs_hash("FROM x\n"), None);
    }
}
