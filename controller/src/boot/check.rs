//! The boot check: boot a disk made with the report unit, wait for the report (or the timeout),
//! and judge it against the base's own baseline and the configuration's expectations.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::BootError;
use super::report::{self, Report};
use super::vm::{Accel, OVMF_VARS, Vm};

/// A kernel argument of the boot check's disks: a panicking kernel reboots after 5 s, which the
/// VM (`-no-reboot`) turns into its end, so a panic fails the check at once instead of at the
/// timeout.
pub const PANIC_KERNEL_ARG: &str = "panic=5";

/// Lines of the serial console kept with a verdict.
const CONSOLE_TAIL_LINES: usize = 40;

/// The outcome of one boot.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub passed: bool,
    /// Why it failed, in one sentence; empty when it passed.
    pub reason: String,
    pub report: Option<Report>,
    /// Failed units the baseline does not also fail.
    pub new_failed_units: Vec<String>,
    pub seconds: f64,
    pub accel: Accel,
    pub console_tail: Vec<String>,
    /// Why no report came, when none did.
    #[serde(skip)]
    pub silence: Option<Silence>,
    /// The console shows a fault of the emulator, not of the image ([`emulator_fault`]).
    #[serde(skip)]
    pub emulator_fault: bool,
}

/// Why a boot ended without a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Still running at the timeout.
    TimedOut(Duration),
    /// The VM stopped first: the boot check's kernels panic with `panic=`, and QEMU exits
    /// instead of rebooting.
    Stopped,
}

impl Silence {
    fn sentence(self) -> String {
        match self {
            Silence::TimedOut(timeout) => format!(
                "the system did not finish booting within {} s",
                timeout.as_secs()
            ),
            Silence::Stopped => "the VM stopped before the system reported (a kernel panic or \
                 a power-off; the console's end says which)"
                .into(),
        }
    }
}

/// Judges a report (`None`: none came, for the reason `silence`). Pure.
pub fn judge(
    report: Option<&Report>,
    baseline_failed: &[String],
    silence: Silence,
) -> (bool, String, Vec<String>) {
    let Some(report) = report else {
        return (false, silence.sentence(), Vec::new());
    };
    let new_failed: Vec<String> = report
        .failed_units
        .iter()
        .filter(|u| !baseline_failed.contains(u))
        .cloned()
        .collect();
    let mut reasons = Vec::new();
    if !report.target_active {
        reasons.push(format!(
            "the target is not active (system {})",
            report.state
        ));
    }
    if !new_failed.is_empty() {
        reasons.push(format!("failed units: {}", new_failed.join(", ")));
    }
    if !report.inactive_units.is_empty() {
        let units: Vec<String> = report
            .inactive_units
            .iter()
            .map(|(u, s)| format!("{u} ({s})"))
            .collect();
        reasons.push(format!("units not active: {}", units.join(", ")));
    }
    if !report.failed_commands.is_empty() {
        let cmds: Vec<String> = report
            .failed_commands
            .iter()
            .map(|(i, code)| {
                let said: Vec<&str> = report
                    .command_output
                    .iter()
                    .filter(|(j, _)| j == i)
                    .map(|(_, line)| line.as_str())
                    .collect();
                match said.last() {
                    Some(last) => format!("#{} exited {code}: {last}", i + 1),
                    None => format!("#{} exited {code}", i + 1),
                }
            })
            .collect();
        reasons.push(format!("check commands failed: {}", cmds.join(", ")));
    }
    // Masked units say nothing by themselves (the base masks some); next to a failure they are
    // often its cause.
    if !reasons.is_empty() && !report.masked_units.is_empty() {
        reasons.push(format!(
            "masked units the boot asked for: {}",
            report.masked_units.join(", ")
        ));
    }
    (reasons.is_empty(), reasons.join("; "), new_failed)
}

