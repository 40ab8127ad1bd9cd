//! The tables, created when a store is opened, and the ways to open one.
//!
//! `events` is the record: one row per statement, push, refusal, error or approval step,
//! in `seq` order, each chained to the one before by `prev_hash`/`hash` ([`super::chain`]).
//! `ref_updates` holds a push's ref updates and is covered by its event's hash.
//! `sessions` and `approvals` are summaries kept for convenient queries (a session's
//! `ended_at` and an approval's `state` change after the row is written), so they are not
//! chained: what happened in a session or to an approval is in `events`.

use std::path::Path;

use duckdb::{AccessMode, Config, Connection};

use super::Error;

pub const SESSIONS: &str = "sessions";
pub const EVENTS: &str = "events";
pub const APPROVALS: &str = "approvals";

/// The `end_reason` of a session still open when its gateway stopped without closing it.
pub const CUT_BY_A_STOP: &str =
    "the gateway stopped before the session ended (closed when it started again)";
pub const REF_UPDATES: &str = "ref_updates";
/// Schema version and chain format, for later migrations.
pub const META: &str = "portcullis_meta";

/// The tables an auditor's query may read.
pub const TABLES: [&str; 4] = [SESSIONS, EVENTS, APPROVALS, REF_UPDATES];

pub const SCHEMA_VERSION: &str = "2";

/// WAL size at which the writer's commit checkpoints, at most (see [`Store::open_with`]).
pub const CHECKPOINT_THRESHOLD: u64 = 256 << 20;

/// Bytes in a size such as `"256MB"`, `"1GiB"` or `"512KB"` (DuckDB's units: KB, MB,
/// GB are powers of 1000, KiB, MiB, GiB of 1024).
pub fn size_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The writer's checkpoint threshold under `memory_limit`: committed rows stay in
/// DuckDB's memory until a checkpoint writes them to the file, and the checkpoint needs
/// memory of its own, so the WAL may grow to a quarter of the limit only.
pub fn checkpoint_threshold(memory_limit: Option<&str>) -> u64 {
    memory_limit
        .and_then(size_bytes)
        .map_or(CHECKPOINT_THRESHOLD, |limit| {
            (limit / 4).clamp(1 << 20, CHECKPOINT_THRESHOLD)
        })
}

/// Columns of `events`, in table order (the writer's Arrow batches follow it).
pub const EVENT_COLUMNS: [&str; 25] = [
    "event_id",
    "session_id",
    "seq",
    "ts",
    "protocol",
    "target",
    "subject",
    "groups",
    "client_addr",
    "prompt",
    "kind",
    "statement",
    "fingerprint",
    "decision",
    "rule_ids",
    "monitored_rules",
    "message",
    "rows",
    "masked_columns",
    "result",
    "duration_us",
    "error",
    "prev_hash",
    "hash",
    "parameters",
];

const DDL: &str = "
CREATE TABLE IF NOT EXISTS portcullis_meta (
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id VARCHAR NOT NULL,
    protocol VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    subject VARCHAR,
    groups VARCHAR[],
    client_addr VARCHAR,
    started_at TIMESTAMP NOT NULL,
    ended_at TIMESTAMP,
    end_reason VARCHAR
);
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,
    session_id VARCHAR NOT NULL,
    seq BIGINT NOT NULL,
    ts TIMESTAMP NOT NULL,
    protocol VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    subject VARCHAR,
    groups VARCHAR[],
    client_addr VARCHAR,
    prompt VARCHAR,
    kind VARCHAR NOT NULL,
    statement VARCHAR,
    fingerprint VARCHAR,
    decision VARCHAR NOT NULL,
    rule_ids VARCHAR[],
    monitored_rules VARCHAR[],
    message VARCHAR,
    rows BIGINT,
    masked_columns VARCHAR[],
    result VARCHAR,
    duration_us BIGINT,
    error VARCHAR,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL,
    parameters VARCHAR
);
CREATE TABLE IF NOT EXISTS approvals (
    approval_id VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    requested_at TIMESTAMP NOT NULL,
    decided_at TIMESTAMP,
    approver VARCHAR,
    state VARCHAR NOT NULL,
    reason VARCHAR
);
CREATE TABLE IF NOT EXISTS ref_updates (
    event_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    ref VARCHAR NOT NULL,
    old_oid VARCHAR NOT NULL,
    new_oid VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    forced BOOLEAN NOT NULL,
    commits BIGINT
);
";

/// What to select for `events.parameters`: the column, or NULL in a schema-1 store opened
/// read-only (only the writer migrates).
pub fn parameters_column(conn: &Connection) -> &'static str {
    let present: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM information_schema.columns \
             WHERE table_name = 'events' AND column_name = 'parameters'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(true);
    if present {
        "parameters"
    } else {
        "NULL::VARCHAR AS parameters"
    }
}

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The writer: creates the file and the schema; no file or network access for SQL.
    Write,
    /// The writer again, after DuckDB gave up on its connection: as `Write`, but the
    /// sessions still open are the running gateway's own.
    Reopen,
    /// An auditor's query: read-only, no file or network access, configuration locked.
    Query,
    /// `audit export`: read-only, but `COPY ... TO` may write files.
    Export,
}

impl Access {
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::Reopen)
    }
}

