use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    strata::cli::run(strata::cli::Cli::parse())
}
