//! `strata build`: runs inside the builder pod. Builds the rendered Containerfile with buildah
//! (vfs storage, chroot isolation, layer cache), pushes it with a digest file, and writes the
//! one-line JSON termination message of the builder contract. See builder-image/README.md.

pub mod message;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};

pub use message::{FailureClass, Stage, TerminationMessage, exit_code};

/// Lines of buildah output kept for the log tail.
const TAIL_LINES: usize = 60;
/// How long buildah gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The rendered Containerfile (mounted from the build's ConfigMap).
    #[arg(
        long,
        env = "STRATA_CONTAINERFILE",
        default_value = "/etc/strata/build/Containerfile"
    )]
    pub containerfile: PathBuf,
    /// Where to push: host[:port]/path/name:tag (the tag is the build's name).
    #[arg(long, env = "STRATA_IMAGE")]
    pub image: String,
    /// Auth file for pulling the base and any image the fragment names (optional).
    #[arg(
        long,
        env = "STRATA_BASE_AUTHFILE",
        default_value = "/etc/strata/base-auth/.dockerconfigjson"
    )]
    pub base_authfile: PathBuf,
    /// Auth file with push rights on the image's repository.
    #[arg(
        long,
        env = "STRATA_PUSH_AUTHFILE",
        default_value = "/etc/strata/push-auth/.dockerconfigjson"
    )]
    pub push_authfile: PathBuf,
    /// Registries (host[:port]) reached over plain HTTP or with unverified TLS; comma-separated.
    /// Only these: TLS stays on for every other registry.
    #[arg(long, env = "STRATA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Directory of extra CA certificates (`<host:port>/ca.crt`, as buildah's --cert-dir expects).
    #[arg(long, env = "STRATA_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// buildah's storage root: the layer cache. Mount a volume here to keep it between builds.
    #[arg(
        long,
        env = "STRATA_CACHE_DIR",
        default_value = "/var/lib/containers/storage"
    )]
    pub cache_dir: PathBuf,
    /// Optional registry repository for buildah's --cache-from/--cache-to (off when unset).
    #[arg(long, env = "STRATA_REGISTRY_CACHE")]
    pub registry_cache: Option<String>,
    /// Where the termination message goes.
    #[arg(
        long,
        env = "STRATA_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
    /// The buildah executable.
    #[arg(long, env = "STRATA_BUILDAH", default_value = "buildah")]
    pub buildah: PathBuf,
}

/// Runs the build and writes the termination message; returns the process exit code.
pub async fn run(args: &BuildArgs) -> i32 {
    let message = match build_and_push(args).await {
        Ok(message) => message,
        Err(failure) => failure,
    };
    let line = message.to_line();
    if let Err(err) = std::fs::write(&args.termination_log, format!("{line}\n")) {
        eprintln!(
            "strata build: cannot write {}: {err}",
            args.termination_log.display()
        );
    }
    println!("strata build: {line}");
    match message {
        TerminationMessage::Success { .. } => exit_code::SUCCESS,
        TerminationMessage::Failure { class, .. } => class.exit_code(),
    }
}

fn failure(
    class: FailureClass,
    reason: &str,
    message: impl Into<String>,
    log_tail: String,
) -> TerminationMessage {
    TerminationMessage::Failure {
        class,
        reason: reason.into(),
        message: message.into(),
        log_tail,
    }
}

