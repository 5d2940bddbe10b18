//! The `kv` binary: parse the command line, run the node, and turn a failed start into
//! one clear line on stderr and a non-zero exit status.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kv::cli::Cli::parse();
    kv::cli::init_logging(&cli);
    match kv::cli::run(cli).map_err(anyhow::Error::from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv: {e:#}");
            ExitCode::FAILURE
        }
    }
}
