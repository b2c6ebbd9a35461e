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

use std::path::{Path, PathBuf};

/// Directories under `var/` where files are tolerated: emptied or rotated on a machine.
const VAR_ALLOWED: [&str; 3] = ["var/tmp", "var/cache", "var/log"];
const API_DIRECTORIES: [&str; 5] = ["proc", "sys", "dev", "run", "tmp"];

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

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Every rule the tree at `root` breaks (the first few of each kind).
pub fn check(root: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    kernel(root, &mut found);
    for name in API_DIRECTORIES {
        if !root.join(name).is_dir() {
            found.push(Violation {
                rule: "api-directories",
                path: name.into(),
                why: "missing; the machine mounts its API file systems there".into(),
            });
        }
    }
    if root.join("usr/etc").symlink_metadata().is_ok() {
        found.push(Violation {
            rule: "usr-etc",
            path: "usr/etc".into(),
            why: "exists; put configuration in /etc (ostree keeps /usr/etc itself)".into(),
        });
    }
    let sysroot_ok = root.join("sysroot").is_dir();
    let ostree_link = std::fs::read_link(root.join("ostree")).ok();
    if !sysroot_ok || !ostree_link.is_some_and(|l| l.starts_with("sysroot")) {
        found.push(Violation {
            rule: "ostree",
            path: "ostree".into(),
            why: "the ostree layout (/sysroot, /ostree -> sysroot/ostree) was removed".into(),
        });
    }
    walk(root, root, &mut found);
    found
}

fn kernel(root: &Path, found: &mut Vec<Violation>) {
    let modules = root.join("usr/lib/modules");
    let mut kernels: Vec<String> = std::fs::read_dir(&modules)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("vmlinuz").is_file())
        .map(|e| relative(root, &e.path()))
        .collect();
    kernels.sort();
    match kernels.len() {
        1 => {}
        0 => found.push(Violation {
            rule: "kernel",
            path: "usr/lib/modules".into(),
            why: "no kernel (usr/lib/modules/<version>/vmlinuz): the image cannot boot".into(),
        }),
        _ => found.push(Violation {
            rule: "kernel",
            path: kernels.join(", /"),
            why: "several kernels: replace the kernel, do not add one beside it".into(),
        }),
    }
}

/// Walks the tree for the per-file rules, without following symlinks.
fn walk(root: &Path, dir: &Path, found: &mut Vec<Violation>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let per_rule =
        |found: &Vec<Violation>, rule: &str| found.iter().filter(|v| v.rule == rule).count();
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        let rel = relative(root, &path);
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if entry.file_name().to_str().is_none() && per_rule(found, "utf8") < 5 {
            found.push(Violation {
                rule: "utf8",
                path: rel.clone(),
                why: "the file name is not valid UTF-8".into(),
            });
        }
        // The API file systems and the ostree repository are not the image's content.
        if matches!(rel.as_str(), "proc" | "sys" | "dev" | "sysroot") {
            continue;
        }
        if meta.is_dir() {
            walk(root, &path, found);
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        if rel.starts_with("boot/") && per_rule(found, "boot") < 5 {
            found.push(Violation {
                rule: "boot",
                path: rel.clone(),
                why: "/boot must be empty: machines boot the kernel in /usr/lib/modules".into(),
            });
        }
        if rel.starts_with("var/")
            && !VAR_ALLOWED
                .iter()
                .any(|a| rel.starts_with(&format!("{a}/")))
            && per_rule(found, "var") < 5
        {
            found.push(Violation {
                rule: "var",
                path: rel,
                why: "/var belongs to the machine: content put there by the image is never \
                      updated; use /usr (and tmpfiles.d for directories)"
                    .into(),
            });
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
