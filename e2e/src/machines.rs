//! The local pool's machines (`e2e/scripts/machines.sh`): QEMU VMs booted from Strata's disk image
//! of the CoreOS-like base when the cluster came up, each with its own address on the machines'
//! bridge. Tests read what the machines print on their serial consoles and reach them by address.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{Cluster, console};

/// One machine, as `machines.sh up` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    pub mac: String,
    pub ip: String,
    /// Its serial console (everything it printed since it was powered on).
    pub console: PathBuf,
}

/// The machines of `cluster` (`STRATA_E2E_MACHINES`, none when it started without).
pub fn of(cluster: &Cluster) -> Result<Vec<Machine>> {
    let Some(table) = &cluster.machines else {
        return Ok(Vec::new());
    };
    parse(
        &std::fs::read_to_string(table).with_context(|| format!("reading {}", table.display()))?,
        &cluster.dir.join("logs"),
    )
}

/// The lines `name<TAB>mac<TAB>ip` of the machines table; consoles under `logs`.
pub fn parse(table: &str, logs: &Path) -> Result<Vec<Machine>> {
    table
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            ensure!(f.len() == 3, "not name, MAC and address: {l:?}");
            Ok(Machine {
                name: f[0].to_string(),
                mac: f[1].to_string(),
                ip: f[2].to_string(),
                console: logs.join(format!("machine-{}.console", f[0])),
            })
        })
        .collect()
}

impl Machine {
    /// Waits until its console shows `pattern`; fails with the console's end.
    pub fn wait_for_console(&self, pattern: &str, timeout: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let text = console::read(&self.console);
            if text.contains(pattern) {
                return Ok(text);
            }
            if start.elapsed() > timeout {
                bail!(
                    "{}: no {pattern:?} on its console in {timeout:?}; its end:\n{}",
                    self.name,
                    console::tail(&text, 25)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Resets it at once, as a power cut and power-on would: QMP `system_reset` on its monitor
    /// socket; QEMU runs with `-no-reboot`, so it exits and `machines.sh power-cycle` starts it
    /// again cold. Nothing on the machine is told first.
    pub fn reset(&self, cluster: &Cluster) -> Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let path = cluster.dir.join(format!("machines/{}.qmp", self.name));
        let stream = std::os::unix::net::UnixStream::connect(&path)
            .with_context(|| format!("{}: its monitor {}", self.name, path.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut lines = BufReader::new(stream.try_clone()?).lines();
        let mut writer = stream;
        // The greeting, then each command's answer (events may come between).
        let mut answer = |expect: &str| -> Result<()> {
            for line in lines.by_ref() {
                let line = line?;
                if line.contains(expect) {
                    return Ok(());
                }
                ensure!(!line.contains("\"error\""), "{}: QMP: {line}", self.name);
            }
            bail!("{}: QMP closed before {expect}", self.name)
        };
        answer("\"QMP\"")?;
        for command in ["qmp_capabilities", "system_reset"] {
            writeln!(writer, "{{\"execute\": \"{command}\"}}")?;
            answer("\"return\"")?;
        }
        Ok(())
    }

    /// Runs `command` on it as root over ssh (`machines.sh ssh`: the cluster's key); its output,
    /// or an error with what it printed. Retries while sshd is not up yet (for `wait`).
    pub fn ssh(&self, cluster: &Cluster, command: &str, wait: Duration) -> Result<String> {
        let start = Instant::now();
        loop {
            let out =
                std::process::Command::new(crate::repo_root().join("e2e/scripts/machines.sh"))
                    .arg("ssh")
                    .arg("--dir")
                    .arg(&cluster.dir)
                    .arg(&self.name)
                    .arg(command)
                    .output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            // ssh exits 255 for its own errors (no connection yet); else the command's status.
            if out.status.code() != Some(255) || start.elapsed() > wait {
                bail!(
                    "{}: `{command}` failed ({}): {}{}",
                    self.name,
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_table_and_names_the_consoles() {
        let m = parse(
            "worker-0\t52:54:00:f5:00:00\t10.245.0.10\nworker-1\t52:54:00:f5:00:01\t10.245.0.11\n",
            Path::new("/d/logs"),
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].ip, "10.245.0.11");
        assert_eq!(m[0].console, Path::new("/d/logs/machine-worker-0.console"));
        assert!(parse("worker-0 52:54", Path::new("/")).is_err());
    }
}
