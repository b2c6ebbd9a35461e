//! The cluster's environment as a build uses it (written by the controller, see
//! `controller/environment`): buildah's registries.conf and policy.json, the CAs trusted for the
//! registries (through `SSL_CERT_DIR`) and inside RUN steps, and what RUN steps get mounted — the
//! entitlement and the repositories, as the MCO's builds get them. Nothing here ends up in an
//! image layer: RUN mounts are bind mounts for the step's duration.

use std::path::{Path, PathBuf};

use strata_crds::contract::builder_pod as pod;

use super::tree::Tree;

/// Where distributions keep the CA bundle their TLS clients read: RHEL/Fedora (the extracted
/// bundle and its usual symlink) and Debian.
const CA_BUNDLES: [&str; 3] = [
    "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "etc/pki/tls/certs/ca-bundle.crt",
    "etc/ssl/certs/ca-certificates.crt",
];

/// A directory argument of `strata build`, used when it exists.
fn present(dir: &Path) -> Option<PathBuf> {
    dir.is_dir().then(|| dir.to_path_buf())
}

#[derive(Clone, Debug, Default)]
pub struct BuildEnvironment {
    dir: Option<PathBuf>,
    entitlement: Option<PathBuf>,
    yum_repos: Option<PathBuf>,
    rpm_gpg: Option<PathBuf>,
}

impl BuildEnvironment {
    pub fn new(environment: &Path, entitlement: &Path, yum_repos: &Path, rpm_gpg: &Path) -> Self {
        Self {
            dir: present(environment),
            entitlement: present(entitlement),
            yum_repos: present(yum_repos),
            rpm_gpg: present(rpm_gpg),
        }
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(name))
            .filter(|f| f.is_file())
    }

    /// The controller's registries.conf (the cluster's mirrors and registry policy).
    pub fn registries_conf(&self) -> Option<PathBuf> {
        self.file(pod::REGISTRIES_CONF)
    }

    /// policy.json when registries are restricted to an allowed list.
    pub fn policy(&self) -> Option<PathBuf> {
        self.file(pod::POLICY_JSON)
    }

    /// The directory Go's TLS reads extra CAs from (`SSL_CERT_DIR`: the system bundle file is
    /// still read), when the cluster has CAs of its own.
    pub fn cert_dir(&self) -> Option<PathBuf> {
        self.file(pod::CA_BUNDLE).and(self.dir.clone())
    }

    /// The cluster's CAs (PEM), empty when none.
    pub fn ca_bundle(&self) -> String {
        self.file(pod::CA_BUNDLE)
            .and_then(|f| std::fs::read_to_string(f).ok())
            .unwrap_or_default()
    }

    /// `--volume` arguments of `buildah bud` for RUN steps: the entitlement and repositories
    /// where RHEL tools look for them, and each CA bundle of `base` extended with the cluster's
    /// CAs (written under `work`). Mounted over paths the base has, so nothing is created in it.
    pub fn run_volumes(&self, base: Option<&Tree>, work: &Path) -> std::io::Result<Vec<String>> {
        let mut volumes = Vec::new();
        for (dir, target) in [
            (&self.entitlement, "/etc/pki/entitlement"),
            (&self.yum_repos, "/etc/yum.repos.d"),
            (&self.rpm_gpg, "/etc/pki/rpm-gpg"),
        ] {
            if let Some(dir) = dir {
                volumes.push(format!("--volume={}:{target}:ro", dir.display()));
            }
        }
        let extra = self.ca_bundle();
        if let (Some(tree), false) = (base, extra.trim().is_empty()) {
            let trust = work.join("trust");
            let mut done: Vec<String> = Vec::new();
            for candidate in CA_BUNDLES {
                let Some(real) = tree.resolve_file(candidate) else {
                    continue;
                };
                if done.contains(&real) {
                    continue;
                }
                let own = tree.read(&real).unwrap_or_default();
                std::fs::create_dir_all(&trust)?;
                let file = trust.join(format!("{}.pem", done.len()));
                let mut content = own;
                if !content.ends_with(b"\n") && !content.is_empty() {
                    content.push(b'\n');
                }
                content.extend_from_slice(extra.as_bytes());
                std::fs::write(&file, content)?;
                volumes.push(format!("--volume={}:/{real}:ro", file.display()));
                done.push(real);
            }
        }
        Ok(volumes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----\n";

    fn environment(with: &[(&str, &str)]) -> (tempfile::TempDir, BuildEnvironment) {
        let dir = tempfile::tempdir().unwrap();
        let env_dir = dir.path().join("environment");
        std::fs::create_dir_all(&env_dir).unwrap();
        for (name, content) in with {
            std::fs::write(env_dir.join(name), content).unwrap();
        }
        let entitlement = dir.path().join("entitlement");
        std::fs::create_dir_all(&entitlement).unwrap();
        let env = BuildEnvironment::new(
            &env_dir,
            &entitlement,
            &dir.path().join("no-yum"),
            &dir.path().join("no-gpg"),
        );
        (dir, env)
    }

    #[test]
    fn run_steps_get_the_entitlement_and_the_base_bundles_extended() {
        let (dir, env) = environment(&[("ca-bundle.crt", CA), ("registries.conf", "")]);
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        std::fs::create_dir_all(b.join("etc/ssl/certs")).unwrap();
        std::fs::write(b.join("etc/ssl/certs/ca-certificates.crt"), "PUBLIC CAS").unwrap();
        let tree = Tree::from_dir(b);
        let work = dir.path().join("work");
        let volumes = env.run_volumes(Some(&tree), &work).unwrap();
        assert_eq!(volumes.len(), 2, "{volumes:?}");
        assert!(volumes[0].ends_with(":/etc/pki/entitlement:ro"));
        assert!(volumes[1].ends_with(":/etc/ssl/certs/ca-certificates.crt:ro"));
        let written = std::fs::read_to_string(work.join("trust/0.pem")).unwrap();
        assert_eq!(written, format!("PUBLIC CAS\n{CA}"));
        assert!(env.registries_conf().is_some() && env.policy().is_none());
        assert!(env.cert_dir().is_some());
    }

    #[test]
    fn without_cluster_cas_nothing_is_mounted_over_the_bundles() {
        let (dir, env) = environment(&[]);
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("etc/ssl/certs")).unwrap();
        std::fs::write(base.path().join("etc/ssl/certs/ca-certificates.crt"), "X").unwrap();
        let tree = Tree::from_dir(base.path());
        let volumes = env.run_volumes(Some(&tree), dir.path()).unwrap();
        assert_eq!(volumes.len(), 1, "only the entitlement: {volumes:?}");
        assert!(env.cert_dir().is_none() && env.registries_conf().is_none());
    }
}
