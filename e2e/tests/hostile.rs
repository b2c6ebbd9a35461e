//! Hostile fragments against the deployed controller: fragments written to steal the push and
//! pull credentials or reach what a build must not reach. Each pool is first pinned by a benign
//! build; then its hostile fragment builds. For every one:
//! - no credential value (canaries in the push and pull Secrets) appears in any builder log,
//!   Event, MachineOSBuild or MachineOSConfig status, pod status (termination messages) or pushed
//!   blob;
//! - the blocked network targets (the API server's port, and 443 at its address, cloud metadata,
//!   a link-local address on 443, the controller's /metrics) were not reached, while the registry
//!   and 443 outside the cluster were (so the probe itself works);
//! - the pool keeps its image.
//!
//! - fragment code stays in its own tree: a `chroot` escape (a static program, compiled here) and
//!   `/proc/<pid>/root` reach neither the builder container's files nor the image storage, which
//!   the cache claim shares between builds;
//! - a fork bomb in RUN is stopped short by the node's per-pod PID limit;
//! - `unshare -Urn true` in RUN (a new user and network namespace) is refused.
//!
//! The first fragment is the one that read the push credentials before the builder was split
//! (a bind mount through a symlink, buildah CVE-2024-1753).
//!
//! The builder's holes of issue 32 (items 3–5), each a test of its own: the entitlement key and
//! the proxy's credentials printed by a failing RUN step stay out of the build's status, Events,
//! Job and pod, and logs, and a config that does not opt in gets no entitlement; a success message
//! forged by RUN in `/dev/termination-log` is not taken; a tag re-pointed in the image storage
//! between the build and the push changes nothing pushed; an image made to be another pool's
//! layer cache (its history that pool's next step) is not taken by that pool's build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use strata_crds::contract::{annotations, builder_pod, image_labels};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, controller_pods, create_pool, create_push_secret, current_build,
    delete_config, delete_pool, ended_build, machine_configs, machine_os_config, pinned_by,
    pod_logs, running_builder_pod,
};
use strata_e2e::host_buildah::{self, HostBuildah};
use strata_e2e::util::{HostAddress, listen_and_close};
use strata_e2e::{Cluster, needs};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// An address outside the cluster (TEST-NET-2) and a link-local one, put on the host for the
/// network probe's listeners on 443.
const OUTSIDE: &str = "198.51.100.7";
const LINK_LOCAL: &str = "169.254.77.1";

/// A `.dockerconfigjson` Secret whose password is `canary`, opted in for `configs`.
async fn canary_secret(
    client: &kube::Client,
    name: &str,
    registry: &str,
    canary: &str,
    configs: &str,
) -> Result<()> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("e2e:{canary}"));
    let doc = json!({"auths": {registry: {"auth": auth}}}).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE,
                     "annotations": {annotations::ALLOWED_CONFIGS: configs}},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": doc},
    }))?;
    Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

/// The classic chroot escape (chroot into a subdirectory, walk up past the old root, chroot
/// there), then a shell that says whether it landed in the builder container (the strata binary,
/// the image storage). No libc: raw x86-64 system calls, so the program is small enough to go
/// inside a fragment.
const CHROOT_ESCAPE_C: &str = r#"
static long sc(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}
void _start(void) {
  sc(83, (long)"/escape-dir", 0755, 0);                        /* mkdir */
  if (sc(161, (long)"/escape-dir", 0, 0)) sc(60, 2, 0, 0);     /* chroot, else exit 2 */
  for (int i = 0; i < 64; i++) sc(80, (long)"..", 0, 0);       /* chdir .. */
  if (sc(161, (long)".", 0, 0)) sc(60, 3, 0, 0);               /* chroot . */
  char *argv[] = {"sh", "-c",
    "echo CHROOT-ESCAPE-TRIED; "
    "if [ -e /usr/local/bin/strata ] || [ -d /var/lib/containers/storage ]; then echo ESCAPED-TO-BUILDER; fi",
    0};
  sc(59, (long)"/bin/sh", (long)argv, 0);                      /* execve */
  sc(60, 4, 0, 0);
}
"#;