/// An open audit store: one DuckDB connection.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating when missing) the store at `path` for writing and creates the
    /// schema.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = portcullis::audit::Store::open(&dir.path().join("audit.duckdb")).unwrap();
    /// let n: i64 = store
    ///     .connection()
    ///     .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
    ///     .unwrap();
    /// assert_eq!(n, 0);
    /// ```
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, Access::Write, None)
    }

    /// Opens an existing store read-only with DuckDB's own guards on: external access
    /// (files, network, extensions) disabled and the configuration locked, so not even a
    /// query that slipped past [`super::query::check_read_only`] could change that.
    pub fn open_read_only(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, Access::Query, None)
    }

    /// Opens the store at `path`; `memory_limit` is DuckDB's (`"256MB"`), its default when
    /// `None`.
    pub fn open_with(
        path: &Path,
        access: Access,
        memory_limit: Option<&str>,
    ) -> Result<Store, Error> {
        if !access.writes() && !path.is_file() {
            return Err(Error::open(path, "no such file"));
        }
        if !access.writes() && super::journal::pending(path) {
            // A gateway stopped without committing what it acknowledged: commit it
            // first, so an auditor never reads a store missing what was made durable.
            drop(Store::open_with(path, Access::Write, memory_limit)?);
        }
        let config = || -> duckdb::Result<Config> {
            let mut c = Config::default()
                .enable_autoload_extension(false)?
                .with("allow_community_extensions", "false")?;
            if let Some(limit) = memory_limit {
                c = c.max_memory(limit)?;
            }
            match access {
                // One thread: the writer appends and commits on its own thread, and DuckDB's
                // idle workers would spin (sched_yield) on the cores the gateway needs.
                // Checkpoints (WAL into the file, compressed) every quarter of the
                // memory limit, at most 256 MB, rather than DuckDB's 16 MB: each one
                // recompresses the table's last, partial row group, so frequent ones cost
                // the writer more than half its time; but rows not yet checkpointed
                // stay in memory, and a commit past the limit fails.
                Access::Write | Access::Reopen => c
                    .access_mode(AccessMode::ReadWrite)?
                    .threads(1)?
                    .with(
                        "checkpoint_threshold",
                        format!("{}B", checkpoint_threshold(memory_limit)),
                    )?
                    .enable_external_access(false),
                Access::Query => c
                    .access_mode(AccessMode::ReadOnly)?
                    .enable_external_access(false)?
                    .with("lock_configuration", "true"),
                Access::Export => c
                    .access_mode(AccessMode::ReadOnly)?
                    .with("lock_configuration", "true"),
            }
        };
        let config = config().map_err(|e| Error::open(path, e))?;
        let conn = Connection::open_with_flags(path, config).map_err(|e| Error::open(path, e))?;
        if access.writes() {
            conn.execute_batch(DDL).map_err(|e| Error::open(path, e))?;
            let version: Option<String> = conn
                .query_row(
                    "SELECT max(value) FROM portcullis_meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| Error::open(path, e))?;
            match version.as_deref() {
                None => {
                    conn.execute(
                        "INSERT INTO portcullis_meta VALUES ('schema_version', ?), ('chain', ?)",
                        [SCHEMA_VERSION, super::chain::FORMAT],
                    )
                    .map_err(|e| Error::open(path, e))?;
                }
                Some(SCHEMA_VERSION) => {}
                // Schema 1 had no `parameters` (the values an execution was bound with).
                Some("1") => {
                    conn.execute_batch(
                        "ALTER TABLE events ADD COLUMN parameters VARCHAR; \
                         UPDATE portcullis_meta SET value = '2' WHERE key = 'schema_version';",
                    )
                    .map_err(|e| Error::open(path, e))?;
                }
                Some(other) => {
                    return Err(Error::open(
                        path,
                        format!("schema version {other}, this build reads {SCHEMA_VERSION}"),
                    ));
                }
            }
        }
        if access == Access::Write {
            super::writer::apply_journal(&conn, path).map_err(|e| Error::open(path, e))?;
            // Sessions the last run never closed (it was killed) are closed now: no
            // session outlives the gateway that served it.
            conn.execute(
                "UPDATE sessions SET ended_at = make_timestamp(?), end_reason = ? \
                 WHERE ended_at IS NULL",
                duckdb::params![super::record::now_us(), CUT_BY_A_STOP],
            )
            .map_err(|e| Error::open(path, e))?;
        }
        Ok(Store { conn })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn into_connection(self) -> Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_duckdb_reads_them_and_the_checkpoint_follows_the_limit() {
        assert_eq!(size_bytes("256MB"), Some(256_000_000));
        assert_eq!(size_bytes("1 GiB"), Some(1 << 30));
        assert_eq!(size_bytes("64mib"), Some(64 << 20));
        assert_eq!(size_bytes("lots"), None);
        assert_eq!(size_bytes("12XB"), None);
        assert_eq!(checkpoint_threshold(Some("256MB")), 64_000_000);
        assert_eq!(checkpoint_threshold(Some("64GB")), CHECKPOINT_THRESHOLD);
        assert_eq!(checkpoint_threshold(Some("2MB")), 1 << 20);
        assert_eq!(checkpoint_threshold(None), CHECKPOINT_THRESHOLD);
    }
}
