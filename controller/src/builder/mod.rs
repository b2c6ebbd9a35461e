//! `strata build <step>`: one step of a build, in its own container of the builder pod. The steps
//! share the image storage (an emptyDir) and nothing else:
//!
//! - `pull`: fetches the base and every image the Containerfile names, with the pull credentials
//!   only;
//! - `build`: `buildah bud --pull=never`, where fragment code runs — no credential of any kind, no
//!   service account token; then the image gate ([`lint`]);
//! - `boot` (unless the config turns the boot check off): the built image boots in a VM from
//!   the disk a new machine would boot ([`boot_step`]); no credential;
//! - `push`: pushes with the push credentials only; runs nothing from the Containerfile.
//!
//! The disk image pod (after the pin) runs `pull` on the pinned image, then `disk` and `push`
//! ([`disk_step`]): the first-boot disk, pushed as OCI artifacts beside the image.
//!
//! Each step writes the one-line JSON termination message of the builder contract
//! (builder-image/README.md) with every credential value it holds redacted; the push step's
//! success message carries the digest and the timings of all steps.

mod boot_step;
mod buildah;
mod disk_step;
pub mod environment;
pub mod lint;
pub mod message;
pub mod redact;
pub mod run_seccomp;
pub mod shared_storage;
pub mod store_quota;
pub mod tree;

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use strata_crds::contract::{builder_pod, disk_image_pod};

pub use message::{FailureClass, PhaseTiming, Stage, TerminationMessage, exit_code};
use redact::Redactor;

