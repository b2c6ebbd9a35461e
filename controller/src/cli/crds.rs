//! `strata crds`: the CRD YAML generated from the Rust types.

use std::io::Write;
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let yaml = match strata_crds::crds_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("strata crds: cannot serialise the CRDs: {err}");
            return ExitCode::FAILURE;
        }
    };
    match std::io::stdout().lock().write_all(yaml.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("strata crds: {err}");
            ExitCode::FAILURE
        }
    }
}
