//! What the integration tests stand on: a private PostgreSQL per test
//! ([`pg`]) and a throwaway certificate authority ([`tls`]).

// Each feature module uses its own subset of these helpers.
#![allow(dead_code)]

pub mod gateway;
pub mod git;
pub mod pg;
pub mod tls;

/// Runs the `portcullis` binary in the crate's folder: (exit code, stdout, stderr).
pub fn portcullis(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