/// A step of a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// Fetch every image the Containerfile names (pull credentials only).
    Pull,
    /// Build with --pull=never and no credential, then check the image (the gate).
    Build,
    /// Boot the built image in a VM (no credential).
    Boot,
    /// Make the pinned image's first-boot disk (the disk image pod; no credential).
    Disk,
    /// Push the built image (push credentials only).
    Push,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The step to run.
    #[arg(value_enum)]
    pub step: Step,
    /// The rendered Containerfile (mounted from the build's ConfigMap).
    #[arg(
        long,
        env = "STRATA_CONTAINERFILE",
        default_value = "/etc/strata/build/Containerfile"
    )]
    pub containerfile: PathBuf,
    /// The image: host[:port]/path/name:tag (the tag is the build's name); the build step tags
    /// what it built with it, the push step pushes that image (by the ID the build step wrote)
    /// to it.
    #[arg(long, env = "STRATA_IMAGE")]
    pub image: String,
    /// Auth file for pulling the base and the images the fragment names (pull step; optional).
    #[arg(
        long,
        env = "STRATA_PULL_AUTHFILE",
        default_value = "/etc/strata/pull-auth/.dockerconfigjson"
    )]
    pub pull_authfile: PathBuf,
    /// Auth file with push rights on the image's repository (push step).
    #[arg(
        long,
        env = "STRATA_PUSH_AUTHFILE",
        default_value = "/etc/strata/push-auth/.dockerconfigjson"
    )]
    pub push_authfile: PathBuf,
    /// Registries (host[:port]) reached over plain HTTP or with unverified TLS; comma-separated.
    /// Only these: TLS stays on for every other registry.
    #[arg(long, env = "STRATA_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
    /// Directory of extra CA certificates (`<host:port>/ca.crt`, as buildah's --cert-dir expects).
    #[arg(long, env = "STRATA_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// buildah's storage root, shared by the steps (an emptyDir in the pod).
    #[arg(
        long,
        env = "STRATA_STORAGE_DIR",
        default_value = "/var/lib/containers/storage"
    )]
    pub storage_dir: PathBuf,
    /// buildah's storage driver: overlay (each layer stored once; buildah mounts it inside its
    /// own user namespace) or vfs (a full copy of the tree per layer: simple, but a CoreOS-sized
    /// base takes ~20 GiB per build).
    #[arg(long, env = "STRATA_STORAGE_DRIVER", default_value = "overlay")]
    pub storage_driver: String,
    /// The storage is the cache claim, shared with other builds: the build registers there and
    /// the pull step empties it when short of space and alone (see `shared_storage`).
    #[arg(long, env = "STRATA_SHARED_STORAGE")]
    pub shared_storage: bool,
    /// With --shared-storage: this pod's UID (the downward API), in its registration's name.
    #[arg(long, env = "STRATA_POD_UID")]
    pub pod_uid: Option<String>,
    /// With --shared-storage: the whole cache claim (the pull step's), whose idle stores it
    /// empties when short of space; used when it exists.
    #[arg(long, env = "STRATA_CLAIM_DIR", default_value = builder_pod::CLAIM_DIR)]
    pub claim_dir: PathBuf,
    /// With --shared-storage: the free bytes below which the pull step empties the storage.
    #[arg(long, env = "STRATA_SHARED_STORAGE_MIN_FREE_BYTES", default_value_t = 5 << 30)]
    pub shared_storage_min_free_bytes: u64,
    /// With --shared-storage: the most this config's store may hold ([`store_quota`]).
    #[arg(long, env = "STRATA_SHARED_STORAGE_QUOTA_BYTES", default_value_t = 20 << 30)]
    pub shared_storage_quota_bytes: u64,
    /// Work directory shared by the steps: their timings and the image's size for the push step,
    /// buildah's temporary files.
    #[arg(long, env = "STRATA_WORK_DIR", default_value = "/var/lib/strata")]
    pub work_dir: PathBuf,
    /// Where the termination message goes.
    #[arg(
        long,
        env = "STRATA_TERMINATION_LOG",
        default_value = "/dev/termination-log"
    )]
    pub termination_log: PathBuf,
    /// The buildah executable.
    #[arg(long, env = "STRATA_BUILDAH", default_value = "buildah")]
    pub buildah: PathBuf,
    /// The cluster's environment as the controller wrote it (registries.conf, policy.json,
    /// ca-bundle.crt); used when it exists.
    #[arg(long, env = "STRATA_ENVIRONMENT_DIR", default_value = builder_pod::ENVIRONMENT_DIR)]
    pub environment_dir: PathBuf,
    /// The entitlement, mounted into RUN steps at /etc/pki/entitlement when it exists.
    #[arg(long, env = "STRATA_ENTITLEMENT_DIR", default_value = builder_pod::ENTITLEMENT_DIR)]
    pub entitlement_dir: PathBuf,
    /// Repository definitions, mounted into RUN steps at /etc/yum.repos.d when they exist.
    #[arg(long, env = "STRATA_YUM_REPOS_DIR", default_value = builder_pod::YUM_REPOS_DIR)]
    pub yum_repos_dir: PathBuf,
    /// Repository signing keys, mounted into RUN steps at /etc/pki/rpm-gpg when they exist.
    #[arg(long, env = "STRATA_RPM_GPG_DIR", default_value = builder_pod::RPM_GPG_DIR)]
    pub rpm_gpg_dir: PathBuf,
    /// What the boot step checks, as JSON (the controller writes it from the config's
    /// spec.bootCheck).
    #[arg(long, env = builder_pod::BOOT_PLAN_ENV)]
    pub boot_plan: Option<String>,
    /// A seeding build's pre-built image (repo@sha256:…): the pull step pulls only it, the build
    /// step gates it instead of building, the push step pushes nothing and reports its digest.
    #[arg(long, env = builder_pod::SEED_IMAGE_ENV)]
    pub seed_image: Option<String>,
    /// The disk image pod's pinned image (repo@sha256:…): its pull step pulls only it, its disk
    /// step makes its disk.
    #[arg(long, env = disk_image_pod::SOURCE_IMAGE_ENV)]
    pub source_image: Option<String>,
    /// The disk image pod's formats and kernel arguments, as JSON; with it, the push step pushes
    /// the disk files (to --image) instead of a built image.
    #[arg(long, env = disk_image_pod::DISK_PLAN_ENV)]
    pub disk_plan: Option<String>,
}

impl BuildArgs {
    /// This build's registration in the shared storage, when the storage is shared.
    fn registration(&self) -> Option<shared_storage::Registration> {
        self.shared_storage.then(|| {
            shared_storage::Registration::new(
                &self.storage_dir,
                &self.image,
                shared_storage::STALE_AFTER,
            )
            .of_pod(self.pod_uid.as_deref())
        })
    }

    fn environment(&self) -> environment::BuildEnvironment {
        environment::BuildEnvironment::new(
            &self.environment_dir,
            &self.entitlement_dir,
            &self.yum_repos_dir,
            &self.rpm_gpg_dir,
        )
    }
}

