//! The boot step: the image the build step built boots in a VM, from the disk a new machine
//! would boot ([`crate::boot`]), before anything is pushed. No credential reaches it, and the VM
//! has no network.
//!
//! buildah runs as root without CAP_SYS_ADMIN in the pod, so it works in a user namespace of its
//! own; mounting the image and making the disk's file systems (whose owners must read as the
//! image's) happen in one: the step runs itself again in a user and mount namespace that maps every
//! ID to itself (util-linux `unshare`, as root with CAP_SETUID and CAP_SETGID). `buildah unshare`
//! would do, but fails in the pod (`memfd_create(): Invalid argument` when it re-executes itself).
//!
//! The check is a safety net against mistakes, not a security boundary: the booted system
//! writes its own report, so an image built to lie can pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_crds::BootCheckResult;
use strata_crds::contract::BootPlan;

use super::{
    BuildArgs, FailureClass, Handover, TerminationMessage, built_image_id, failure,
    read_containerfile,
};
use crate::boot::BootError;
use crate::boot::check::{self, Outcome};
use crate::boot::disk::{self, Format};
use crate::boot::report::Expectations;
use crate::boot::vm::Accel;

/// Set for the step's second run, in the user namespace: it never runs itself a third time.
const IN_USER_NAMESPACE: &str = "STRATA_BOOT_IN_USER_NAMESPACE";
/// Every user and group ID mapped to itself.
const IDENTITY_MAP: &str = "0:0:4294967295";
/// CAP_SYS_ADMIN's bit in `CapEff`.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether the step must run itself again in buildah's user namespace: buildah cannot mount an
/// image outside one without CAP_SYS_ADMIN (it is "rootless" then, uid 0 or not).
pub fn needs_user_namespace() -> bool {
    if std::env::var_os(IN_USER_NAMESPACE).is_some() {
        return false;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    !has_capability(&status, CAP_SYS_ADMIN)
}

fn has_capability(proc_status: &str, bit: u32) -> bool {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

/// Runs this step (boot or disk) again in a user and mount namespace of its own, with the same arguments and
/// environment; the inner run writes the termination message. Returns its exit code.
pub fn run_in_user_namespace() -> Result<i32, TerminationMessage> {
    let misconfigured = |e: String| {
        failure(
            FailureClass::Terminal,
            "BuilderMisconfigured",
            format!("the step cannot enter a user namespace: {e}"),
            String::new(),
        )
    };
    let exe = std::env::current_exe().map_err(|e| misconfigured(e.to_string()))?;
    let status = std::process::Command::new("unshare")
        .args(["--user", "--mount"])
        .arg(format!("--map-users={IDENTITY_MAP}"))
        .arg(format!("--map-groups={IDENTITY_MAP}"))
        .arg("--")
        .arg(exe)
        .env(IN_USER_NAMESPACE, "1")
        .args(std::env::args_os().skip(1))
        .status()
        .map_err(|e| misconfigured(e.to_string()))?;
    match status.code() {
        Some(code) => Ok(code),
        None => Err(misconfigured(format!("it ended with {status}"))),
    }
}

fn storage_args(args: &BuildArgs) -> [String; 2] {
    [
        format!("--root={}", args.storage_dir.display()),
        format!("--storage-driver={}", args.storage_driver),
    ]
}

/// buildah as the steps that run in the user namespace ([`run_in_user_namespace`]) use it: the
/// pod's storage, temporary files in the work directory.
pub fn namespaced_buildah(args: &BuildArgs) -> disk::Buildah {
    let mut env = vec![(
        "TMPDIR".into(),
        args.work_dir.join("tmp").display().to_string(),
    )];
    if std::env::var_os(IN_USER_NAMESPACE).is_some() {
        // containers/storage takes a process with CAP_SYS_ADMIN (this one has it, in its own
        // user namespace) for rootful, and then mounts overlay without `userxattr`, which fails
        // in a user namespace ("kernel does not support overlay fs"). As the build step's
        // buildah: rootless, in a user namespace already made (no re-execution).
        env.extend([
            ("_CONTAINERS_USERNS_CONFIGURED".into(), "done".into()),
            ("_CONTAINERS_ROOTLESS_UID".into(), "1".into()),
        ]);
    }
    disk::Buildah {
        program: args.buildah.clone(),
        global_args: storage_args(args).to_vec(),
        env,
    }
}

/// The boot step (in the user namespace): boots the built image; on failed units, and when no
/// earlier build recorded the base's own, boots the base too and holds against the image only
/// what the base does not also fail.
pub async fn boot(args: &BuildArgs) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let started = super::now_ms();
    let plan = boot_plan(args)?;
    let image_id = built_image_id(args, FailureClass::Terminal)?;
    let base = crate::render::images_named(&read_containerfile(args)?)
        .ok()
        .and_then(|images| images.into_iter().next());
    let buildah = namespaced_buildah(args);
    let work = args.work_dir.join("boot");
    println!(
        "strata build: booting image {image_id} (target {}, timeout {} s)",
        plan.target, plan.timeout_seconds
    );
    let checked =
        tokio::task::spawn_blocking(move || check(&plan, &image_id, base, &buildah, &work))
            .await
            .map_err(|e| {
                failure(
                    FailureClass::Transient,
                    "BootCheckInterrupted",
                    e.to_string(),
                    String::new(),
                )
            })?;
    let (outcome, result) = checked.map_err(boot_error)?;
    for line in &outcome.console_tail {
        println!("console: {line}");
    }
    if !outcome.passed {
        return Err(TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "BootFailed".into(),
            message: format!("the image did not boot as required: {}", outcome.reason),
            log_tail: failure_log(&outcome),
            boot_check: Some(Box::new(result)),
        });
    }
    println!(
        "strata build: the image booted in {:.0} s ({})",
        outcome.seconds, result.accelerator
    );
    let mut handover = Handover::load(args);
    handover.record("boot", started);
    handover.boot_check = Some(Box::new(result));
    handover.save(args)?;
    Ok(None)
}

