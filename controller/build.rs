//! Stamps the git commit into `strata --version`: `strata 0.1.0 (commit b734c98, 2026-11-29)`.
//!
//! The commit is `git rev-parse --short HEAD`, marked `-dirty` when the sources of this binary
//! (`SOURCES`: the workspace manifest and lock file, `controller/src`, `crds/src`, their manifests
//! and this script) differ from it; the date is the commit's (not the build's, so a rebuild of the same tree prints the
//! same line). Without git or a repository (a build from a tarball, an image build without
//! `.git`), `STRATA_COMMIT` names the commit, else it is `unknown`.
//!
//! Cargo reruns this script only when HEAD moves (`.git/HEAD`, the branch's ref or
//! `packed-refs`), when one of the watched sources changes (the crate rebuilds then anyway) or
//! when `STRATA_COMMIT` changes — never on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The paths whose changes make the binary differ from the commit (relative to the workspace).
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "controller/Cargo.toml",
    "controller/build.rs",
    "controller/src",
    "crds/Cargo.toml",
    "crds/src",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest_dir.join("..");
    println!("cargo::rerun-if-env-changed=STRATA_COMMIT");
    for source in SOURCES {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(source).display()
        );
    }
    let info = match git_info(&workspace) {
        Some(info) => info,
        None => {
            let commit = std::env::var("STRATA_COMMIT")
                .ok()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "unknown".into());
            format!("commit {commit}")
        }
    };
    println!("cargo::rustc-env=STRATA_BUILD_INFO={info}");
}

/// `commit <short>[-dirty], <YYYY-MM-DD>`, or None outside a git checkout.
fn git_info(workspace: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(workspace)
            // `git status` must not refresh the index: that would touch .git/index for nothing.
            .arg("--no-optional-locks")
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty())?;
    watch_head(&git);
    let date = git(&["log", "-1", "--format=%cs", "HEAD"]).unwrap_or_default();
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = match git(&status) {
        Some(changes) if changes.is_empty() => "",
        // Changed sources, or a status that could not be read: do not claim a clean tree.
        _ => "-dirty",
    };
    Some(if date.is_empty() {
        format!("commit {commit}{dirty}")
    } else {
        format!("commit {commit}{dirty}, {date}")
    })
}

/// rerun-if-changed for what moves HEAD: the HEAD file, the branch's loose ref and packed-refs.
/// Only existing files are named (cargo reruns every time for a missing one); a branch that
/// only exists in packed-refs gets its ref directory watched, where a commit creates it.
fn watch_head(git: &dyn Fn(&[&str]) -> Option<String>) {
    let abs = |what: &str| {
        git(&["rev-parse", "--path-format=absolute", what])
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    };
    let Some(git_dir) = abs("--git-dir") else {
        return;
    };
    let common = abs("--git-common-dir").unwrap_or_else(|| git_dir.clone());
    println!("cargo::rerun-if-changed={}", git_dir.join("HEAD").display());
    let packed = common.join("packed-refs");
    if packed.is_file() {
        println!("cargo::rerun-if-changed={}", packed.display());
    }
    // Detached HEAD: the HEAD file itself holds the commit.
    let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]).filter(|r| !r.is_empty()) else {
        return;
    };
    let loose = common.join(&reference);
    if loose.is_file() {
        println!("cargo::rerun-if-changed={}", loose.display());
    } else if let Some(dir) = loose.parent().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
}