/// [`CHROOT_ESCAPE_C`] compiled (static, no libc), gzipped and base64-encoded.
fn chroot_escape_program() -> Result<String> {
    let dir = std::env::temp_dir().join(format!("e2e-hostile-escape-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("escape.c");
    let program = dir.join("escape");
    std::fs::write(&source, CHROOT_ESCAPE_C)?;
    let out = std::process::Command::new("cc")
        .args([
            "-static",
            "-nostdlib",
            "-Os",
            "-s",
            "-fno-stack-protector",
            "-o",
        ])
        .arg(&program)
        .arg(&source)
        .output()
        .context("running cc")?;
    ensure!(
        out.status.success(),
        "compiling the chroot escape: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -9c '{}' | base64 -w0", program.display()))
        .output()?;
    ensure!(out.status.success(), "encoding the chroot escape");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(String::from_utf8(out.stdout)?)
}

/// Processes the PID probe tries to have at once: more than the node's per-pod limit
/// (`podPidsLimit` in e2e/manifests/kubelet.yaml, OpenShift's default).
const PIDS_WANTED: u32 = 4200;

/// A fork bomb with an end: [`PIDS_WANTED`] sleeping processes, counted in `/pids` as they start;
/// the shell that starts them dies at the first fork refused. `tail` shows why, once every sleep
/// ended (they hold its pipe); then the count.
fn pid_probe() -> String {
    format!(
        "(i=0; while [ $i -lt {PIDS_WANTED} ]; do sleep 5 & i=$((i+1)); echo $i > /pids; done) 2>&1 | tail -n 2; \
         read n < /pids; echo PIDS-STARTED-$n"
    )
}

/// A new user and network namespace from RUN (`unshare -Urn`): where it works, fragment code gets
/// every capability inside it, a wider kernel surface than the build needs.
const UNSHARE_PROBE: &str = "if command -v unshare >/dev/null; then \
     unshare -Urn true 2>&1 && echo UNSHARE-ALLOWED || echo UNSHARE-REFUSED; \
     else echo UNSHARE-MISSING; fi";

/// The hostile fragments, by pool. `{probe}` is replaced by the network probe's targets,
/// `escape` is [`chroot_escape_program`].
fn fragments(probe: &str, escape: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "e2e-hostile-symlink",
            "FROM base AS evil\nRUN ln -s / /r\nFROM base\n\
             RUN --mount=type=bind,from=evil,source=/r,target=/h sh -c 'cat /h/etc/strata/push-auth/.dockerconfigjson /h/etc/strata/pull-auth/.dockerconfigjson; ls -la /h/etc/strata /h/var/run/secrets; exit 1'\n"
                .into(),
        ),
        (
            "e2e-hostile-cache",
            "RUN --mount=type=cache,id=../../../../../../../../../,target=/c sh -c 'ls -la /c /c/etc/strata; cat /c/etc/strata/*/.dockerconfigjson; exit 1'\n\
             RUN --mount=type=cache,source=../../../../../../../../../,target=/d sh -c 'cat /d/etc/strata/*/.dockerconfigjson; exit 1'\n"
                .into(),
        ),
        (
            "e2e-hostile-proc",
            "RUN sh -c 'for p in /proc/[0-9]*; do tr \"\\0\" \"\\n\" < $p/environ; ls $p/root/etc/strata; cat $p/root/etc/strata/*/.dockerconfigjson; done; exit 1' 2>&1\n"
                .into(),
        ),
        (
            "e2e-hostile-token",
            "RUN sh -c 'cat /var/run/secrets/kubernetes.io/serviceaccount/token /run/secrets/kubernetes.io/serviceaccount/token; ls -laR /run/secrets /var/run/secrets; env; exit 1' 2>&1\n"
                .into(),
        ),
        ("e2e-hostile-network", format!("RUN sh -c '{probe}; exit 1' 2>&1\n")),
        (
            "e2e-hostile-escape",
            format!(
                "RUN echo {escape} | base64 -d | gunzip > /escape && chmod +x /escape; /escape; \
                 for p in /proc/[0-9]*; do ls $p/root/var/lib/containers/storage >/dev/null 2>&1 && echo STORAGE-REACHED-$p; done; \
                 {}; echo PROBE-RAN; {}; exit 1\n",
                UNSHARE_PROBE,
                pid_probe()
            ),
        ),
    ]
}

/// Everything a credential could have leaked into, as text.
async fn leak_surfaces(cluster: &Cluster, client: &kube::Client, pools: &[&str]) -> Result<String> {
    let mut text = String::new();
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    for b in builds.list(&ListParams::default()).await?.items {
        if pools.contains(&b.spec.machine_os_config.name.as_str()) {
            text.push_str(&serde_json::to_string(&b)?);
        }
    }
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    for pool in pools {
        if let Some(c) = configs.get_opt(pool).await? {
            text.push_str(&serde_json::to_string(&c)?);
        }
    }
    let events: Api<Event> = Api::all(client.clone());
    text.push_str(&serde_json::to_string(
        &events.list(&ListParams::default()).await?.items,
    )?);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&ListParams::default()).await?.items {
        text.push_str(&serde_json::to_string(&pod.status)?);
        let name = pod.metadata.name.clone().unwrap_or_default();
        for container in builder_pod::STEPS {
            let out = cluster
                .kubectl()
                .args(["-n", NAMESPACE, "logs", &name, "-c", container])
                .output()?;
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        text.push_str(&pod_logs(cluster, &name));
    }
    Ok(text)
}

/// How many of the registry's blobs contain `needle`, decompressed.
fn blobs_containing(cluster: &Cluster, needle: &str) -> Result<u32> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find '{}' -name data -path '*blobs*' -exec sh -c 'zcat -f \"$1\" 2>/dev/null | grep -a -c \"$2\" || true' _ {{}} '{needle}' \\;",
            cluster.dir.join("registry").display()
        ))
        .output()?;
    ensure!(out.status.success(), "scanning the registry's blobs failed");
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .sum())
}

