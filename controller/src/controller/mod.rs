//! `strata controller`: from MachineOSConfig to a pool pinned by digest.
//!
//! Reconcile = observe (read the cluster and the registry) → [`plan::plan`] (pure) → apply (thin,
//! server-side apply with one field manager).

pub mod conditions;
pub mod objects;
pub mod plan;
pub mod settings;

pub use settings::Settings;
