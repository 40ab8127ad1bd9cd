//! Makes DuckDB's shared library available at link time and at run time.
//!
//! `libduckdb-sys` (without its `bundled` feature) links `-lduckdb` from `DUCKDB_LIB_DIR`,
//! which `.cargo/config.toml` sets. This script makes sure the library is there before
//! our binaries and tests link: when `libduckdb.so` is missing it fetches the npm package
//! DuckDB publishes it in (with `npm pack`, so npm's registry and proxy settings apply),
//! checks the tarball against the SHA-512 pinned below, and extracts the library. It then
//! adds the folder to the rpath of everything this package links, so `cargo test`,
//! `cargo run` and the built binary find the library without `LD_LIBRARY_PATH`.
//!
//! The pinned version must be the DuckDB release the `duckdb` crate's bindings were made
//! for: crate 1.10506.x is DuckDB 1.5.6.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha512};

const NPM_PACKAGE: &str = "@duckdb/node-bindings-linux-x64";
const NPM_VERSION: &str = "1.5.6-r.1";
/// The tarball's SHA-512 (npm's `dist.integrity` for this version, as hex).
const NPM_SHA512: &str = "21772b64913a904a8cd19e30c1d5671811d7fdface4b7dd53cd0300d743f43e1\
    6cf386f4e7c41ef78721ac208870d2651bc6375072145387817824315b998dd5";
const LIBRARY: &str = "libduckdb.so";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    let dir = match std::env::var_os("DUCKDB_LIB_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(format!("/var/tmp/portcullis-duckdb/{NPM_VERSION}")),
    };
    println!("cargo:rerun-if-changed={}", dir.join(LIBRARY).display());
    if !dir.join(LIBRARY).is_file()
        && let Err(message) = fetch(&dir)
    {
        panic!(
            "DuckDB's shared library is missing from {} and could not be fetched: {message}\n\
             Install npm, or set DUCKDB_LIB_DIR to a folder holding libduckdb.so of DuckDB 1.5.6.",
            dir.display()
        );
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}

/// Fetches the npm tarball into a scratch folder beside `dir`, verifies it, and moves the
/// library into `dir` with a rename, so concurrent builds never see a partial file.
fn fetch(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let scratch = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let result = fetch_into(dir, &scratch);
    std::fs::remove_dir_all(&scratch).ok();
    result
}

fn fetch_into(dir: &Path, scratch: &Path) -> Result<(), String> {
    let spec = format!("{NPM_PACKAGE}@{NPM_VERSION}");
    let out = Command::new("npm")
        .args(["pack", &spec, "--silent", "--pack-destination"])
        .arg(scratch)
        .current_dir(scratch)
        .output()
        .map_err(|e| format!("running `npm pack {spec}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`npm pack {spec}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let tarball = std::fs::read_dir(scratch)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| format!("`npm pack {spec}` wrote no tarball"))?;
    let bytes = std::fs::read(&tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    let digest: String = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != NPM_SHA512 {
        return Err(format!(
            "{} has SHA-512 {digest}, expected {NPM_SHA512}",
            tarball.display()
        ));
    }
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(scratch)
        .arg(format!("package/{LIBRARY}"))
        .arg("package/LICENSE")
        .status()
        .map_err(|e| format!("running tar: {e}"))?;
    if !status.success() {
        return Err(format!(
            "tar could not extract {LIBRARY} from {}",
            tarball.display()
        ));
    }
    let package = scratch.join("package");
    std::fs::rename(package.join("LICENSE"), dir.join("LICENSE")).map_err(|e| e.to_string())?;
    std::fs::rename(package.join(LIBRARY), dir.join(LIBRARY)).map_err(|e| e.to_string())?;
    Ok(())
}
