//! The audit store: every session, statement, push and decision, recorded in DuckDB,
//! chained by hashes, and queryable with read-only SQL (issue #5).
//!
//! * [`schema`]: the tables (`sessions`, `events`, `approvals`, `ref_updates`) and
//!   [`Store`], which opens a file for writing or, guarded, for auditors.
//! * [`writer`]: [`AuditHandle`], the gateways' side of one writer thread that batches
//!   records over a bounded channel and commits them as `audit.durability` requires.
//! * [`chain`]: `hash = sha256(prev_hash || canonical(event))` and [`verify`].
//! * [`query`], [`replay`], [`export`]: what `portcullis audit` runs on the file.
//!
//! The gateways never touch DuckDB: they build a [`Record`] and hand it to
//! [`AuditHandle::record`], which returns a [`Ticket`] to await when the record must be
//! durable before the statement or push goes upstream.

pub mod chain;
mod error;
pub mod export;
pub mod journal;
pub mod query;
pub mod record;
pub mod replay;
pub mod schema;
pub mod writer;

pub use chain::{Break, Head, Report, verify};
pub use error::Error;
pub use export::export_parquet;
pub use query::{Format, QueryResult, check_read_only, query};
pub use record::{
    Approval, Decision, Event, Protocol, Record, RefUpdate, SessionEnd, SessionStart,
};
pub use replay::replay;
pub use schema::{Store, size_bytes};
pub use writer::{AuditHandle, Durability, Ticket, WriterOptions, WriterStats};