/// What the pull and build steps leave for the push step.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Handover {
    phases: Vec<PhaseTiming>,
    size_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_check: Option<Box<strata_crds::BootCheckResult>>,
}

impl Handover {
    fn path(args: &BuildArgs) -> PathBuf {
        args.work_dir.join("handover.json")
    }

    fn load(args: &BuildArgs) -> Self {
        std::fs::read(Self::path(args))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, args: &BuildArgs) -> Result<(), TerminationMessage> {
        let text = serde_json::to_vec(self).unwrap_or_default();
        std::fs::create_dir_all(&args.work_dir)
            .and_then(|()| std::fs::write(Self::path(args), text))
            .map_err(|e| {
                failure(
                    FailureClass::Transient,
                    "OutOfSpace",
                    format!("cannot write {}: {e}", Self::path(args).display()),
                    String::new(),
                )
            })
    }

    fn record(&mut self, phase: &str, start_ms: i64) {
        self.phases.push(PhaseTiming {
            phase: phase.into(),
            start_ms,
            end_ms: now_ms(),
        });
    }
}

/// Empties the termination log if it exists (the kubelet makes it; nothing is created here).
fn clear_termination_log(path: &std::path::Path) {
    if let Err(err) = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("strata build: cannot empty {}: {err}", path.display());
    }
}

/// Runs one step and writes its termination message; returns the process exit code.
///
/// The termination log is Strata's alone: emptied before anything of the step runs, and at the
/// step's end written with its message or emptied again, so nothing a RUN step wrote there (the
/// build step's fragment code can reach `/dev/termination-log`) outlives the step. The controller
/// takes a success only from the push step's message in any case.
pub async fn run(args: &BuildArgs) -> i32 {
    clear_termination_log(&args.termination_log);
    if matches!(args.step, Step::Boot | Step::Disk) && boot_step::needs_user_namespace() {
        return match boot_step::run_in_user_namespace() {
            Ok(code) => code,
            Err(message) => write_message(args, message),
        };
    }
    let redactor = step_redactor(args);
    // While the step runs, its build's marker on the shared storage says it is alive.
    let heartbeat = args.registration().map(|registration| {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(shared_storage::HEARTBEAT);
            loop {
                every.tick().await;
                registration.refresh();
            }
        })
    });
    let result = match args.step {
        Step::Pull => pull(args, &redactor).await,
        Step::Build => build(args, &redactor).await,
        Step::Boot => boot_step::boot(args).await,
        Step::Disk => disk_step::disk(args).await,
        Step::Push if args.disk_plan.is_some() => disk_step::push(args, &redactor).await,
        Step::Push => push(args, &redactor).await,
    };
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    // The build ends with the push step, or with the step that failed: it stops using the
    // shared storage.
    if (args.step == Step::Push || !matches!(result, Ok(None)))
        && let Some(registration) = args.registration()
    {
        registration.release();
    }
    let message = match result {
        Ok(Some(message)) => message,
        Ok(None) => {
            clear_termination_log(&args.termination_log);
            println!("strata build: {:?} done", args.step);
            return exit_code::SUCCESS;
        }
        Err(failure) => failure,
    };
    write_message(args, redact_message(message, &redactor))
}

/// Writes the step's termination message and says it; returns the step's exit code.
fn write_message(args: &BuildArgs, message: TerminationMessage) -> i32 {
    let line = message.to_line();
    if let Err(err) = std::fs::write(&args.termination_log, format!("{line}\n")) {
        eprintln!(
            "strata build: cannot write {}: {err}",
            args.termination_log.display()
        );
    }
    println!("strata build: {line}");
    match message {
        TerminationMessage::Success { .. } => exit_code::SUCCESS,
        TerminationMessage::Failure { class, .. } => class.exit_code(),
    }
}

/// What the step redacts from its output ([`redact`]): its own registry auth file (pull, push),
/// the cluster proxy's credentials (every step has the proxy variables), the entitlement's
/// files (mounted in the build step only, and only for a config that opts in).
fn step_redactor(args: &BuildArgs) -> Redactor {
    let auth = match args.step {
        Step::Pull => Redactor::from_auth_files(&[&args.pull_authfile]),
        Step::Push => Redactor::from_auth_files(&[&args.push_authfile]),
        Step::Build | Step::Boot | Step::Disk => Redactor::default(),
    };
    auth.with_proxy_environment()
        .with_files_in(&args.entitlement_dir)
}