#[tokio::test]
async fn hostile_fragments_reach_no_credential_and_no_blocked_target() -> Result<()> {
    let test = "hostile_fragments_reach_no_credential_and_no_blocked_target";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let push_canary = format!("PUSHCANARY{nonce}");
    let pull_canary = format!("PULLCANARY{nonce}");
    let (api_host, api_port) = cluster
        .apiserver
        .trim_start_matches("https://")
        .rsplit_once(':')
        .context("API server address")?;
    let controller_ip = controller_pods(&client)
        .await?
        .first()
        .map(|(_, ip)| ip.clone())
        .context("no controller pod")?;
    // Listeners on 443 (where most registries, and on managed clusters the API server, serve):
    // at the API server's address, at a link-local address (cloud metadata's range), and — the
    // positive control — at an address outside the cluster, which builds may reach.
    let _addresses = (HostAddress::add(OUTSIDE)?, HostAddress::add(LINK_LOCAL)?);
    listen_and_close("0.0.0.0:443")?;
    let probe = [
        ("apiserver", format!("{api_host} {api_port}")),
        ("apiserver-443", format!("{api_host} 443")),
        ("metadata", "169.254.169.254 80".to_string()),
        ("link-local-443", format!("{LINK_LOCAL} 443")),
        ("metrics", format!("{controller_ip} 8080")),
        ("registry", cluster.registry.replace(':', " ")),
        ("outside-443", format!("{OUTSIDE} 443")),
    ]
    .iter()
    .map(|(name, target)| {
        format!("nc -w 5 {target} </dev/null && echo REACHED-{name} || echo BLOCKED-{name}")
    })
    .collect::<Vec<_>>()
    .join("; ");
    let hostile = fragments(&probe, &chroot_escape_program()?);
    let pools: Vec<&str> = hostile.iter().map(|(p, _)| *p).collect();
    let allowed = pools.join(",");
    canary_secret(
        &client,
        "e2e-hostile-push",
        &cluster.registry,
        &push_canary,
        &allowed,
    )
    .await?;
    canary_secret(
        &client,
        "e2e-hostile-pull",
        &cluster.registry,
        &pull_canary,
        &allowed,
    )
    .await?;

    // Each pool pinned by a benign build first.
    let mcs = machine_configs(&client);
    let mut kept = Vec::new();
    for pool in &pools {
        delete_config(&client, pool).await?;
        create_pool(&client, pool).await?;
        let mut config = machine_os_config(
            cluster,
            pool,
            "e2e-hostile-push",
            "RUN echo benign > /etc/benign\n",
        )?;
        config.spec.base_image_pull_secret =
            Some(strata_crds::LocalObjectName::new("e2e-hostile-pull"));
        apply_config(&client, &config).await?;
    }
    for pool in &pools {
        let build = current_build(&client, pool, None).await?;
        let ended = ended_build(&client, &build, BUILD_TIMEOUT).await?;
        ensure!(
            ended.phase() == Some(BuildPhase::Succeeded),
            "benign build of {pool}: {:?}",
            ended.status
        );
        let mc_name = format!("zz-strata-2-{pool}");
        let image = strata_e2e::util::wait_for(
            &format!("{pool} pinned"),
            Duration::from_secs(60),
            || async {
                Ok(mcs
                    .get_opt(&mc_name)
                    .await?
                    .and_then(|mc| mc.data["spec"]["osImageURL"].as_str().map(str::to_string)))
            },
        )
        .await?;
        kept.push((pool.to_string(), build, image));
    }

    // The hostile builds.
    for (pool, fragment) in &hostile {
        let mut config = machine_os_config(cluster, pool, "e2e-hostile-push", fragment)?;
        config.spec.base_image_pull_secret =
            Some(strata_crds::LocalObjectName::new("e2e-hostile-pull"));
        apply_config(&client, &config).await?;
    }
    // The build logs of the probes that report what they reached.
    let mut probe_logs = std::collections::BTreeMap::<String, String>::new();
    for (pool, benign, image) in &kept {
        let build = current_build(&client, pool, Some(benign)).await?;
        let ended = ended_build(&client, &build, BUILD_TIMEOUT).await?;
        ensure!(
            ended.phase() != Some(BuildPhase::Succeeded),
            "the hostile build of {pool} succeeded"
        );
        let failure = ended.status.and_then(|s| s.failure).unwrap_or_default();
        eprintln!("ok: {pool}: {} — {}", failure.reason, failure.message);
        let mc = mcs.get(&format!("zz-strata-2-{pool}")).await?;
        ensure!(
            mc.data["spec"]["osImageURL"] == Value::String(image.clone()),
            "{pool} does not keep its image"
        );
        if pool == "e2e-hostile-network" || pool == "e2e-hostile-escape" {
            let log = probe_logs.entry(pool.clone()).or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
            for pod in pods
                .list(
                    &ListParams::default().labels(&format!("strata.dev/machine-os-build={build}")),
                )
                .await?
                .items
            {
                let out = cluster
                    .kubectl()
                    .args([
                        "-n",
                        NAMESPACE,
                        "logs",
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        "-c",
                        builder_pod::BUILD,
                    ])
                    .output()?;
                log.push_str(&String::from_utf8_lossy(&out.stdout));
            }
            log.push_str(&failure.log_tail);
        }
    }

    // No canary anywhere.
    let surfaces = leak_surfaces(cluster, &client, &pools).await?;
    ensure!(
        surfaces.len() > 1000,
        "collected too little to check: {} bytes",
        surfaces.len()
    );
    for canary in [&push_canary, &pull_canary] {
        ensure!(
            !surfaces.contains(canary.as_str()),
            "a credential leaked into a log, Event, status or pod status"
        );
        ensure!(
            blobs_containing(cluster, canary)? == 0,
            "a credential is in a pushed blob"
        );
    }
    eprintln!(
        "ok: no credential in {} bytes of logs, Events, statuses, pod statuses, nor in any pushed blob",
        surfaces.len()
    );

    // The network probe: the registry reached, nothing else. Whole lines only: buildah echoes the
    // step's command, which names every outcome.
    let network_log = probe_logs
        .get("e2e-hostile-network")
        .cloned()
        .unwrap_or_default();
    let said = |word: String| network_log.lines().any(|l| l.trim() == word);
    for reached in ["registry", "outside-443"] {
        ensure!(
            said(format!("REACHED-{reached}")),
            "the probe did not reach {reached}; its log:\n{network_log}"
        );
    }
    for blocked in [
        "apiserver",
        "apiserver-443",
        "metadata",
        "link-local-443",
        "metrics",
    ] {
        ensure!(
            !said(format!("REACHED-{blocked}")),
            "a build reached the {blocked}:\n{network_log}"
        );
        ensure!(
            said(format!("BLOCKED-{blocked}")),
            "no result for {blocked}:\n{network_log}"
        );
    }
    eprintln!(
        "ok: builds reached the registry and 443 outside the cluster, not the API server (its port \
         or 443 at its address), cloud metadata, a link-local 443 or the controller's /metrics"
    );

    // The escape: it ran, and reached neither the builder container nor the image storage.
    let escape_log = probe_logs
        .get("e2e-hostile-escape")
        .cloned()
        .unwrap_or_default();
    let lines: Vec<&str> = escape_log.lines().map(str::trim).collect();
    ensure!(
        lines.contains(&"PROBE-RAN"),
        "the escape probe did not run; its log:\n{escape_log}"
    );
    ensure!(
        !lines
            .iter()
            .any(|l| *l == "ESCAPED-TO-BUILDER" || l.starts_with("STORAGE-REACHED-")),
        "fragment code reached the builder container or the image storage:\n{escape_log}"
    );
    // A new user namespace: refused (the kernel refuses CLONE_NEWUSER to a chrooted process,
    // and buildah's chroot isolation runs RUN in a chroot).
    ensure!(
        lines.contains(&"UNSHARE-REFUSED") && !lines.contains(&"UNSHARE-ALLOWED"),
        "`unshare -Urn true` in RUN was not refused:\n{escape_log}"
    );
    let why = lines
        .iter()
        .find(|l| l.starts_with("unshare:"))
        .copied()
        .unwrap_or("(no message)");
    eprintln!("ok: unshare -Urn in RUN refused: {why}");
    // The fork bomb: the node's per-pod PID limit stopped it short.
    // The pod's log and the build's log tail both hold the line.
    let started: std::collections::BTreeSet<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("PIDS-STARTED-")?.parse().ok())
        .collect();
    let started: Vec<u32> = started.into_iter().collect();
    ensure!(
        started.len() == 1 && started[0] < PIDS_WANTED,
        "a RUN step started {started:?} of {PIDS_WANTED} processes (the pod's PID limit must stop it \
         short):\n{escape_log}"
    );
    eprintln!(
        "ok: a fork bomb in RUN started {} of {PIDS_WANTED} processes (the node's per-pod PID limit)",
        started[0]
    );
    eprintln!(
        "ok: a chroot escape ({}) and /proc/<pid>/root reached neither the builder container nor the image storage",
        if lines.contains(&"CHROOT-ESCAPE-TRIED") {
            "chroot allowed, led nowhere"
        } else {
            "chroot refused"
        }
    );

    for pool in &pools {
        delete_config(&client, pool).await?;
        delete_pool(&client, pool).await;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// The builder's remaining holes (issue 32, items 3–5): the entitlement and the proxy's credentials
// in a failed build's log tail, a termination message forged from RUN, a tag re-pointed in the
// image storage between the build and the push.

/// A value no earlier run used (for fragments the layer cache must not answer).
fn nonce() -> Result<String> {
    Ok(format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ))
}