async fn build_and_push(args: &BuildArgs) -> Result<TerminationMessage, TerminationMessage> {
    let containerfile = std::fs::read_to_string(&args.containerfile).map_err(|e| {
        failure(
            FailureClass::Terminal,
            "InvalidInput",
            format!("cannot read {}: {e}", args.containerfile.display()),
            String::new(),
        )
    })?;
    let work =
        tempdir().map_err(|e| failure(FailureClass::Transient, "OutOfSpace", e, String::new()))?;
    let context = work.join("context");
    std::fs::create_dir_all(&context).map_err(|e| {
        failure(
            FailureClass::Transient,
            "OutOfSpace",
            e.to_string(),
            String::new(),
        )
    })?;
    let registries_conf = work.join("registries.conf");
    std::fs::write(
        &registries_conf,
        registries_conf_text(&args.insecure_registries),
    )
    .map_err(|e| {
        failure(
            FailureClass::Transient,
            "OutOfSpace",
            e.to_string(),
            String::new(),
        )
    })?;

    let mut bud = vec![
        "bud".to_string(),
        "--isolation=chroot".into(),
        "--layers".into(),
        "--format=oci".into(),
    ];
    if args.base_authfile.is_file() {
        bud.push(format!("--authfile={}", args.base_authfile.display()));
    }
    if let Some(cache) = &args.registry_cache {
        bud.extend([
            format!("--cache-from={cache}"),
            format!("--cache-to={cache}"),
        ]);
    }
    bud.extend(cert_dir_flag(args));
    bud.extend([
        "-f".into(),
        args.containerfile.display().to_string(),
        "-t".into(),
        args.image.clone(),
    ]);
    bud.push(context.display().to_string());

    println!(
        "strata build: building {} ({} bytes of Containerfile)",
        args.image,
        containerfile.len()
    );
    let started = Instant::now();
    let output = run_buildah(args, &registries_conf, &bud).await?;
    if !output.success {
        let (class, reason, message) = message::classify(Stage::Build, &output.tail);
        let line =
            message::failed_step(&output.tail).and_then(|step| step_line(&containerfile, &step));
        let message = match line.map(|l| (l, crate::render::fragment_line(&containerfile, l))) {
            Some((line, Some(fragment))) => {
                format!("{message} (fragment line {fragment}, Containerfile line {line})")
            }
            Some((line, None)) => format!("{message} (Containerfile line {line})"),
            None => message,
        };
        return Err(failure(class, reason, message, output.tail));
    }
    let build_seconds = started.elapsed().as_secs_f64();

    let digestfile = work.join("digest");
    let mut push = vec!["push".to_string()];
    if args.push_authfile.is_file() {
        push.push(format!("--authfile={}", args.push_authfile.display()));
    }
    push.extend(cert_dir_flag(args));
    push.extend([
        format!("--digestfile={}", digestfile.display()),
        args.image.clone(),
        format!("docker://{}", args.image),
    ]);
    println!("strata build: pushing {}", args.image);
    let started = Instant::now();
    let output = run_buildah(args, &registries_conf, &push).await?;
    if !output.success {
        let (class, reason, message) = message::classify(Stage::Push, &output.tail);
        return Err(failure(class, reason, message, output.tail));
    }
    let push_seconds = started.elapsed().as_secs_f64();
    let digest = std::fs::read_to_string(&digestfile)
        .unwrap_or_default()
        .trim()
        .to_string();
    if !digest.starts_with("sha256:") || digest.len() != 71 {
        return Err(failure(
            FailureClass::Transient,
            "PushFailed",
            format!("buildah wrote no valid digest ('{digest}')"),
            output.tail,
        ));
    }
    let size_bytes = image_size(args, &registries_conf).await.unwrap_or(0);
    let _ = std::fs::remove_dir_all(&work);
    Ok(TerminationMessage::Success {
        digest,
        size_bytes,
        build_seconds,
        push_seconds,
    })
}

fn cert_dir_flag(args: &BuildArgs) -> Option<String> {
    args.cert_dir
        .as_ref()
        .map(|d| format!("--cert-dir={}", d.display()))
}

/// registries.conf marking only the given registries insecure.
fn registries_conf_text(insecure: &[String]) -> String {
    let mut text = String::from("unqualified-search-registries = []\n");
    for registry in insecure.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        text.push_str(&format!(
            "\n[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
        ));
    }
    text
}

