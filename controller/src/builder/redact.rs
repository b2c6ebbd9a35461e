//! Defence in depth: a builder step replaces every credential value it holds with `[redacted]`
//! in everything it writes (its log lines and its termination message), so that even a buildah
//! that printed a secret could not carry it into `kubectl logs` or the MachineOSBuild's status.

use std::path::Path;

use crate::docker_config::secret_values;

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Redacts the values of the auth files that exist among `files`.
    pub fn from_auth_files(files: &[&Path]) -> Self {
        let mut secrets: Vec<String> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .flat_map(|text| secret_values(&text))
            .collect();
        // Longest first, so that a value containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use super::*;

    #[test]
    fn every_form_of_a_credential_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".dockerconfigjson");
        let auth = BASE64.encode("robot:hunter2-very-secret");
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"r.example.com":{{"auth":"{auth}","identitytoken":"tok-abcdef"}}}}}}"#),
        )
        .unwrap();
        let redactor = Redactor::from_auth_files(&[&file, Path::new("/nonexistent")]);
        let text =
            format!("cat printed {auth} and hunter2-very-secret and tok-abcdef; robot stays");
        let out = redactor.redact(&text);
        assert!(
            !out.contains("hunter2-very-secret")
                && !out.contains(&auth)
                && !out.contains("tok-abcdef"),
            "{out}"
        );
        assert!(out.contains("robot stays"));
        assert_eq!(Redactor::default().redact("x"), "x");
    }
}