fn boot_plan(args: &BuildArgs) -> Result<BootPlan, TerminationMessage> {
    let text = args.boot_plan.as_deref().unwrap_or_default();
    serde_json::from_str(text).map_err(|e| {
        failure(
            FailureClass::Terminal,
            "BuilderMisconfigured",
            format!(
                "the boot step's plan ({}) is not valid: {e}",
                strata_crds::contract::builder_pod::BOOT_PLAN_ENV
            ),
            String::new(),
        )
    })
}

/// Boots `image` (and, when needed, `base`); blocking.
fn check(
    plan: &BootPlan,
    image: &str,
    base: Option<String>,
    buildah: &disk::Buildah,
    work: &Path,
) -> Result<(Outcome, BootCheckResult), BootError> {
    let timeout = Duration::from_secs(plan.timeout_seconds);
    let expectations = Expectations::new(
        Some(plan.target.clone()),
        plan.active_units.clone(),
        plan.commands.clone(),
    );
    let known_base = plan.base_image_failed_units.clone();
    let mut outcome = boot_once(
        image,
        &expectations,
        known_base.as_deref().unwrap_or_default(),
        timeout,
        buildah,
        work,
    )?;
    let mut learned = None;
    if known_base.is_none()
        && !outcome.new_failed_units.is_empty()
        && let Some(base) = base
    {
        println!(
            "strata build: failed units {}; booting the base image {base} to learn which it \
             fails by itself",
            outcome.new_failed_units.join(", ")
        );
        let plain = Expectations::new(Some(plan.target.clone()), Vec::new(), Vec::new());
        let base_outcome = boot_once(&base, &plain, &[], timeout, buildah, work)?;
        if let Some(report) = base_outcome.report {
            let silence = outcome.silence.unwrap_or(check::Silence::TimedOut(timeout));
            let (passed, reason, new) =
                check::judge(outcome.report.as_ref(), &report.failed_units, silence);
            (outcome.passed, outcome.reason, outcome.new_failed_units) = (passed, reason, new);
            learned = Some(report.failed_units);
        }
    }
    let result = BootCheckResult {
        passed: outcome.passed,
        seconds: outcome.seconds.round() as i32,
        accelerator: match outcome.accel {
            Accel::Kvm => "KVM",
            Accel::Tcg | Accel::Auto => "TCG",
        }
        .into(),
        failed_units: outcome
            .report
            .as_ref()
            .map(|r| r.failed_units.clone())
            .unwrap_or_default(),
        base_image_failed_units: learned,
    };
    Ok((outcome, result))
}

/// Makes `image`'s disk with the report unit, boots it, and removes the disk.
fn boot_once(
    image: &str,
    expectations: &Expectations,
    baseline: &[String],
    timeout: Duration,
    buildah: &disk::Buildah,
    work: &Path,
) -> Result<Outcome, BootError> {
    let request = disk::Request {
        image: image.to_string(),
        output: work.join("disk"),
        formats: vec![Format::Raw],
        authfile: None,
        tls_verify: true,
        root_mib: None,
        kernel_args: vec![check::PANIC_KERNEL_ARG.into()],
        etc_files: expectations.etc_files(),
        layer_commits: false,
        buildah: buildah.clone(),
    };
    let made = disk::make(&request)?;
    println!(
        "strata build: made the boot disk of {image} in {:.0} s",
        made.seconds.total
    );
    let raw: PathBuf = made
        .raw
        .ok_or_else(|| BootError::Image("no raw disk was written".into()))?;
    let outcome = check::boot(&raw, &work.join("vm"), Accel::Auto, timeout, baseline);
    let _ = std::fs::remove_file(&raw);
    outcome
}

