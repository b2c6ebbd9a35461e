//! Classification of a failed builder step. It goes by the step that failed first: in the build
//! step fragment code runs and prints what it likes, so nothing it prints can make a failed step
//! look like a registry outage or a credential problem. Only the pull and push steps, where
//! buildah alone speaks, are told apart by buildah's own error line. The termination message and
//! exit codes themselves are the contract in `strata_crds::contract` (see builder-image/README.md).

pub use strata_crds::contract::{
    FailureClass, MAX_TERMINATION_MESSAGE_BYTES, PhaseTiming, TerminationMessage, exit_code,
    keep_tail,
};

/// Which builder step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Pull,
    Build,
    Push,
}

/// buildah's own error: the last line it printed starting with `Error:` (its final word before
/// exiting), else the last line.
pub fn buildah_error(output: &str) -> String {
    output
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Error:") || l.trim_start().starts_with("error "))
        .or_else(|| output.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Classifies a failed step from buildah's output: (class, reason, message).
pub fn classify(stage: Stage, output: &str) -> (FailureClass, &'static str, String) {
    let error = buildah_error(output);
    if stage == Stage::Build {
        if let Some(step) = failed_step(&error) {
            return (
                FailureClass::Terminal,
                "StepFailed",
                format!("step {step} failed: {}", after_step(&error)),
            );
        }
        if error.contains("no space left on device") {
            return (FailureClass::Transient, "OutOfSpace", error);
        }
        // With --pull=never and no network of its own, buildah fails outside a step only on
        // input it cannot use: retrying would fail the same way.
        return (FailureClass::Terminal, "BuildFailed", error);
    }
    let lower = error.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "unauthorized",
        "authentication required",
        "requested access to the resource is denied",
        "invalid username/password",
        "403 forbidden",
    ]) {
        return (
            FailureClass::Terminal,
            "AuthFailed",
            format!("the registry refused the credentials: {error}"),
        );
    }
    if has(&[
        "x509:",
        "certificate signed by unknown authority",
        "tls: failed to verify",
    ]) {
        return (
            FailureClass::Terminal,
            "RegistryUntrusted",
            format!("the registry's TLS certificate is not trusted: {error}"),
        );
    }
    if has(&["no space left on device"]) {
        return (FailureClass::Transient, "OutOfSpace", error);
    }
    if has(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "connection reset",
        "tls handshake timeout",
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "too many requests",
        "eof",
    ]) {
        return (FailureClass::Transient, "RegistryUnavailable", error);
    }
    if has(&[
        "manifest unknown",
        "name unknown",
        "not found",
        "invalid reference format",
        "repository name must",
    ]) {
        let reason = if stage == Stage::Pull {
            "ImageNotFound"
        } else {
            "InvalidReference"
        };
        return (FailureClass::Terminal, reason, error);
    }
    match stage {
        Stage::Pull => (FailureClass::Transient, "PullFailed", error),
        _ => (FailureClass::Transient, "PushFailed", error),
    }
}

/// The instruction of the step buildah reports as failed (`building at STEP "RUN x": …`).
pub fn failed_step(output: &str) -> Option<String> {
    let at = output.rfind("building at STEP \"")?;
    let rest = &output[at + "building at STEP \"".len()..];
    let end = rest.find("\": ").or_else(|| rest.find('"'))?;
    Some(rest[..end].to_string())
}

/// What buildah said after naming the failed step.
fn after_step(error: &str) -> &str {
    error
        .rfind("\": ")
        .map(|i| &error[i + 3..])
        .unwrap_or(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_terminal_whatever_it_printed() {
        for printed in [
            "curl: (7) Failed to connect: Connection refused",
            "cat: /etc/shadow: Permission denied",
            "unauthorized: authentication required",
            "x509: certificate signed by unknown authority",
        ] {
            let output = format!(
                "STEP 2/3: RUN something\n{printed}\nError: building at STEP \"RUN something\": while running runtime: exit status 1\n"
            );
            let (class, reason, message) = classify(Stage::Build, &output);
            assert_eq!(
                (class, reason),
                (FailureClass::Terminal, "StepFailed"),
                "{printed}"
            );
            assert!(
                message.starts_with("step RUN something failed: while running runtime"),
                "{message}"
            );
        }
    }

    #[test]
    fn pull_and_push_are_told_apart_by_buildahs_error() {
        let refused = "Error: pushing image: dial tcp 10.0.0.1:5000: connect: connection refused";
        assert_eq!(classify(Stage::Push, refused).0, FailureClass::Transient);
        assert_eq!(classify(Stage::Push, refused).1, "RegistryUnavailable");
        let auth =
            "Error: writing blob: initiating layer upload: unauthorized: authentication required";
        assert_eq!(classify(Stage::Push, auth).1, "AuthFailed");
        assert_eq!(classify(Stage::Push, auth).0, FailureClass::Terminal);
        let x509 = "Error: initializing source docker://r.example.com/os:1: pinging container registry r.example.com: Get \"https://r.example.com/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority";
        assert_eq!(
            classify(Stage::Pull, x509),
            (
                FailureClass::Terminal,
                "RegistryUntrusted",
                format!("the registry's TLS certificate is not trusted: {x509}")
            )
        );
        let missing = "Error: initializing source docker://r.example.com/os@sha256:1: reading manifest sha256:1 in r.example.com/os: manifest unknown";
        assert_eq!(classify(Stage::Pull, missing).1, "ImageNotFound");
        assert_eq!(
            classify(Stage::Push, "Error: something odd").0,
            FailureClass::Transient
        );
        assert_eq!(
            classify(
                Stage::Build,
                "Error: committing container: no space left on device"
            )
            .1,
            "OutOfSpace"
        );
    }
}
