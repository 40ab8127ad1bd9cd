//! `portcullis audit export --parquet DIR`: the tables as Parquet, for other engines.

use std::path::{Path, PathBuf};

use super::schema::{self, Access};
use super::{Error, Store};

/// Writes `DIR/<table>.parquet` for every audit table (with DuckDB's own Parquet writer)
/// and returns the files written.
pub fn export_parquet(path: &Path, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let store = Store::open_with(path, Access::Export, None)?;
    let mut written = Vec::new();
    for (table, order) in [
        (schema::SESSIONS, "started_at, session_id"),
        (schema::EVENTS, "seq"),
        (schema::APPROVALS, "requested_at, approval_id"),
        (schema::REF_UPDATES, "event_id, position"),
    ] {
        let file = dir.join(format!("{table}.parquet"));
        let name = file.to_str().ok_or_else(|| Error::Io {
            path: file.clone(),
            message: "not a UTF-8 path".into(),
        })?;
        let sql = format!(
            "COPY (SELECT * FROM {table} ORDER BY {order}) TO '{}' (FORMAT parquet)",
            name.replace('\'', "''")
        );
        store
            .connection()
            .execute_batch(&sql)
            .map_err(Error::query)?;
        written.push(file);
    }
    Ok(written)
}
