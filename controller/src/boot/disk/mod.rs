//! Making a first-boot disk image from an OS image: buildah brings the image, the image's own
//! ostree and GRUB make the sysroot ([`in_image.sh`](./in_image.sh)), then `/boot` and root
//! become ext4 file systems (`mke2fs -d`), the EFI binary goes onto a FAT EFI system partition
//! (mtools), and the three are laid into a GPT disk ([`layout`]). Nothing is mounted on the host
//! but the image itself (`buildah mount`); no loop device.

pub mod layout;
mod parts;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::Serialize;

use self::layout::{GRUB_EFI_MODULES, GRUB_MENU_HEADER, Layout};
use super::{BootError, run_tool};

/// The script run inside the image.
const IN_IMAGE_SCRIPT: &str = include_str!("in_image.sh");
/// The ostree stateroot of the deployment (the OS name in `/ostree/deploy/<name>`).
pub const STATEROOT: &str = "strata";

/// Disk formats written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A sparse raw disk (`disk.raw`).
    Raw,
    /// A compressed qcow2 (`disk.qcow2`).
    Qcow2,
}

/// What to make.
#[derive(Clone, Debug)]
pub struct Request {
    /// The image, as buildah names it (`docker://REPO@sha256:…`, `oci:DIR`, or a name in its
    /// storage).
    pub image: String,
    /// Where the disks go (created); a `.work` directory beside them is removed at the end.
    pub output: PathBuf,
    pub formats: Vec<Format>,
    pub authfile: Option<PathBuf>,
    pub tls_verify: bool,
    pub root_mib: Option<u64>,
    pub kernel_args: Vec<String>,
    /// Written into the deployment's `/etc`: the boot check's report unit, for example.
    pub etc_files: Vec<EtcEntry>,
    /// Also keep each layer as an ostree commit of its own (refs `strata/layers/<diff ID>`), as
    /// ostree-ext keeps `ostree/container/blob/…` when it imports an image: an update on the
    /// machine that imports the same way fetches only the layers it lacks.
    pub layer_commits: bool,
    pub buildah: Buildah,
}

