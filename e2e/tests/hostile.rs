//! Hostile fragments against the deployed controller: fragments written to steal the push and
//! pull credentials or reach what a build must not reach. Each pool is first pinned by a benign
//! build; then its hostile fragment builds. For every one:
//! - no credential value (canaries in the push and pull Secrets) appears in any builder log,
//!   Event, MachineOSBuild or MachineOSConfig status, pod status (termination messages) or pushed
//!   blob;
//! - the blocked network targets (the API server, cloud metadata, the controller's /metrics) were
//!   not reached, while the registry was (so the probe itself works);
//! - the pool keeps its image.
//!
//! - fragment code stays in its own tree: a `chroot` escape (a static program, compiled here) and
//!   `/proc/<pid>/root` reach neither the builder container's files nor the image storage, which
//!   the cache claim shares between builds.
//!
//! The first fragment is the one that read the push credentials before the builder was split
//! (a bind mount through a symlink, buildah CVE-2024-1753).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use strata_crds::contract::{annotations, builder_pod};
use strata_crds::{BuildPhase, MachineOSBuild, MachineOSConfig};
use strata_e2e::deployed::{
    NAMESPACE, apply_config, controller_pods, create_pool, current_build, delete_config,
    delete_pool, ended_build, machine_configs, machine_os_config, pod_logs,
};
use strata_e2e::{Cluster, needs};

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

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
                 echo PROBE-RAN; exit 1\n"
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
    let probe = [
        ("apiserver", format!("{api_host} {api_port}")),
        ("metadata", "169.254.169.254 80".to_string()),
        ("metrics", format!("{controller_ip} 8080")),
        ("registry", cluster.registry.replace(':', " ")),
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
    ensure!(
        said("REACHED-registry".into()),
        "the probe did not reach the registry; its log:\n{network_log}"
    );
    for blocked in ["apiserver", "metadata", "metrics"] {
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
        "ok: builds reached the registry, not the API server, cloud metadata or the controller's /metrics"
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
