//! `strata --version` names the crate's version and the commit it was built from
//! (`controller/build.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn version(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "strata {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `strata 0.1.0 (commit b734c98, 2026-11-29)`, `… (commit b734c98-dirty, …)` or, built outside
/// a git checkout without STRATA_COMMIT, `… (commit unknown)`.
#[test]
fn version_names_the_version_and_the_commit() {
    let line = version(&["--version"]);
    let expected_start = format!("strata {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(
        line.starts_with(&expected_start) && line.ends_with(")\n") && line.lines().count() == 1,
        "{line:?}"
    );
    let info = &line[expected_start.len()..line.len() - 2];
    let (commit, date) = info.split_once(", ").unwrap_or((info, ""));
    let hash = commit.strip_suffix("-dirty").unwrap_or(commit);
    assert!(
        hash == "unknown"
            || (hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit()))
            || std::env::var("STRATA_COMMIT").is_ok_and(|c| c.trim() == hash),
        "no commit in {line:?}"
    );
    assert!(
        date.is_empty()
            || (date.len() == 10 && jiff::civil::Date::strptime("%Y-%m-%d", date).is_ok()),
        "not a date: {date:?} in {line:?}"
    );
    // In this repository (the tests run from a checkout) the commit is git's own.
    if let Ok(out) = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        && out.status.success()
    {
        let head = String::from_utf8(out.stdout).unwrap();
        assert_eq!(hash, head.trim(), "{line:?}");
    }
    // -V says the same, and so does every subcommand's --version (under its own name).
    assert_eq!(version(&["-V"]), line);
    assert_eq!(
        version(&["render", "--version"]),
        line.replacen("strata ", "strata-render ", 1)
    );
}
