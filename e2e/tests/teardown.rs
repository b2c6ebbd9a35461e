//! `cluster-down.sh` leaves nothing behind: no process, no mount, no network namespace, no
//! bridge/veth, no host-local IP allocations, no temp dir, no NetworkPolicy agent or its netfilter
//! rules and queue, no rule of the OpenShift environment's. Starts its own cluster (so it runs only
//! when none is up), runs a pod and makes a claim (a provisioned volume directory) so there is
//! something to clean, then stops it and looks.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, ensure};

fn run(script: &str) -> Result<()> {
    let path = strata_e2e::repo_root().join("e2e/scripts").join(script);
    let st = Command::new(&path)
        .status()
        .with_context(|| format!("running {}", path.display()))?;
    ensure!(st.success(), "{script} failed: {st}");
    Ok(())
}

/// Processes whose command line or cwd mentions `dir`.
fn processes_using(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        if cmd.contains(dir) || cwd.starts_with(dir) {
            found.push(format!("{pid}: {cmd}"));
        }
    }
    found
}

fn mounts_under(dir: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(dir))
        .map(str::to_string)
        .collect()
}

/// The machines' bridge and taps (`e2e/scripts/machines.sh`).
fn machine_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n == "strata-machines" || n.starts_with("sm-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The NetworkPolicy agent's processes (its command line names no cluster path).
fn netpol_agents() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv0 = cmd.split(|b| *b == 0).next()?;
            String::from_utf8_lossy(argv0)
                .ends_with("/kube-network-policies")
                .then(|| e.file_name().to_string_lossy().to_string())
        })
        .collect()
}

/// The netfilter state of the NetworkPolicy agent: rules in `iptables -t mangle -S` that mention
/// STRATA-NETPOL, its queue bound in /proc/net/netfilter/nfnetlink_queue, its own nftables table.
fn netpol_netfilter_state() -> Result<Vec<String>> {
    let mut found = Vec::new();
    let out = Command::new("iptables")
        .args(["-w", "10", "-t", "mangle", "-S"])
        .output()
        .context("running iptables -t mangle -S")?;
    ensure!(
        out.status.success(),
        "iptables -t mangle -S failed: {out:?}"
    );
    found.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("STRATA-NETPOL"))
            .map(|l| format!("iptables -t mangle: {l}")),
    );
    let queue = std::env::var("STRATA_NETPOL_QUEUE").unwrap_or_else(|_| "100".into());
    found.extend(
        std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(queue.as_str()))
            .map(|l| format!("netfilter queue bound: {}", l.trim())),
    );
    let table = Command::new("nft")
        .args(["list", "table", "inet", "kube-network-policies"])
        .output()
        .context("running nft")?;
    if table.status.success() {
        found.push("nftables table inet kube-network-policies".into());
    }
    Ok(found)
}

/// The OpenShift environment's rules (`openshift-env.sh`: chain filter/STRATA-OSENV and its jump).
fn openshift_env_rules() -> Result<Vec<String>> {
    let out = Command::new("iptables")
        .args(["-w", "10", "-S"])
        .output()
        .context("running iptables -S")?;
    ensure!(out.status.success(), "iptables -S failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("STRATA-OSENV"))
        .map(str::to_string)
        .collect())
}

/// What the second node (`second-node.sh`) leaves on the host besides its processes and network
/// namespace: its veth's host end, the route to its pod network, its cgroups, its CNI state.
fn second_node_state() -> Vec<String> {
    let mut found = Vec::new();
    if Path::new("/sys/class/net/strata-n2h").exists() {
        found.push("link strata-n2h".to_string());
    }
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "10.244.1.0/24"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !routes.is_empty() {
        found.push(format!("route {routes}"));
    }
    for h in ["memory", "cpu", "pids", "unified"] {
        let cgroup = Path::new("/sys/fs/cgroup").join(h).join("strata-node-2");
        if cgroup.exists() {
            found.push(format!("cgroup {}", cgroup.display()));
        }
    }
    if Path::new("/var/lib/cni/networks/strata-e2e-2").exists() {
        found.push("host-local IPAM state of strata-e2e-2".to_string());
    }
    found
}