fn redact_message(message: TerminationMessage, redactor: &Redactor) -> TerminationMessage {
    match message {
        TerminationMessage::Failure {
            class,
            reason,
            message,
            log_tail,
            boot_check,
        } => TerminationMessage::Failure {
            class,
            reason,
            message: redactor.redact(&message),
            log_tail: redactor.redact(&log_tail),
            boot_check,
        },
        success => success,
    }
}

fn failure(
    class: FailureClass,
    reason: &str,
    message: impl Into<String>,
    log_tail: String,
) -> TerminationMessage {
    TerminationMessage::Failure {
        class,
        reason: reason.into(),
        message: message.into(),
        log_tail,
        boot_check: None,
    }
}

/// A write to the pod's work directory failed: transient (the next pod has another).
fn out_of_space(e: std::io::Error) -> TerminationMessage {
    failure(
        FailureClass::Transient,
        "OutOfSpace",
        e.to_string(),
        String::new(),
    )
}

fn read_containerfile(args: &BuildArgs) -> Result<String, TerminationMessage> {
    std::fs::read_to_string(&args.containerfile).map_err(|e| {
        failure(
            FailureClass::Terminal,
            "InvalidInput",
            format!("cannot read {}: {e}", args.containerfile.display()),
            String::new(),
        )
    })
}

/// Step 1: every image the Containerfile names (the disk image pod: the pinned image), with the
/// pull credentials.
async fn pull(
    args: &BuildArgs,
    redactor: &Redactor,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let started = now_ms();
    let named_image = args.source_image.as_ref().or(args.seed_image.as_ref());
    let images = match named_image {
        // The disk image pod: the pinned image only; a seeding build: the pre-built image.
        Some(image) => vec![image.clone()],
        None => crate::render::images_named(&read_containerfile(args)?).map_err(|e| {
            failure(
                FailureClass::Terminal,
                "InvalidInput",
                e.to_string(),
                String::new(),
            )
        })?,
    };
    let buildah = buildah::Buildah::new(args, redactor.clone())?;
    if let Some(registration) = args.registration() {
        keep_shared_storage_in_bounds(args, &registration, &buildah).await?;
    }
    for image in &images {
        println!("strata build: pulling {image}");
        // Always ask the registry, with this build's own credentials, even when the image is in
        // the storage already: on the cache claim it may be there from another config's build,
        // and the claim shares layers, not access. Layers present are not fetched again.
        let mut command = vec![
            "pull".to_string(),
            "--quiet".into(),
            "--policy=always".into(),
        ];
        if args.pull_authfile.is_file() {
            command.push(format!("--authfile={}", args.pull_authfile.display()));
        }
        command.extend(buildah::cert_dir_flag(args));
        command.extend(buildah.policy_flag());
        command.push(image.clone());
        let output = buildah.run(&command).await?;
        if !output.success {
            let (class, reason, message) = message::classify(Stage::Pull, &output.tail);
            return Err(failure(
                class,
                reason,
                format!("pulling {image}: {message}"),
                output.tail,
            ));
        }
        // Only a build from the Containerfile runs triggers (`FROM` the pulled image).
        if named_image.is_none() {
            refuse_naming_triggers(&buildah, image).await?;
        }
    }
    let mut handover = Handover::default();
    handover.record("pull", started);
    handover.save(args)?;
    Ok(None)
}

/// An image whose `ONBUILD` triggers name an image or stage is refused: buildah would run them
/// in the stage built from it, naming images the pull step never fetched.
async fn refuse_naming_triggers(
    buildah: &buildah::Buildah,
    image: &str,
) -> Result<(), TerminationMessage> {
    let Some(triggers) = buildah.onbuild_triggers(image).await else {
        return Err(failure(
            FailureClass::Transient,
            "BuildFailed",
            format!("cannot read the ONBUILD triggers of {image}"),
            String::new(),
        ));
    };
    match triggers
        .iter()
        .find(|t| crate::render::trigger_naming_image(t).is_some())
    {
        Some(trigger) => Err(failure(
            FailureClass::Terminal,
            "InvalidInput",
            format!(
                "{image} carries the ONBUILD trigger '{trigger}', which names an image or stage: \
                 buildah would run it in this build, unvetted by the pull step; use an image \
                 without it"
            ),
            String::new(),
        )),
        None => Ok(()),
    }
}

