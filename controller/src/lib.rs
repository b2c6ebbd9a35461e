//! Strata: on-cluster OS image builds for CoreOS pools.
//!
//! One binary, `strata`, with the subcommands in [`cli`]. [`render`] turns a MachineOSConfig and a
//! digest-pinned base into the Containerfile the builder runs.

pub mod builder;
pub mod cli;
pub mod controller;
pub mod registries;
pub mod render;