/// The masquerade rules the CNI bridge plugin adds per pod (`name: "strata-e2e…"` comments).
fn cni_masquerade_rules() -> Result<Vec<String>> {
    let out = Command::new("iptables")
        .args(["-w", "10", "-t", "nat", "-S", "POSTROUTING"])
        .output()
        .context("running iptables -t nat -S")?;
    ensure!(out.status.success(), "iptables -t nat -S failed: {out:?}");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#"name: \"strata-e2e"#))
        .map(str::to_string)
        .collect())
}

fn netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Makes a claim of the cluster's default StorageClass and returns its volume's directory.
fn claim_volume_dir(cluster: &strata_e2e::Cluster) -> Result<std::path::PathBuf> {
    let mut apply = cluster
        .kubectl()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    apply.stdin.take().context("kubectl's stdin")?.write_all(
        br#"{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "teardown", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}"#,
    )?;
    ensure!(apply.wait()?.success(), "kubectl apply of the claim failed");
    for _ in 0..60 {
        let out = cluster
            .kubectl()
            .args([
                "get",
                "pvc",
                "teardown",
                "-n",
                "default",
                "-o",
                "jsonpath={.spec.volumeName}",
            ])
            .output()?;
        let volume = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !volume.is_empty() {
            let out = cluster
                .kubectl()
                .args(["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"])
                .output()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            ensure!(
                path.starts_with("/tmp/hostpath_pv/"),
                "volume {volume} is at {path:?}"
            );
            return Ok(path.into());
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    anyhow::bail!("the claim was not bound within 60 s")
}

/// Runs pod `name` (a long sleep) on the first node, or on the `second` one (its name and taint);
/// returns how waiting for it to be Ready ended.
fn sleeper(
    cluster: &strata_e2e::Cluster,
    name: &str,
    second: Option<&(String, String)>,
) -> Result<std::process::ExitStatus> {
    let mut run = cluster.kubectl();
    run.args([
        "run",
        name,
        "--image",
        &cluster.os_base_image,
        "--restart=Never",
    ]);
    if let Some((node, taint)) = second {
        run.arg("--overrides").arg(format!(
            r#"{{"spec": {{"nodeName": "{node}", "tolerations": [{{"key": "{taint}", "operator": "Exists"}}]}}}}"#
        ));
    }
    ensure!(
        run.args(["--", "sleep", "3600"]).status()?.success(),
        "kubectl run {name} failed"
    );
    Ok(cluster
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=120s",
        ])
        .status()?)
}