/// Registers the build in the shared storage and empties the storage when it is short of space,
/// or when its config's store would pass its quota ([`store_quota`]), and no other build uses
/// it (see [`shared_storage`]).
async fn keep_shared_storage_in_bounds(
    args: &BuildArgs,
    registration: &shared_storage::Registration,
    buildah: &buildah::Buildah,
) -> Result<(), TerminationMessage> {
    let min_free = args.shared_storage_min_free_bytes;
    let registered = registration.register(min_free).map_err(|e| {
        failure(
            FailureClass::Transient,
            "StorageUnavailable",
            format!(
                "cannot register in the shared image storage {}: {e}",
                args.storage_dir.display()
            ),
            String::new(),
        )
    })?;
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let mut free = registered.free_bytes;
    let mut decision = registered.decision.clone();
    if decision != shared_storage::Decision::Keep && args.claim_dir.is_dir() {
        free = empty_idle_stores(args, buildah).await?;
        if free >= min_free {
            decision = shared_storage::Decision::Keep;
        }
    }
    let why = match decision {
        shared_storage::Decision::Keep => {
            let quota = args.shared_storage_quota_bytes;
            let used = store_quota::usage_bytes(&args.storage_dir);
            if !store_quota::over_quota(used, min_free, quota) {
                return Ok(());
            }
            decision = match registered.others {
                0 => shared_storage::Decision::Empty,
                others => shared_storage::Decision::Busy { others },
            };
            format!(
                "this config's store holds {:.1} GiB: with the {:.1} GiB a build may add it \
                 would pass its quota of {:.1} GiB",
                gib(used),
                gib(min_free),
                gib(quota)
            )
        }
        _ => format!(
            "the shared image storage has {:.1} GiB free (less than {:.1} GiB)",
            gib(free),
            gib(min_free)
        ),
    };
    match decision {
        shared_storage::Decision::Keep => {}
        shared_storage::Decision::Busy { others } => {
            println!("strata build: {why}, but {others} other build(s) use it: not emptied")
        }
        shared_storage::Decision::Empty => {
            println!("strata build: {why}, and no other build uses it: emptying it");
            // Leftovers of builds that died, then every image; what this build needs is pulled
            // next. A failure here is not the build's: the pull that follows reports any
            // real problem.
            for command in [["rm", "--all"], ["rmi", "--all"]] {
                let command: Vec<String> = command.iter().map(ToString::to_string).collect();
                buildah.run(&command).await?;
            }
            let after = shared_storage::free_bytes(&args.storage_dir).unwrap_or(0);
            println!(
                "strata build: the shared image storage has {:.1} GiB free now",
                gib(after)
            );
        }
    }
    Ok(())
}

/// Empties the claim's stores that no build uses (other configs', deleted configs', a store of
/// an earlier version at the claim's root), each under its lock; the claim's free bytes after.
async fn empty_idle_stores(
    args: &BuildArgs,
    buildah: &buildah::Buildah,
) -> Result<u64, TerminationMessage> {
    let idle = shared_storage::idle_stores(
        &args.claim_dir,
        builder_pod::CLAIM_STORES,
        &args.storage_dir,
        shared_storage::STALE_AFTER,
    )
    .map_err(|e| {
        failure(
            FailureClass::Transient,
            "StorageUnavailable",
            format!(
                "cannot look for idle stores on the cache claim {}: {e}",
                args.claim_dir.display()
            ),
            String::new(),
        )
    })?;
    for store in idle {
        println!(
            "strata build: emptying the idle store {} on the cache claim",
            store.root.display()
        );
        let other = buildah.on_store(&store.root);
        for command in [["rm", "--all"], ["rmi", "--all"]] {
            let command: Vec<String> = command.iter().map(ToString::to_string).collect();
            other.run(&command).await?;
        }
        drop(store.lock);
    }
    Ok(shared_storage::free_bytes(&args.claim_dir).unwrap_or(0))
}

