//! Reconcile errors. The kind decides how soon to retry and labels metrics.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer machinery failed (adding, removing, or the cleanup itself).
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// An object could not be (de)serialised; a bug, or a CRD newer than this controller.
    #[error("serialisation: {0}")]
    Serialization(#[from] serde_json::Error),
}

impl Error {
    /// Metric label and Event reason suffix.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Serialization(_) => "serialization",
        }
    }

    /// When to look again: conflicts are retried at once, a bug waits for a change (or 5 min).
    pub fn retry_after(&self) -> Duration {
        match self.kind() {
            "conflict" => Duration::from_secs(1),
            "serialization" => Duration::from_secs(300),
            "forbidden" => Duration::from_secs(60),
            _ => Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_the_retry() {
        let conflict = Error::Kube(kube::Error::Api(
            kube::core::Status::failure("conflict", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert_eq!(conflict.kind(), "conflict");
        assert_eq!(conflict.retry_after(), Duration::from_secs(1));
        let bug = Error::Serialization(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(bug.retry_after(), Duration::from_secs(300));
    }
}
