//! What the booted system says about its boot. The boot check's disk carries a unit in the
//! deployment's `/etc` (nothing in the image changes) that waits for the boot to finish
//! (`systemctl is-system-running --wait`), writes the outcome to a virtio serial port the VM's
//! host reads, and powers off. Writing and reading that report are pure.

use serde::Serialize;

pub use super::disk::EtcEntry;

/// The virtio serial port's name (`/dev/virtio-ports/<name>` in the guest).
pub const PORT: &str = "strata.boot-report";
const UNIT: &str = "strata-boot-report.service";
const SCRIPT: &str = "strata/boot-report.sh";
const FIRST_LINE: &str = "strata-boot-report v1";

/// What a configuration asks of the booted system besides a clean boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The target the system must reach (default `multi-user.target`).
    pub target: String,
    /// Units that must be active.
    pub active_units: Vec<String>,
    /// Shell commands that must exit 0 (run as root, in order, 60 s each).
    pub commands: Vec<String>,
}

impl Expectations {
    pub fn new(target: Option<String>, active_units: Vec<String>, commands: Vec<String>) -> Self {
        Expectations {
            target: target.unwrap_or_else(|| "multi-user.target".to_string()),
            active_units,
            commands,
        }
    }

    /// The files the boot check adds to the deployment's `/etc` (path under `/etc`, content,
    /// mode): the report script, its unit, and the link that starts it with the target.
    pub fn etc_files(&self) -> Vec<EtcEntry> {
        let unit = format!(
            "[Unit]\n\
             Description=Strata boot check: report how the boot went to the VM's host\n\
             # Also started by emergency.target and rescue.target (no default dependencies, which\n\
             # those never reach), so a boot that falls into emergency mode reports too.\n\
             DefaultDependencies=no\n\
             After={target}\n\
             [Service]\n\
             # Not oneshot: the boot must be able to finish while this waits for it.\n\
             Type=exec\n\
             ExecStart=/bin/sh /etc/{SCRIPT}\n\
             StandardOutput=journal+console\n",
            target = self.target
        );
        vec![
            EtcEntry::file(SCRIPT, self.script(), 0o755),
            EtcEntry::file(&format!("systemd/system/{UNIT}"), unit, 0o644),
        ]
        .into_iter()
        .chain(
            [self.target.as_str(), "emergency.target", "rescue.target"]
                .into_iter()
                .map(|target| EtcEntry::Link {
                    path: format!("systemd/system/{target}.wants/{UNIT}"),
                    target: format!("../{UNIT}"),
                }),
        )
        .collect()
    }

    fn script(&self) -> String {
        // The port is found by its name in sysfs: in emergency mode udev may not have made
        // /dev/virtio-ports/<name>.
        let mut s = format!(
            "#!/bin/sh\n\
             # Written by Strata's boot check; reports to the host and powers off.\n\
             state=$(systemctl is-system-running --wait)\n\
             out=\n\
             for p in /sys/class/virtio-ports/*; do\n\
             \x20 [ \"$(cat \"$p/name\" 2>/dev/null)\" = {PORT} ] && out=/dev/${{p##*/}}\n\
             done\n\
             [ -n \"$out\" ] || {{ echo 'strata boot check: no report port'; exit 0; }}\n\
             {{\n\
             echo '{FIRST_LINE}'\n\
             echo \"state $state\"\n\
             echo \"target {t} $(systemctl is-active {t})\"\n\
             systemctl list-units --failed --plain --no-legend --no-pager | while read -r u _; do\n\
             \x20 echo \"failed $u\"\n\
             \x20 journalctl -u \"$u\" -b -n 5 --no-pager -o cat 2>/dev/null | while IFS= read -r l; do echo \"log $u $l\"; done\n\
             done\n\
             journalctl -b -p err --no-pager -o cat 2>/dev/null | tail -n 20 | while IFS= read -r l; do echo \"error $l\"; done\n\
             systemctl list-units --all --state=masked --plain --no-legend --no-pager | while read -r u _; do echo \"masked $u\"; done\n",
            t = shell_word(&self.target)
        );
        for unit in &self.active_units {
            let u = shell_word(unit);
            s.push_str(&format!("echo \"unit {u} $(systemctl is-active {u})\"\n"));
        }
        for (i, command) in self.commands.iter().enumerate() {
            s.push_str(&format!(
                "o=$(timeout 60 sh -c {} 2>&1); echo \"command {i} $?\"\n\
                 printf '%s\\n' \"$o\" | tail -n 5 | while IFS= read -r l; do echo \"output {i} $l\"; done\n",
                shell_quote(command)
            ));
        }
        s.push_str("echo end\n} > \"$out\"\nsystemctl poweroff\n");
        s
    }
}

