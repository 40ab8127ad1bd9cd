//! A client/server message sequence through the pg session's bookkeeping (src/pg/fuzz.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::pg_session(data));
