//! Puts DuckDB's folder in the fuzz targets' rpath, as the main crate's `build.rs` does
//! for its own binaries (a build script's link arguments reach only its own package).
//! `DUCKDB_LIB_DIR` comes from the repository's `.cargo/config.toml` or the environment;
//! the main `build.rs` has already fetched the library there.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Some(dir) = std::env::var_os("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.to_string_lossy());
    }
}
