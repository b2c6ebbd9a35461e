//! Running buildah for a step: Strata's storage (the shared storage dir and driver) and registry
//! settings, output streamed to stdout (for `kubectl logs`, redacted) with its tail kept, and
//! SIGTERM passed on.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::UnboundedReceiver;

use super::redact::Redactor;
use super::{BuildArgs, FailureClass, TerminationMessage, failure};

/// Lines of buildah output kept for the log tail.
const TAIL_LINES: usize = 60;
/// How long buildah gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Output {
    pub success: bool,
    pub tail: String,
}

pub struct Buildah {
    program: PathBuf,
    storage: PathBuf,
    driver: String,
    registries_conf: PathBuf,
    /// policy.json from the cluster's environment (registries restricted to an allowed list).
    policy: Option<PathBuf>,
    /// SSL_CERT_DIR: the cluster's CAs beside the system's.
    cert_dir: Option<PathBuf>,
    /// buildah's temporary files (whole layers while pulling and pushing) go to the work volume,
    /// not the container's root filesystem.
    tmp: PathBuf,
    redactor: Redactor,
}

pub fn cert_dir_flag(args: &BuildArgs) -> Option<String> {
    args.cert_dir
        .as_ref()
        .map(|d| format!("--cert-dir={}", d.display()))
}

/// registries.conf marking only the given registries insecure, and no short-name search.
pub fn registries_conf_text(insecure: &[String]) -> String {
    let mut text = String::from("unqualified-search-registries = []\n");
    for registry in insecure.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        text.push_str(&format!(
            "\n[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
        ));
    }
    text
}

impl Buildah {
    pub fn new(args: &BuildArgs, redactor: Redactor) -> Result<Self, TerminationMessage> {
        let env = args.environment();
        let tmp = args.work_dir.join("tmp");
        // The controller's registries.conf when it wrote one (mirrors, policy and the insecure
        // registries), else one for the insecure registries given here.
        let (registries_conf, write) = match env.registries_conf() {
            Some(conf) => (conf, false),
            None => (args.work_dir.join("registries.conf"), true),
        };
        std::fs::create_dir_all(&tmp)
            .and_then(|()| {
                if write {
                    std::fs::write(
                        &registries_conf,
                        registries_conf_text(&args.insecure_registries),
                    )
                } else {
                    Ok(())
                }
            })
            .map_err(|e| {
                failure(
                    FailureClass::Transient,
                    "OutOfSpace",
                    format!("cannot write {}: {e}", registries_conf.display()),
                    String::new(),
                )
            })?;
        Ok(Self {
            program: args.buildah.clone(),
            storage: args.storage_dir.clone(),
            driver: args.storage_driver.clone(),
            registries_conf,
            policy: env.policy(),
            cert_dir: env.cert_dir(),
            tmp,
            redactor,
        })
    }

    /// The same buildah on another store (the claim's housekeeping empties idle stores).
    pub fn on_store(&self, root: &std::path::Path) -> Self {
        Self {
            program: self.program.clone(),
            storage: root.to_path_buf(),
            driver: self.driver.clone(),
            registries_conf: self.registries_conf.clone(),
            policy: self.policy.clone(),
            cert_dir: self.cert_dir.clone(),
            tmp: self.tmp.clone(),
            redactor: self.redactor.clone(),
        }
    }

    /// `--signature-policy` for pulls, builds and pushes, when the cluster restricts registries.
    pub fn policy_flag(&self) -> Option<String> {
        self.policy
            .as_ref()
            .map(|p| format!("--signature-policy={}", p.display()))
    }

    /// The file tree of `image` in the storage.
    pub fn tree(&self, image: &str) -> Result<super::tree::Tree, String> {
        super::tree::Tree::from_storage(&self.storage, &self.driver, image)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--storage-driver={}", self.driver))
            .arg(format!("--root={}", self.storage.display()))
            .env("CONTAINERS_REGISTRIES_CONF", &self.registries_conf)
            .env("TMPDIR", &self.tmp)
            .env("BUILDAH_ISOLATION", "chroot");
        if let Some(dir) = &self.cert_dir {
            cmd.env("SSL_CERT_DIR", dir);
        }
        cmd
    }

    /// Runs buildah, streaming its output (redacted) and keeping the tail. SIGTERM stops buildah
    /// and reports a transient failure.
    pub async fn run(&self, args: &[String]) -> Result<Output, TerminationMessage> {
        self.run_until(args, std::future::pending()).await
    }