/// The 1-based line of the rendered Containerfile holding `step` (buildah's text of it).
fn step_line(containerfile: &str, step: &str) -> Option<usize> {
    let parsed = crate::render::parse(containerfile).ok()?;
    let wanted: String = step.split_whitespace().collect::<Vec<_>>().join(" ");
    parsed
        .instructions
        .iter()
        .rev()
        .find(|i| {
            let text = format!("{} {}", i.keyword, i.args);
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            text.eq_ignore_ascii_case(&wanted)
                || wanted.starts_with(&text)
                || text.starts_with(&wanted)
        })
        .map(|i| i.line)
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("strata-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

struct BuildahOutput {
    success: bool,
    tail: String,
}

/// buildah with Strata's storage (vfs under the cache dir) and registry settings.
fn buildah(args: &BuildArgs, registries_conf: &Path) -> Command {
    let mut cmd = Command::new(&args.buildah);
    cmd.arg("--storage-driver=vfs")
        .arg(format!("--root={}", args.cache_dir.display()))
        .env("CONTAINERS_REGISTRIES_CONF", registries_conf)
        .env("BUILDAH_ISOLATION", "chroot");
    cmd
}

/// Sends each line of `reader` to `tx` until it closes.
fn forward_lines(
    reader: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    tx: tokio::sync::mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
}

/// Runs buildah with the storage and registry settings, streaming its output to stdout (for
/// `kubectl logs`) and keeping the tail. SIGTERM stops buildah and reports a transient failure.
async fn run_buildah(
    args: &BuildArgs,
    registries_conf: &Path,
    command: &[String],
) -> Result<BuildahOutput, TerminationMessage> {
    let mut cmd = buildah(args, registries_conf);
    cmd.args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        failure(
            FailureClass::Terminal,
            "BuilderMisconfigured",
            format!("cannot run {}: {e}", args.buildah.display()),
            String::new(),
        )
    })?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(out) = child.stdout.take() {
        forward_lines(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, tx.clone());
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut keep = |line: String| {
        println!("{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let mut term = signal(SignalKind::terminate()).map_err(|e| {
        failure(
            FailureClass::Transient,
            "BuildFailed",
            e.to_string(),
            String::new(),
        )
    })?;
    let mut terminated = false;
    let status = loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => keep(line),
                None => break child.wait().await,
            },
            _ = term.recv(), if !terminated => {
                terminated = true;
                println!("strata build: SIGTERM received, stopping buildah");
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                }
                let deadline = tokio::time::sleep(STOP_GRACE);
                tokio::pin!(deadline);
                tokio::select! {
                    _ = child.wait() => {}
                    _ = &mut deadline => { let _ = child.start_kill(); }
                }
            }
        }
    };
    let tail_text = tail.into_iter().collect::<Vec<_>>().join("\n");
    if terminated {
        return Err(failure(
            FailureClass::Transient,
            "Terminated",
            "the builder pod was asked to stop (SIGTERM)",
            tail_text,
        ));
    }
    let success = status.map(|s| s.success()).unwrap_or(false);
    Ok(BuildahOutput {
        success,
        tail: tail_text,
    })
}

/// The built image's size: config plus layers (uncompressed), from its manifest in local storage.
async fn image_size(args: &BuildArgs, registries_conf: &Path) -> Option<u64> {
    let out = buildah(args, registries_conf)
        .args([
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.Manifest}}",
            &args.image,
        ])
        .output()
        .await
        .ok()?;
    manifest_size(&out.stdout)
}

fn manifest_size(manifest: &[u8]) -> Option<u64> {
    let manifest: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let layers = manifest
        .get("layers")?
        .as_array()?
        .iter()
        .filter_map(|l| l.get("size")?.as_u64())
        .sum::<u64>();
    Some(
        layers
            + manifest
                .pointer("/config/size")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_marks_only_the_listed_registries() {
        let text = registries_conf_text(&["10.0.0.1:5000".into(), " ".into()]);
        assert_eq!(text.matches("[[registry]]").count(), 1);
        assert!(text.contains("location = \"10.0.0.1:5000\"\ninsecure = true"));
    }

    #[test]
    fn size_from_the_manifest() {
        let m = br#"{"config":{"size":453},"layers":[{"size":2131968},{"size":10}]}"#;
        assert_eq!(manifest_size(m), Some(2_132_431));
        assert_eq!(manifest_size(b"not json"), None);
    }

    #[test]
    fn failed_step_maps_to_its_line() {
        let cf = "FROM x AS base\nFROM base\nRUN echo a\nRUN   false  \nLABEL a=b\n";
        assert_eq!(step_line(cf, "RUN false"), Some(4));
        assert_eq!(step_line(cf, "USER nobody"), None);
    }
}
