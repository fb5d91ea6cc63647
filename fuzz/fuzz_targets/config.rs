//! Any bytes as a config file: never a panic, always a clear error.
// No `forbid(unsafe_code)`: the harness macro exports a `no_mangle` symbol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::config(data));
