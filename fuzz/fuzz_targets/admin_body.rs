//! Any bytes as the body of an admin route (the first byte picks the
//! route): never a panic, always 400, 413 or 422 when refused.
// No `forbid(unsafe_code)`: the harness macro exports a `no_mangle` symbol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::admin_body(data));
