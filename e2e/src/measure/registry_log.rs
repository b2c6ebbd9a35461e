//! The plain-HTTP registry's access log (`<cluster dir>/logs/registry.log`; Debian's
//! docker-registry writes one combined-format line per request beside its own messages):
//! requests by client address, method and path, with the bytes it sent back.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Cluster;

/// One request, as the access log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's address (a pod's IP, or the node's for processes on the host).
    pub client: String,
    /// `29/Nov/2026:21:48:37 +0000` (seconds).
    pub time: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Response bytes the registry sent (0 for uploads: what a client sends is not logged).
    pub bytes: u64,
    pub agent: String,
}

/// What a request was about (registry API v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `/v2/` (the version check).
    Base,
    Manifest,
    Blob,
    /// `/v2/<name>/blobs/uploads/…` (starting, sending or finishing an upload, or a mount).
    Upload,
    Tags,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Base => "version check",
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
            Kind::Upload => "upload",
            Kind::Tags => "tags",
            Kind::Other => "other",
        }
    }
}

impl Request {
    pub fn kind(&self) -> Kind {
        let path = self.path.split('?').next().unwrap_or_default();
        if path == "/v2/" || path == "/v2" {
            Kind::Base
        } else if path.contains("/blobs/uploads") {
            Kind::Upload
        } else if path.contains("/blobs/") {
            Kind::Blob
        } else if path.contains("/manifests/") {
            Kind::Manifest
        } else if path.ends_with("/tags/list") {
            Kind::Tags
        } else {
            Kind::Other
        }
    }

    /// The digest a blob request names (`sha256:…`).
    pub fn blob_digest(&self) -> Option<&str> {
        if self.kind() != Kind::Blob {
            return None;
        }
        let path = self.path.split('?').next()?;
        path.rsplit('/').next().filter(|d| d.starts_with("sha256:"))
    }

    /// The repository (`strata-test/os-coreos`) the request is about.
    pub fn repository(&self) -> Option<&str> {
        let rest = self.path.strip_prefix("/v2/")?;
        let end = ["/blobs/", "/manifests/", "/tags/"]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()?;
        Some(&rest[..end])
    }

    /// The blob an upload completed (`PUT …/blobs/uploads/<id>?…&digest=sha256%3A…` answered
    /// 201): its content was sent in this request or the ones before it (a mount is a POST).
    pub fn uploaded_digest(&self) -> Option<String> {
        if self.method != "PUT" || self.kind() != Kind::Upload || self.status != 201 {
            return None;
        }
        let query = self.path.split_once('?')?.1;
        let value = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("digest="))?;
        Some(value.replace("%3A", ":").replace("%3a", ":"))
    }

    /// A blob's content sent back (`GET …/blobs/sha256:…` answered 200 or 206).
    pub fn is_blob_download(&self) -> bool {
        self.method == "GET"
            && self.kind() == Kind::Blob
            && (self.status == 200 || self.status == 206)
    }
}

/// Parses one combined-format line:
/// `10.244.0.16 - - [29/Nov/2026:21:48:37 +0000] "GET /v2/x/blobs/sha256:… HTTP/1.1" 200 7079076 "" "Buildah/1.39.3"`.
/// The registry's own messages (`time="…" level=…`) are not requests: `None`.
pub fn parse_line(line: &str) -> Option<Request> {
    let (client, rest) = line.split_once(' ')?;
    if client.starts_with("time=") {
        return None;
    }
    let rest = rest.strip_prefix("- - [")?;
    let (time, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut fields = rest.splitn(3, ' ');
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().unwrap_or(0);
    let agent = fields
        .next()
        .and_then(|r| r.rsplit_once(" \""))
        .map(|(_, a)| a.trim_end_matches('"').to_string())
        .unwrap_or_default();
    Some(Request {
        client: client.to_string(),
        time: time.to_string(),
        method,
        path,
        status,
        bytes,
        agent,
    })
}

/// A reader of the access log that returns only what was logged since its last read.
#[derive(Debug, Clone)]
pub struct AccessLog {
    path: PathBuf,
    offset: u64,
}

impl AccessLog {
    /// The log of the cluster's plain-HTTP registry, positioned at its current end.
    pub fn of(cluster: &Cluster) -> Self {
        Self::at_end(&cluster.dir.join("logs/registry.log"))
    }

    /// `path`, positioned at its current end.
    pub fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// The requests logged since the last read (a log that got shorter — the registry was
    /// restarted with a new one — is read from its start).
    pub fn read_new(&mut self) -> Result<Vec<Request>> {
        let mut file = std::fs::File::open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // Only whole lines; a line being written stays for the next read.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += whole as u64;
        Ok(String::from_utf8_lossy(&bytes[..whole])
            .lines()
            .filter_map(parse_line)
            .collect())
    }
}

/// Requests counted by `METHOD kind` (e.g. `GET blob`), with the bytes sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: BTreeMap<String, u64>,
    pub bytes_sent: u64,
}

