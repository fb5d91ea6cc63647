//! Two answers to one request (see `switchyard::fuzzing::mirror_compare`):
//! the mirror's comparison never panics, finds nothing between an answer
//! and itself, is symmetric, and keeps a diff within its bounds.
// No `forbid(unsafe_code)`: the harness macro exports a `no_mangle` symbol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::mirror_compare(data));
