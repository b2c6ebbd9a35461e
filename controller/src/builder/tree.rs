//! An image's file tree as the image gate reads it: the image's layers in buildah's storage
//! (containers/storage: `<driver>-images/images.json` names its top layer,
//! `<driver>-layers/layers.json` chains the layers), merged the way overlay merges them — the
//! upper layer wins, a whiteout (a 0/0 character device) hides a path below, an opaque directory
//! hides what lies below it. Read from disk, with no mount: the build step has no right to
//! mount outside its own user namespace. A vfs layer is a whole tree already.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a path is in the merged tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
    Other,
}

/// The merged tree: relative paths (no leading `/`) and what they are; names that are not
/// UTF-8 are kept apart (shown lossily).
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub entries: BTreeMap<String, Kind>,
    pub non_utf8: Vec<String>,
    /// Where each regular file's content lies on disk (the layer that provides it).
    files: HashMap<String, PathBuf>,
}

/// Symlinks followed at most this many times when reading a file.
const MAX_LINKS: usize = 16;

#[derive(Deserialize)]
struct StoredImage {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    layer: String,
}

impl StoredImage {
    /// Whether this is `image`: an image ID (64 hex digits, which no name can be) names exactly
    /// one image whatever names point where; a name is looked up as buildah looks it up.
    fn is(&self, image: &str) -> bool {
        if super::is_image_id(image) {
            return self.id == image;
        }
        let local = format!("localhost/{image}");
        self.names.iter().any(|n| n == image || *n == local)
    }
}

#[derive(Deserialize)]
struct StoredLayer {
    id: String,
    #[serde(default)]
    parent: Option<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

impl Tree {
    /// The tree of one directory as it is (a vfs layer, a test tree).
    pub fn from_dir(root: &Path) -> Self {
        let mut tree = Tree::default();
        tree.add_layer(root, &mut HashSet::new(), &mut HashSet::new());
        tree
    }

    /// The tree of `image` (an image ID or a name) in buildah's storage at `storage`, with
    /// storage driver `driver`.
    pub fn from_storage(storage: &Path, driver: &str, image: &str) -> Result<Self, String> {
        let images: Vec<StoredImage> =
            read_json(&storage.join(format!("{driver}-images/images.json")))?;
        let top = images
            .iter()
            .find(|i| i.is(image))
            .map(|i| i.layer.clone())
            .ok_or_else(|| format!("{image} is not in the image storage"))?;
        let layers: Vec<StoredLayer> =
            read_json(&storage.join(format!("{driver}-layers/layers.json")))?;
        let mut chain = Vec::new();
        let mut next = Some(top);
        while let Some(id) = next {
            let layer = layers
                .iter()
                .find(|l| l.id == id)
                .ok_or_else(|| format!("layer {id} of {image} is not in the image storage"))?;
            chain.push(id.clone());
            next = layer.parent.clone();
            if driver == "vfs" {
                break; // a vfs layer holds the whole tree
            }
        }
        let mut tree = Tree::default();
        let (mut hidden, mut opaque) = (HashSet::new(), HashSet::new());
        for id in chain {
            let dir = match driver {
                "vfs" => storage.join("vfs/dir").join(&id),
                other => storage.join(other).join(&id).join("diff"),
            };
            tree.add_layer(&dir, &mut hidden, &mut opaque);
        }
        Ok(tree)
    }

    /// Adds a layer below those already added. `hidden`: paths whited out above (with their
    /// subtrees); `opaque`: directories whose lower contents are hidden.
    fn add_layer(
        &mut self,
        root: &Path,
        hidden: &mut HashSet<String>,
        opaque: &mut HashSet<String>,
    ) {
        let mut new_hidden = Vec::new();
        let mut new_opaque = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let name = rel.to_string_lossy().into_owned();
                if masked(&name, hidden, opaque) {
                    continue;
                }
                let Ok(meta) = path.symlink_metadata() else {
                    continue;
                };
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    new_hidden.push(name); // an overlay whiteout
                    continue;
                }
                if entry.file_name().to_str().is_none() && !self.non_utf8.contains(&name) {
                    self.non_utf8.push(name.clone());
                }
                let kind = if meta.is_dir() {
                    stack.push(path.clone());
                    if is_opaque(&path) {
                        new_opaque.push(name.clone());
                    }
                    Kind::Dir
                } else if meta.is_file() {
                    if !self.entries.contains_key(&name) {
                        self.files.insert(name.clone(), path.clone());
                    }
                    Kind::File
                } else if meta.file_type().is_symlink() {
                    Kind::Symlink(std::fs::read_link(&path).unwrap_or_default())
                } else {
                    Kind::Other
                };
                self.entries.entry(name).or_insert(kind);
            }
        }
        hidden.extend(new_hidden);
        opaque.extend(new_opaque);
    }

    pub fn get(&self, path: &str) -> Option<&Kind> {
        self.entries.get(path)
    }

    /// `path` with its symlinks followed inside the tree (absolute targets from the image's
    /// root), when it ends at a regular file.
    pub fn resolve_file(&self, path: &str) -> Option<String> {
        let mut current = path.trim_start_matches('/').to_string();
        for _ in 0..MAX_LINKS {
            match self.entries.get(&current)? {
                Kind::File => return Some(current),
                Kind::Symlink(target) => {
                    let target = target.to_string_lossy();
                    let joined = match target.strip_prefix('/') {
                        Some(absolute) => absolute.to_string(),
                        None => match current.rsplit_once('/') {
                            Some((parent, _)) => format!("{parent}/{target}"),
                            None => target.into_owned(),
                        },
                    };
                    current = normalize(&joined)?;
                }
                _ => return None,
            }
        }
        None
    }

    /// The content of the regular file at `path` (symlinks followed).
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        let file = self.resolve_file(path)?;
        std::fs::read(self.files.get(&file)?).ok()
    }
}