/// Boots `disk` (made with [`report::Expectations::etc_files`]) in `work`, waits at most
/// `timeout`, and judges the report. Under software emulation, a boot the emulator broke (see
/// [`emulator_fault`]) is booted once more.
pub fn boot(
    disk: &Path,
    work: &Path,
    accel: Accel,
    timeout: Duration,
    baseline_failed: &[String],
) -> Result<Outcome, BootError> {
    let outcome = boot_once(disk, work, accel, timeout, baseline_failed)?;
    if outcome.accel == Accel::Tcg && outcome.report.is_none() && outcome.emulator_fault {
        // stderr: `strata boot-check` prints its verdict on stdout.
        eprintln!(
            "strata boot check: the kernel hit a stray breakpoint ({}), a known fault of QEMU's \
             multi-threaded software emulation with code the kernel patches at run time; \
             booting once more",
            outcome.reason
        );
        return boot_once(disk, work, accel, timeout, baseline_failed);
    }
    Ok(outcome)
}

/// Whether a console shows the kernel trapping on a breakpoint it did not place (`Oops: int3`,
/// or a fault in `text_poke`): under QEMU's multi-threaded software emulation, another vCPU can
/// run code the kernel is patching (static keys, alternatives) before the patch is whole.
pub fn emulator_fault(console: &[String]) -> bool {
    console
        .iter()
        .any(|l| l.contains("Oops: int3") || l.contains("RIP: 0010:__text_poke"))
}

/// Waits for the guest's report (or QEMU's exit, or the timeout): the report, why none came, and
/// the console's length when it came (what follows is the power-off).
fn await_report(
    child: &mut std::process::Child,
    vm: &Vm,
    start: Instant,
    timeout: Duration,
) -> Result<(Option<Report>, Silence, Option<u64>), BootError> {
    loop {
        let text = std::fs::read_to_string(&vm.report).unwrap_or_default();
        if let Some(report) = report::parse(&text) {
            let console_at_report = std::fs::metadata(&vm.console_log).ok().map(|m| m.len());
            return Ok((Some(report), Silence::TimedOut(timeout), console_at_report));
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                // Exited before a whole report: read once more (the file may have been
                // flushed at exit), then give up.
                let text = std::fs::read_to_string(&vm.report).unwrap_or_default();
                let parsed = report::parse(&text);
                if parsed.is_none() && !status.success() {
                    let mut stderr = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        use std::io::Read;
                        let _ = e.read_to_string(&mut stderr);
                    }
                    return Err(BootError::Tool {
                        tool: "qemu-system-x86_64".into(),
                        detail: format!("{status}: {}", stderr.trim()),
                    });
                }
                return Ok((parsed, Silence::Stopped, None));
            }
            Ok(None) if start.elapsed() >= timeout => {
                return Ok((None, Silence::TimedOut(timeout), None));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(500)),
            Err(e) => return Err(BootError::io("qemu-system-x86_64", e)),
        }
    }
}

fn boot_once(
    disk: &Path,
    work: &Path,
    accel: Accel,
    timeout: Duration,
    baseline_failed: &[String],
) -> Result<Outcome, BootError> {
    std::fs::create_dir_all(work).map_err(|e| BootError::io(work, e))?;
    let vars = work.join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).map_err(|e| BootError::io(OVMF_VARS, e))?;
    let vm = Vm {
        disk: disk.to_path_buf(),
        vars,
        console_log: work.join("console.log"),
        report: work.join("report"),
        accel: accel.resolve(),
        memory_mib: 2048,
    };
    for f in [&vm.console_log, &vm.report] {
        std::fs::write(f, "").map_err(|e| BootError::io(f, e))?;
    }
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(vm.qemu_args())
        // The disk's copy-on-write overlay (snapshot=on) goes to TMPDIR: the work directory, not
        // a small /var/tmp.
        .env("TMPDIR", work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BootError::Tool {
            tool: "qemu-system-x86_64".into(),
            detail: format!("cannot start: {e}"),
        })?;
    let (parsed, silence, console_at_report) = await_report(&mut child, &vm, start, timeout)?;
    let seconds = start.elapsed().as_secs_f64();
    // The report's script powers the VM off; wait briefly, then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let (passed, mut reason, new_failed_units) = judge(parsed.as_ref(), baseline_failed, silence);
    let console = console_lines(&vm.console_log, console_at_report);
    if parsed.is_none()
        && let Some(panic) = panic_reason(&console)
    {
        reason = panic;
    }
    let emulator_broke_it = parsed.is_none() && emulator_fault(&console);
    let console_tail = console[console.len().saturating_sub(CONSOLE_TAIL_LINES)..].to_vec();
    Ok(Outcome {
        passed,
        reason,
        silence: parsed.is_none().then_some(silence),
        report: parsed,
        new_failed_units,
        seconds,
        accel: vm.accel,
        console_tail,
        emulator_fault: emulator_broke_it,
    })
}

