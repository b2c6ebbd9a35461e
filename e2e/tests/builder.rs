//! `strata build` on the host with real buildah and a real registry (Debian's docker-registry on a
//! free port), no cluster: success with the digest the registry serves, a failing RUN step
//! (terminal, with the step and line), the push registry down (transient), a secret that never
//! reaches a layer, the log or the message, and SIGTERM mid-build; wrong push credentials against
//! an htpasswd registry (terminal, AuthFailed); the registry layer cache reused by a build on fresh
//! storage, as a new pod has. Needs root; STRATA_E2E=1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use strata_e2e::{e2e_enabled, skip};

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

/// A busybox image pushed to the registry, returned by digest.
fn push_base(dir: &Path, registry: &Registry) -> Result<String> {
    let buildah = |args: &[&str]| {
        let mut cmd = Command::new("buildah");
        cmd.args(["--storage-driver=vfs", "--root"])
            .arg(dir.join("base-storage"))
            .arg("--runroot")
            .arg(dir.join("base-run"));
        cmd.args(args);
        run(&mut cmd)
    };
    let c = String::from_utf8(buildah(&["from", "scratch"])?.stdout)?
        .trim()
        .to_string();
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

struct Build {
    status: Option<i32>,
    log: String,
    message: Value,
}

fn strata_build(
    dir: &Path,
    name: &str,
    containerfile: &str,
    image: &str,
    insecure: &str,
    authfile: Option<&Path>,
) -> Result<Build> {
    let child = spawn_build(dir, name, containerfile, image, insecure, authfile)?;
    finish(dir, name, child)
}

fn spawn_build(
    dir: &Path,
    name: &str,
    containerfile: &str,
    image: &str,
    insecure: &str,
    authfile: Option<&Path>,
) -> Result<Child> {
    Ok(build_command(
        dir,
        name,
        containerfile,
        image,
        insecure,
        authfile,
        &dir.join("cache"),
    )?
    .spawn()?)
}

/// `strata build` of `containerfile` to `image`, with buildah's storage under `storage`.
fn build_command(
    dir: &Path,
    name: &str,
    containerfile: &str,
    image: &str,
    insecure: &str,
    authfile: Option<&Path>,
    storage: &Path,
) -> Result<Command> {
    let bin = std::env::var("STRATA_BIN")
        .context("STRATA_BIN is not set (run through `make e2e-test`)")?;
    let file = dir.join(format!("{name}.Containerfile"));
    std::fs::write(&file, containerfile)?;
    let missing = dir.join("no-such-authfile");
    let mut cmd = Command::new(bin);
    cmd.args(["build", "--image", image, "--insecure-registries", insecure])
        .arg("--containerfile")
        .arg(&file)
        .arg("--cache-dir")
        .arg(storage)
        .arg("--termination-log")
        .arg(dir.join(format!("{name}.message")))
        .arg("--push-authfile")
        .arg(authfile.unwrap_or(&missing))
        .arg("--base-authfile")
        .arg(authfile.unwrap_or(&missing))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Ok(cmd)
}

fn finish(dir: &Path, name: &str, child: Child) -> Result<Build> {
    let out = child.wait_with_output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join(format!("{name}.message")))
        .with_context(|| format!("no termination message; log:\n{log}"))?;
    ensure!(
        text.trim().lines().count() == 1 && text.len() <= 4097,
        "message is not one line of ≤ 4 KiB: {text}"
    );
    Ok(Build {
        status: out.status.code(),
        log,
        message: serde_json::from_str(text.trim())?,
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

#[test]
fn strata_build_on_the_host_with_buildah_and_a_registry() -> Result<()> {
    let Some(dir) = test_dir("strata_build_on_the_host_with_buildah_and_a_registry") else {
        return Ok(());
    };
    let registry = start_registry(&dir)?;
    let base = push_base(&dir, &registry)?;
    let reg = registry.address.clone();

    // Success: the digest in the message is the one the registry serves for the tag.
    let secret = "s3cr3t-VALUE-that-must-not-leak";
    let auth = dir.join("auth.json");
    auth_file(&auth, &reg, &format!("user:{secret}"))?;
    let ok = strata_build(
        &dir,
        "ok",
        &format!("FROM {base}\nRUN echo layered > /etc/layered\n"),
        &format!("{reg}/builder-test/out:ok"),
        &reg,
        Some(&auth),
    )?;
    ensure!(
        ok.status == Some(0),
        "exit {:?}: {}\n{}",
        ok.status,
        ok.message,
        ok.log
    );
    let digest = ok.message["digest"]
        .as_str()
        .context("no digest")?
        .to_string();
    ensure!(
        digest == manifest_digest(&reg, "builder-test/out", "ok")?,
        "digest {digest} differs from the registry's"
    );
    ensure!(
        ok.log.contains("STEP 2/2: RUN echo layered"),
        "no step progress in the log:\n{}",
        ok.log
    );
    eprintln!(
        "ok: built and pushed {digest} ({} bytes)",
        ok.message["sizeBytes"]
    );

    // The secret is nowhere: log, message, any blob in the registry (layers decompressed).
    ensure!(
        !ok.log.contains(secret) && !ok.message.to_string().contains(secret),
        "secret in the log or message"
    );
    let blobs = run(Command::new("sh").arg("-c").arg(format!(
        "find '{}' -name data -path '*blobs*' -exec sh -c 'zcat -f \"$1\" 2>/dev/null | grep -a -c {secret} || true' _ {{}} \\;",
        registry.storage.display()
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

    // A failing step: terminal (exit 3), StepFailed, the step and its line.
    let failed = strata_build(
        &dir,
        "fail",
        &format!("FROM {base}\nRUN true\nRUN false\n"),
        &format!("{reg}/builder-test/out:fail"),
        &reg,
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
    eprintln!("ok: failing step → {message}");

    // The push registry is down: transient (exit 4).
    let closed = free_port()?;
    let down = strata_build(
        &dir,
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

    // SIGTERM mid-build: buildah stops, a transient message is still written.
    let child = spawn_build(
        &dir,
        "term",
        &format!("FROM {base}\nRUN sleep 60\n"),
        &format!("{reg}/builder-test/out:term"),
        &reg,
        None,
    )?;
    std::thread::sleep(Duration::from_secs(4));
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
    let started = Instant::now();
    let term = finish(&dir, "term", child)?;
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

    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The test dir, or `None` (skipped) without STRATA_E2E.
fn test_dir(test: &str) -> Option<PathBuf> {
    if !e2e_enabled() {
        skip(
            test,
            "needs root, buildah and docker-registry; set STRATA_E2E=1 or run `make e2e-test`",
        );
        return None;
    }
    let dir = std::env::temp_dir().join(format!("{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

#[test]
fn wrong_push_credentials_are_terminal_with_a_clear_message() -> Result<()> {
    let Some(dir) = test_dir("wrong_push_credentials_are_terminal_with_a_clear_message") else {
        return Ok(());
    };
    let open = start_registry(&dir)?;
    let base = push_base(&dir, &open)?;
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

#[test]
fn registry_cache_reuses_unchanged_layers_on_fresh_storage() -> Result<()> {
    let Some(dir) = test_dir("registry_cache_reuses_unchanged_layers_on_fresh_storage") else {
        return Ok(());
    };
    let registry = start_registry(&dir)?;
    let base = push_base(&dir, &registry)?;
    let reg = registry.address.clone();
    let cache = format!("{reg}/t/cache");
    let build = |name: &str, last: &str| -> Result<Build> {
        let containerfile =
            format!("FROM {base}\nRUN echo first-fragment > /first\nRUN echo {last} > /last\n");
        // A fresh layer store each time, as a new builder pod has.
        let storage = dir.join(format!("storage-{name}"));
        let image = format!("{reg}/t/out:{name}");
        let child = build_command(&dir, name, &containerfile, &image, &reg, None, &storage)?
            .args(["--registry-cache", &cache])
            .spawn()?;
        finish(&dir, name, child)
    };
    let cold = build("cold", "one")?;
    ensure!(
        cold.status == Some(0),
        "exit {:?}: {}\n{}",
        cold.status,
        cold.message,
        cold.log
    );
    let warm = build("warm", "two")?;
    ensure!(
        warm.status == Some(0),
        "exit {:?}: {}\n{}",
        warm.status,
        warm.message,
        warm.log
    );
    // buildah says where each step came from: the unchanged RUN from the registry cache, the
    // changed one built.
    let step = |log: &str, needle: &str| -> String {
        let mut lines = log.lines().skip_while(|l| !l.contains(needle));
        lines.nth(1).unwrap_or_default().to_string()
    };
    let first = step(&warm.log, "RUN echo first-fragment");
    ensure!(
        first.contains("Cache pulled from remote"),
        "unchanged step not from the cache: {first:?}\n{}",
        warm.log
    );
    ensure!(
        !step(&warm.log, "RUN echo two").contains("Cache pulled"),
        "changed step from the cache:\n{}",
        warm.log
    );
    ensure!(
        !step(&cold.log, "RUN echo first-fragment").contains("Cache pulled"),
        "cold build hit a cache:\n{}",
        cold.log
    );
    eprintln!("ok: on fresh storage the unchanged step came from {cache}: {first}");
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
