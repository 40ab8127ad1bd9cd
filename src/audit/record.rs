//! What the gateways hand the writer: owned records, one per row group.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The `decision` column: what happened to a statement, push or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decision {
    Allowed,
    Denied,
    Approved,
    Rejected,
    Expired,
    Error,
    /// Allowed, with rules that only watch (`monitored_rules`) matching.
    Monitored,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Expired => "expired",
            Decision::Error => "error",
            Decision::Monitored => "monitored",
        }
    }
}

/// The `protocol` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Postgres,
    Git,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Git => "git",
        }
    }
}

/// Values of the `kind` column the gateways write.
pub mod kind {
    /// A simple-protocol Query message (one event per statement in it).
    pub const QUERY: &str = "query";
    /// An extended-protocol Parse message.
    pub const PARSE: &str = "parse";
    pub const FUNCTION_CALL: &str = "function_call";
    /// One run of a prepared statement (an extended-protocol Bind), with the values it
    /// was bound with in `parameters`.
    pub const EXECUTE: &str = "execute";
    /// A start-up parameter judged like a `SET`.
    pub const STARTUP: &str = "startup";
    /// A `git push` (its ref updates go to `ref_updates`).
    pub const PUSH: &str = "push";
    /// A connection refused before a session could start (bad token, bad TLS, ...).
    pub const REFUSAL: &str = "refusal";
    /// A protocol or upstream error inside a session.
    pub const ERROR: &str = "error";
    /// A step of an approval (requested, approved, rejected, expired).
    pub const APPROVAL: &str = "approval";
}

/// Microseconds since the Unix epoch (UTC), the unit of every audit timestamp.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A random event or session id: 128 bits, printed like a UUID (version 4). Written
/// straight into its one allocation: it is made for every event.
pub fn new_id() -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut b = rand::random::<u128>().to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(DIGITS[usize::from(byte >> 4)] as char);
        s.push(DIGITS[usize::from(byte & 15)] as char);
    }
    s
}

/// One row of `events` (and, for a push, its rows of `ref_updates`). The writer assigns
/// `seq`, `prev_hash` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    /// Shared by a session's events, like `target`, `subject`, `groups` and
    /// `client_addr`: an event copies pointers, not text.
    pub session_id: Arc<str>,
    /// Microseconds since the Unix epoch, UTC.
    pub ts_us: i64,
    pub protocol: Protocol,
    /// The `[[postgres]]` or `[[git]]` entry's name.
    pub target: Arc<str>,
    /// The identity's subject; `None` before one was established (a refusal).
    pub subject: Option<Arc<str>>,
    pub groups: Arc<[String]>,
    pub client_addr: Option<Arc<str>>,
    pub prompt: Option<Arc<str>>,
    /// See [`kind`].
    pub kind: Cow<'static, str>,
    /// The statement text, or for a push a one-line summary. Shared by the runs of a
    /// prepared statement, as is `fingerprint`.
    pub statement: Option<Arc<str>>,
    pub fingerprint: Option<Arc<str>>,
    pub decision: Decision,
    /// The rules that decided.
    pub rule_ids: Vec<String>,
    /// Rules in monitor mode that matched without deciding.
    pub monitored_rules: Vec<String>,
    /// What the client was told (deny reason, notice).
    pub message: Option<String>,
    /// Rows returned or affected.
    pub rows: Option<i64>,
    pub masked_columns: Vec<String>,
    /// The first `audit.result_rows` rows as sent to the client, as JSON text.
    pub result: Option<String>,
    pub duration_us: Option<i64>,
    /// An upstream or protocol error, as the client saw it.
    pub error: Option<String>,
    /// A push's ref updates, in the order the client sent them.
    pub refs: Vec<RefUpdate>,
    /// An execution's bound values, as a JSON array (text values as strings, binary ones
    /// as `\\x` hex, NULL as null), masked as results are.
    pub parameters: Option<String>,
    /// This event must be committed before the statement or push it records goes
    /// upstream (writes, DDL, pushes). Under `audit.durability = "writes"` its ticket
    /// waits for the commit.
    pub must_be_durable: bool,
}

/// Longest text one event keeps in a field (statement, result sample, message, error,
/// prompt, parameters). Beyond it the field keeps its beginning, its full length and a
/// hash, and says so: one agent's 60 MB statement must not exhaust the writer for
/// everyone. Measured on DuckDB 1.5.6: the store's checkpoints hold strings of 32 KiB and
/// more in memory until they fail (a 64 MB limit fails after about 100 MB of them), and
/// strings of 16 KiB stay within the limit however many arrive.
pub const MAX_FIELD_BYTES: usize = 16 << 10;

/// What [`bounded`] adds to the kept beginning, at most.
const BOUND_NOTE: usize = 160;