/// `proxies.config.openshift.io` (the local cluster's stand-in CRD).
fn proxies(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("config.openshift.io", "v1", "Proxy");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "proxies"),
    )
}

/// The benign fragment [`pinned_pool`] builds first.
const BENIGN_RUN: &str = "echo benign > /etc/benign";

/// Pool `pool` with a config pinned by a benign build; returns (that build, its image).
async fn pinned_pool(
    cluster: &Cluster,
    client: &kube::Client,
    pool: &str,
    push_secret: &str,
) -> Result<(String, String)> {
    let fragment = format!("RUN {BENIGN_RUN}\n");
    pinned_pool_with(cluster, client, pool, push_secret, &fragment).await
}

/// Pool `pool` (made anew) with a config of `fragment`, pinned; returns (its build, its image).
async fn pinned_pool_with(
    cluster: &Cluster,
    client: &kube::Client,
    pool: &str,
    push_secret: &str,
    fragment: &str,
) -> Result<(String, String)> {
    delete_config(client, pool).await?;
    create_pool(client, pool).await?;
    let config = machine_os_config(cluster, pool, push_secret, fragment)?;
    apply_config(client, &config).await?;
    let build = current_build(client, pool, None).await?;
    let image = pinned_by(client, BUILD_TIMEOUT, pool, &build).await?;
    Ok((build, image))
}