impl Counts {
    pub fn of<'a>(requests: impl IntoIterator<Item = &'a Request>) -> Self {
        let mut counts = Counts::default();
        for r in requests {
            *counts
                .requests
                .entry(format!("{} {}", r.method, r.kind().as_str()))
                .or_insert(0) += 1;
            counts.bytes_sent += r.bytes;
        }
        counts
    }

    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// `GET blob: 48, HEAD manifest: 1` (empty: `none`).
    pub fn describe(&self) -> String {
        if self.requests.is_empty() {
            return "none".into();
        }
        self.requests
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_skips_the_registrys_own_messages() {
        let get = parse_line(r#"10.244.0.16 - - [29/Nov/2026:21:48:37 +0000] "GET /v2/strata-test/os-coreos/blobs/sha256:f46b HTTP/1.1" 200 7079076 "" "Buildah/1.39.3""#).unwrap();
        assert_eq!(get.client, "10.244.0.16");
        assert_eq!(get.time, "29/Nov/2026:21:48:37 +0000");
        assert_eq!(
            (get.method.as_str(), get.status, get.bytes),
            ("GET", 200, 7079076)
        );
        assert_eq!(get.agent, "Buildah/1.39.3");
        assert_eq!(get.kind(), Kind::Blob);
        assert!(get.is_blob_download());
        assert_eq!(get.blob_digest(), Some("sha256:f46b"));
        assert_eq!(get.repository(), Some("strata-test/os-coreos"));
        let post = parse_line(r#"192.0.2.2 - - [29/Nov/2026:21:42:19 +0000] "POST /v2/a/b/blobs/uploads/?mount=sha256:1&from=c HTTP/1.1" 202 0 "" "Buildah/1.28.2""#).unwrap();
        assert_eq!(post.kind(), Kind::Upload);
        assert_eq!(post.blob_digest(), None);
        assert_eq!(post.repository(), Some("a/b"));
        let head = parse_line(r#"10.244.0.3 - - [29/Nov/2026:21:42:19 +0000] "HEAD /v2/x/manifests/sha256:2 HTTP/1.1" 200 0 "" "strata""#).unwrap();
        assert_eq!(head.kind(), Kind::Manifest);
        assert!(
            parse_line(r#"time="2026-11-29T21:42:07Z" level=warning msg="No HTTP secret""#)
                .is_none()
        );
        let counts = Counts::of([&get, &get, &head]);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.bytes_sent, 2 * 7079076);
        assert_eq!(counts.describe(), "GET blob: 2, HEAD manifest: 1");
    }

    #[test]
    fn an_upload_is_known_by_the_digest_its_last_request_names() {
        let put = parse_line(r#"10.244.0.5 - - [08/Dec/2026:00:02:01 +0000] "PUT /v2/x/worker/blobs/uploads/23b0?_state=mI6K&digest=sha256%3Afd7c HTTP/1.1" 201 0 "" "Buildah/1.39.3""#).unwrap();
        assert_eq!(put.uploaded_digest().as_deref(), Some("sha256:fd7c"));
        let mount = parse_line(r#"192.0.2.2 - - [08/Dec/2026:00:09:39 +0000] "POST /v2/a/blobs/uploads/?from=b&mount=sha256%3A7780 HTTP/1.1" 201 0 "" "Buildah/1.28.2""#).unwrap();
        assert_eq!(mount.uploaded_digest(), None);
        let refused = parse_line(r#"10.244.0.5 - - [08/Dec/2026:00:02:01 +0000] "PUT /v2/x/worker/blobs/uploads/23b0?digest=sha256%3Afd7c HTTP/1.1" 400 0 "" "Buildah/1.39.3""#).unwrap();
        assert_eq!(refused.uploaded_digest(), None);
    }

    #[test]
    fn reads_only_new_whole_lines_and_survives_a_new_log() {
        let dir = std::env::temp_dir().join(format!("strata-registry-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("registry.log");
        let line = |n: u32| {
            format!("10.0.0.1 - - [t] \"GET /v2/x/manifests/{n} HTTP/1.1\" 200 {n} \"\" \"a\"\n")
        };
        std::fs::write(&path, line(1)).unwrap();
        let mut log = AccessLog::at_end(&path);
        assert!(log.read_new().unwrap().is_empty());
        let mut text = line(1) + &line(2);
        text.push_str("10.0.0.1 - - [t] \"GET /v2/x/manif");
        std::fs::write(&path, &text).unwrap();
        let got = log.read_new().unwrap();
        assert_eq!(got.iter().map(|r| r.bytes).collect::<Vec<_>>(), vec![2]);
        std::fs::write(&path, line(3)).unwrap();
        let got = log.read_new().unwrap();
        assert_eq!(got.iter().map(|r| r.bytes).collect::<Vec<_>>(), vec![3]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