/// What RUN steps get mounted from the cluster's environment (see [`environment`]); the base's
/// CA bundles are read from the storage only when the cluster has CAs to add.
fn run_volumes(
    args: &BuildArgs,
    buildah: &buildah::Buildah,
    containerfile: &str,
) -> Result<Vec<String>, TerminationMessage> {
    let env = args.environment();
    let base = if env.ca_bundle().trim().is_empty() {
        None
    } else {
        crate::render::images_named(containerfile)
            .ok()
            .and_then(|images| images.into_iter().next())
            .and_then(|base| buildah.tree(&base).ok())
    };
    env.run_volumes(base.as_ref(), &args.work_dir).map_err(|e| {
        failure(
            FailureClass::Transient,
            "OutOfSpace",
            format!("cannot write the RUN steps' CA bundles: {e}"),
            String::new(),
        )
    })
}

/// The RUN steps' seccomp profile ([`run_seccomp`]), written into the work directory.
fn run_profile(args: &BuildArgs) -> Result<PathBuf, TerminationMessage> {
    run_seccomp::write(Path::new(run_seccomp::DEFAULT_PROFILE), &args.work_dir).map_err(|e| {
        failure(
            FailureClass::Terminal,
            "BuilderMisconfigured",
            format!("the RUN steps' seccomp profile: {e}"),
            String::new(),
        )
    })
}

/// A failed `buildah bud`: classified by buildah's error, with the failed step's fragment and
/// Containerfile lines when they can be told.
fn build_failure(containerfile: &str, tail: String) -> TerminationMessage {
    let (class, reason, message) = message::classify(Stage::Build, &tail);
    let line = message::failed_step(&message::buildah_error(&tail))
        .and_then(|step| step_line(containerfile, &step));
    let message = match line.map(|l| (l, crate::render::fragment_line(containerfile, l))) {
        Some((line, Some(fragment))) => {
            format!("{message} (fragment line {fragment}, Containerfile line {line})")
        }
        Some((line, None)) => format!("{message} (Containerfile line {line})"),
        None => message,
    };
    failure(class, reason, message, tail)
}

/// Step 2: the build, with --pull=never and no registry credential; then the image gate. What
/// RUN steps print goes through `redactor` (the proxy's credentials, the entitlement). A seeding
/// build builds nothing: the gate checks the pre-built image the pull step pulled.
async fn build(
    args: &BuildArgs,
    redactor: &Redactor,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    if let Some(seed) = &args.seed_image {
        return gate_seed(args, redactor, seed).await;
    }
    let started = now_ms();
    let containerfile = read_containerfile(args)?;
    let buildah = buildah::Buildah::new(args, redactor.clone())?;
    let context = args.work_dir.join("context");
    std::fs::create_dir_all(&context).map_err(out_of_space)?;
    // A file left by an earlier run of this step must not stand for this build's image.
    let iidfile = image_id_file(args);
    let _ = std::fs::remove_file(&iidfile);
    let mut bud = vec![
        "bud".to_string(),
        "--pull=never".into(),
        "--isolation=chroot".into(),
        "--layers".into(),
        // A failed build's intermediate containers go too: on the claim nothing else removes
        // them.
        "--force-rm".into(),
        "--format=oci".into(),
        format!("--iidfile={}", iidfile.display()),
        format!("--security-opt=seccomp={}", run_profile(args)?.display()),
    ];
    bud.extend(buildah.policy_flag());
    bud.extend(run_volumes(args, &buildah, &containerfile)?);
    bud.extend([
        "-f".into(),
        args.containerfile.display().to_string(),
        "-t".into(),
        args.image.clone(),
        context.display().to_string(),
    ]);
    println!(
        "strata build: building {} ({} bytes of Containerfile)",
        args.image,
        containerfile.len()
    );
    // On the cache claim, RUN steps write into the config's store there: bounded by its quota.
    let output = if args.shared_storage {
        let quota = store_quota::exceeded(
            args.storage_dir.clone(),
            args.shared_storage_quota_bytes,
            store_quota::CHECK_EVERY,
        );
        buildah.run_until(&bud, quota).await?
    } else {
        buildah.run(&bud).await?
    };
    if !output.success {
        return Err(build_failure(&containerfile, output.tail));
    }
    // From here on the image is its ID: the gate checks, and the push step pushes, exactly what
    // buildah built, whatever the tag names by then.
    let image_id = built_image_id(args, FailureClass::Terminal)?;
    println!("strata build: built image {image_id}");
    let mut handover = Handover::load(args);
    handover.record("build", started);
    gate(args, &buildah, redactor, &image_id, handover).await
}