/// Applies pool `pool`'s config with `fragment` and the spec fields `extra` (as JSON, so that the
/// probes also run against a controller older than a field: it ignores what it does not know, and
/// a probe checks itself that what such a field asks for happened); returns its new build once
/// the config names it.
async fn apply_fragment(
    cluster: &Cluster,
    client: &kube::Client,
    pool: &str,
    push_secret: &str,
    fragment: &str,
    extra: Value,
    previous: &str,
) -> Result<String> {
    let config = machine_os_config(cluster, pool, push_secret, fragment)?;
    let mut value = serde_json::to_value(&config)?;
    if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    Api::<MachineOSConfig>::all(client.clone())
        .patch(
            pool,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&value),
        )
        .await?;
    current_build(client, pool, Some(previous)).await
}

/// Everything about build `build` a reader of the cluster can see, as text: the MachineOSBuild,
/// the config, every Event, the build's Jobs and pods (spec and status, so termination messages
/// and environment variables) and each step's log.
async fn build_surfaces(
    cluster: &Cluster,
    client: &kube::Client,
    pool: &str,
    build: &str,
) -> Result<String> {
    let mut text = String::new();
    let builds: Api<MachineOSBuild> = Api::all(client.clone());
    text.push_str(&serde_json::to_string(&builds.get(build).await?)?);
    let configs: Api<MachineOSConfig> = Api::all(client.clone());
    text.push_str(&serde_json::to_string(&configs.get(pool).await?)?);
    let events: Api<Event> = Api::all(client.clone());
    text.push_str(&serde_json::to_string(
        &events.list(&ListParams::default()).await?.items,
    )?);
    let selector = ListParams::default().labels(&format!("strata.dev/machine-os-build={build}"));
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
    text.push_str(&serde_json::to_string(&jobs.list(&selector).await?.items)?);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for pod in pods.list(&selector).await?.items {
        text.push_str(&serde_json::to_string(&pod)?);
        text.push_str(&pod_logs(
            cluster,
            pod.metadata.name.as_deref().unwrap_or_default(),
        ));
    }
    Ok(text)
}

/// The logs of every step of build `build`'s pods (step by step: `--all-containers` gives
/// nothing while a step has not started).
async fn build_logs(cluster: &Cluster, client: &kube::Client, build: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = ListParams::default().labels(&format!("strata.dev/machine-os-build={build}"));
    let mut logs = String::new();
    for pod in pods.list(&selector).await?.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for step in builder_pod::STEPS {
            let out = cluster
                .kubectl()
                .args(["-n", NAMESPACE, "logs", &name, "-c", step])
                .output()?;
            logs.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    Ok(logs)
}

/// The lines of the entitlement's private key that a redactor must hide: every line of its PEM
/// body (the last, short one aside).
async fn entitlement_key_lines(client: &kube::Client) -> Result<Vec<String>> {
    let secret = Api::<Secret>::namespaced(client.clone(), "openshift-config-managed")
        .get("etc-pki-entitlement")
        .await
        .context("the entitlement Secret openshift-config-managed/etc-pki-entitlement")?;
    let data = secret.data.unwrap_or_default();
    let key = data
        .iter()
        .find(|(k, _)| k.ends_with("-key.pem"))
        .map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned())
        .context("the entitlement Secret holds no *-key.pem")?;
    let lines: Vec<String> = key
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    ensure!(
        lines.len() >= 10,
        "the entitlement key has {} lines",
        lines.len()
    );
    Ok(lines)
}