/// `a/./b/../c` as `a/c`; None when it climbs above the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// Whether an upper layer hid `path`: it or an ancestor was whited out, or an ancestor is opaque.
fn masked(path: &str, hidden: &HashSet<String>, opaque: &HashSet<String>) -> bool {
    if hidden.contains(path) {
        return true;
    }
    let mut prefix = path;
    while let Some((parent, _)) = prefix.rsplit_once('/') {
        if hidden.contains(parent) || opaque.contains(parent) {
            return true;
        }
        prefix = parent;
    }
    false
}

/// An overlay opaque directory: `trusted.overlay.opaque` (rootful) or `user.overlay.opaque`
/// (in a user namespace) set to `y`.
fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|attr| matches!(xattr::get(dir, attr), Ok(Some(v)) if v == b"y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_id_names_its_image_whatever_the_tags_say() {
        let storage = tempfile::tempdir().unwrap();
        let s = storage.path();
        let (built, other) = ("a".repeat(64), "b".repeat(64));
        // The build's tag re-pointed at another image: the ID still finds the built one.
        std::fs::create_dir_all(s.join("overlay-images")).unwrap();
        std::fs::write(
            s.join("overlay-images/images.json"),
            format!(
                r#"[{{"id":"{built}","names":[],"layer":"l1"}},
                   {{"id":"{other}","names":["r/os:build"],"layer":"l2"}}]"#
            ),
        )
        .unwrap();
        std::fs::create_dir_all(s.join("overlay-layers")).unwrap();
        std::fs::write(
            s.join("overlay-layers/layers.json"),
            r#"[{"id":"l1"},{"id":"l2"}]"#,
        )
        .unwrap();
        for (layer, file) in [("l1", "built"), ("l2", "other")] {
            let diff = s.join("overlay").join(layer).join("diff/etc");
            std::fs::create_dir_all(&diff).unwrap();
            std::fs::write(diff.join(file), "").unwrap();
        }
        let by_id = Tree::from_storage(s, "overlay", &built).unwrap();
        assert_eq!(by_id.get("etc/built"), Some(&Kind::File));
        assert_eq!(by_id.get("etc/other"), None);
        let by_name = Tree::from_storage(s, "overlay", "r/os:build").unwrap();
        assert_eq!(by_name.get("etc/other"), Some(&Kind::File));
        // An ID is never taken for a name, nor a name's suffix for an ID.
        assert!(Tree::from_storage(s, "overlay", &"c".repeat(64)).is_err());
    }

    #[test]
    fn files_are_read_through_symlinks_the_way_the_image_sees_them() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc/pki/ca-trust/extracted/pem")).unwrap();
        std::fs::create_dir_all(r.join("etc/pki/tls/certs")).unwrap();
        std::fs::write(
            r.join("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
            "CAS",
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../ca-trust/extracted/pem/tls-ca-bundle.pem",
            r.join("etc/pki/tls/certs/ca-bundle.crt"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/pki/tls/certs/ca-bundle.crt", r.join("etc/absolute"))
            .unwrap();
        std::os::unix::fs::symlink("../../../../x", r.join("etc/pki/escape")).unwrap();
        let tree = Tree::from_dir(r);
        assert_eq!(
            tree.resolve_file("/etc/pki/tls/certs/ca-bundle.crt")
                .as_deref(),
            Some("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")
        );
        assert_eq!(tree.read("etc/absolute").as_deref(), Some(&b"CAS"[..]));
        assert_eq!(tree.read("etc/pki/escape"), None);
        assert_eq!(tree.read("etc/missing"), None);
        assert_eq!(tree.read("etc/pki"), None, "a directory is not a file");
    }

    #[test]
    fn upper_layers_win_and_whiteouts_hide_what_lies_below() {
        let lower = tempfile::tempdir().unwrap();
        let upper = tempfile::tempdir().unwrap();
        for d in ["etc", "usr/lib/modules/1/x", "var"] {
            std::fs::create_dir_all(lower.path().join(d)).unwrap();
        }
        std::fs::write(lower.path().join("etc/a"), "").unwrap();
        std::fs::write(lower.path().join("usr/lib/modules/1/vmlinuz"), "").unwrap();
        std::fs::create_dir_all(upper.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("a", upper.path().join("etc/b")).unwrap();
        // A whiteout can only be made with CAP_MKNOD; a plain file stands for "upper wins" here.
        std::fs::write(upper.path().join("etc/a"), "new").unwrap();
        let mut tree = Tree::default();
        let (mut hidden, mut opaque) = (HashSet::new(), HashSet::new());
        tree.add_layer(upper.path(), &mut hidden, &mut opaque);
        hidden.insert("usr/lib/modules/1".to_string()); // as a whiteout of that directory would
        tree.add_layer(lower.path(), &mut hidden, &mut opaque);
        assert_eq!(tree.get("etc/b"), Some(&Kind::Symlink("a".into())));
        assert_eq!(tree.get("etc/a"), Some(&Kind::File));
        assert_eq!(tree.get("usr/lib/modules/1"), None);
        assert_eq!(tree.get("usr/lib/modules/1/vmlinuz"), None);
        assert_eq!(tree.get("usr/lib/modules"), Some(&Kind::Dir));
        assert!(masked(
            "a/b/c",
            &HashSet::new(),
            &HashSet::from(["a/b".to_string()])
        ));
        assert!(!masked(
            "a/b",
            &HashSet::new(),
            &HashSet::from(["a/b".to_string()])
        ));
    }
}
