//! The builder's termination message and exit codes: the contract between `strata build` and the
//! controller (see builder-image/README.md). Pure: classification of buildah's output lives here.

use serde::{Deserialize, Serialize};

/// Exit codes of `strata build`; the Job's podFailurePolicy keys on them.
pub mod exit_code {
    /// The image is built and pushed; the message carries the digest.
    pub const SUCCESS: i32 = 0;
    /// Retrying cannot help (a Containerfile step failed, bad credentials, invalid reference).
    pub const TERMINAL: i32 = 3;
    /// Retrying may help (registry unreachable or 5xx, out of space, terminated).
    pub const TRANSIENT: i32 = 4;
}

/// Kubernetes keeps at most 4096 bytes of a termination message.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Whether a failed build is worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    Terminal,
    Transient,
}

impl FailureClass {
    pub fn exit_code(self) -> i32 {
        match self {
            FailureClass::Terminal => exit_code::TERMINAL,
            FailureClass::Transient => exit_code::TRANSIENT,
        }
    }
}

/// The one JSON line written to the termination log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TerminationMessage {
    #[serde(rename_all = "camelCase")]
    Success {
        digest: String,
        size_bytes: u64,
        build_seconds: f64,
        push_seconds: f64,
    },
    #[serde(rename_all = "camelCase")]
    Failure {
        class: FailureClass,
        reason: String,
        message: String,
        log_tail: String,
    },
}

impl TerminationMessage {
    /// The JSON line, at most [`MAX_MESSAGE_BYTES`]: the log tail is trimmed from the front first,
    /// then the message; a digest is never trimmed.
    pub fn to_line(&self) -> String {
        let line = |m: &TerminationMessage| serde_json::to_string(m).unwrap_or_default();
        let mut message = self.clone();
        loop {
            let text = line(&message);
            if text.len() <= MAX_MESSAGE_BYTES {
                return text;
            }
            let excess = text.len() - MAX_MESSAGE_BYTES;
            match &mut message {
                TerminationMessage::Success { .. } => return text,
                TerminationMessage::Failure { log_tail, .. } if !log_tail.is_empty() => {
                    *log_tail = keep_tail(log_tail, log_tail.len().saturating_sub(excess + 16));
                }
                TerminationMessage::Failure { message, .. } => {
                    *message = keep_head(message, message.len().saturating_sub(excess + 16));
                }
            }
        }
    }

    /// Parses what the controller reads back from the pod status.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text.trim()).ok()
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn keep_tail(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

fn keep_head(text: &str, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Which buildah command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Build,
    Push,
}

/// Classifies a failed buildah run from its output: (class, reason, message).
pub fn classify(stage: Stage, output: &str) -> (FailureClass, &'static str, String) {
    let lower = output.to_ascii_lowercase();
    let last_error = output
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .unwrap_or_else(|| output.lines().last().unwrap_or_default())
        .trim()
        .to_string();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if has(&[
        "unauthorized",
        "authentication required",
        "denied",
        "invalid username/password",
        "403 forbidden",
    ]) {
        return (
            FailureClass::Terminal,
            "AuthFailed",
            format!("the registry refused the credentials: {last_error}"),
        );
    }
    if has(&["no space left on device"]) {
        return (FailureClass::Transient, "OutOfSpace", last_error);
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
    ]) {
        return (FailureClass::Transient, "RegistryUnavailable", last_error);
    }
    if has(&[
        "invalid reference format",
        "repository name must",
        "manifest unknown",
        "name unknown",
    ]) {
        return (FailureClass::Terminal, "InvalidReference", last_error);
    }
    if stage == Stage::Build
        && let Some(step) = failed_step(output)
    {
        return (
            FailureClass::Terminal,
            "StepFailed",
            format!("step {step} failed: {last_error}"),
        );
    }
    match stage {
        Stage::Build => (FailureClass::Transient, "BuildFailed", last_error),
        Stage::Push => (FailureClass::Transient, "PushFailed", last_error),
    }
}

/// The instruction of the step buildah reports as failed (`error building at STEP "RUN x": …`).
pub fn failed_step(output: &str) -> Option<String> {
    let at = output.rfind("building at STEP \"")?;
    let rest = &output[at + "building at STEP \"".len()..];
    let end = rest.find("\": ").or_else(|| rest.find('"'))?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_line_shape() {
        let m = TerminationMessage::Success {
            digest: format!("sha256:{}", "a".repeat(64)),
            size_bytes: 10,
            build_seconds: 1.5,
            push_seconds: 0.25,
        };
        let line = m.to_line();
        assert!(line.starts_with("{\"digest\":\"sha256:"), "{line}");
        assert!(line.contains("\"sizeBytes\":10"));
        assert_eq!(TerminationMessage::parse(&line), Some(m));
    }

    #[test]
    fn failure_is_trimmed_to_4k_keeping_the_end_of_the_log() {
        let m = TerminationMessage::Failure {
            class: FailureClass::Terminal,
            reason: "StepFailed".into(),
            message: "step RUN false failed".into(),
            log_tail: format!("{}THE END", "é".repeat(5000)),
        };
        let line = m.to_line();
        assert!(line.len() <= MAX_MESSAGE_BYTES, "{}", line.len());
        let Some(TerminationMessage::Failure {
            log_tail,
            message,
            class,
            ..
        }) = TerminationMessage::parse(&line)
        else {
            panic!("not a failure: {line}")
        };
        assert!(log_tail.ends_with("THE END"));
        assert_eq!(message, "step RUN false failed");
        assert_eq!(class, FailureClass::Terminal);
    }

    #[test]
    fn huge_message_without_tail_is_trimmed() {
        let m = TerminationMessage::Failure {
            class: FailureClass::Transient,
            reason: "BuildFailed".into(),
            message: "x".repeat(10_000),
            log_tail: String::new(),
        };
        assert!(m.to_line().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn classification() {
        let step = "STEP 2/3: RUN false\nError: building at STEP \"RUN false\": while running runtime: exit status 1\n";
        let (class, reason, message) = classify(Stage::Build, step);
        assert_eq!((class, reason), (FailureClass::Terminal, "StepFailed"));
        assert!(message.starts_with("step RUN false failed"), "{message}");

        let refused = "Error: pushing image: dial tcp 10.0.0.1:5000: connect: connection refused";
        assert_eq!(classify(Stage::Push, refused).0, FailureClass::Transient);
        assert_eq!(classify(Stage::Push, refused).1, "RegistryUnavailable");

        let auth =
            "Error: writing blob: initiating layer upload: unauthorized: authentication required";
        assert_eq!(classify(Stage::Push, auth).1, "AuthFailed");
        assert_eq!(classify(Stage::Push, auth).0, FailureClass::Terminal);

        assert_eq!(
            classify(Stage::Build, "Error: no space left on device").1,
            "OutOfSpace"
        );
        assert_eq!(
            classify(Stage::Push, "something odd").0,
            FailureClass::Transient
        );
    }
}