/// The kernel panic the console shows, with the units systemd had started but not finished when
/// it came (the likely cause: a module loaded then, a unit's program); None without a panic.
pub fn panic_reason(console: &[String]) -> Option<String> {
    let at = console.iter().position(|l| l.contains("Kernel panic"))?;
    let panic = console[at]
        .split_once("Kernel panic")
        .map_or(console[at].as_str(), |(_, rest)| rest)
        .trim_start_matches([' ', '-'])
        .trim();
    // systemd's status lines ("Starting <unit> - <description>...", then "[  OK  ] Finished
    // <unit>", "Started <unit>" or "[FAILED] Failed to start <unit>") and the same messages in
    // the kernel log ("systemd[1]: Starting <unit> …"), whose unit names are never cut short;
    // a status line's name cut to the console's width (with "…") is left out.
    let unit_after = |line: &str, marker: &str| -> Option<String> {
        let (_, rest) = line.split_once(marker)?;
        let unit = rest.split_whitespace().next()?;
        (!unit.contains('…')).then(|| unit.to_string())
    };
    let mut in_progress: Vec<String> = Vec::new();
    for line in console[..at].iter().map(|l| l.trim()) {
        // systemd started again (in the real root after the initramfs's): what the initramfs's
        // left unfinished is gone.
        if line.contains("running in system mode") {
            in_progress.clear();
            continue;
        }
        let starting = if line.starts_with("Starting ") {
            unit_after(line, "Starting ")
        } else {
            unit_after(line, "systemd[1]: Starting ")
        };
        if let Some(unit) = starting {
            if !in_progress.contains(&unit) {
                in_progress.push(unit);
            }
            continue;
        }
        for done in ["Finished ", "Started ", "Failed to start "] {
            if let Some(unit) = unit_after(line, done) {
                in_progress.retain(|u| *u != unit);
            }
        }
    }
    let mut reason = format!("the kernel panicked ({panic})");
    if !in_progress.is_empty() {
        // Units start in bursts: every one still starting is named, in the order they started
        // (up to a bound; the console's end has the rest).
        let shown: Vec<&str> = in_progress.iter().take(16).map(String::as_str).collect();
        let more = match in_progress.len().saturating_sub(shown.len()) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        reason.push_str(&format!(
            " while systemd was starting {}{more}",
            shown.join(", ")
        ));
    }
    Some(reason)
}

