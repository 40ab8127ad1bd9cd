//! pkt-lines, push requests, advertisements and reports (src/git/wire/).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portcullis::fuzzing::git_wire(data));