/// The cluster proxy's `status` set to `status` (a merge patch).
async fn set_proxy_status(client: &kube::Client, status: Value) -> Result<()> {
    proxies(client)
        .patch_status(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn entitlement_and_proxy_credentials_stay_out_of_status_and_logs() -> Result<()> {
    let test = "entitlement_and_proxy_credentials_stay_out_of_status_and_logs";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let push = "e2e-hostile-holes-push";
    create_push_secret(&client, push).await?;
    let (opted_in, opted_out) = ("e2e-hostile-entitled", "e2e-hostile-unentitled");
    let (benign_in, _) = pinned_pool(cluster, &client, opted_in, push).await?;
    let (benign_out, _) = pinned_pool(cluster, &client, opted_out, push).await?;

    // The proxy with credentials, as a corporate proxy has them (squid here ignores them).
    let old_status = proxies(&client).get("cluster").await?.data["status"].clone();
    let canary = format!("PROXYCANARY{}", nonce()?.replace('-', ""));
    let proxy = cluster.openshift.proxy.clone();
    let with_credentials = proxy.replacen("://", &format!("://e2e-proxy-user:{canary}@"), 1);
    set_proxy_status(
        &client,
        json!({"httpProxy": with_credentials, "httpsProxy": with_credentials}),
    )
    .await?;
    let result = async {
        // The controller's watch of the Proxy is asynchronous.
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The proxy's variables last: the log tail keeps a failure's last 4000 bytes.
        let probe = "RUN if test -s /etc/pki/entitlement/entitlement-key.pem; then echo ENTITLEMENT-KEY-MOUNTED; fi; \
             cat /etc/pki/entitlement/*-key.pem | tr -d '\\n'; echo; \
             cat /etc/pki/entitlement/*-key.pem; env | grep -i _proxy; exit 1\n";
        let build_in = apply_fragment(
            cluster,
            &client,
            opted_in,
            push,
            probe,
            json!({"entitlement": "Mount"}),
            &benign_in,
        )
        .await?;
        let build_out =
            apply_fragment(cluster, &client, opted_out, push, probe, json!({}), &benign_out)
                .await?;
        for build in [&build_in, &build_out] {
            let ended = ended_build(&client, build, BUILD_TIMEOUT).await?;
            ensure!(
                ended.phase() == Some(BuildPhase::Failed),
                "the probe build {build} did not fail: {:?}",
                ended.status
            );
        }
        let key_lines = entitlement_key_lines(&client).await?;
        let logs_in = build_logs(cluster, &client, &build_in).await?;
        let logs_out = build_logs(cluster, &client, &build_out).await?;
        // Every finding, so that one run says all that is wrong.
        let mut problems = Vec::new();
        // The probe ran as meant: the key was there to print, the proxy's credentials too.
        let mounted = |logs: &str| logs.lines().any(|l| l.trim() == "ENTITLEMENT-KEY-MOUNTED");
        if !mounted(&logs_in) {
            problems.push(format!(
                "{opted_in} opts in, but RUN found no entitlement key:\n{logs_in}"
            ));
        }
        if mounted(&logs_out) {
            problems.push(format!(
                "{opted_out} does not opt in, yet RUN found the entitlement key"
            ));
        }
        let proxy_host = proxy.split("://").nth(1).unwrap_or_default();
        if !logs_in
            .lines()
            .any(|l| l.starts_with("HTTPS_PROXY=") && l.contains(&format!("@{proxy_host}")))
        {
            problems.push(format!(
                "RUN did not get the proxy with credentials (the controller had not seen it \
                 yet?):\n{logs_in}"
            ));
        }
        for (pool, build) in [(opted_in, &build_in), (opted_out, &build_out)] {
            let surfaces = build_surfaces(cluster, &client, pool, build).await?;
            let status = serde_json::to_string(
                &Api::<MachineOSBuild>::all(client.clone())
                    .get(build)
                    .await?
                    .status,
            )?;
            let leaks = |text: &str| {
                let lines = key_lines.iter().filter(|l| text.contains(l.as_str())).count();
                (text.contains(&canary), lines)
            };
            let (proxy_anywhere, key_anywhere) = leaks(&surfaces);
            let (proxy_in_status, key_in_status) = leaks(&status);
            if proxy_anywhere || key_anywhere > 0 {
                problems.push(format!(
                    "{pool}: the proxy's password {} the build's status ({} anywhere); {} of \
                     the entitlement key's {} lines in its status, {key_anywhere} anywhere \
                     (status, Events, Job and pod specs and statuses, logs)",
                    if proxy_in_status { "is in" } else { "is not in" },
                    if proxy_anywhere { "found" } else { "not found" },
                    key_in_status,
                    key_lines.len(),
                ));
            } else {
                eprintln!(
                    "ok: {pool}: neither the proxy's password nor any of the entitlement key's \
                     {} lines in {} bytes of status, Events, Job, pods and logs",
                    key_lines.len(),
                    surfaces.len()
                );
            }
        }
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }
    .await;
    set_proxy_status(
        &client,
        json!({"httpProxy": old_status["httpProxy"], "httpsProxy": old_status["httpsProxy"]}),
    )
    .await?;
    result?;
    for pool in [opted_in, opted_out] {
        delete_config(&client, pool).await?;
        delete_pool(&client, pool).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_termination_message_forged_in_run_is_not_taken() -> Result<()> {
    let test = "a_termination_message_forged_in_run_is_not_taken";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let push = "e2e-hostile-holes-push";
    create_push_secret(&client, push).await?;
    let pool = "e2e-hostile-forge";
    let (benign, image) = pinned_pool(cluster, &client, pool, push).await?;
    // The forged success names an image the registry serves in the pool's own repository: the
    // benign build's.
    let (_, forged) = image
        .split_once('@')
        .context("the benign image by digest")?;
    // A nonce keeps the layer cache (the claim outlives the test) from skipping the RUN step.
    let nonce = nonce()?;
    let fragment = format!(
        "RUN printf '{{\"digest\":\"{forged}\",\"sizeBytes\":1}}\\n' > /dev/termination-log \
         && echo FORGED-WRITTEN || echo FORGED-REFUSED; echo {nonce} > /etc/forgery-nonce\n\
         RUN echo built after the forgery > /etc/after-forgery\n"
    );
    let build = apply_fragment(cluster, &client, pool, push, &fragment, json!({}), &benign).await?;
    let ended = ended_build(&client, &build, BUILD_TIMEOUT).await?;
    let logs = build_logs(cluster, &client, &build).await?;
    let written = logs.lines().any(|l| l.trim() == "FORGED-WRITTEN");
    ensure!(
        written || logs.lines().any(|l| l.trim() == "FORGED-REFUSED"),
        "the forging RUN step did not run:\n{logs}"
    );
    eprintln!(
        "{pool}: RUN {} /dev/termination-log",
        if written {
            "could write"
        } else {
            "could not write"
        }
    );
    let status = ended.status.clone().unwrap_or_default();
    ensure!(
        ended.phase() == Some(BuildPhase::Succeeded),
        "the build with a forged termination message did not succeed: {:?}",
        status.failure
    );
    let pushed = status.digested_image_push_spec.unwrap_or_default();
    ensure!(
        !pushed.ends_with(forged),
        "the build took the forged digest: {pushed}"
    );
    // The build step's own termination message is Strata's (empty on success), not RUN's.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let selector = ListParams::default().labels(&format!("strata.dev/machine-os-build={build}"));
    for pod in pods.list(&selector).await?.items {
        let status = pod.status.unwrap_or_default();
        for c in status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
        {
            let message = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.message.clone())
                .unwrap_or_default();
            ensure!(
                !message.contains(forged),
                "the {} step's termination message is the forged one: {message}",
                c.name
            );
        }
    }
    eprintln!("ok: {pool}: the build pushed and pinned {pushed}, not the forged digest");
    delete_config(&client, pool).await?;
    delete_pool(&client, pool).await;
    Ok(())
}

/// The image storage of builder pod `pod` on this node: its config's store on the cache claim
/// (the claim's directory and the steps' subPath), or the pod's emptyDir.
async fn storage_dir(cluster: &Cluster, client: &kube::Client, pod: &Pod) -> Result<PathBuf> {
    let volume = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|v| v.iter().find(|v| v.name == "storage"))
        .context("the builder pod has no storage volume")?;
    if let Some(claim) = &volume.persistent_volume_claim {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NAMESPACE)
            .get(&claim.claim_name)
            .await?;
        let pv_name = pvc
            .spec
            .and_then(|s| s.volume_name)
            .context("the cache claim is not bound")?;
        let pv = Api::<PersistentVolume>::all(client.clone())
            .get(&pv_name)
            .await?;
        let path = pv
            .spec
            .and_then(|s| s.host_path)
            .map(|h| h.path)
            .context("the cache claim's volume is not a hostPath")?;
        let sub_path = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .find(|m| m.name == "storage" && m.mount_path == builder_pod::STORAGE_DIR)
            .and_then(|m| m.sub_path.clone())
            .unwrap_or_default();
        return Ok(PathBuf::from(path).join(sub_path));
    }
    let uid = pod.metadata.uid.clone().context("pod uid")?;
    Ok(cluster
        .dir
        .join("kubelet/pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir/storage"))
}

/// Waits (polling every few milliseconds, up to `timeout`) until an image in the containers/storage
/// at `storage` carries the name `tag`, then moves that name to the image named `target`: what a
/// process with write access to the storage could do between the build and the push. Returns
/// (the image the tag left, the image it names now).
fn repoint_tag(
    storage: &Path,
    tag: &str,
    target: &str,
    timeout: Duration,
) -> Result<(String, String)> {
    let start = std::time::Instant::now();
    let names = |image: &Value| -> Vec<String> {
        image["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    };
    loop {
        ensure!(
            start.elapsed() < timeout,
            "no image named {tag} appeared in {} within {timeout:?}",
            storage.display()
        );
        for driver in ["overlay", "vfs"] {
            let file = storage.join(format!("{driver}-images/images.json"));
            let Ok(text) = std::fs::read(&file) else {
                continue;
            };
            let Ok(mut images) = serde_json::from_slice::<Vec<Value>>(&text) else {
                continue;
            };
            let built = images
                .iter()
                .position(|i| names(i).iter().any(|n| n == tag));
            let other = images
                .iter()
                .position(|i| names(i).iter().any(|n| n == target));
            let (Some(built), Some(other)) = (built, other) else {
                continue;
            };
            let kept: Vec<String> = names(&images[built])
                .into_iter()
                .filter(|n| n != tag)
                .collect();
            images[built]["names"] = json!(kept);
            let mut moved = names(&images[other]);
            moved.push(tag.to_string());
            images[other]["names"] = json!(moved);
            let temp = file.with_extension("json.e2e-tmp");
            std::fs::write(&temp, serde_json::to_vec(&images)?)?;
            std::fs::rename(&temp, &file)?;
            let id = |i: &Value| i["id"].as_str().unwrap_or_default().to_string();
            return Ok((id(&images[built]), id(&images[other])));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test]
async fn a_tag_repointed_between_build_and_push_changes_nothing_pushed() -> Result<()> {
    let test = "a_tag_repointed_between_build_and_push_changes_nothing_pushed";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let push = "e2e-hostile-holes-push";
    create_push_secret(&client, push).await?;
    let pool = "e2e-hostile-retag";
    let (benign, image) = pinned_pool(cluster, &client, pool, push).await?;
    let repository = image.split('@').next().unwrap_or_default().to_string();
    let build = apply_fragment(
        cluster,
        &client,
        pool,
        push,
        &format!("RUN echo what was built {} > /etc/built\n", nonce()?),
        json!({}),
        &benign,
    )
    .await?;
    let pod = running_builder_pod(&client, &build).await?;
    let storage = storage_dir(cluster, &client, &pod).await?;
    // The build's tag, re-pointed at the benign image (still in the storage: the same claim).
    let tag = format!("{repository}:{build}");
    let target = format!("{repository}:{benign}");
    let repointed =
        tokio::task::spawn_blocking(move || repoint_tag(&storage, &tag, &target, BUILD_TIMEOUT))
            .await??;
    eprintln!(
        "{pool}: re-pointed the build's tag from image {} to {} (the benign build's)",
        repointed.0, repointed.1
    );
    let ended = ended_build(&client, &build, BUILD_TIMEOUT).await?;
    let status = ended.status.clone().unwrap_or_default();
    ensure!(
        ended.phase() == Some(BuildPhase::Succeeded),
        "with its tag re-pointed before the push, the build did not succeed: {:?}",
        status.failure
    );
    let pushed = status.digested_image_push_spec.unwrap_or_default();
    ensure!(
        pushed != image,
        "the build pushed the image its tag was re-pointed to: {pushed}"
    );
    eprintln!("ok: {pool}: the build pushed what it built ({pushed}), not what its tag named");
    delete_config(&client, pool).await?;
    delete_pool(&client, pool).await;
    Ok(())
}

/// A poison for pool `victim`'s layer cache (issue 32): an image whose history says it is the
/// victim's next `RUN` step on the victim's base, but whose layer writes something else, fetched
/// by another pool's build. buildah's `--layers` takes any image in its storage whose parent layer
/// and history match as that step's result, so on a storage shared between pools the victim's
/// build would push the poison's layer under its own name. Each config has a store of its own: the
/// poison is a cache hit only in the store of the pool that fetched it (the positive control: the
/// same step in that pool's build takes it), not in the victim's.
#[tokio::test]
async fn an_image_made_to_be_another_pools_layer_cache_is_not_its_cache() -> Result<()> {
    let test = "an_image_made_to_be_another_pools_layer_cache_is_not_its_cache";
    let (cluster, _) = needs!(Cluster::with_deployed_controller_or_skip(test));
    let client = cluster.client().await?;
    let push = "e2e-hostile-holes-push";
    create_push_secret(&client, push).await?;
    let (victim, poisoner) = ("e2e-hostile-poisoned", "e2e-hostile-poisoner");
    let (benign, benign_image) = pinned_pool(cluster, &client, victim, push).await?;
    let buildah = HostBuildah::new(cluster.dir.join("e2e-hostile-poison"))?;
    let benign_config = buildah.image_config(&benign_image)?;
    let base = benign_config["config"]["Labels"][image_labels::BASE_IMAGE]
        .as_str()
        .context("the benign image's base-image label")?
        .to_string();
    // The history text buildah in the builder pod writes for a RUN step on this base, read from
    // the benign build, with the victim's next command in it.
    let benign_step = host_buildah::created_by(&benign_config)
        .into_iter()
        .find(|c| c.contains(BENIGN_RUN))
        .context("no history entry of the benign RUN step")?;
    let command = format!("echo {} > /etc/cache-target", nonce()?);
    let step = benign_step.replace(BENIGN_RUN, &command);
    let poison = buildah.derive(
        &base,
        &[("/etc/cache-target", "POISONED\n")],
        Some(&step),
        &format!("{}/strata-e2e/cache-poison", cluster.registry),
    )?;
    let poison_layer = host_buildah::diff_ids(&buildah.image_config(&poison)?)
        .pop()
        .context("the poison's layers")?;
    eprintln!("{victim}: poison {poison} (layer {poison_layer}) says it is `{step}`");

    // The poisoner runs the victim's step, then names the poison (so that its pull step fetches it).
    let fragment = format!("RUN {command}\nCOPY --from={poison} /etc/cache-target /etc/copied\n");
    let (_, poisoner_image) = pinned_pool_with(cluster, &client, poisoner, push, &fragment).await?;
    ensure!(
        host_buildah::diff_ids(&buildah.image_config(&poisoner_image)?).contains(&poison_layer),
        "the poison was not taken as the step's cache even in the store it was fetched into \
         ({poisoner_image}): the probe does not make what buildah matches"
    );
    eprintln!("{poisoner}: its own build took the poison as the step's cache (positive control)");

    let build = apply_fragment(
        cluster,
        &client,
        victim,
        push,
        &format!("RUN {command}\n"),
        json!({}),
        &benign,
    )
    .await?;
    let victim_image = pinned_by(&client, BUILD_TIMEOUT, victim, &build).await?;
    ensure!(
        !host_buildah::diff_ids(&buildah.image_config(&victim_image)?).contains(&poison_layer),
        "{victim}'s build {build} took the poison {poisoner}'s build fetched as its layer cache and \
         pinned it: {victim_image}"
    );
    eprintln!(
        "ok: {victim}: its build ran the step itself ({victim_image}), the poison stayed in {poisoner}'s store"
    );
    for pool in [victim, poisoner] {
        delete_config(&client, pool).await?;
        delete_pool(&client, pool).await;
    }
    Ok(())
}
