//! Issue #14, item 4: every input `cargo fuzz` found a crash with, replayed. An input
//! lives in `fuzz/regressions/<target>/` (named after what it broke) and runs through the
//! same function its fuzz target calls (`portcullis::fuzzing`), so a fix that regresses
//! fails here under plain `cargo test`. `docs/fuzzing.md` says how to add one.

use std::path::{Path, PathBuf};

use portcullis::fuzzing;

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

/// The crash inputs of `target`, by file name.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = regressions().join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut inputs: Vec<_> = entries
        .map(|e| e.expect("a readable regressions folder").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, data)
        })
        .collect();
    inputs.sort();
    inputs
}

fn replay(target: &str) {
    for (name, data) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &data));
        assert!(
            matches!(outcome, Ok(true)),
            "fuzz/regressions/{target}/{name} crashes again"
        );
    }
}

#[test]
fn fuzz_regressions_are_kept_only_for_known_targets() {
    for entry in std::fs::read_dir(regressions()).expect("fuzz/regressions exists") {
        let name = entry.expect("an entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            name == "README.md" || fuzzing::TARGETS.contains(&&*name),
            "fuzz/regressions/{name} names no fuzz target (known: {:?})",
            fuzzing::TARGETS
        );
    }
}

#[test]
fn fuzz_pg_frame() {
    replay("pg_frame");
}

#[test]
fn fuzz_pg_session() {
    replay("pg_session");
}

#[test]
fn fuzz_git_wire() {
    replay("git_wire");
}

#[test]
fn fuzz_rules_parse() {
    replay("rules_parse");
}

#[test]
fn fuzz_sql_facts() {
    replay("sql_facts");
}

#[test]
fn fuzz_jwt() {
    replay("jwt");
}
