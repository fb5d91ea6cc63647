//! The `switchyard` binary: parse the command line, call the library.
#![forbid(unsafe_code)]

use clap::Parser;

/// jemalloc: every request allocates and frees an 8 KB read buffer (hyper
/// reads ahead while the request still holds the old one) and a few small
/// objects. glibc spent ~1.9k instructions per request on them, jemalloc's
/// thread caches ~0.6k; peak RSS under the load comparison stays ~12 MB
/// (mimalloc, tried too, took it to 25 MB). With its background thread
/// (the `background_threads` feature), pages freed after a burst are given
/// back within jemalloc's decay time (1 s, set in `.cargo/config.toml`;
/// jemalloc's default is 10 s) even when the process then goes
/// quiet: without it, 9000 connections parked after one request each kept
/// 5.5 KB apiece resident, with it 2.2 KB (`benches/compare/idle_conns.py`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    switchyard::cli::main(switchyard::cli::Cli::parse())
}
