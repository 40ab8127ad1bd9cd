//! PostgreSQL framing and message decoding (src/pg/frame.rs, src/pg/messages.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::pg_frame(data));
