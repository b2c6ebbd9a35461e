//! The CoreOS-like OS image (`e2e/scripts/build-os-image.sh`, the stand-in for RHEL CoreOS): built
//! or reused from the cache, then checked from its OCI image layout alone — index, manifest, config
//! and every layer, read as a tar stream (`gzip -dc`) — against what an rpm-ostree-composed OS image
//! is: at least 1 GiB of files in at least 40 layers chunked by package (each file in exactly one
//! layer), exactly one kernel with its vmlinuz under `usr/lib/modules/<version>/`, systemd, the dpkg
//! database, an empty `var/` and `boot/`, no `usr/etc`, the ostree symlinks into `var/`.
//!
//! Needs `STRATA_E2E` (like every e2e test) and root with mmdebstrap, python3, skopeo, gpg and
//! dpkg-scanpackages; a missing prerequisite fails the test under `CI=true` and skips it otherwise.
//! A cold build takes minutes (cached under `${XDG_CACHE_HOME:-~/.cache}/strata`); warm, the script
//! returns in about a second and reading the layers takes a few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use strata_e2e::{e2e_run_or_skip, in_ci, needs, repo_root};

const GIB: u64 = 1 << 30;
const TEST: &str = "os_image_is_a_chunked_coreos_like_tree";

/// A prerequisite is missing: a failure under CI, a loud skip otherwise.
fn missing(why: &str) -> Result<()> {
    ensure!(
        !in_ci(),
        "{TEST}: a prerequisite is missing: {why} (CI never skips)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {why}");
    Ok(())
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\" >/dev/null", "_", tool])
        .status()
        .is_ok_and(|s| s.success())
}

/// One tar entry: its path (no leading `./`, no trailing `/`), type flag, size and link target.
#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: u8,
    size: u64,
    link: String,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.kind == b'5'
    }
    fn is_file(&self) -> bool {
        self.kind == b'0' || self.kind == 0
    }
}

/// What one layer holds.
struct Layer {
    entries: Vec<Entry>,
    /// Length of the uncompressed tar stream.
    tar_bytes: u64,
    /// Contents of the files asked for by path.
    captured: BTreeMap<String, Vec<u8>>,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn number(b: &[u8]) -> Result<u64> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        // base-256 (GNU) for large values
        return Ok(b[1..].iter().fold(0u64, |n, &c| (n << 8) | u64::from(c)));
    }
    let s = cstr(b);
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).with_context(|| format!("bad octal number {s:?} in a tar header"))
}

fn normalize(p: &str) -> String {
    p.trim_start_matches("./").trim_end_matches('/').to_string()
}