#[test]
fn cluster_down_leaves_no_process_mount_or_network_state() -> Result<()> {
    let test = "cluster_down_leaves_no_process_mount_or_network_state";
    strata_e2e::needs!(strata_e2e::e2e_run_or_skip(test));
    // A previous test binary's cluster may still be stopping (its watchdog runs cluster-down.sh
    // once that process has exited): give it a moment to take the lock, then wait for the lock.
    let state = strata_e2e::state_dir();
    std::fs::create_dir_all(&state)?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let lock = state.join("lock");
    let _ = Command::new("flock")
        .arg("-w")
        .arg("300")
        .arg(&lock)
        .arg("true")
        .status();
    let env = state.join("env");
    if env.exists() {
        strata_e2e::skip(
            test,
            &format!(
                "a cluster is already up ({}); this test needs to start and stop its own",
                env.display()
            ),
        );
        return Ok(());
    }
    let netns_before = netns();
    run("cluster-up.sh")?;
    let cluster = strata_e2e::Cluster::from_env_file(&env, true)?;
    let dir = cluster.dir.to_string_lossy().to_string();
    // Something for each node's kubelet/CNI to clean up: a running pod with a volume and a veth,
    // on the first node and on the second (its own containerd, bridge and pod network).
    let st = sleeper(&cluster, "sleeper", None)?;
    let second = cluster
        .second_node
        .clone()
        .context("the cluster has no second node")?;
    let st2 = sleeper(&cluster, "sleeper-2", Some(&second))?;
    // A claim of the default StorageClass: its volume is a directory under /tmp/hostpath_pv.
    let claim = claim_volume_dir(&cluster)?;
    ensure!(
        claim.is_dir(),
        "the claim's directory {} is missing",
        claim.display()
    );
    let before_procs = processes_using(&dir);
    let before_mounts = mounts_under(&dir);
    let before_agents = netpol_agents();
    let before_netfilter = netpol_netfilter_state();
    let before_osenv = openshift_env_rules();
    let before_machines = machine_links();
    let before_second = second_node_state();
    let before_masquerade = cni_masquerade_rules()?;
    let down = run("cluster-down.sh");
    ensure!(st.success(), "pod sleeper never became Ready");
    ensure!(
        st2.success(),
        "pod sleeper-2 never became Ready on the second node"
    );
    down?;
    ensure!(
        before_second.len() >= 4 && !before_masquerade.is_empty(),
        "expected the second node's link, route, cgroups and CNI state, and the masquerade rule \
         of the first node's pod, before teardown: {before_second:?} {before_masquerade:?}"
    );
    let second_left = second_node_state();
    ensure!(
        second_left.is_empty(),
        "the second node left behind: {second_left:?}"
    );
    let masquerade_left = cni_masquerade_rules()?;
    ensure!(
        masquerade_left.is_empty(),
        "the pods' masquerade rules left behind: {masquerade_left:?}"
    );
    let before_netfilter = before_netfilter?;
    ensure!(
        before_procs.len() >= 6,
        "expected the cluster's processes before teardown: {before_procs:?}"
    );
    ensure!(
        !before_mounts.is_empty(),
        "expected pod mounts before teardown"
    );
    ensure!(
        !before_agents.is_empty() && before_netfilter.len() >= 3,
        "expected the NetworkPolicy agent and its rules and queue before teardown: \
         agents {before_agents:?}, netfilter {before_netfilter:?}"
    );

    let procs = processes_using(&dir);
    ensure!(
        procs.is_empty(),
        "processes left behind:\n{}",
        procs.join("\n")
    );
    let mounts = mounts_under(&dir);
    ensure!(
        mounts.is_empty(),
        "mounts left behind:\n{}",
        mounts.join("\n")
    );
    ensure!(!Path::new(&dir).exists(), "cluster dir {dir} still exists");
    ensure!(
        !claim.exists(),
        "the provisioned volume {} is left behind",
        claim.display()
    );
    ensure!(
        !Path::new("/sys/class/net/strata0").exists(),
        "bridge strata0 still exists"
    );
    ensure!(
        !Path::new("/var/lib/cni/networks/strata-e2e").exists(),
        "host-local IPAM state left behind"
    );
    let veths: Vec<String> = std::fs::read_dir("/sys/class/net/")?
        .flatten()
        .filter(|e| e.path().join("brport/bridge").exists())
        .filter(|e| {
            std::fs::read_link(e.path().join("master")).is_ok_and(|m| m.ends_with("strata0"))
        })
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    ensure!(veths.is_empty(), "veths left on strata0: {veths:?}");
    // The pool's machines (e2e/scripts/machines.sh; two unless STRATA_MACHINES says otherwise):
    // their bridge and taps before, none after (their QEMU processes name the cluster dir).
    if std::env::var("STRATA_MACHINES").map_or(true, |n| n != "0") {
        ensure!(
            before_machines.iter().any(|l| l == "strata-machines") && before_machines.len() >= 3,
            "expected the machines' bridge and taps before teardown: {before_machines:?}"
        );
    }
    let machines_left = machine_links();
    ensure!(
        machines_left.is_empty(),
        "the machines' bridge or taps left behind: {machines_left:?}"
    );
    let new_netns: Vec<String> = netns()
        .into_iter()
        .filter(|n| !netns_before.contains(n))
        .collect();
    ensure!(
        new_netns.is_empty(),
        "network namespaces left behind: {new_netns:?}"
    );
    ensure!(!env.exists(), "{} still exists", env.display());
    let agents = netpol_agents();
    ensure!(
        agents.is_empty(),
        "kube-network-policies still running: pids {agents:?}"
    );
    let netfilter = netpol_netfilter_state()?;
    ensure!(
        netfilter.is_empty(),
        "NetworkPolicy netfilter state left behind:\n{}",
        netfilter.join("\n")
    );
    let before_osenv = before_osenv?;
    ensure!(
        before_osenv.len() >= 3,
        "expected the OpenShift environment's chain, rule and jump before teardown: {before_osenv:?}"
    );
    let osenv = openshift_env_rules()?;
    ensure!(
        osenv.is_empty(),
        "OpenShift environment rules left behind:\n{}",
        osenv.join("\n")
    );
    eprintln!(
        "ok: {} processes, {} mounts, the NetworkPolicy agent and {} netfilter items before \
         teardown; none after",
        before_procs.len(),
        before_mounts.len(),
        before_netfilter.len()
    );
    Ok(())
}
