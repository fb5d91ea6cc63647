//! Any bytes from an upstream as a response head (the first byte picks a
//! HEAD request and the size of each read): never a panic, the same answer
//! at once and read by read, a sound head when one is parsed.
// No `forbid(unsafe_code)`: the harness macro exports a `no_mangle` symbol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::h1_response(data));
