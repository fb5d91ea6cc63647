//! Any bytes from an upstream as a chunked body (the first byte picks the
//! size of each read), and a valid encoding drawn from them: never a panic
//! or an endless loop, the same answer at once and read by read, and a
//! valid encoding decodes to exactly its chunks.
// No `forbid(unsafe_code)`: the harness macro exports a `no_mangle` symbol.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::h1_chunked(data));
