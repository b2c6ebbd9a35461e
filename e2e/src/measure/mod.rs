//! Operating and observing the deployed controller and its builder pods for measurements
//! (`make bench`; usable by tests): the controller deployed with chosen options and its leader
//! ([`deploy`]), the registry's access log ([`registry_log`]), and what a pod's containers use
//! — memory and CPU from their cgroups, disk from the kubelet's volume directories
//! ([`pod_usage`]).

pub mod deploy;
pub mod pod_usage;
pub mod registry_log;