/// A unit name as one shell word (unit names have no spaces or quotes; anything else is dropped).
fn shell_word(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "@._:-\\".contains(*c))
        .collect()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The report as read back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `systemctl is-system-running` once the boot finished: `running` or `degraded`.
    pub state: String,
    pub target_active: bool,
    pub failed_units: Vec<String>,
    /// Expected units that are not active, with their state.
    pub inactive_units: Vec<(String, String)>,
    /// Commands (by index) that did not exit 0, with their exit status.
    pub failed_commands: Vec<(usize, i32)>,
    /// The last lines each command printed (by index).
    pub command_output: Vec<(usize, String)>,
    /// The last journal lines of each failed unit.
    pub failed_unit_logs: Vec<(String, String)>,
    /// The boot's last messages of priority error and above.
    pub errors: Vec<String>,
    /// Masked units something in the boot asked for (loaded, in state masked): a unit a fragment
    /// masked that the system needs shows here while its dependents fail.
    pub masked_units: Vec<String>,
}

/// Reads a report; `None` unless it is whole (first line to `end`).
pub fn parse(text: &str) -> Option<Report> {
    let mut lines = text.lines().map(str::trim_end);
    lines.by_ref().find(|l| *l == FIRST_LINE)?;
    let mut report = Report::default();
    for line in lines {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("end"), None, None) => return Some(report),
            (Some("state"), Some(state), None) => report.state = state.to_string(),
            (Some("target"), Some(_), Some(active)) => report.target_active = active == "active",
            (Some("failed"), Some(unit), None) => report.failed_units.push(unit.to_string()),
            (Some("masked"), Some(unit), None) => report.masked_units.push(unit.to_string()),
            (Some("error"), Some(_), _) => {
                report.errors.push(line["error ".len()..].to_string());
            }
            (Some("output"), Some(i), rest) => {
                if let Ok(i) = i.parse() {
                    report
                        .command_output
                        .push((i, rest.unwrap_or_default().to_string()));
                }
            }
            (Some("log"), Some(unit), Some(line)) => {
                report
                    .failed_unit_logs
                    .push((unit.to_string(), line.to_string()));
            }
            (Some("unit"), Some(unit), Some(state)) if state != "active" => {
                report
                    .inactive_units
                    .push((unit.to_string(), state.to_string()));
            }
            (Some("command"), Some(i), Some(code)) if code != "0" => {
                if let (Ok(i), Ok(code)) = (i.parse(), code.parse()) {
                    report.failed_commands.push((i, code));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_what_the_script_writes() {
        let text = "noise\nstrata-boot-report v1\nstate degraded\ntarget multi-user.target active\n\
                    failed auditd.service\nlog auditd.service Could not open dir /var/log/audit\n\
                    failed ovsdb-server.service\nerror Failed to start auditd.service\n\
                    masked systemd-tmpfiles-setup.service\n\
                    unit hello.service active\n\
                    unit other.service inactive\ncommand 0 0\ncommand 1 3\noutput 1 no such file\nend\n";
        let report = parse(text).unwrap();
        assert_eq!(report.state, "degraded");
        assert!(report.target_active);
        assert_eq!(
            report.failed_units,
            ["auditd.service", "ovsdb-server.service"]
        );
        assert_eq!(
            report.inactive_units,
            [("other.service".to_string(), "inactive".to_string())]
        );
        assert_eq!(report.failed_commands, [(1, 3)]);
        assert_eq!(report.command_output, [(1, "no such file".to_string())]);
        assert_eq!(report.errors, ["Failed to start auditd.service"]);
        assert_eq!(report.masked_units, ["systemd-tmpfiles-setup.service"]);
        assert_eq!(
            report.failed_unit_logs,
            [(
                "auditd.service".to_string(),
                "Could not open dir /var/log/audit".to_string()
            )]
        );
    }

    #[test]
    fn a_cut_report_is_no_report() {
        assert_eq!(parse("strata-boot-report v1\nstate running\n"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn the_unit_waits_for_the_target_and_the_script_checks_what_was_asked() {
        let e = Expectations::new(
            None,
            vec!["hello.service".into()],
            vec!["test -e '/x'".into()],
        );
        let files = e.etc_files();
        let paths: Vec<&str> = files.iter().map(EtcEntry::path).collect();
        assert_eq!(
            paths,
            [
                "strata/boot-report.sh",
                "systemd/system/strata-boot-report.service",
                "systemd/system/multi-user.target.wants/strata-boot-report.service",
                "systemd/system/emergency.target.wants/strata-boot-report.service",
                "systemd/system/rescue.target.wants/strata-boot-report.service",
            ]
        );
        let text = |i: usize| match &files[i] {
            EtcEntry::File { content, .. } => content.clone(),
            EtcEntry::Link { target, .. } => target.clone(),
        };
        insta::assert_snapshot!(text(0));
        assert!(text(1).contains("After=multi-user.target\n"));
        assert!(text(1).contains("Type=exec\n"));
        assert!(text(1).contains("DefaultDependencies=no\n"));
        assert_eq!(text(2), "../strata-boot-report.service");
    }

    #[test]
    fn names_and_commands_cannot_break_out_of_the_script() {
        assert_eq!(shell_word("a$(reboot).service"), "areboot.service");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
