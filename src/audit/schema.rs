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

pub const SCHEMA_VERSION: &str = "1";

/// WAL size at which the writer's commit checkpoints (see [`Store::open_with`]).
pub const CHECKPOINT_THRESHOLD: &str = "256MB";

/// Columns of `events`, in table order (the writer's Arrow batches follow it).
pub const EVENT_COLUMNS: [&str; 24] = [
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
    hash VARCHAR NOT NULL
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

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The writer: creates the file and the schema; no file or network access for SQL.
    Write,
    /// An auditor's query: read-only, no file or network access, configuration locked.
    Query,
    /// `audit export`: read-only, but `COPY ... TO` may write files.
    Export,
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
        if access != Access::Write && !path.is_file() {
            return Err(Error::open(path, "no such file"));
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
                // Checkpoints (WAL into the file, compressed) every 256 MB of WAL rather
                // than DuckDB's 16 MB: each one recompresses the table's last, partial row
                // group, so frequent ones cost the writer more than half its time.
                Access::Write => c
                    .access_mode(AccessMode::ReadWrite)?
                    .threads(1)?
                    .with("checkpoint_threshold", CHECKPOINT_THRESHOLD)?
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
        if access == Access::Write {
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
                Some(other) => {
                    return Err(Error::open(
                        path,
                        format!("schema version {other}, this build reads {SCHEMA_VERSION}"),
                    ));
                }
            }
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