/// A seeding build's step 2: the pre-built image the pull step pulled is the image; its ID goes
/// where a built one's would, for the gate and the boot step.
async fn gate_seed(
    args: &BuildArgs,
    redactor: &Redactor,
    seed: &str,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let buildah = buildah::Buildah::new(args, redactor.clone())?;
    let image_id = buildah.image_id(seed).await.ok_or_else(|| {
        failure(
            FailureClass::Transient,
            "BuildFailed",
            format!("the pre-built image {seed} is not in the storage the pull step filled"),
            String::new(),
        )
    })?;
    std::fs::write(image_id_file(args), &image_id).map_err(out_of_space)?;
    println!("strata build: seeding with the pre-built image {seed} ({image_id}): no build");
    gate(args, &buildah, redactor, &image_id, Handover::load(args)).await
}

/// The image gate on `image_id` (builder-image/README.md); its size for the push step.
async fn gate(
    args: &BuildArgs,
    buildah: &buildah::Buildah,
    redactor: &Redactor,
    image_id: &str,
    mut handover: Handover,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    let gate = now_ms();
    println!("strata build: checking the image (the gate: builder-image/README.md)");
    let violations = buildah.lint(image_id)?;
    if let Some(first) = violations.first() {
        let all: Vec<String> = violations.iter().map(ToString::to_string).collect();
        for line in &all {
            // Paths fragment code chose: redacted like everything else the step prints.
            println!("strata build: gate: {}", redactor.redact(line));
        }
        let more = match violations.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(failure(
            FailureClass::Terminal,
            "LintFailed",
            format!("the image would not boot or update on a machine: {first}{more}"),
            all.join("\n"),
        ));
    }
    handover.record("lint", gate);
    handover.size_bytes = buildah.image_size(image_id).await.unwrap_or(0);
    handover.save(args)?;
    Ok(None)
}

/// Step 3: the push of the image the build step built (by its ID), with the push credentials;
/// the success message.
async fn push(
    args: &BuildArgs,
    redactor: &Redactor,
) -> Result<Option<TerminationMessage>, TerminationMessage> {
    if let Some(seed) = &args.seed_image {
        return Ok(Some(seeded(args, seed)?));
    }
    let started = now_ms();
    let image_id = built_image_id(args, FailureClass::Transient)?;
    let buildah = buildah::Buildah::new(args, redactor.clone())?;
    let digestfile = args.work_dir.join("digest");
    let mut command = vec!["push".to_string()];
    if args.push_authfile.is_file() {
        command.push(format!("--authfile={}", args.push_authfile.display()));
    }
    command.extend(buildah::cert_dir_flag(args));
    command.extend(buildah.policy_flag());
    command.extend([
        format!("--digestfile={}", digestfile.display()),
        image_id.clone(),
        format!("docker://{}", args.image),
    ]);
    println!("strata build: pushing image {image_id} to {}", args.image);
    let output = buildah.run(&command).await?;
    if !output.success {
        let (class, reason, message) = message::classify(Stage::Push, &output.tail);
        return Err(failure(class, reason, message, output.tail));
    }
    let digest = std::fs::read_to_string(&digestfile)
        .unwrap_or_default()
        .trim()
        .to_string();
    if !digest.starts_with("sha256:") || digest.len() != 71 {
        return Err(failure(
            FailureClass::Transient,
            "PushFailed",
            format!("buildah wrote no valid digest ('{digest}')"),
            output.tail,
        ));
    }
    let mut handover = Handover::load(args);
    handover.record("push", started);
    Ok(Some(TerminationMessage::Success {
        files: Vec::new(),
        digest,
        size_bytes: handover.size_bytes,
        phases: handover.phases,
        boot_check: handover.boot_check,
    }))
}

/// A seeding build's last step: nothing to push (the pre-built image is in its registry, pulled
/// by digest, gated and booted); the success message reports its digest.
fn seeded(args: &BuildArgs, seed: &str) -> Result<TerminationMessage, TerminationMessage> {
    let digest = seed
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| d.starts_with("sha256:") && d.len() == 71)
        .ok_or_else(|| {
            failure(
                FailureClass::Terminal,
                "InvalidInput",
                format!("the pre-built image {seed} is not pinned by a sha256 digest"),
                String::new(),
            )
        })?;
    let handover = Handover::load(args);
    println!("strata build: seeded with {seed}: nothing pushed");
    Ok(TerminationMessage::Success {
        files: Vec::new(),
        digest,
        size_bytes: handover.size_bytes,
        phases: handover.phases,
        boot_check: handover.boot_check,
    })
}