/// Reads a tar stream (ustar + PAX + GNU long names), keeping the metadata of every entry and the
/// contents of the paths in `capture`.
fn read_tar(mut r: impl Read, capture: &BTreeSet<&str>) -> Result<Layer> {
    let mut layer = Layer {
        entries: Vec::new(),
        tar_bytes: 0,
        captured: BTreeMap::new(),
    };
    let mut header = [0u8; 512];
    let mut pax: BTreeMap<String, String> = BTreeMap::new();
    let mut long_name: Option<String> = None;
    let mut long_link: Option<String> = None;
    let mut zero_blocks = 0;
    loop {
        if let Err(e) = r.read_exact(&mut header) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof && zero_blocks > 0 {
                break;
            }
            return Err(e).context("reading a tar header");
        }
        layer.tar_bytes += 512;
        if header.iter().all(|&c| c == 0) {
            zero_blocks += 1;
            if zero_blocks == 2 {
                break;
            }
            continue;
        }
        zero_blocks = 0;
        let kind = header[156];
        let mut size = number(&header[124..136])?;
        if let Some(s) = pax.get("size") {
            size = s.parse().context("pax size")?;
        }
        let mut data = vec![];
        let keep = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let mut name = cstr(&header[0..100]);
        if &header[257..262] == b"ustar" {
            let prefix = cstr(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let path = normalize(
            &long_name
                .take()
                .or_else(|| pax.get("path").cloned())
                .unwrap_or(name),
        );
        let want = (kind == b'0' || kind == 0) && capture.contains(path.as_str());
        let padded = size.div_ceil(512) * 512;
        if keep || want {
            data.resize(usize::try_from(size)?, 0);
            r.read_exact(&mut data).context("reading tar data")?;
            std::io::copy(&mut (&mut r).take(padded - size), &mut std::io::sink())?;
        } else {
            let n = std::io::copy(&mut (&mut r).take(padded), &mut std::io::sink())?;
            ensure!(n == padded, "tar stream ends inside {path}");
        }
        layer.tar_bytes += padded;
        match kind {
            b'x' => {
                pax = parse_pax(&data)?;
                continue;
            }
            b'g' => continue,
            b'L' => {
                long_name = Some(cstr(&data));
                continue;
            }
            b'K' => {
                long_link = Some(cstr(&data));
                continue;
            }
            _ => {}
        }
        let link = long_link
            .take()
            .or_else(|| pax.get("linkpath").cloned())
            .unwrap_or_else(|| cstr(&header[157..257]));
        pax.clear();
        if want {
            layer.captured.insert(path.clone(), data);
        }
        layer.entries.push(Entry {
            path,
            kind,
            size,
            link,
        });
    }
    // whatever follows the end-of-archive blocks (gzip's padding) is not part of the image
    let mut rest = vec![];
    r.read_to_end(&mut rest)?;
    Ok(layer)
}

fn parse_pax(data: &[u8]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|&c| c == b' ')
            .context("pax record without length")?;
        let len: usize = std::str::from_utf8(&rest[..sp])?.parse()?;
        ensure!(len > sp && len <= rest.len(), "bad pax record length");
        let record = &rest[sp + 1..len - 1];
        if let Some(eq) = record.iter().position(|&c| c == b'=') {
            out.insert(
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            );
        }
        rest = &rest[len..];
    }
    Ok(out)
}

fn read_layer(blob: &Path, capture: &BTreeSet<&str>) -> Result<Layer> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .arg(blob)
        .stdout(Stdio::piped())
        .spawn()
        .context("running gzip -dc")?;
    let stdout = child.stdout.take().context("gzip stdout")?;
    let layer = read_tar(BufReader::with_capacity(1 << 20, stdout), capture)
        .with_context(|| format!("reading layer {}", blob.display()));
    let status = child.wait()?;
    ensure!(status.success(), "gzip -dc {} failed", blob.display());
    layer
}

