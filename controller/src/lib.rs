//! Strata: on-cluster OS image builds for CoreOS pools.
//!
//! One binary, `strata`, with the subcommands in [`cli`]. [`render`] turns a MachineOSConfig and a
//! digest-pinned base into the Containerfile the builder runs. The controller and the builder share
//! [`registry_policy`] (mirrors, blocked and insecure registries) and [`docker_config`] (registry
//! credentials); neither imports the other.

pub mod boot;
pub mod builder;
pub mod cli;
pub mod controller;
pub mod docker_config;
pub mod registry_policy;
pub mod render;