/// The 1-based line of the rendered Containerfile holding `step` (buildah's text of it).
fn step_line(containerfile: &str, step: &str) -> Option<usize> {
    let parsed = crate::render::parse(containerfile).ok()?;
    let wanted: String = step.split_whitespace().collect::<Vec<_>>().join(" ");
    parsed
        .instructions
        .iter()
        .rev()
        .find(|i| {
            let text = format!("{} {}", i.keyword, i.args);
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            text.eq_ignore_ascii_case(&wanted)
                || wanted.starts_with(&text)
                || text.starts_with(&wanted)
        })
        .map(|i| i.line)
}

/// Where the build step leaves the ID of the image it built (`buildah bud --iidfile`): the pod's
/// own work directory, which no other pod and no RUN step sees. The gate checks and the push step
/// pushes that ID, never a name: a tag re-pointed in the storage between the build and the push
/// (by anything else that writes the storage) changes nothing.
fn image_id_file(args: &BuildArgs) -> PathBuf {
    args.work_dir.join("iid")
}

/// Whether `text` is an image ID of containers/storage: 64 lowercase hex digits. No image name
/// can be one (a reference of 64 hex digits is refused as a name), so it names one image only.
pub fn is_image_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The image ID in the text buildah writes to its `--iidfile` (`sha256:<64 hex>`).
fn parse_image_id(text: &str) -> Option<String> {
    let id = text.trim();
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    is_image_id(id).then(|| id.to_string())
}

/// The ID of the image the build step built, read back from [`image_id_file`].
fn built_image_id(args: &BuildArgs, class: FailureClass) -> Result<String, TerminationMessage> {
    let file = image_id_file(args);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    parse_image_id(&text).ok_or_else(|| {
        failure(
            class,
            "BuildFailed",
            format!(
                "the build step left no image ID in {} ('{}')",
                file.display(),
                text.trim()
            ),
            String::new(),
        )
    })
}

/// Unix time in milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_step_maps_to_its_line() {
        let cf = "FROM x AS base\nFROM base\nRUN echo a\nRUN   false  \nLABEL a=b\n";
        assert_eq!(step_line(cf, "RUN false"), Some(4));
        assert_eq!(step_line(cf, "USER nobody"), None);
    }

    #[test]
    fn the_termination_log_is_emptied_and_never_made() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("termination-log");
        std::fs::write(&log, r#"{"digest":"sha256:forged","sizeBytes":1}"#).unwrap();
        clear_termination_log(&log);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
        let absent = dir.path().join("absent");
        clear_termination_log(&absent);
        assert!(!absent.exists());
    }

    #[test]
    fn the_image_id_is_what_buildah_wrote_and_nothing_else() {
        let id = "0123456789abcdef".repeat(4);
        assert_eq!(parse_image_id(&format!("sha256:{id}\n")), Some(id.clone()));
        assert_eq!(parse_image_id(&id), Some(id.clone()));
        for bad in [
            "",
            "sha256:",
            "registry.example.com/os:build",
            &id[1..],
            &format!("{id}0"),
            &id.to_uppercase(),
            &format!("sha512:{id}"),
        ] {
            assert_eq!(parse_image_id(bad), None, "{bad}");
        }
        assert!(is_image_id(&id) && !is_image_id("latest"));
    }

    #[test]
    fn failure_messages_are_redacted_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(
            &file,
            r#"{"auths":{"r":{"username":"u","password":"sup3r-secret"}}}"#,
        )
        .unwrap();
        let redactor = Redactor::from_auth_files(&[&file]);
        let message = redact_message(
            failure(
                FailureClass::Terminal,
                "AuthFailed",
                "bad: sup3r-secret",
                "tail \"sup3r-secret\"".into(),
            ),
            &redactor,
        );
        let line = message.to_line();
        assert!(!line.contains("sup3r-secret"), "{line}");
        assert!(TerminationMessage::parse(&line).is_some());
    }
}