    /// [`Self::run`], and buildah is stopped the same way when `stop` resolves first, with the
    /// failure it gives (a store past its quota).
    pub async fn run_until(
        &self,
        args: &[String],
        stop: impl std::future::Future<Output = TerminationMessage>,
    ) -> Result<Output, TerminationMessage> {
        tokio::pin!(stop);
        let (mut child, mut rx) = self.spawn(args)?;
        let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
        let mut keep = |line: String| {
            let line = self.redactor.redact(&line);
            println!("{line}");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        let mut term = signal(SignalKind::terminate()).map_err(|e| {
            failure(
                FailureClass::Transient,
                "Terminated",
                e.to_string(),
                String::new(),
            )
        })?;
        let mut stopped: Option<TerminationMessage> = None;
        let status = loop {
            let why = tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => { keep(line); continue; }
                    None => break child.wait().await,
                },
                _ = term.recv(), if stopped.is_none() => {
                    println!("strata build: SIGTERM received, stopping buildah");
                    failure(
                        FailureClass::Transient,
                        "Terminated",
                        "the builder pod was asked to stop (SIGTERM)",
                        String::new(),
                    )
                }
                message = &mut stop, if stopped.is_none() => {
                    if let TerminationMessage::Failure { message, .. } = &message {
                        println!("strata build: {message}");
                    }
                    message
                }
            };
            stopped = Some(why);
            stop_gracefully(&mut child).await;
            // A process buildah left (a RUN step's) may hold its output open: take what came,
            // and end here.
            while let Ok(line) = rx.try_recv() {
                keep(line);
            }
            break child.wait().await;
        };
        let tail = tail.into_iter().collect::<Vec<_>>().join("\n");
        if let Some(mut message) = stopped {
            if let TerminationMessage::Failure { log_tail, .. } = &mut message {
                *log_tail = tail;
            }
            return Err(message);
        }
        Ok(Output {
            success: status.map(|s| s.success()).unwrap_or(false),
            tail,
        })
    }

    /// buildah with `args`, its output lines (stdout and stderr) coming on the receiver.
    fn spawn(
        &self,
        args: &[String],
    ) -> Result<(tokio::process::Child, UnboundedReceiver<String>), TerminationMessage> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            failure(
                FailureClass::Terminal,
                "BuilderMisconfigured",
                format!("cannot run {}: {e}", self.program.display()),
                String::new(),
            )
        })?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        if let Some(out) = child.stdout.take() {
            forward_lines(out, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            forward_lines(err, tx);
        }
        Ok((child, rx))
    }

    /// The gate's verdict on `image`: its file tree, read from the storage without mounting
    /// anything ([`super::tree`]), checked by [`super::lint::check_tree`].
    pub fn lint(&self, image: &str) -> Result<Vec<super::lint::Violation>, TerminationMessage> {
        let tree = self.tree(image).map_err(|e| {
            failure(
                FailureClass::Terminal,
                "BuildFailed",
                format!("the image gate cannot read the image: {e}"),
                String::new(),
            )
        })?;
        Ok(super::lint::check_tree(&tree))
    }

    /// The ID of `image` (a name or a digest reference) in the storage.
    pub async fn image_id(&self, image: &str) -> Option<String> {
        let out = self.inspect_image(image, "{{.FromImageID}}").await?;
        super::parse_image_id(&String::from_utf8_lossy(&out))
    }

    /// The image's size: config plus layers (uncompressed), from its manifest in local storage.
    pub async fn image_size(&self, image: &str) -> Option<u64> {
        manifest_size(&self.inspect_image(image, "{{.Manifest}}").await?)
    }

    /// The `ONBUILD` triggers of `image`'s (Docker-format) config, which buildah runs in a stage
    /// built `FROM` it; None when buildah cannot tell.
    pub async fn onbuild_triggers(&self, image: &str) -> Option<Vec<String>> {
        let out = self
            .inspect_image(
                image,
                "{{range .Docker.Config.OnBuild}}{{println .}}{{end}}",
            )
            .await?;
        Some(
            String::from_utf8_lossy(&out)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect(),
        )
    }

    /// `buildah inspect --type image --format <format> <image>`'s output; None when it fails.
    async fn inspect_image(&self, image: &str, format: &str) -> Option<Vec<u8>> {
        let out = self
            .command()
            .args(["inspect", "--type", "image", "--format", format, image])
            .output()
            .await
            .ok()?;
        out.status.success().then_some(out.stdout)
    }
}

/// SIGTERM to buildah, and SIGKILL after [`STOP_GRACE`].
async fn stop_gracefully(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
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
}
