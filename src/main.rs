//! The `switchyard` binary: parse the command line, call the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    switchyard::cli::main(switchyard::cli::Cli::parse())
}