fn json(path: &Path) -> Result<Value> {
    serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("not a sha256 digest: {digest}"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

#[test]
fn os_image_is_a_chunked_coreos_like_tree() -> Result<()> {
    needs!(e2e_run_or_skip(TEST));
    let uid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return missing("must run as root (mmdebstrap, chroot)");
    }
    for tool in [
        "mmdebstrap",
        "python3",
        "skopeo",
        "gpg",
        "dpkg-scanpackages",
        "gzip",
        "jq",
        "flock",
    ] {
        if !on_path(tool) {
            return missing(&format!("{tool} is not installed (see e2e/ci-setup.sh)"));
        }
    }

    let started = Instant::now();
    let out = Command::new(repo_root().join("e2e/scripts/build-os-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running build-os-image.sh")?;
    ensure!(out.status.success(), "build-os-image.sh failed");
    let stdout = String::from_utf8(out.stdout)?;
    let layout = PathBuf::from(stdout.lines().last().context("no layout printed")?.trim());
    eprintln!(
        "{TEST}: build-os-image.sh took {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        layout.display()
    );

    // --- index, manifest, config --------------------------------------------------------------
    let index = json(&layout.join("index.json"))?;
    let desc = &index["manifests"][0];
    ensure!(
        desc["annotations"]["org.opencontainers.image.ref.name"] == "latest",
        "index.json names no `latest`: {index}"
    );
    let manifest_digest = desc["digest"].as_str().context("manifest digest")?;
    let manifest = json(&blob_path(&layout, manifest_digest)?)?;
    ensure!(manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json");
    let config = json(&blob_path(
        &layout,
        manifest["config"]["digest"]
            .as_str()
            .context("config digest")?,
    )?)?;
    let layers = manifest["layers"].as_array().context("layers")?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .context("diff_ids")?;
    ensure!(
        layers.len() >= 40,
        "{} layers, want at least 40",
        layers.len()
    );
    ensure!(
        diff_ids.len() == layers.len(),
        "diff_ids do not match the layers"
    );
    let history = config["history"].as_array().context("history")?;
    ensure!(history.len() == layers.len(), "one history entry per layer");
    let labels = &config["config"]["Labels"];
    ensure!(labels["containers.bootc"] == "1" && labels["ostree.bootable"] == "true");
    let mut compressed = 0u64;
    for l in layers {
        ensure!(l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip");
        let path = blob_path(&layout, l["digest"].as_str().context("layer digest")?)?;
        let size = std::fs::metadata(&path)
            .with_context(|| format!("layer blob {}", path.display()))?
            .len();
        ensure!(
            Some(size) == l["size"].as_u64(),
            "{} has the wrong size",
            path.display()
        );
        compressed += size;
    }

    // --- every layer, two at a time ----------------------------------------------------------------
    let read_started = Instant::now();
    let capture: BTreeSet<&str> = [
        "usr/lib/sysimage/dpkg/status",
        "etc/apt/apt.conf.d/50-strata-sysimage",
    ]
    .into_iter()
    .collect();
    let blobs = layers
        .iter()
        .map(|l| blob_path(&layout, l["digest"].as_str().unwrap_or_default()))
        .collect::<Result<Vec<_>>>()?;
    let mut read: Vec<Option<Result<Layer>>> = (0..blobs.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        for (half, slots) in read.chunks_mut(blobs.len().div_ceil(2)).enumerate() {
            let blobs = &blobs;
            let capture = &capture;
            s.spawn(move || {
                let first = half * blobs.len().div_ceil(2);
                for (i, slot) in slots.iter_mut().enumerate() {
                    *slot = Some(read_layer(&blobs[first + i], capture));
                }
            });
        }
    });
    let read: Vec<Layer> = read
        .into_iter()
        .map(|l| l.context("layer not read")?)
        .collect::<Result<_>>()?;
    eprintln!(
        "{TEST}: read {} layers in {:.1} s",
        read.len(),
        read_started.elapsed().as_secs_f64()
    );

    // --- size and chunking --------------------------------------------------------------------
    let tar_bytes: u64 = read.iter().map(|l| l.tar_bytes).sum();
    let file_bytes: u64 = read
        .iter()
        .flat_map(|l| &l.entries)
        .filter(|e| e.is_file())
        .map(|e| e.size)
        .sum();
    eprintln!(
        "{TEST}: {} layers, {:.2} GiB of files, {:.2} GiB uncompressed tar, {:.2} GiB compressed",
        read.len(),
        file_bytes as f64 / GIB as f64,
        tar_bytes as f64 / GIB as f64,
        compressed as f64 / GIB as f64
    );
    ensure!(
        file_bytes >= GIB,
        "only {file_bytes} bytes of files, want at least 1 GiB"
    );
    // Chunked by package: every non-directory lives in exactly one layer, and no layer is empty.
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, layer) in read.iter().enumerate() {
        ensure!(
            layer.entries.iter().any(|e| !e.is_dir()),
            "layer {} holds no file",
            i + 1
        );
        for e in layer.entries.iter().filter(|e| !e.is_dir()) {
            if let Some(prev) = owner.insert(&e.path, i) {
                bail!("{} is in layer {} and layer {}", e.path, prev + 1, i + 1);
            }
        }
    }
    // The biggest packages have layers of their own (rpm-ostree style): at least 30 layers name a
    // single component in their history.
    let singles = history
        .iter()
        .filter(|h| {
            h["comment"]
                .as_str()
                .is_some_and(|c| !c.contains("components") && !c.starts_with('('))
        })
        .count();
    ensure!(singles >= 30, "only {singles} single-package layers");

    // --- the tree -------------------------------------------------------------------------------
    let all: BTreeMap<&str, &Entry> = read
        .iter()
        .flat_map(|l| &l.entries)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let kernels: BTreeSet<&str> = all
        .keys()
        .filter_map(|p| p.strip_prefix("usr/lib/modules/"))
        .map(|rest| rest.split('/').next().unwrap_or_default())
        .collect();
    ensure!(
        kernels.len() == 1,
        "want exactly one kernel, found {kernels:?}"
    );
    let kver = kernels.iter().next().copied().unwrap_or_default();
    let vmlinuz = all
        .get(format!("usr/lib/modules/{kver}/vmlinuz").as_str())
        .with_context(|| format!("no usr/lib/modules/{kver}/vmlinuz"))?;
    ensure!(
        vmlinuz.is_file() && vmlinuz.size > 1 << 20,
        "vmlinuz is not a kernel: {vmlinuz:?}"
    );
    ensure!(
        all.contains_key(format!("usr/lib/modules/{kver}/initramfs.img").as_str()),
        "no initramfs next to the kernel"
    );
    let modules = all
        .keys()
        .filter(|p| p.starts_with(&format!("usr/lib/modules/{kver}/kernel/")) && p.contains(".ko"))
        .count();
    ensure!(modules > 1000, "only {modules} kernel modules");
    ensure!(
        !all.keys().any(|p| p.starts_with("boot/")),
        "boot/ is not empty"
    );
    let systemd = all
        .get("usr/lib/systemd/systemd")
        .context("no usr/lib/systemd/systemd")?;
    ensure!(systemd.is_file() && systemd.size > 0);
    // The package manager and its database (in /usr, as rpm-ostree keeps rpmdb in /usr/lib/sysimage).
    for tool in ["usr/bin/dpkg", "usr/bin/apt-get"] {
        ensure!(all.get(tool).is_some_and(|e| e.is_file()), "no {tool}");
    }
    let status = read
        .iter()
        .find_map(|l| l.captured.get("usr/lib/sysimage/dpkg/status"))
        .context("no dpkg database (usr/lib/sysimage/dpkg/status)")?;
    let status = String::from_utf8_lossy(status);
    let installed = status
        .lines()
        .filter(|l| l.starts_with("Package: "))
        .count();
    ensure!(
        installed > 200,
        "the dpkg database lists only {installed} packages"
    );
    for p in [
        "systemd",
        "apt",
        "dpkg",
        "podman",
        "openssh-server",
        "chrony",
        "network-manager",
    ] {
        ensure!(
            status.lines().any(|l| l == format!("Package: {p}")),
            "the dpkg database lacks {p}"
        );
    }
    ensure!(
        all.keys()
            .filter(|p| p.starts_with("usr/lib/sysimage/dpkg/info/") && p.ends_with(".list"))
            .count()
            == installed,
        "one file list per installed package"
    );
    let apt_conf = read
        .iter()
        .find_map(|l| l.captured.get("etc/apt/apt.conf.d/50-strata-sysimage"))
        .context("no apt configuration for the relocated database")?;
    ensure!(String::from_utf8_lossy(apt_conf).contains("/usr/lib/sysimage/dpkg/status"));
    ensure!(all.contains_key("etc/os-release") || all.contains_key("usr/lib/os-release"));
    ensure!(
        all.get("var").is_some_and(|e| e.is_dir()),
        "no var/ directory"
    );
    let in_var: Vec<&str> = all
        .keys()
        .filter(|p| p.starts_with("var/"))
        .copied()
        .collect();
    ensure!(
        in_var.is_empty(),
        "var/ is not empty: {:?}",
        &in_var[..in_var.len().min(10)]
    );
    ensure!(
        !all.keys()
            .any(|p| *p == "usr/etc" || p.starts_with("usr/etc/")),
        "usr/etc exists"
    );
    // The ostree layout.
    ensure!(
        all.get("sysroot").is_some_and(|e| e.is_dir()),
        "no sysroot/"
    );
    for (link, target) in [
        ("ostree", "sysroot/ostree"),
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("opt", "var/opt"),
        ("srv", "var/srv"),
        ("mnt", "var/mnt"),
        ("usr/local", "../var/usrlocal"),
    ] {
        let e = all.get(link).with_context(|| format!("no /{link}"))?;
        ensure!(
            e.kind == b'2' && e.link == target,
            "/{link} should be a symlink to {target}: {e:?}"
        );
    }
    eprintln!(
        "{TEST}: kernel {kver} ({modules} modules), {installed} packages, manifest {manifest_digest}, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