/// How buildah is run: the program, global options (a storage root and driver of its own, as in
/// the builder pod) and environment. The default is the host's `buildah` as it is.
#[derive(Clone, Debug)]
pub struct Buildah {
    pub program: PathBuf,
    pub global_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Default for Buildah {
    fn default() -> Self {
        Buildah {
            program: "buildah".into(),
            global_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl Buildah {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.global_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A file or symlink written into the deployment's `/etc` (path relative to it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcEntry {
    File {
        path: String,
        content: String,
        mode: u32,
    },
    Link {
        path: String,
        target: String,
    },
}

impl EtcEntry {
    pub fn file(path: &str, content: String, mode: u32) -> Self {
        EtcEntry::File {
            path: path.to_string(),
            content,
            mode,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            EtcEntry::File { path, .. } | EtcEntry::Link { path, .. } => path,
        }
    }

    fn write_under(&self, etc: &Path) -> Result<(), BootError> {
        let path = etc.join(self.path());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BootError::io(parent, e))?;
        }
        match self {
            EtcEntry::File { content, mode, .. } => {
                write(&path, content)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
                    .map_err(|e| BootError::io(&path, e))
            }
            EtcEntry::Link { target, .. } => {
                std::os::unix::fs::symlink(target, &path).map_err(|e| BootError::io(&path, e))
            }
        }
    }
}

/// What was made.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskImage {
    pub image: String,
    pub image_id: String,
    pub raw: Option<PathBuf>,
    pub qcow2: Option<PathBuf>,
    pub disk_mib: u64,
    /// Bytes the raw disk occupies (sparse) and the qcow2's size.
    pub raw_allocated_bytes: Option<u64>,
    pub qcow2_bytes: Option<u64>,
    pub root_content_mib: u64,
    pub boot_uuid: String,
    pub root_uuid: String,
    pub seconds: Timings,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub pull: f64,
    pub sysroot: f64,
    pub file_systems: f64,
    pub qcow2: f64,
    pub total: f64,
}

/// Makes the disk image(s) of `req`.
pub fn make(req: &Request) -> Result<DiskImage, BootError> {
    let start = Instant::now();
    let mut seconds = Timings::default();
    let work = req.output.join(".work");
    remove_work(&work)?;
    std::fs::create_dir_all(&work).map_err(|e| BootError::io(&work, e))?;

    let container = Container::from(req)?;
    let image_id = container.image_id()?;
    let mount = container.mount()?;
    seconds.pull = start.elapsed().as_secs_f64();
    kernel_of(&mount)?;

    // The identities are known before the sysroot is made: GRUB's early config needs /boot's.
    let seed_layout = Layout::new(&image_id, 0, req.root_mib);
    write(
        &work.join("grub-early.cfg"),
        &seed_layout.grub_early_config(),
    )?;
    let t = Instant::now();
    let identity = container.identity()?;
    let layer_tars = if req.layer_commits {
        let blobs = container.export_layers(&image_id, &work.join("layers"))?;
        pair_layers(&identity.1, &blobs)?
    } else {
        String::new()
    };
    container.run_script(&mount, &work, &seed_layout, req, (&identity, &layer_tars))?;
    let sysroot = work.join("sysroot");
    finish_sysroot(&sysroot, &work, &seed_layout, &req.etc_files)?;
    seconds.sysroot = t.elapsed().as_secs_f64();
    drop(container);

    let t = Instant::now();
    let boot_dir = work.join("boot");
    std::fs::rename(sysroot.join("boot"), &boot_dir).map_err(|e| BootError::io(&boot_dir, e))?;
    std::fs::create_dir(sysroot.join("boot")).map_err(|e| BootError::io(&sysroot, e))?;
    let content_mib = parts::content_mib(&sysroot)?;
    let layout = Layout::new(&image_id, content_mib, req.root_mib);
    std::fs::create_dir_all(&req.output).map_err(|e| BootError::io(&req.output, e))?;
    let raw = req.output.join("disk.raw");
    parts::assemble(&layout, &work, &boot_dir, &sysroot, &raw)?;
    seconds.file_systems = t.elapsed().as_secs_f64();

    let mut qcow2 = None;
    if req.formats.contains(&Format::Qcow2) {
        let t = Instant::now();
        let path = req.output.join("disk.qcow2");
        run_tool(
            Command::new("qemu-img")
                .args(["convert", "-c", "-O", "qcow2"])
                .arg(&raw)
                .arg(&path),
        )?;
        qcow2 = Some(path);
        seconds.qcow2 = t.elapsed().as_secs_f64();
    }
    let raw = if req.formats.contains(&Format::Raw) {
        Some(raw)
    } else {
        std::fs::remove_file(&raw).map_err(|e| BootError::io(&raw, e))?;
        None
    };
    remove_work(&work)?;
    seconds.total = start.elapsed().as_secs_f64();
    Ok(DiskImage {
        image: req.image.clone(),
        image_id,
        raw_allocated_bytes: raw.as_deref().map(parts::allocated_bytes).transpose()?,
        qcow2_bytes: qcow2.as_deref().map(parts::file_bytes).transpose()?,
        raw,
        qcow2,
        disk_mib: layout.total_mib(),
        root_content_mib: content_mib,
        boot_uuid: layout.boot_uuid,
        root_uuid: layout.root_uuid,
        seconds,
    })
}

/// The image's one kernel, with its initramfs (ostree deploys them from there).
fn kernel_of(root: &Path) -> Result<String, BootError> {
    let modules = root.join("usr/lib/modules");
    let mut kernels = Vec::new();
    for entry in std::fs::read_dir(&modules).map_err(|e| BootError::io(&modules, e))? {
        let entry = entry.map_err(|e| BootError::io(&modules, e))?;
        if entry.path().join("vmlinuz").is_file() {
            kernels.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    match kernels.as_slice() {
        [one] if modules.join(one).join("initramfs.img").is_file() => Ok(one.clone()),
        [one] => Err(BootError::Image(format!(
            "/usr/lib/modules/{one} has a vmlinuz but no initramfs.img"
        ))),
        [] => Err(BootError::Image(
            "no /usr/lib/modules/<version>/vmlinuz".into(),
        )),
        many => Err(BootError::Image(format!(
            "more than one kernel in /usr/lib/modules: {}",
            many.join(", ")
        ))),
    }
}

/// After the image's tools: the menu (header + ostree's entries) where ostree's GRUB backend
/// keeps it (`loader.N/grub.cfg`, `grub/grub.cfg -> ../loader/grub.cfg`), `/boot` in the
/// deployment's fstab, and the requested files in its `/etc`.
fn finish_sysroot(
    sysroot: &Path,
    work: &Path,
    layout: &Layout,
    etc_files: &[EtcEntry],
) -> Result<(), BootError> {
    let entries_path = work.join("grub-entries.cfg");
    let entries =
        std::fs::read_to_string(&entries_path).map_err(|e| BootError::io(&entries_path, e))?;
    if !entries.contains("menuentry") {
        return Err(BootError::Image(
            "ostree generated no GRUB menu entry (no boot loader entry was written)".into(),
        ));
    }
    let boot = sysroot.join("boot");
    let loader = std::fs::read_link(boot.join("loader"))
        .map_err(|e| BootError::io(boot.join("loader"), e))?;
    write(
        &boot.join(&loader).join("grub.cfg"),
        &format!("{GRUB_MENU_HEADER}{entries}"),
    )?;
    let link = boot.join("grub/grub.cfg");
    std::os::unix::fs::symlink("../loader/grub.cfg", &link).map_err(|e| BootError::io(&link, e))?;

    let deployment = deployment_dir(sysroot)?;
    let fstab = deployment.join("etc/fstab");
    let mut text = std::fs::read_to_string(&fstab).unwrap_or_default();
    text.push_str(&layout.fstab_line());
    write(&fstab, &text)?;
    let etc = deployment.join("etc");
    etc_files
        .iter()
        .try_for_each(|entry| entry.write_under(&etc))
}

/// `ostree/deploy/<stateroot>/deploy/<checksum>.0`: the one deployment.
pub fn deployment_dir(sysroot: &Path) -> Result<PathBuf, BootError> {
    let dir = sysroot.join("ostree/deploy").join(STATEROOT).join("deploy");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| BootError::io(&dir, e))? {
        let entry = entry.map_err(|e| BootError::io(&dir, e))?;
        if entry.path().is_dir() {
            found.push(entry.path());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(BootError::Image(format!(
            "expected one deployment in {}, found {}",
            dir.display(),
            found.len()
        ))),
    }
}

/// Removes a work directory; ostree marks each deployment's root immutable, so that flag is
/// cleared first.
fn remove_work(work: &Path) -> Result<(), BootError> {
    if !work.exists() {
        return Ok(());
    }
    let deployments = work
        .join("sysroot/ostree/deploy")
        .join(STATEROOT)
        .join("deploy");
    if let Ok(entries) = std::fs::read_dir(&deployments) {
        for entry in entries.flatten() {
            let path = entry.path();
            let dir = std::fs::File::open(&path).map_err(|e| BootError::io(&path, e))?;
            let flags =
                rustix::fs::ioctl_getflags(&dir).map_err(|e| BootError::io(&path, e.into()))?;
            // Only when set: changing the flag takes CAP_LINUX_IMMUTABLE, which a user namespace
            // (the builder pod's) does not give, and where ostree could not set it either.
            if flags.contains(rustix::fs::IFlags::IMMUTABLE) {
                rustix::fs::ioctl_setflags(&dir, flags - rustix::fs::IFlags::IMMUTABLE)
                    .map_err(|e| BootError::io(&path, e.into()))?;
            }
        }
    }
    std::fs::remove_dir_all(work).map_err(|e| BootError::io(work, e))
}

fn write(path: &Path, text: &str) -> Result<(), BootError> {
    std::fs::write(path, text).map_err(|e| BootError::io(path, e))
}

/// `diff_id=blob_path` for each layer, space-separated: the image's diff IDs (space-separated)
/// with the exported layout's blobs, in order (a blob's digest need not be its diff ID: buildah
/// may keep a layer compressed).
fn pair_layers(diff_ids: &str, blobs: &[String]) -> Result<String, BootError> {
    let diff_ids: Vec<&str> = diff_ids.split_whitespace().collect();
    if diff_ids.len() != blobs.len() {
        return Err(BootError::Image(format!(
            "the image has {} layers, its exported layout {}",
            diff_ids.len(),
            blobs.len()
        )));
    }
    Ok(diff_ids
        .iter()
        .zip(blobs)
        .map(|(diff, blob)| format!("{diff}={blob}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// A buildah working container of the image, removed when dropped.
struct Container {
    name: String,
    buildah: Buildah,
}

impl Container {
    fn from(req: &Request) -> Result<Self, BootError> {
        let mut cmd = req.buildah.command();
        cmd.args(["from", "--quiet", "--pull=missing"]);
        cmd.arg(format!("--tls-verify={}", req.tls_verify));
        if let Some(authfile) = &req.authfile {
            cmd.arg("--authfile").arg(authfile);
        }
        cmd.arg(&req.image);
        let name = run_tool(&mut cmd)?.trim().to_string();
        Ok(Container {
            name,
            buildah: req.buildah.clone(),
        })
    }

    fn image_id(&self) -> Result<String, BootError> {
        let out = run_tool(self.buildah.command().args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.FromImageID}}",
            &self.name,
        ]))?;
        Ok(format!("sha256:{}", out.trim()))
    }

    /// The digest of the manifest the image was pulled by (the same in a registry and in an OCI
    /// layout) and its layers' uncompressed digests, space-separated: a machine reports the first
    /// as the image it booted, and updates reuse the deployment for the layers a new image shares.
    fn identity(&self) -> Result<(String, String), BootError> {
        let out = run_tool(self.buildah.command().args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.FromImageDigest}} {{range .OCIv1.RootFS.DiffIDs}}{{.}} {{end}}",
            &self.name,
        ]))?;
        let out = out.trim();
        let (digest, layers) = out.split_once(' ').unwrap_or((out, ""));
        Ok((digest.to_string(), layers.trim().to_string()))
    }

    /// The image's layers as an OCI layout at `dir` (as buildah keeps them: compressed or not);
    /// returns their blobs' paths below `dir`, in order.
    fn export_layers(&self, image_id: &str, dir: &Path) -> Result<Vec<String>, BootError> {
        run_tool(
            self.buildah
                .command()
                .args(["push", "--quiet", image_id])
                .arg(format!("oci:{}", dir.display())),
        )?;
        let read = |path: &Path| -> Result<serde_json::Value, BootError> {
            let text = std::fs::read(path).map_err(|e| BootError::io(path, e))?;
            serde_json::from_slice(&text)
                .map_err(|e| BootError::Image(format!("{}: {e}", path.display())))
        };
        let blob = |digest: &serde_json::Value| {
            digest
                .as_str()
                .and_then(|d| d.strip_prefix("sha256:"))
                .map(|hex| format!("blobs/sha256/{hex}"))
        };
        let index = read(&dir.join("index.json"))?;
        let manifest = blob(&index["manifests"][0]["digest"])
            .ok_or_else(|| BootError::Image(format!("{}: no manifest", dir.display())))?;
        let manifest = read(&dir.join(manifest))?;
        manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                blob(&l["digest"]).ok_or_else(|| {
                    BootError::Image(format!("{}: a layer without digest", dir.display()))
                })
            })
            .collect()
    }

    fn mount(&self) -> Result<PathBuf, BootError> {
        Ok(PathBuf::from(
            run_tool(self.buildah.command().args(["mount", &self.name]))?.trim(),
        ))
    }

    fn run_script(
        &self,
        mount: &Path,
        work: &Path,
        layout: &Layout,
        req: &Request,
        ((digest, layers), layer_tars): (&(String, String), &str),
    ) -> Result<(), BootError> {
        let kargs = layout.kernel_args(&req.kernel_args).join("\n");
        let mut cmd = self.buildah.command();
        cmd.args(["run", "--isolation", "chroot"])
            .arg(format!("--volume={}:/run/strata-image:ro", mount.display()))
            .arg(format!("--volume={}:/run/strata-disk", work.display()))
            .arg(format!("--env=STRATA_STATEROOT={STATEROOT}"))
            .arg(format!("--env=STRATA_KARGS={kargs}"))
            .arg(format!("--env=STRATA_IMAGE_REF={}", req.image))
            .arg(format!("--env=STRATA_IMAGE_DIGEST={digest}"))
            .arg(format!("--env=STRATA_IMAGE_LAYERS={layers}"))
            .arg(format!("--env=STRATA_BOOT_UUID={}", layout.boot_uuid))
            .arg(format!("--env=STRATA_LAYER_TARS={layer_tars}"))
            .arg(format!(
                "--env=STRATA_GRUB_MODULES={}",
                GRUB_EFI_MODULES.join(" ")
            ))
            .arg(&self.name)
            .args(["--", "sh", "-c", IN_IMAGE_SCRIPT]);
        run_tool(&mut cmd).map(|_| ())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // Best effort: a container left behind is visible in `buildah containers`.
        let _ = self.buildah.command().args(["rm", &self.name]).output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_pair_with_the_exported_blobs_in_order() {
        let blobs = vec!["blobs/sha256/aa".to_string(), "blobs/sha256/bb".to_string()];
        assert_eq!(
            pair_layers("sha256:11 sha256:22", &blobs).ok().as_deref(),
            Some("sha256:11=blobs/sha256/aa sha256:22=blobs/sha256/bb")
        );
        let err = pair_layers("sha256:11", &blobs)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("the image cannot boot: the image has 1 layers, its exported layout 2")
        );
    }
}
