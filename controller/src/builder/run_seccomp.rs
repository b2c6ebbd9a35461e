//! The seccomp profile of RUN steps: containers' default profile (shipped with buildah), except
//! that fragment code cannot make a user namespace. In the builder pod buildah may (it enters one
//! of its own, so the pod's profile allows it), and containers' default allows `unshare`,
//! `clone` and `clone3` outright: `unshare -Urn` in RUN gave fragment code every capability in a
//! namespace of its own, a kernel surface no build needs. As moby's default profile does,
//! `unshare` and `clone` are allowed only without `CLONE_NEWUSER` (EPERM with it), and `clone3`
//! (whose flags seccomp cannot read) fails with ENOSYS, so that the C library falls back to
//! `clone`.
//! buildah applies the profile to RUN steps (`--security-opt seccomp=…`) on top of the pod's.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// containers-common's default profile, which buildah applies to RUN steps unless told otherwise.
pub const DEFAULT_PROFILE: &str = "/usr/share/containers/seccomp.json";
/// `CLONE_NEWUSER` (linux/sched.h).
const CLONE_NEWUSER: u64 = 0x1000_0000;
/// ENOSYS and EPERM on x86_64 and aarch64.
const ENOSYS: u64 = 38;
const EPERM: u64 = 1;
/// The syscalls that can make a namespace.
const NAMESPACE_SYSCALLS: [&str; 3] = ["unshare", "clone", "clone3"];

/// `default` (a containers seccomp profile, JSON) without user namespaces.
pub fn without_user_namespaces(default: &str) -> Result<String, String> {
    let mut profile: Value =
        serde_json::from_str(default).map_err(|e| format!("not a seccomp profile: {e}"))?;
    let default_is_enosys = profile.get("defaultAction").and_then(Value::as_str)
        == Some("SCMP_ACT_ERRNO")
        && profile.get("defaultErrnoRet").and_then(Value::as_u64) == Some(ENOSYS);
    let syscalls = profile
        .get_mut("syscalls")
        .and_then(Value::as_array_mut)
        .ok_or("not a seccomp profile: no syscalls list")?;
    for rule in syscalls.iter_mut() {
        if rule.get("action").and_then(Value::as_str) != Some("SCMP_ACT_ALLOW") {
            continue;
        }
        if let Some(names) = rule.get_mut("names").and_then(Value::as_array_mut) {
            names.retain(|n| !n.as_str().is_some_and(|n| NAMESPACE_SYSCALLS.contains(&n)));
        }
    }
    syscalls.retain(|rule| {
        rule.get("names")
            .and_then(Value::as_array)
            .is_none_or(|names| !names.is_empty())
    });
    // x86_64 and aarch64 pass clone's flags first (s390x does not: Strata builds amd64).
    syscalls.push(json!({
        "names": ["unshare", "clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
        "comment": "strata: no new user namespace from RUN"
    }));
    syscalls.push(json!({
        "names": ["unshare", "clone"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": EPERM,
        "args": [{"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}],
        "comment": "strata: a new user namespace is not permitted (not ENOSYS: the call exists)"
    }));
    // clone3 falls to the default action when that is ENOSYS already (containers' is; libseccomp
    // refuses a rule that repeats the default).
    if !default_is_enosys {
        syscalls.push(json!({
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
            "comment": "strata: clone3's flags cannot be read; the C library falls back to clone"
        }));
    }
    serde_json::to_string_pretty(&profile).map_err(|e| e.to_string())
}

/// Writes the RUN profile derived from `default` into `work_dir`; its path.
pub fn write(default: &Path, work_dir: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string(default).map_err(|e| {
        format!(
            "cannot read the default seccomp profile {}: {e}",
            default.display()
        )
    })?;
    let profile =
        without_user_namespaces(&text).map_err(|e| format!("{}: {e}", default.display()))?;
    let path = work_dir.join("run-seccomp.json");
    std::fs::write(&path, profile).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of containers-common's profile: one big allow list, caps-dependent entries.
    const DEFAULT: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [
            {"names": ["read", "clone", "clone3", "unshare", "write"], "action": "SCMP_ACT_ALLOW", "args": []},
            {"names": ["clone3"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["setns", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]
    }"#;

    fn rules_for<'a>(profile: &'a Value, name: &str) -> Vec<&'a Value> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn namespaces_syscalls_lose_their_unconditional_allow() {
        let profile: Value =
            serde_json::from_str(&without_user_namespaces(DEFAULT).unwrap()).unwrap();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(rules_for(&profile, "read")[0]["action"], "SCMP_ACT_ALLOW");
        for name in ["unshare", "clone"] {
            let rules = rules_for(&profile, name);
            let with = |action: &str| -> Vec<&Value> {
                rules
                    .iter()
                    .copied()
                    .filter(|r| r["action"] == action)
                    .collect()
            };
            let allows = with("SCMP_ACT_ALLOW");
            assert_eq!(allows.len(), 1, "{name}: {allows:?}");
            assert_eq!(
                allows[0]["args"],
                json!([{"index": 0, "value": 0x1000_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])
            );
            let refusals: Vec<_> = with("SCMP_ACT_ERRNO")
                .into_iter()
                .filter(|r| r["args"][0]["valueTwo"] == 0x1000_0000u64)
                .collect();
            assert_eq!(refusals.len(), 1, "{name}: {refusals:?}");
            assert_eq!(refusals[0]["errnoRet"], 1);
        }
        // clone3 is left to the default action, ENOSYS.
        assert!(rules_for(&profile, "clone3").is_empty());
        // An ERRNO rule is kept as it was.
        assert!(rules_for(&profile, "setns")[0]["action"] == "SCMP_ACT_ERRNO");
    }

    #[test]
    fn clone3_gets_enosys_where_the_default_action_is_another() {
        let permissive = DEFAULT.replace(
            r#""defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38"#,
            r#""defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1"#,
        );
        let profile: Value =
            serde_json::from_str(&without_user_namespaces(&permissive).unwrap()).unwrap();
        let clone3 = rules_for(&profile, "clone3");
        assert_eq!(clone3.len(), 1, "{clone3:?}");
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
    }

    #[test]
    fn what_is_not_a_profile_is_an_error() {
        assert!(without_user_namespaces("{}").is_err());
        assert!(without_user_namespaces("not json").is_err());
    }
}