/// `text` cut to [`MAX_FIELD_BYTES`] in all, saying how long it was and its SHA-256.
fn bounded(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut end = MAX_FIELD_BYTES - BOUND_NOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... [portcullis: {} bytes in all, sha256 {}; the rest is not kept]",
        &text[..end],
        text.len(),
        super::chain::hex(&Sha256::digest(text.as_bytes()))
    )
}

impl Event {
    /// Cuts every free-text field longer than [`MAX_FIELD_BYTES`] (see [`bounded`]).
    pub fn bound(&mut self) {
        for field in [&mut self.statement, &mut self.prompt] {
            if let Some(text) = field.as_mut()
                && text.len() > MAX_FIELD_BYTES
            {
                *text = bounded(text).into();
            }
        }
        for field in [
            &mut self.result,
            &mut self.message,
            &mut self.error,
            &mut self.parameters,
        ] {
            if let Some(text) = field.as_mut()
                && text.len() > MAX_FIELD_BYTES
            {
                *text = bounded(text);
            }
        }
    }

    /// A new event with a fresh id and the current time; everything optional empty.
    pub fn new(
        session_id: impl Into<Arc<str>>,
        protocol: Protocol,
        target: impl Into<Arc<str>>,
        kind: impl Into<Cow<'static, str>>,
        decision: Decision,
    ) -> Event {
        Event {
            event_id: new_id(),
            session_id: session_id.into(),
            ts_us: now_us(),
            protocol,
            target: target.into(),
            subject: None,
            groups: Arc::from([]),
            client_addr: None,
            prompt: None,
            kind: kind.into(),
            statement: None,
            fingerprint: None,
            decision,
            rule_ids: Vec::new(),
            monitored_rules: Vec::new(),
            message: None,
            rows: None,
            masked_columns: Vec::new(),
            result: None,
            duration_us: None,
            error: None,
            refs: Vec::new(),
            parameters: None,
            must_be_durable: false,
        }
    }
}

/// One row of `ref_updates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    /// The full ref name (`refs/heads/main`).
    pub name: String,
    pub old_oid: String,
    pub new_oid: String,
    /// `create`, `update` or `delete`.
    pub kind: String,
    pub forced: bool,
    /// Commits the update adds, when known.
    pub commits: Option<i64>,
}

/// A session that started: one row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub session_id: String,
    pub protocol: Protocol,
    pub target: String,
    pub subject: Option<String>,
    pub groups: Vec<String>,
    pub client_addr: Option<String>,
    pub started_us: i64,
}

/// A session that ended: sets `ended_at` and `end_reason` on its `sessions` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session_id: String,
    /// The `started_at` its `sessions` row holds: the writer finds the row by it
    /// without reading the whole table. Journals written before it was kept lack it.
    #[serde(default)]
    pub started_us: Option<i64>,
    pub ended_us: i64,
    pub reason: Option<String>,
}

/// The state of an approval: one row of `approvals`, replaced on each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approval_id: String,
    /// The held statement's or push's event.
    pub event_id: String,
    pub requested_us: i64,
    pub decided_us: Option<i64>,
    pub approver: Option<String>,
    /// `pending`, `approved`, `rejected`, `expired`.
    pub state: String,
    pub reason: Option<String>,
}

/// Anything the writer stores. Each variant is boxed so that a record is two words: the
/// writer's channel holds 8,192 of them in blocks it allocates as it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Event(Box<Event>),
    SessionStart(Box<SessionStart>),
    SessionEnd(Box<SessionEnd>),
    Approval(Box<Approval>),
}

impl Record {
    /// Whether `audit.durability = "writes"` makes this record's ticket wait for the
    /// commit: events flagged [`Event::must_be_durable`] and approval steps.
    pub fn must_be_durable(&self) -> bool {
        match self {
            Record::Event(e) => e.must_be_durable,
            Record::Approval(_) => true,
            Record::SessionStart(_) | Record::SessionEnd(_) => false,
        }
    }
}

impl From<Event> for Record {
    fn from(e: Event) -> Record {
        Record::Event(Box::new(e))
    }
}

impl From<SessionStart> for Record {
    fn from(s: SessionStart) -> Record {
        Record::SessionStart(Box::new(s))
    }
}

impl From<SessionEnd> for Record {
    fn from(s: SessionEnd) -> Record {
        Record::SessionEnd(Box::new(s))
    }
}

impl From<Approval> for Record {
    fn from(a: Approval) -> Record {
        Record::Approval(Box::new(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_version_4_uuids() {
        let a = new_id();
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{a}"
        );
        assert!(
            a.bytes()
                .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert!(groups[2].starts_with('4'), "{a}");
        assert!(
            matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{a}"
        );
        // DuckDB reads it as a UUID, as auditors may cast it.
        let conn = duckdb::Connection::open_in_memory().unwrap();
        let back: String = conn
            .query_row("SELECT CAST(CAST(? AS UUID) AS VARCHAR)", [&a], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(back, a);
        assert_ne!(new_id(), a);
    }
}
