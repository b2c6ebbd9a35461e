//! `strata build pull|build|push` on the host with real buildah and a real registry (Debian's
//! docker-registry on a free port), no cluster, the steps run one after the other on shared
//! storage as the builder pod runs them: success with the digest the registry serves and every
//! step's timing; a failing RUN step (terminal, with the step and line) even when it prints what
//! looks like a registry or credential problem; the push registry down (transient); an image the
//! pull step did not fetch is not fetched by the build step, and the pull step fetches what a
//! stage `ARG` or a quoted `--mount` field names; a base whose `ONBUILD` trigger names an image is
//! refused; a secret that never reaches a layer,
//! the log or the message; SIGTERM mid-build; wrong push credentials against an htpasswd registry
//! (terminal, AuthFailed). One test per scenario, each with its own registry and base image, so
//! any runs alone and they run in parallel. Needs root; STRATA_E2E=1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use strata_e2e::{e2e_run_or_skip, needs};

struct Registry {
    child: Child,
    address: String,
    storage: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_registry(dir: &Path) -> Result<Registry> {
    start_registry_named(dir, "registry", None)
}

/// A registry under `dir/<name>`; with `htpasswd`, it asks for basic auth (bcrypt htpasswd file).
fn start_registry_named(dir: &Path, name: &str, htpasswd: Option<&Path>) -> Result<Registry> {
    let port = free_port()?;
    let storage = dir.join(name);
    std::fs::create_dir_all(&storage)?;
    let config = dir.join(format!("{name}.yml"));
    let auth = htpasswd
        .map(|p| {
            format!(
                "auth: {{htpasswd: {{realm: strata-test, path: {}}}}}\n",
                p.display()
            )
        })
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n{auth}",
            storage.display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .args(["serve", &config.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting docker-registry")?;
    let address = format!("127.0.0.1:{port}");
    let registry = Registry {
        child,
        address,
        storage,
    };
    let started = Instant::now();
    // An htpasswd registry answers 401 when it is up.
    let url = format!("http://{}/v2/", registry.address);
    let up = || curl_ok(&url) || (htpasswd.is_some() && curl_status(&url) == "401");
    while !up() {
        ensure!(
            started.elapsed() < Duration::from_secs(20),
            "registry did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(registry)
}

fn curl_ok(url: &str) -> bool {
    Command::new("curl")
        .args(["-sf", "-o", "/dev/null", url])
        .status()
        .is_ok_and(|s| s.success())
}

fn curl_status(url: &str) -> String {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A `.dockerconfigjson` for `registry` with `user:password`.
fn auth_file(path: &Path, registry: &str, user_password: &str) -> Result<()> {
    let out = run(Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | base64 -w0")
        .arg("_")
        .arg(user_password))?;
    let encoded = String::from_utf8(out.stdout)?;
    std::fs::write(
        path,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{encoded}"}}}}}}"#),
    )?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

/// A busybox image with the layout the image gate checks (a placeholder kernel, the ostree
/// layout, the API directories), pushed to the registry, returned by digest.
fn push_base(dir: &Path, registry: &Registry) -> Result<String> {
    let buildah = |args: &[&str]| base_buildah(dir, args);
    let c = String::from_utf8(buildah(&["from", "scratch"])?.stdout)?
        .trim()
        .to_string();
    let tree = dir.join("base-tree");
    for d in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/tmp",
        "boot",
        "sysroot/ostree",
        "usr/lib/modules/0.0.0-test",
    ] {
        std::fs::create_dir_all(tree.join(d))?;
    }
    std::fs::write(
        tree.join("usr/lib/modules/0.0.0-test/vmlinuz"),
        "placeholder kernel",
    )?;
    std::os::unix::fs::symlink("sysroot/ostree", tree.join("ostree"))?;
    buildah(&["copy", &c, &tree.display().to_string(), "/"])?;
    buildah(&["copy", &c, "/bin/busybox", "/bin/busybox"])?;
    buildah(&["copy", &c, "/bin/busybox", "/bin/sh"])?;
    buildah(&[
        "run",
        "--isolation=chroot",
        &c,
        "--",
        "/bin/busybox",
        "--install",
        "-s",
        "/bin",
    ])?;
    buildah(&[
        "commit",
        "-q",
        &c,
        "localhost/strata-builder-test/base:latest",
    ])?;
    let digestfile = dir.join("base.digest");
    let target = format!("docker://{}/builder-test/base:latest", registry.address);
    buildah(&[
        "push",
        "--tls-verify=false",
        "--digestfile",
        &digestfile.display().to_string(),
        "localhost/strata-builder-test/base:latest",
        &target,
    ])?;
    let digest = std::fs::read_to_string(&digestfile)?;
    Ok(format!(
        "{}/builder-test/base@{}",
        registry.address,
        digest.trim()
    ))
}

/// buildah on the storage [`push_base`] made the base in.
fn base_buildah(dir: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("buildah");
    cmd.args(["--storage-driver=vfs", "--root"])
        .arg(dir.join("base-storage"))
        .arg("--runroot")
        .arg(dir.join("base-run"));
    cmd.args(args);
    run(&mut cmd)
}

/// Pushes `local` (an image of the base's storage) to `<registry>/<repo_tag>` in the Docker
/// format (which keeps `ONBUILD` triggers); returns the reference pushed.
fn push_local(dir: &Path, reg: &str, local: &str, repo_tag: &str) -> Result<String> {
    let target = format!("{reg}/{repo_tag}");
    base_buildah(
        dir,
        &[
            "push",
            "--tls-verify=false",
            "--format=v2s2",
            local,
            &format!("docker://{target}"),
        ],
    )?;
    Ok(target)
}

struct Build {
    /// The last step that ran (the failing one, or push).
    step: &'static str,
    status: Option<i32>,
    /// Every step's output.
    log: String,
    message: Value,
}

/// Runs the three steps of a build, stopping at the first that fails.
fn strata_build(
    dir: &Path,
    name: &str,
    containerfile: &str,
    image: &str,
    insecure: &str,
    authfile: Option<&Path>,
) -> Result<Build> {
    let mut log = String::new();
    for step in ["pull", "build", "push"] {
        let child =
            step_command(dir, name, step, containerfile, image, insecure, authfile)?.spawn()?;
        let mut build = finish(dir, name, step, child)?;
        log.push_str(&build.log);
        if build.status != Some(0) || step == "push" {
            build.log = log;
            return Ok(build);
        }
    }
    unreachable!("the push step returns")
}

/// `strata build <step>` of `containerfile` to `image`, with the build's storage and work dirs
/// under `dir/<name>` (shared by its steps, as the pod's emptyDirs are).
fn step_command(
    dir: &Path,
    name: &str,
    step: &str,
    containerfile: &str,
    image: &str,
    insecure: &str,
    authfile: Option<&Path>,
) -> Result<Command> {
    let bin = std::env::var("STRATA_BIN")
        .context("STRATA_BIN is not set (run through `make e2e-test`)")?;
    let file = dir.join(format!("{name}.Containerfile"));
    std::fs::write(&file, containerfile)?;
    let missing = dir.join("no-such-authfile");
    let mut cmd = Command::new(bin);
    cmd.args([
        "build",
        step,
        "--image",
        image,
        "--insecure-registries",
        insecure,
    ])
    .arg("--containerfile")
    .arg(&file)
    .arg("--storage-dir")
    .arg(dir.join(name).join("storage"))
    .arg("--work-dir")
    .arg(dir.join(name).join("work"))
    .arg("--termination-log")
    .arg(dir.join(format!("{name}.{step}.message")))
    .arg("--push-authfile")
    .arg(authfile.unwrap_or(&missing))
    .arg("--pull-authfile")
    .arg(authfile.unwrap_or(&missing))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    Ok(cmd)
}

fn finish(dir: &Path, name: &str, step: &'static str, child: Child) -> Result<Build> {
    let out = child.wait_with_output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(format!("{name}.{step}.message"));
    // Only a failing step and the push step write a message.
    let message = match std::fs::read_to_string(&path) {
        Ok(text) => {
            ensure!(
                text.trim().lines().count() == 1 && text.len() <= 4097,
                "message is not one line of ≤ 4 KiB: {text}"
            );
            serde_json::from_str(text.trim())?
        }
        Err(_) if out.status.success() && step != "push" => Value::Null,
        Err(e) => bail!("{step}: no termination message ({e}); log:\n{log}"),
    };
    Ok(Build {
        step,
        status: out.status.code(),
        log,
        message,
    })
}

fn manifest_digest(registry: &str, repo: &str, tag: &str) -> Result<String> {
    let out = run(Command::new("curl").args([
        "-sfI",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{registry}/v2/{repo}/manifests/{tag}"),
    ]))?;
    String::from_utf8(out.stdout)?
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("docker-content-digest:")
                .then(|| l[22..].trim().to_string())
        })
        .context("no Docker-Content-Digest header")
}

/// What every scenario starts from: a directory, a registry and a base image of its own, so the
/// scenarios run in parallel (`--test-threads=2`) without seeing each other.
struct Setup {
    dir: PathBuf,
    registry: Registry,
    /// The base image, by digest.
    base: String,
    /// The registry's address (`127.0.0.1:<port>`).
    reg: String,
}

impl Setup {
    /// The scenario's setup, or `None` (not run) without STRATA_E2E.
    fn start(test: &str) -> Result<Option<Setup>> {
        let Some(dir) = test_dir(test) else {
            return Ok(None);
        };
        let registry = start_registry(&dir)?;
        let base = push_base(&dir, &registry)?;
        let reg = registry.address.clone();
        Ok(Some(Setup {
            dir,
            registry,
            base,
            reg,
        }))
    }

    /// Stops the registry and removes the directory; a failed scenario skips this and leaves its
    /// directory to look at.
    fn remove(self) {
        drop(self.registry);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The secret in the push credentials of [`build_with_a_secret`].
const SECRET: &str = "s3cr3t-VALUE-that-must-not-leak";

/// A build that succeeds, pushing with credentials whose password is [`SECRET`].
fn build_with_a_secret(setup: &Setup) -> Result<Build> {
    let Setup { dir, base, reg, .. } = setup;
    let auth = dir.join("auth.json");
    auth_file(&auth, reg, &format!("user:{SECRET}"))?;
    let ok = strata_build(
        dir,
        "ok",
        &format!("FROM {base}\nRUN echo layered > /etc/layered\n"),
        &format!("{reg}/builder-test/out:ok"),
        reg,
        Some(&auth),
    )?;
    ensure!(
        ok.status == Some(0),
        "exit {:?}: {}\n{}",
        ok.status,
        ok.message,
        ok.log
    );
    Ok(ok)
}

/// Success: the digest in the message is the one the registry serves for the tag, and the message
/// times every phase.
#[test]
fn a_build_pushes_the_digest_the_registry_serves_and_times_each_phase() -> Result<()> {
    let setup = needs!(Setup::start(
        "a_build_pushes_the_digest_the_registry_serves_and_times_each_phase"
    )?);
    let ok = build_with_a_secret(&setup)?;
    let digest = ok.message["digest"]
        .as_str()
        .context("no digest")?
        .to_string();
    ensure!(
        digest == manifest_digest(&setup.reg, "builder-test/out", "ok")?,
        "digest {digest} differs from the registry's"
    );
    ensure!(
        ok.log.contains("STEP 2/2: RUN echo layered"),
        "no step progress in the log:\n{}",
        ok.log
    );
    let phases: Vec<&str> = ok.message["phases"]
        .as_array()
        .context("no phases")?
        .iter()
        .filter_map(|p| p["phase"].as_str())
        .collect();
    ensure!(
        phases == ["pull", "build", "lint", "push"],
        "phases {phases:?}"
    );
    eprintln!(
        "ok: built and pushed {digest} ({} bytes), phases {}",
        ok.message["sizeBytes"], ok.message["phases"]
    );
    setup.remove();
    Ok(())
}

/// The push credential is nowhere: log, message, any blob in the registry (layers decompressed).
#[test]
fn a_push_credential_reaches_no_layer_log_or_message() -> Result<()> {
    let setup = needs!(Setup::start(
        "a_push_credential_reaches_no_layer_log_or_message"
    )?);
    let ok = build_with_a_secret(&setup)?;
    ensure!(
        !ok.log.contains(SECRET) && !ok.message.to_string().contains(SECRET),
        "secret in the log or message"
    );
    let blobs = run(Command::new("sh").arg("-c").arg(format!(
        "find '{}' -name data -path '*blobs*' -exec sh -c 'zcat -f \"$1\" 2>/dev/null | grep -a -c {SECRET} || true' _ {{}} \\;",
        setup.registry.storage.display()
    )))?;
    let hits: u32 = String::from_utf8(blobs.stdout)?
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .sum();
    ensure!(
        hits == 0,
        "the secret is in {hits} place(s) of the pushed blobs"
    );
    eprintln!("ok: the credential appears in no layer, log or message");
    setup.remove();
    Ok(())
}

/// A failing step: terminal (exit 3), StepFailed, the step and its line.
#[test]
fn a_failing_run_step_is_terminal_and_names_the_step_and_its_line() -> Result<()> {
    let setup = needs!(Setup::start(
        "a_failing_run_step_is_terminal_and_names_the_step_and_its_line"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let failed = strata_build(
        dir,
        "fail",
        &format!("FROM {base}\nRUN true\nRUN false\n"),
        &format!("{reg}/builder-test/out:fail"),
        reg,
        None,
    )?;
    ensure!(
        failed.status == Some(3),
        "exit {:?}: {}",
        failed.status,
        failed.message
    );
    ensure!(
        failed.message["class"] == "terminal" && failed.message["reason"] == "StepFailed",
        "{}",
        failed.message
    );
    let message = failed.message["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("RUN false") && message.contains("line 3"),
        "{message}"
    );
    ensure!(failed.step == "build", "failed in {}", failed.step);
    eprintln!("ok: failing step → {message}");
    setup.remove();
    Ok(())
}

/// A failing step is the step's failure, whatever it prints: not a registry outage to retry, not a
/// credential problem.
#[test]
fn a_failing_step_that_prints_registry_or_credential_errors_is_still_step_failed() -> Result<()> {
    let setup = needs!(Setup::start(
        "a_failing_step_that_prints_registry_or_credential_errors_is_still_step_failed"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    for (tag, printed) in [
        (
            "refused",
            "curl: (7) Failed to connect to 10.0.0.1 port 80: Connection refused",
        ),
        (
            "denied",
            "cat: /etc/shadow: Permission denied; unauthorized: authentication required",
        ),
    ] {
        let b = strata_build(
            dir,
            tag,
            &format!("FROM {base}\nRUN echo '{printed}'; exit 1\n"),
            &format!("{reg}/builder-test/out:{tag}"),
            reg,
            None,
        )?;
        ensure!(
            b.status == Some(3) && b.message["reason"] == "StepFailed",
            "{printed}: exit {:?}: {}",
            b.status,
            b.message
        );
    }
    eprintln!(
        "ok: a step printing 'Connection refused' or 'Permission denied' is StepFailed, terminal"
    );
    setup.remove();
    Ok(())
}

/// The build step fetches nothing: an image the pull step did not fetch is missing there.
#[test]
fn the_build_step_fetches_nothing_the_pull_step_did_not() -> Result<()> {
    let setup = needs!(Setup::start(
        "the_build_step_fetches_nothing_the_pull_step_did_not"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let containerfile = format!("FROM {base}\nRUN true\n");
    let b = {
        let child = step_command(
            dir,
            "unpulled",
            "build",
            &containerfile,
            &format!("{reg}/builder-test/out:unpulled"),
            reg,
            None,
        )?
        .spawn()?;
        finish(dir, "unpulled", "build", child)?
    };
    ensure!(
        b.status == Some(3) && b.message["class"] == "terminal",
        "a build step without the pull step: exit {:?}: {}",
        b.status,
        b.message
    );
    eprintln!(
        "ok: the build step does not pull ({})",
        b.message["message"]
    );
    setup.remove();
    Ok(())
}

/// The pull step fetches the images buildah will resolve: one named through a stage `ARG` and one
/// in a quoted `--mount` field. The build copies out of both.
#[test]
fn the_pull_step_fetches_stage_arg_and_quoted_references() -> Result<()> {
    let setup = needs!(Setup::start(
        "the_pull_step_fetches_stage_arg_and_quoted_references"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let local = "localhost/strata-builder-test/base:latest";
    let by_arg = push_local(dir, reg, local, "builder-test/by-arg:1")?;
    let quoted = push_local(dir, reg, local, "builder-test/quoted:1")?;
    let containerfile = format!(
        "ARG X=nothing/vetted:0\nFROM {base}\nARG X={by_arg}\nCOPY --from=$X /bin/busybox /by-arg\n\
         RUN --mount=type=bind,\"from={quoted}\",target=/q cp /q/bin/busybox /quoted\n"
    );
    let b = strata_build(
        dir,
        "refs",
        &containerfile,
        &format!("{reg}/builder-test/out:refs"),
        reg,
        None,
    )?;
    ensure!(
        b.status == Some(0),
        "exit {:?} at {}: {}\n{}",
        b.status,
        b.step,
        b.message,
        b.log
    );
    for image in [&by_arg, &quoted] {
        ensure!(
            b.log.contains(&format!("strata build: pulling {image}")),
            "the pull step did not fetch {image}:\n{}",
            b.log
        );
    }
    ensure!(
        !b.log.contains("pulling nothing/vetted"),
        "the pull step fetched the global ARG's value, which the stage overrides:\n{}",
        b.log
    );
    eprintln!("ok: the pull step fetched {by_arg} (stage ARG) and {quoted} (quoted mount field)");
    setup.remove();
    Ok(())
}

/// A base whose `ONBUILD` trigger names another image is refused by the pull step (terminal,
/// `InvalidInput`), even though that image is already in the build's storage (as another
/// pool's might be on a shared store): buildah would run the trigger unvetted.
#[test]
fn a_base_with_an_onbuild_trigger_naming_an_image_is_refused() -> Result<()> {
    let setup = needs!(Setup::start(
        "a_base_with_an_onbuild_trigger_naming_an_image_is_refused"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let local = "localhost/strata-builder-test/base:latest";
    let other = push_local(dir, reg, local, "builder-test/other-pool:1")?;
    let trigger_file = dir.join("trigger.Containerfile");
    std::fs::write(
        &trigger_file,
        format!("FROM {local}\nONBUILD COPY --from={other} /bin/busybox /loot\n"),
    )?;
    let context = dir.join("trigger-context");
    std::fs::create_dir_all(&context)?;
    base_buildah(
        dir,
        &[
            "bud",
            "--pull=never",
            "--isolation=chroot",
            "--format=docker",
            "-f",
            &trigger_file.display().to_string(),
            "-t",
            "localhost/strata-builder-test/trigger:1",
            &context.display().to_string(),
        ],
    )?;
    let trigger = push_local(
        dir,
        reg,
        "localhost/strata-builder-test/trigger:1",
        "builder-test/trigger:1",
    )?;
    // The other image in the build's storage first, as another build would leave it.
    let pulled = step_command(
        dir,
        "trigger",
        "pull",
        &format!("FROM {other}\n"),
        &format!("{reg}/builder-test/out:other"),
        reg,
        None,
    )?
    .output()?;
    ensure!(pulled.status.success(), "pulling {other}: {pulled:?}");
    let b = strata_build(
        dir,
        "trigger",
        &format!("FROM {trigger} AS t\nRUN true\nFROM {base}\nCOPY --from=t /loot /loot\n"),
        &format!("{reg}/builder-test/out:trigger"),
        reg,
        None,
    )?;
    let message = b.message["message"].as_str().unwrap_or_default();
    ensure!(
        b.step == "pull"
            && b.status == Some(3)
            && b.message["reason"] == "InvalidInput"
            && message.contains("ONBUILD trigger 'COPY --from="),
        "a base with an ONBUILD trigger naming {other}: step {}, exit {:?}: {}\n{}",
        b.step,
        b.status,
        b.message,
        b.log
    );
    eprintln!("ok: refused: {message}");
    setup.remove();
    Ok(())
}

/// The push registry is down: transient (exit 4).
#[test]
fn the_push_registry_down_is_transient() -> Result<()> {
    let setup = needs!(Setup::start("the_push_registry_down_is_transient")?);
    let Setup { dir, base, reg, .. } = &setup;
    let closed = free_port()?;
    let down = strata_build(
        dir,
        "down",
        &format!("FROM {base}\nRUN echo x > /x\n"),
        &format!("127.0.0.1:{closed}/builder-test/out:down"),
        &format!("{reg},127.0.0.1:{closed}"),
        None,
    )?;
    ensure!(
        down.status == Some(4),
        "exit {:?}: {}",
        down.status,
        down.message
    );
    ensure!(
        down.message["class"] == "transient" && down.message["reason"] == "RegistryUnavailable",
        "{}",
        down.message
    );
    eprintln!("ok: registry down → {}", down.message["message"]);
    setup.remove();
    Ok(())
}

/// SIGTERM mid-build: buildah stops, a transient message is still written.
#[test]
fn sigterm_mid_build_stops_buildah_and_writes_a_transient_message() -> Result<()> {
    let setup = needs!(Setup::start(
        "sigterm_mid_build_stops_buildah_and_writes_a_transient_message"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let containerfile = format!("FROM {base}\nRUN sleep 60\n");
    let image = format!("{reg}/builder-test/out:term");
    let pulled = step_command(dir, "term", "pull", &containerfile, &image, reg, None)?.spawn()?;
    let pulled = finish(dir, "term", "pull", pulled)?;
    ensure!(pulled.status == Some(0), "pull: {}", pulled.log);
    let child = step_command(dir, "term", "build", &containerfile, &image, reg, None)?.spawn()?;
    std::thread::sleep(Duration::from_secs(4));
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
    let started = Instant::now();
    let term = finish(dir, "term", "build", child)?;
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?} to stop",
        started.elapsed()
    );
    ensure!(
        term.status == Some(4) && term.message["reason"] == "Terminated",
        "exit {:?}: {}",
        term.status,
        term.message
    );
    if term.log.contains("sleep 60") && !term.log.contains("SIGTERM received") {
        bail!("no stop line in the log:\n{}", term.log);
    }
    eprintln!(
        "ok: SIGTERM → {} in {:?}",
        term.message["reason"],
        started.elapsed()
    );
    setup.remove();
    Ok(())
}

/// The image gate (builder/lint.rs) on images buildah really built: one fragment per rule breaks
/// it, the build step fails terminally with `LintFailed`, the rule and the path, and nothing is
/// pushed. Removals reach the gate as overlay whiteouts and opaque directories, so those are here.
#[test]
fn the_image_gate_refuses_a_fragment_that_breaks_each_rule() -> Result<()> {
    let setup = needs!(Setup::start(
        "the_image_gate_refuses_a_fragment_that_breaks_each_rule"
    )?);
    let Setup { dir, base, reg, .. } = &setup;
    let cases = [
        (
            "kernel",
            "usr/lib/modules",
            "RUN rm /usr/lib/modules/0.0.0-test/vmlinuz",
        ),
        (
            "kernel",
            "usr/lib/modules",
            "RUN rm -rf /usr/lib/modules && mkdir -p /usr/lib/modules/0.0.0-test",
        ),
        (
            "kernel",
            "usr/lib/modules/0.0.0-test, /usr/lib/modules/6.13.0",
            "RUN mkdir -p /usr/lib/modules/6.13.0 && echo k > /usr/lib/modules/6.13.0/vmlinuz",
        ),
        (
            "boot",
            "boot/vmlinuz-6.13",
            "RUN echo k > /boot/vmlinuz-6.13",
        ),
        (
            "usr-etc",
            "usr/etc",
            "RUN mkdir -p /usr/etc && echo x > /usr/etc/motd",
        ),
        (
            "var",
            "var/lib/agent/state",
            "RUN mkdir -p /var/lib/agent && echo s > /var/lib/agent/state",
        ),
        ("api-directories", "tmp", "RUN rm -rf /tmp"),
        ("ostree", "ostree", "RUN rm /ostree"),
        (
            "utf8",
            "etc/bad-",
            "RUN touch \"/etc/bad-$(printf '\\377')-name\"",
        ),
    ];
    for (i, (rule, path, fragment)) in cases.iter().enumerate() {
        let name = format!("gate-{i}");
        let tag = format!("builder-test/gate:{i}");
        let build = strata_build(
            dir,
            &name,
            &format!("FROM {base}\n{fragment}\n"),
            &format!("{reg}/{tag}"),
            reg,
            None,
        )?;
        ensure!(
            build.status == Some(3) && build.step == "build",
            "{fragment}: exit {:?} in {}: {}\n{}",
            build.status,
            build.step,
            build.message,
            build.log
        );
        ensure!(
            build.message["class"] == "terminal" && build.message["reason"] == "LintFailed",
            "{fragment}: {}",
            build.message
        );
        let message = build.message["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains(&format!("rule {rule}: /{path}")),
            "{fragment}: the message does not name rule {rule} at /{path}: {message}"
        );
        let status = curl_status(&format!("http://{reg}/v2/builder-test/gate/manifests/{i}"));
        ensure!(
            status == "404",
            "{fragment}: the refused image was pushed ({status})"
        );
        eprintln!("ok: {fragment} → {message}");
        let _ = std::fs::remove_dir_all(dir.join(&name));
    }
    setup.remove();
    Ok(())
}

/// The test dir, or `None` (skipped) without STRATA_E2E.
fn test_dir(test: &str) -> Option<PathBuf> {
    e2e_run_or_skip(test)?;
    let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

#[test]
fn wrong_push_credentials_are_terminal_with_a_clear_message() -> Result<()> {
    let Setup {
        dir,
        registry: open,
        base,
        ..
    } = needs!(Setup::start(
        "wrong_push_credentials_are_terminal_with_a_clear_message"
    )?);
    // The push registry asks for user:right (bcrypt, as docker-registry's htpasswd wants it).
    let hash = run(Command::new("python3").args([
        "-W",
        "ignore",
        "-c",
        "import crypt; print(crypt.crypt('right', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
    ]))
    .context("bcrypt for htpasswd (python3's crypt module)")?;
    let htpasswd = dir.join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("user:{}", String::from_utf8(hash.stdout)?.trim()),
    )?;
    let locked = start_registry_named(&dir, "locked", Some(&htpasswd))?;
    let reg = locked.address.clone();
    let insecure = format!("{},{reg}", open.address);
    let containerfile = format!("FROM {base}\nRUN echo x > /x\n");

    let wrong = dir.join("wrong.json");
    auth_file(&wrong, &reg, "user:Wr0ng-Passw0rd")?;
    let refused = strata_build(
        &dir,
        "wrong",
        &containerfile,
        &format!("{reg}/t/out:wrong"),
        &insecure,
        Some(&wrong),
    )?;
    ensure!(
        refused.status == Some(3),
        "exit {:?}: {}\n{}",
        refused.status,
        refused.message,
        refused.log
    );
    ensure!(
        refused.message["class"] == "terminal" && refused.message["reason"] == "AuthFailed",
        "{}",
        refused.message
    );
    let message = refused.message["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains(&reg) || message.contains("t/out"),
        "the message does not say where: {message}"
    );
    ensure!(
        !refused.log.contains("Wr0ng-Passw0rd") && !message.contains("Wr0ng-Passw0rd"),
        "the credential leaked"
    );
    eprintln!("ok: wrong credentials → exit 3 AuthFailed: {message}");

    // The same build with the right credentials pushes: the refusal was the credentials'.
    let right = dir.join("right.json");
    auth_file(&right, &reg, "user:right")?;
    let ok = strata_build(
        &dir,
        "right",
        &containerfile,
        &format!("{reg}/t/out:right"),
        &insecure,
        Some(&right),
    )?;
    ensure!(
        ok.status == Some(0),
        "exit {:?}: {}\n{}",
        ok.status,
        ok.message,
        ok.log
    );
    eprintln!("ok: right credentials → pushed {}", ok.message["digest"]);
    drop((open, locked));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