/// What a failed check keeps for the build's status: the end of the console, then what the
/// system said (failed units' journal lines, error messages, check commands' output) — the end
/// survives when the termination message is cut.
fn failure_log(outcome: &Outcome) -> String {
    let mut lines: Vec<String> = outcome
        .console_tail
        .iter()
        .map(|l| format!("console: {l}"))
        .collect();
    if let Some(report) = &outcome.report {
        lines.extend(report.errors.iter().map(|l| format!("error: {l}")));
        lines.extend(
            report
                .command_output
                .iter()
                .map(|(i, l)| format!("check command #{}: {l}", i + 1)),
        );
        lines.extend(
            report
                .failed_unit_logs
                .iter()
                .map(|(unit, l)| format!("{unit}: {l}")),
        );
    }
    lines.join("\n")
}

/// A failure to make or boot the disk, as the step reports it.
fn boot_error(err: BootError) -> TerminationMessage {
    disk_step_error(err, "BootCheckUnavailable", "BootFailed")
}

/// A failure of a step that makes an image's disk (boot, disk): a missing tool is the builder's
/// fault, a full disk transient; otherwise `io_reason` (transient) for the pod's files, and
/// `image_reason` (terminal) for the image or its tools.
pub fn disk_step_error(err: BootError, io_reason: &str, image_reason: &str) -> TerminationMessage {
    let (class, reason) = match &err {
        BootError::Tool { detail, .. } if detail.starts_with("cannot start") => {
            (FailureClass::Terminal, "BuilderMisconfigured")
        }
        // The pod's disk, not the image: another attempt may find room.
        BootError::Tool { detail, .. }
            if detail.contains("No space left on device") || detail.contains("min-free-space") =>
        {
            (FailureClass::Transient, "OutOfSpace")
        }
        BootError::Io { .. } => (FailureClass::Transient, io_reason),
        BootError::Tool { .. } | BootError::Image(_) => (FailureClass::Terminal, image_reason),
    };
    failure(class, reason, err.to_string(), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::report::Report;

    #[test]
    fn cap_sys_admin_is_read_from_cap_eff() {
        let with = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let without = "CapEff:\t00000000a80425fb\n"; // a container runtime's default set
        assert!(has_capability(with, CAP_SYS_ADMIN));
        assert!(!has_capability(without, CAP_SYS_ADMIN));
        assert!(!has_capability("", CAP_SYS_ADMIN));
    }

    #[test]
    fn the_failure_log_ends_with_what_the_system_said() {
        let outcome = Outcome {
            passed: false,
            reason: "failed units: var-broken.mount".into(),
            report: Some(Report {
                failed_units: vec!["var-broken.mount".into()],
                failed_unit_logs: vec![(
                    "var-broken.mount".into(),
                    "mount: /var/broken: special device LABEL=boot does not exist".into(),
                )],
                ..Report::default()
            }),
            new_failed_units: vec!["var-broken.mount".into()],
            seconds: 180.0,
            accel: Accel::Tcg,
            console_tail: vec!["[  OK  ] Reached target multi-user.target".into()],
            silence: None,
            emulator_fault: false,
        };
        let log = failure_log(&outcome);
        assert!(log.starts_with("console: [  OK  ]"), "{log}");
        assert!(
            log.ends_with(
                "var-broken.mount: mount: /var/broken: special device LABEL=boot does not exist"
            ),
            "{log}"
        );
    }

    #[test]
    fn a_missing_tool_is_the_builder_s_fault_and_a_bad_image_the_build_s() {
        let missing = BootError::Tool {
            tool: "qemu-system-x86_64".into(),
            detail: "cannot start: No such file or directory".into(),
        };
        let reason = |m: TerminationMessage| match m {
            TerminationMessage::Failure { reason, class, .. } => (reason, class),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(boot_error(missing)),
            ("BuilderMisconfigured".into(), FailureClass::Terminal)
        );
        assert_eq!(
            reason(boot_error(BootError::Image("no initramfs".into()))),
            ("BootFailed".into(), FailureClass::Terminal)
        );
        let full = BootError::Tool {
            tool: "buildah".into(),
            detail: "exit status: 1: error: Writing content object: min-free-space-percent '3%' would be exceeded".into(),
        };
        assert_eq!(
            reason(boot_error(full)),
            ("OutOfSpace".into(), FailureClass::Transient)
        );
    }
}
