//! JWT verification and claim mapping (src/identity).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::jwt(data));
