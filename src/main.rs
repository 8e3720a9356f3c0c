//! The `syncsets` binary.

use std::process::ExitCode;

fn main() -> ExitCode {
    syncsets_cli::Args::parse_and_run()
}
