//! The boot check (Strata addition): what a MachineOSConfig asks of it, and what a build's check
//! found.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Timeout of one boot when the config names none: the CoreOS-like base boots in about 3 minutes
/// under software emulation on 2 cores (docs/measurements.md), well under a minute with KVM.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 900;
/// The target a system must reach when the config names none.
pub const DEFAULT_TARGET: &str = "multi-user.target";

/// A systemd unit name: `name.type`, no spaces or shell characters.
const UNIT_PATTERN: &str = r"^[A-Za-z0-9:_.@-]+\.(service|socket|target|mount|automount|swap|path|timer|device|scope|slice)$";

/// bootCheck tunes the boot check of this config's builds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootCheck {
    /// mode is Enabled (the default) or Disabled. Disabled pins what the image gate passed
    /// without booting it, as OpenShift's on-cluster layering does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BootCheckMode>,

    /// timeoutSeconds is how long the boot may take, from power-on until the system reports
    /// (default 900: software emulation is slow; with KVM a boot takes well under a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 7200))]
    pub timeout_seconds: Option<i32>,

    /// target is the systemd target the system must reach (default multi-user.target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[A-Za-z0-9:_.@-]+\.target$")
    )]
    pub target: Option<String>,

    /// activeUnits must be active once the target is reached (for example the unit a fragment
    /// adds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 255), regex(pattern = UNIT_PATTERN)))]
    pub active_units: Vec<String>,

    /// commands are shell commands that must exit 0 once the target is reached, run as root in
    /// the booted system (for example `modinfo mydriver` or `test -x /usr/bin/agent`). Their
    /// output is kept with a failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 1024)))]
    pub commands: Vec<String>,
}

// Whether builds boot before the pin. No doc comment: the schema would take it for the field's
// description.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum BootCheckMode {
    /// Every build boots before the pool is pinned.
    #[default]
    Enabled,
    /// Builds are pinned without booting.
    Disabled,
}

impl BootCheck {
    pub fn enabled(check: Option<&BootCheck>) -> bool {
        check.and_then(|c| c.mode).unwrap_or_default() == BootCheckMode::Enabled
    }
}

/// What one build's boot check found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootCheckResult {
    /// passed is whether the image booted as required.
    pub passed: bool,

    /// seconds is how long the boot took, from power-on until the system reported (or the
    /// timeout).
    #[schemars(range(min = 0))]
    pub seconds: i32,

    /// accelerator is how the VM ran: KVM, or TCG (QEMU's software emulation).
    #[schemars(length(max = 8))]
    pub accelerator: String,

    /// failedUnits are the units that failed in the built image's boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 255)))]
    pub failed_units: Vec<String>,

    /// baseImageFailedUnits are the units the release's base image fails by itself, when this
    /// build booted the base to learn them (only when the built image had failed units and no
    /// earlier build of the same base had recorded them). Those do not fail the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 255)))]
    pub base_image_failed_units: Option<Vec<String>>,
}
