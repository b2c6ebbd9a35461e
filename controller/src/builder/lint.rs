//! The image gate: what `bootc container lint` checks that decides whether a CoreOS machine can
//! boot and update into the image, run on the built image's file tree before anything is pushed.
//! A failing rule fails the build (`LintFailed`, terminal) with the rule and the path; the pool
//! keeps its image.
//!
//! | rule | fails when |
//! |---|---|
//! | `kernel` | the image has no kernel or several: exactly one `usr/lib/modules/<version>/vmlinuz` |
//! | `boot` | `boot/` holds files: ostree boots the kernel from `usr/lib/modules`, never `/boot` |
//! | `usr-etc` | `usr/etc` exists: ostree keeps the image's `/etc` there itself; both confuse it |
//! | `var` | a file (not a directory or symlink) lies under `var/` outside `var/tmp`, `var/cache` and `var/log`: `/var` is the machine's own, the image's content there is never updated on a machine |
//! | `api-directories` | `proc`, `sys`, `dev`, `run` or `tmp` is missing |
//! | `ostree` | `sysroot/` is missing or `ostree` is not a symlink into it |
//! | `utf8` | a file name is not valid UTF-8 |

use std::path::Path;

use super::tree::{Kind, Tree};

/// Directories under `var/` where files are tolerated: emptied or rotated on a machine.
const VAR_ALLOWED: [&str; 3] = ["var/tmp", "var/cache", "var/log"];
const API_DIRECTORIES: [&str; 5] = ["proc", "sys", "dev", "run", "tmp"];
/// At most this many violations of one rule are listed.
const PER_RULE: usize = 5;

/// A rule the image breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    /// The path, relative to the image's root.
    pub path: String,
    pub why: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {}: /{}: {}", self.rule, self.path, self.why)
    }
}

/// Every rule the tree at `root` (a plain directory) breaks.
pub fn check(root: &Path) -> Vec<Violation> {
    check_tree(&Tree::from_dir(root))
}

/// Every rule `tree` breaks (the first few of each kind).
pub fn check_tree(tree: &Tree) -> Vec<Violation> {
    let mut found = Vec::new();
    kernel(tree, &mut found);
    api_directories(tree, &mut found);
    usr_etc(tree, &mut found);
    ostree(tree, &mut found);
    utf8(tree, &mut found);
    files(tree, &mut found);
    found
}

/// Records a violation unless [`PER_RULE`] of its rule are recorded already.
fn push(found: &mut Vec<Violation>, rule: &'static str, path: String, why: &str) {
    if found.iter().filter(|v: &&Violation| v.rule == rule).count() < PER_RULE {
        found.push(Violation {
            rule,
            path,
            why: why.to_string(),
        });
    }
}

/// Rule `kernel`: exactly one `usr/lib/modules/<version>/vmlinuz`.
fn kernel(tree: &Tree, found: &mut Vec<Violation>) {
    let kernels: Vec<&str> = tree
        .entries
        .iter()
        .filter(|(path, kind)| {
            **kind == Kind::File
                && path.strip_prefix("usr/lib/modules/").is_some_and(|rest| {
                    rest.split_once('/')
                        .is_some_and(|(_, file)| file == "vmlinuz")
                })
        })
        .map(|(path, _)| path.trim_end_matches("/vmlinuz"))
        .collect();
    match kernels.len() {
        1 => {}
        0 => push(
            found,
            "kernel",
            "usr/lib/modules".into(),
            "no kernel (usr/lib/modules/<version>/vmlinuz): the image cannot boot",
        ),
        _ => push(
            found,
            "kernel",
            kernels.join(", /"),
            "several kernels: replace the kernel, do not add one beside it",
        ),
    }
}

/// Rule `api-directories`: the mount points of the API file systems exist.
fn api_directories(tree: &Tree, found: &mut Vec<Violation>) {
    for name in API_DIRECTORIES {
        if tree.get(name) != Some(&Kind::Dir) {
            push(
                found,
                "api-directories",
                name.into(),
                "missing; the machine mounts its API file systems there",
            );
        }
    }
}

/// Rule `usr-etc`: no `usr/etc`.
fn usr_etc(tree: &Tree, found: &mut Vec<Violation>) {
    if tree.get("usr/etc").is_some() {
        push(
            found,
            "usr-etc",
            "usr/etc".into(),
            "exists; put configuration in /etc (ostree keeps /usr/etc itself)",
        );
    }
}

