//! Defence in depth: a builder step replaces every credential value it holds with `[redacted]`
//! in everything it writes (its log lines and its termination message), so that even a buildah
//! that printed a secret — or fragment code that printed one it was given — could not carry it
//! into `kubectl logs` or the MachineOSBuild's status.
//!
//! What a step holds: its registry auth file (pull or push step); the cluster proxy's
//! credentials (every step: the proxy variables, which buildah passes on to RUN steps); the
//! entitlement's files (the build step of a config that opts in, where RUN steps see them at
//! `/etc/pki/entitlement`). A file is redacted whole and line by line (every line of 16 or more
//! characters but a PEM `-----BEGIN`/`-----END` marker), so a PEM body printed as it is, or with
//! its line breaks removed, is hidden. A value printed transformed (re-encoded, re-wrapped,
//! reversed) is not recognised: redaction is not what keeps fragment code from a credential —
//! only configs that opt in get the entitlement (`spec.entitlement: Mount`).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::docker_config::secret_values;

/// Values shorter than this are not redacted: they would hide ordinary words.
const MIN_SECRET_LEN: usize = 4;
/// Lines of a credential file shorter than this are not redacted on their own (a PEM body's
/// last line can be a few characters; the file's whole text is still redacted).
const MIN_LINE_LEN: usize = 16;
/// The environment variables a step reads the cluster proxy from.
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so that a value containing another is replaced whole.
    secrets: Vec<String>,
}

impl Redactor {
    /// Redacts the values of the auth files that exist among `files`.
    pub fn from_auth_files(files: &[&Path]) -> Self {
        Self::default().with(
            files
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .flat_map(|text| secret_values(&text)),
        )
    }

    /// Also redacts the credentials of the proxy URLs in `urls` (see [`proxy_credentials`]).
    pub fn with_proxies<'a>(self, urls: impl IntoIterator<Item = &'a str>) -> Self {
        self.with(urls.into_iter().flat_map(proxy_credentials))
    }

    /// Also redacts the proxy credentials of this process's environment ([`PROXY_VARIABLES`]).
    pub fn with_proxy_environment(self) -> Self {
        let urls: Vec<String> = PROXY_VARIABLES
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .collect();
        self.with_proxies(urls.iter().map(String::as_str))
    }

    /// Also redacts the files in `dir` (the entitlement's), when it exists: each whole and line
    /// by line (see [`file_secrets`]). Kubernetes' own entries of a volume (`..data`, …) are
    /// skipped; symbolic links to files are followed, as a Secret volume's files are links.
    pub fn with_files_in(self, dir: &Path) -> Self {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return self;
        };
        let texts: Vec<String> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
            .filter(|e| e.path().is_file())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
        self.with_file_texts(texts.iter().map(String::as_str))
    }

    /// Also redacts credential files given by their text (see [`file_secrets`]).
    pub fn with_file_texts<'a>(self, texts: impl IntoIterator<Item = &'a str>) -> Self {
        self.with(texts.into_iter().flat_map(file_secrets))
    }

    fn with(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.secrets.extend(
            values
                .into_iter()
                .filter(|v| v.trim().len() >= MIN_SECRET_LEN),
        );
        self.secrets
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.secrets.dedup();
        self
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

/// What to redact of a credential file's text: the text (trimmed), its body without line
/// breaks, and each line of [`MIN_LINE_LEN`] or more characters that is not a PEM marker.
pub fn file_secrets(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut values = vec![text.trim().to_string(), lines.concat()];
    values.extend(
        lines
            .iter()
            .filter(|l| l.len() >= MIN_LINE_LEN)
            .map(|l| l.to_string()),
    );
    values
}

/// The credentials in a proxy URL `scheme://user:password@host:port/…`: `user:password`, the
/// password, both as written and percent-decoded, and the `Proxy-Authorization: Basic` value of
/// the decoded pair. None when the URL carries no password.
pub fn proxy_credentials(url: &str) -> Vec<String> {
    let rest = url.trim();
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _host)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Vec::new();
    };
    if password.is_empty() {
        return Vec::new();
    }
    let (user_decoded, password_decoded) = (percent_decode(user), percent_decode(password));
    let pair = format!("{user_decoded}:{password_decoded}");
    let mut values = vec![
        userinfo.to_string(),
        password.to_string(),
        pair.clone(),
        password_decoded,
        BASE64.encode(pair),
    ];
    values.dedup();
    values
}

/// `%XX` sequences decoded (invalid ones kept as they are); the result read as UTF-8, lossily.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_proxy_url_s_credentials_are_found_in_every_spelling() {
        assert_eq!(
            proxy_credentials("http://corp%5Cjane:p%40ss:w0rd@proxy.example.com:3128/"),
            [
                "corp%5Cjane:p%40ss:w0rd",
                "p%40ss:w0rd",
                "corp\\jane:p@ss:w0rd",
                "p@ss:w0rd",
                &BASE64.encode("corp\\jane:p@ss:w0rd"),
            ]
        );
        for none in [
            "http://proxy.example.com:3128",
            "http://jane@proxy.example.com:3128",
            "http://jane:@proxy.example.com",
            "proxy.example.com:3128/a@b",
            "",
        ] {
            assert!(proxy_credentials(none).is_empty(), "{none}");
        }
        // Without a scheme, as some set HTTPS_PROXY.
        assert_eq!(
            proxy_credentials("jane:s3cr3t-pw@10.0.0.1:3128")[1],
            "s3cr3t-pw"
        );
        let redactor =
            Redactor::default().with_proxies(["http://jane:s3cr3t-pw@proxy:3128", "http://proxy"]);
        assert_eq!(
            redactor.redact("HTTPS_PROXY=http://jane:s3cr3t-pw@proxy:3128 (s3cr3t-pw)"),
            "HTTPS_PROXY=http://[redacted]@proxy:3128 ([redacted])"
        );
    }

    /// A PEM key: the redactor hides every line of its body and the body without line breaks,
    /// keeps the markers, and ignores Kubernetes' own entries of a Secret volume.
    #[test]
    fn an_entitlement_key_is_hidden_line_by_line_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let lines: Vec<String> = (0..5)
            .map(|i| format!("{i}{}", "AbCdEfGh0123456789+/".repeat(3)))
            .collect();
        let key = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\nQUI=\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let data = dir.path().join("..2026_01_01");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("entitlement-key.pem"), &key).unwrap();
        std::os::unix::fs::symlink(
            data.join("entitlement-key.pem"),
            dir.path().join("entitlement-key.pem"),
        )
        .unwrap();
        std::fs::write(dir.path().join("..stray"), "never-read-as-a-secret").unwrap();
        let redactor = Redactor::default()
            .with_files_in(dir.path())
            .with_files_in(Path::new("/nonexistent"));
        let joined = format!("{}QUI=", lines.concat());
        for printed in [key.as_str(), joined.as_str(), &lines[3]] {
            let out = redactor.redact(printed);
            assert!(
                lines.iter().all(|l| !out.contains(l.as_str())),
                "{printed} -> {out}"
            );
        }
        assert_eq!(redactor.redact(&key).trim(), "[redacted]");
        let marker = "-----BEGIN RSA PRIVATE KEY-----";
        assert_eq!(redactor.redact(marker), marker);
        assert_eq!(
            redactor.redact("never-read-as-a-secret"),
            "never-read-as-a-secret"
        );
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }
}
