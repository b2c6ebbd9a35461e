//! The reconcile pipeline, one MachineOSConfig at a time: [`observe`] (read the caches, and the
//! registry through a cache) → [`plan::plan`] (pure: every decision; [`objects`] builds what the
//! plan writes) → [`apply`] (thin: executes the plan with one field manager).

pub mod apply;
pub mod objects;
pub mod observe;
pub mod plan;