/// Rule `ostree`: `sysroot/` and the `ostree` symlink into it.
fn ostree(tree: &Tree, found: &mut Vec<Violation>) {
    let ostree_ok = tree.get("sysroot") == Some(&Kind::Dir)
        && matches!(tree.get("ostree"), Some(Kind::Symlink(target)) if target.starts_with("sysroot"));
    if !ostree_ok {
        push(
            found,
            "ostree",
            "ostree".into(),
            "the ostree layout (/sysroot, /ostree -> sysroot/ostree) was removed",
        );
    }
}

/// Rule `utf8`: every file name is UTF-8.
fn utf8(tree: &Tree, found: &mut Vec<Violation>) {
    for name in &tree.non_utf8 {
        push(
            found,
            "utf8",
            name.clone(),
            "the file name is not valid UTF-8",
        );
    }
}

/// Rules `boot` and `var`, file by file: no files in `boot/`, none in `var/` outside the
/// tolerated directories.
fn files(tree: &Tree, found: &mut Vec<Violation>) {
    for (path, kind) in &tree.entries {
        if *kind != Kind::File {
            continue;
        }
        if path.starts_with("boot/") {
            push(
                found,
                "boot",
                path.clone(),
                "/boot must be empty: machines boot the kernel in /usr/lib/modules",
            );
        }
        let var_allowed = VAR_ALLOWED
            .iter()
            .any(|a| path.starts_with(&format!("{a}/")));
        if path.starts_with("var/") && !var_allowed {
            push(
                found,
                "var",
                path.clone(),
                "/var belongs to the machine: content put there by the image is never updated; \
                 use /usr (and tmpfiles.d for directories)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    /// A minimal tree shaped like a CoreOS image.
    fn coreos_like() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "sysroot/ostree",
            "boot",
            "var/tmp",
            "etc",
            "usr/lib/modules/6.12.0/kernel",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("usr/lib/modules/6.12.0/vmlinuz"), b"kernel").unwrap();
        std::os::unix::fs::symlink("sysroot/ostree", root.join("ostree")).unwrap();
        std::fs::write(root.join("etc/motd"), b"hello").unwrap();
        std::fs::write(root.join("var/tmp/scratch"), b"x").unwrap();
        dir
    }

    fn rules(root: &Path) -> Vec<&'static str> {
        check(root).iter().map(|v| v.rule).collect()
    }

    #[test]
    fn a_coreos_shaped_tree_passes() {
        let dir = coreos_like();
        assert_eq!(check(dir.path()), vec![]);
    }

    #[test]
    fn each_rule_fails_on_its_own_breakage() {
        type Breakage = fn(&Path);
        let cases: [(&str, Breakage); 8] = [
            ("kernel", |r| {
                std::fs::remove_file(r.join("usr/lib/modules/6.12.0/vmlinuz")).unwrap()
            }),
            ("kernel", |r| {
                std::fs::create_dir_all(r.join("usr/lib/modules/6.13.0")).unwrap();
                std::fs::write(r.join("usr/lib/modules/6.13.0/vmlinuz"), b"k").unwrap();
            }),
            ("boot", |r| {
                std::fs::write(r.join("boot/vmlinuz-6.13"), b"k").unwrap()
            }),
            ("usr-etc", |r| {
                std::fs::create_dir_all(r.join("usr/etc")).unwrap()
            }),
            ("var", |r| {
                std::fs::create_dir_all(r.join("var/lib/app")).unwrap();
                std::fs::write(r.join("var/lib/app/state"), b"s").unwrap();
            }),
            ("api-directories", |r| {
                std::fs::remove_dir(r.join("run")).unwrap()
            }),
            ("ostree", |r| {
                std::fs::remove_file(r.join("ostree")).unwrap()
            }),
            ("utf8", |r| {
                let name = OsStr::from_bytes(b"bad-\xff-name");
                std::fs::write(r.join("etc").join(name), b"x").unwrap();
            }),
        ];
        for (rule, breakage) in cases {
            let dir = coreos_like();
            breakage(dir.path());
            let found = rules(dir.path());
            assert_eq!(found, vec![rule], "{rule}: {:?}", check(dir.path()));
        }
    }

    #[test]
    fn messages_name_the_rule_and_the_path() {
        let dir = coreos_like();
        std::fs::create_dir_all(dir.path().join("var/lib/app")).unwrap();
        std::fs::write(dir.path().join("var/lib/app/state"), b"s").unwrap();
        let message = check(dir.path())[0].to_string();
        assert!(
            message.starts_with("rule var: /var/lib/app/state: "),
            "{message}"
        );
    }
}
