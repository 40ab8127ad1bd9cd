use std::path::PathBuf;
use std::sync::Arc;

/// Why the audit store could not do what was asked. Clone, so one writer failure can be
/// handed to every caller waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// DuckDB could not open (or create the schema in) the store.
    #[error("audit store {}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    /// The writer hit an error and records nothing more; the gateway must refuse new work.
    #[error("the audit store failed and records nothing more: {0}")]
    Failed(Arc<str>),
    /// This one record could not be committed (the writer goes on with the others); the
    /// request it records must not go ahead.
    #[error("the audit store could not record this request: {0}")]
    Unrecorded(Arc<str>),
    /// The writer was shut down.
    #[error("the audit writer has shut down")]
    Closed,
    /// A query the auditor commands refuse: not a single read-only SELECT over the audit
    /// tables.
    #[error("refused: {0}")]
    NotReadOnly(String),
    /// The query could not be parsed.
    #[error("cannot parse the query: {0}")]
    Parse(String),
    /// DuckDB refused or failed a query.
    #[error("{0}")]
    Query(String),
    /// An auditor's query ran past `audit.query_timeout` and was cancelled.
    #[error("the query ran longer than {0:?} (audit.query_timeout) and was cancelled")]
    TimedOut(std::time::Duration),
    /// A file or folder the command needs.
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

impl Error {
    pub(super) fn open(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
        Error::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }

    pub(super) fn query(e: duckdb::Error) -> Error {
        Error::Query(e.to_string())
    }
}
