//! The `syncsets` binary.

use std::process::ExitCode;

/// mimalloc: the services allocate many small, short-lived objects from many threads,
/// where glibc's allocator spent a quarter of the hub's CPU and fragmented its memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    syncsets_cli::Args::parse_and_run()
}
