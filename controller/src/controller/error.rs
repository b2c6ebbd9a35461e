//! Reconcile errors. The kind decides how soon to retry and labels metrics; a failed write names
//! the write and the object it was for.

use std::fmt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed one of Strata's writes.
    #[error("{write} {object}: {source}")]
    Write {
        write: Write,
        /// The object written: `namespace/name`, or the name of a cluster-scoped object.
        object: String,
        source: kube::Error,
    },
    /// The finalizer machinery failed (adding, removing, or the cleanup itself).
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// The writes Strata makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    CreateBuild,
    ApplyConfigMap,
    ApplySecret,
    CreateJob,
    CreateCacheClaim,
    PatchBuildStatus,
    DeleteJob,
    DeleteSecret,
    DeleteBuild,
    ApplyMachineConfig,
    DeleteMachineConfig,
    /// Taking or releasing Strata's hold (the pool's `spec.paused`).
    HoldPool,
    PatchConfigStatus,
    RemoveRebuildAnnotation,
    /// Reading a builder pod's step logs to keep them.
    ReadLogs,
    /// NetworkPolicy `strata-builder`, before a builder Job is made.
    ApplyNetworkPolicy,
}

impl Write {
    pub fn as_str(self) -> &'static str {
        match self {
            Write::CreateBuild => "create MachineOSBuild",
            Write::ApplyConfigMap => "apply ConfigMap",
            Write::ApplySecret => "apply Secret",
            Write::CreateJob => "create Job",
            Write::CreateCacheClaim => "create PersistentVolumeClaim",
            Write::PatchBuildStatus => "patch status of MachineOSBuild",
            Write::DeleteJob => "delete Job",
            Write::DeleteSecret => "delete Secret",
            Write::DeleteBuild => "delete MachineOSBuild",
            Write::ApplyMachineConfig => "apply MachineConfig",
            Write::DeleteMachineConfig => "delete MachineConfig",
            Write::HoldPool => "set spec.paused of MachineConfigPool",
            Write::PatchConfigStatus => "patch status of MachineOSConfig",
            Write::RemoveRebuildAnnotation => "remove the rebuild annotation of MachineOSConfig",
            Write::ReadLogs => "read the step logs of builder Pod",
            Write::ApplyNetworkPolicy => "apply NetworkPolicy",
        }
    }

    /// Attaches this write and its `object` to a failed request.
    pub fn failed(self, object: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        move |source| Error::Write {
            write: self,
            object: object.into(),
            source,
        }
    }
}

impl fmt::Display for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Metric label and Event reason suffix.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Write {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => "forbidden",
            Error::Write {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "conflict",
            Error::Write { .. } => "kube",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// When to look again: conflicts are retried at once, a refusal waits a minute.
    pub fn retry_after(&self) -> Duration {
        match self.kind() {
            "conflict" => Duration::from_secs(1),
            "forbidden" => Duration::from_secs(60),
            _ => Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API server's answer `code`.
    fn refused(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("no", "Refused")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn kinds_decide_the_retry() {
        let conflict = Write::CreateJob.failed("strata-system/build-x")(refused(409));
        assert_eq!(conflict.kind(), "conflict");
        assert_eq!(conflict.retry_after(), Duration::from_secs(1));
        let finalizer = Error::Finalizer("x".into());
        assert_eq!(finalizer.retry_after(), Duration::from_secs(10));
    }

    #[test]
    fn a_failed_write_names_the_write_and_its_object() {
        let forbidden = Write::ApplyMachineConfig.failed("strata-worker")(refused(403));
        assert_eq!(forbidden.kind(), "forbidden");
        assert!(
            forbidden
                .to_string()
                .starts_with("apply MachineConfig strata-worker: "),
            "{forbidden}"
        );
    }
}
