//! From a MachineOSConfig and a digest-pinned base image to the Containerfile the builder runs,
//! the inputs hash and the build's content-addressed name. Pure: no I/O. `strata render` and the
//! controller call the same [`render`].

mod containerfile;
mod fragment;
mod references;
mod validate;
mod words;

use serde::Serialize;
use sha2::{Digest, Sha256};
use strata_crds::{ContainerfileArch, ContainerfileEntry, MachineOSConfig};

pub use containerfile::{Containerfile, Instruction, parse};
pub use fragment::{BASE_STAGE, CONFIGS_STAGE};
pub use references::{images_named, trigger_naming_image};
pub use validate::{is_digest_pinned, validate_config};

/// Bumped when the template changes what an identical set of inputs renders to, so that such a
/// change builds anew instead of reusing an image made by the old template.
const RENDER_VERSION: u32 = 1;
/// Hex characters of the inputs hash used in a build's name.
const NAME_HASH_LEN: usize = 12;
/// Longest object name Kubernetes allows.
const MAX_NAME_LEN: usize = 253;
const TEMPLATE: &str = include_str!("Containerfile.tera");
/// The image label carrying the inputs hash (the template writes it on the final stage).
pub const INPUTS_HASH_LABEL: &str = strata_crds::contract::image_labels::INPUTS_HASH;
/// Comment the template puts before the fragment's body: `<marker><fragment line>` tells the
/// builder which fragment line a failing step came from.
pub const FRAGMENT_MARKER: &str = "# strata: fragment line ";

/// The fragment line of `rendered_line` (1-based) of a rendered Containerfile, when it lies in
/// the fragment's body.
pub fn fragment_line(containerfile: &str, rendered_line: usize) -> Option<usize> {
    let lines: Vec<&str> = containerfile
        .lines()
        .take(rendered_line.saturating_sub(1))
        .collect();
    let (index, marker) = lines
        .iter()
        .enumerate()
        .rev()
        .find(|(_, l)| l.starts_with(FRAGMENT_MARKER))?;
    let first: usize = marker[FRAGMENT_MARKER.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(first + rendered_line - (index + 1) - 1)
}

/// A problem in a fragment at a 1-based line of that fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FragmentError {
    pub line: usize,
    pub message: String,
}

impl FragmentError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

/// Why inputs could not be rendered. Every kind is the user's to fix except `Template`.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{source} (in {field})")]
    Fragment {
        field: String,
        source: FragmentError,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("internal error in Strata's Containerfile template: {0}")]
    Template(#[from] tera::Error),
}

impl RenderError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a build depends on; identical inputs give an identical build name and file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInputs {
    #[serde(rename = "machineOSConfig")]
    pub machine_os_config: String,
    /// The base the fragments apply to, pinned by digest (the override or the release base).
    pub base_image: String,
    /// `spec.baseImage` when set.
    pub base_image_override: Option<String>,
    /// Sorted by architecture.
    pub container_file: Vec<ContainerfileEntry>,
    pub rendered_image_push_spec: String,
}

impl BuildInputs {
    /// The inputs of `config` built on `release_base` (used unless `spec.baseImage` overrides it).
    pub fn from_config(config: &MachineOSConfig, release_base: &str) -> Self {
        let mut container_file = config.spec.container_file.clone();
        container_file.sort_by_key(|e| e.containerfile_arch);
        let base_image_override = config.spec.base_image.clone();
        Self {
            machine_os_config: config.metadata.name.clone().unwrap_or_default(),
            base_image: base_image_override
                .clone()
                .unwrap_or_else(|| release_base.to_string()),
            base_image_override,
            container_file,
            rendered_image_push_spec: config.spec.rendered_image_push_spec.clone(),
        }
    }

