//! The `switchyard` binary: parse the command line, call the library.
#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: the proxy allocates and frees small objects on every request
/// (header maps, bodies' frames, futures); glibc's malloc cost ~8 % of the
/// user-space instructions per request, mimalloc about half as much.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main(switchyard::cli::Cli::parse())
}