/// Every line of the serial console (of its first `upto` bytes), terminal escapes, carriage
/// returns and empty lines removed.
fn console_lines(path: &Path, upto: Option<u64>) -> Vec<String> {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    if let Some(upto) = upto {
        bytes.truncate(usize::try_from(upto).unwrap_or(usize::MAX));
    }
    let text = String::from_utf8_lossy(&bytes);
    let clean = strip_escapes(&text);
    clean
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ … final byte in @..~
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failed: &[&str]) -> Report {
        Report {
            state: if failed.is_empty() {
                "running"
            } else {
                "degraded"
            }
            .into(),
            target_active: true,
            failed_units: failed.iter().map(|s| s.to_string()).collect(),
            ..Report::default()
        }
    }

    #[test]
    fn failures_the_base_also_has_do_not_fail_the_check() {
        let baseline = vec!["auditd.service".to_string()];
        let t = Silence::TimedOut(Duration::from_secs(600));
        assert!(judge(Some(&report(&["auditd.service"])), &baseline, t).0);
        let (passed, reason, new) =
            judge(Some(&report(&["auditd.service", "x.mount"])), &baseline, t);
        assert!(!passed);
        assert_eq!(new, ["x.mount"]);
        assert_eq!(reason, "failed units: x.mount");
    }

    #[test]
    fn no_report_is_a_timeout_and_each_unmet_expectation_is_named() {
        let t = Silence::TimedOut(Duration::from_secs(600));
        assert_eq!(
            judge(None, &[], t).1,
            "the system did not finish booting within 600 s"
        );
        assert!(
            judge(None, &[], Silence::Stopped)
                .1
                .starts_with("the VM stopped before the system reported (a kernel panic")
        );
        let r = Report {
            state: "starting".into(),
            target_active: false,
            inactive_units: vec![("hello.service".into(), "failed".into())],
            failed_commands: vec![(0, 1)],
            ..Report::default()
        };
        assert_eq!(
            judge(Some(&r), &[], t).1,
            "the target is not active (system starting); units not active: hello.service (failed); check commands failed: #1 exited 1"
        );
    }

    #[test]
    fn a_panic_names_what_systemd_was_starting() {
        let console: Vec<String> = [
            "[  OK  ] Finished systemd-journald.service - Journal Service (initramfs).",
            "[    1.0] systemd[1]: Starting initrd-switch-root.service - Switch Root...",
            "[    2.0] systemd[1]: systemd 257 running in system mode (+PAM)",
            "[  OK  ] Finished systemd-remount-fs.service - Remount Root and Kernel File Systems.",
            "         Starting systemd-modules-load.service - Load Kernel Modules...",
            "[  103.4] systemd[1]: Starting systemd-udev-trigger.service - Coldplug All udev Devices...",
            "         Starting systemd-udev-trigger.service - Coldplug All udev Devices...",
            "         Starting systemd-udev-load-credent…Load udev Rules from Credentials...",
            "[  OK  ] Finished systemd-udev-trigger.service - Coldplug All udev Devices.",
            "[  OK  ] Finished systemd-remount-fs.servic…mount Root and Kernel File Systems.",
            "[    9.120000] sysrq: Trigger a crash",
            "[    9.130000] Kernel panic - not syncing: sysrq triggered crash",
            "[    9.140000] CPU: 1 PID: 301 Comm: sh",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            panic_reason(&console).as_deref(),
            Some(
                "the kernel panicked (not syncing: sysrq triggered crash) while systemd was \
                 starting systemd-modules-load.service"
            )
        );
        assert_eq!(panic_reason(&console[..2]), None);
    }

    #[test]
    fn a_stray_breakpoint_is_the_emulator_s_and_a_plain_panic_is_not() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(emulator_fault(&lines(&[
            "[   74.748068] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI",
            "[   74.748425] RIP: 0010:enqueue_task_fair+0xf6/0x7e0",
        ])));
        assert!(emulator_fault(&lines(&[
            "[ 14.2] RIP: 0010:__text_poke+0x29c/0x400"
        ])));
        assert!(!emulator_fault(&lines(&[
            "[    9.130000] Kernel panic - not syncing: sysrq triggered crash",
        ])));
    }

    #[test]
    fn masked_units_are_named_next_to_a_failure_only() {
        let t = Silence::TimedOut(Duration::from_secs(600));
        let mut r = report(&["auditd.service"]);
        r.masked_units = vec!["systemd-tmpfiles-setup.service".into()];
        assert_eq!(
            judge(Some(&r), &[], t).1,
            "failed units: auditd.service; masked units the boot asked for: \
             systemd-tmpfiles-setup.service"
        );
        let mut clean = report(&[]);
        clean.masked_units = r.masked_units.clone();
        assert!(judge(Some(&clean), &[], t).0);
    }

    #[test]
    fn the_console_tail_has_no_terminal_escapes() {
        assert_eq!(
            strip_escapes("\u{1b}[0;32m  OK  \u{1b}[0m] x\r\n"),
            "  OK  ] x\n"
        );
    }
}