    /// sha256 (64 hex) over the canonical JSON of the inputs and the render version.
    pub fn hash(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            render_version: u32,
            inputs: &'a BuildInputs,
        }
        let canonical = Canonical {
            render_version: RENDER_VERSION,
            inputs: self,
        };
        // Serialising plain strings and vectors cannot fail.
        let json = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }

    /// `<machineosconfig>-<first 12 hex of the hash>`, the prefix shortened to fit 253 characters.
    pub fn build_name(&self) -> String {
        let hash = self.hash();
        let suffix = &hash[..NAME_HASH_LEN];
        let room = MAX_NAME_LEN - NAME_HASH_LEN - 1;
        let prefix: String = self.machine_os_config.chars().take(room).collect();
        format!("{}-{suffix}", prefix.trim_end_matches(['-', '.']))
    }

    /// Whether some fragment applies to amd64 builds, or there is none at all (the stock base).
    pub fn has_fragment_for_amd64(&self) -> bool {
        self.container_file.is_empty() || self.selected_fragment().is_some()
    }

    /// The fragment built for amd64: the AMD64 entry if present, else NoArch.
    pub fn selected_fragment(&self) -> Option<(usize, &ContainerfileEntry)> {
        let find = |arch| {
            self.container_file
                .iter()
                .enumerate()
                .find(|(_, e)| e.containerfile_arch == arch)
        };
        find(ContainerfileArch::AMD64).or_else(|| find(ContainerfileArch::NoArch))
    }
}

/// The result of rendering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    pub build_name: String,
    pub inputs_hash: String,
    pub containerfile: String,
}

impl Rendered {
    /// sha256 (64 hex) of the rendered Containerfile.
    pub fn containerfile_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.containerfile.as_bytes()))
    }
}

/// Renders the Containerfile for `inputs`. The fragment is checked first; errors name the field
/// and the fragment's line.
pub fn render(inputs: &BuildInputs) -> Result<Rendered, RenderError> {
    if !is_digest_pinned(&inputs.base_image) {
        return Err(RenderError::invalid(
            "baseImage",
            format!(
                "'{}' is not pinned by digest: use repo@sha256:<64 hex>",
                inputs.base_image
            ),
        ));
    }
    let layout = match inputs.selected_fragment() {
        Some((index, entry)) => {
            fragment::analyse(&entry.content).map_err(|source| RenderError::Fragment {
                field: format!("spec.containerFile[{index}].content"),
                source,
            })?
        }
        None => fragment::analyse("").map_err(|source| RenderError::Fragment {
            field: "spec.containerFile".into(),
            source,
        })?,
    };
    let inputs_hash = inputs.hash();

    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template("Containerfile", TEMPLATE)?;
    let mut context = tera::Context::new();
    context.insert("directives", &layout.directives);
    context.insert("preamble", &layout.preamble);
    context.insert("body", &layout.body);
    context.insert("body_first_line", &layout.body_first_line);
    context.insert("fragment_marker", FRAGMENT_MARKER);
    context.insert("multi_stage", &layout.multi_stage);
    context.insert("base_image", &inputs.base_image);
    context.insert("config", &inputs.machine_os_config);
    context.insert("inputs_hash", &inputs_hash);
    let containerfile = tera.render("Containerfile", &context)?;
    check_references(&containerfile, inputs)?;

    Ok(Rendered {
        build_name: inputs.build_name(),
        inputs_hash,
        containerfile,
    })
}

/// Refuses, at the fragment's line, an image reference the builder could not resolve as buildah
/// does ([`references`]): better now, on the config, than as a failed build.
fn check_references(containerfile: &str, inputs: &BuildInputs) -> Result<(), RenderError> {
    let Err(error) = references::images_named(containerfile) else {
        return Ok(());
    };
    match (
        inputs.selected_fragment(),
        fragment_line(containerfile, error.line),
    ) {
        (Some((index, _)), Some(line)) => Err(RenderError::Fragment {
            field: format!("spec.containerFile[{index}].content"),
            source: FragmentError::new(line, error.message),
        }),
        _ => Err(RenderError::invalid(
            "spec.containerFile",
            error.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests;
