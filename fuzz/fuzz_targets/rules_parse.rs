//! Rule files (src/policy/parse.rs), then a judgement with what compiled.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::rules_parse(data));
