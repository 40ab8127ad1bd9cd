//! SQL facts: portcullis::sql::analyze with both readers, and its cache.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::sql_facts(data));
