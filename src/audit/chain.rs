//! The hash chain over `events`: `hash = sha256(prev_hash || canonical(event))`.
//!
//! Every event's `prev_hash` is the `hash` of the event before it in `seq` order (32 zero
//! bytes for `seq` 1), and both are stored as lowercase hex. Editing a row changes its
//! canonical bytes, so its `hash` no longer matches; deleting a row leaves a gap in `seq`
//! and a `prev_hash` that names a missing event; swapping rows' `seq` changes the bytes of
//! both. [`verify`] walks the chain and reports the first event where any of that shows.
//!
//! # Canonical encoding (`sha256-v1`)
//!
//! The bytes `PCAUDIT1`, then each field below in this order, each as a tag byte and a
//! payload; integers are big-endian:
//!
//! | tag | value | payload |
//! |---|---|---|
//! | `0` | NULL | none |
//! | `1` | text | `u32` length, UTF-8 bytes |
//! | `2` | integer | `i64` |
//! | `3` | boolean | one byte, `0` or `1` |
//! | `4` | list of text | `u32` count, then each item as a text field |
//! | `5` | list of ref updates | `u32` count, then each update's fields in `ref_updates` column order (`ref`, `old_oid`, `new_oid`, `kind`, `forced`, `commits`) |
//!
//! Fields: `seq`, `event_id`, `session_id`, `ts` (microseconds since the Unix epoch, UTC),
//! `protocol`, `target`, `subject`, `groups`, `client_addr`, `prompt`, `kind`, `statement`,
//! `fingerprint`, `decision`, `rule_ids`, `monitored_rules`, `message`, `rows`,
//! `masked_columns`, `result`, `duration_us`, `error`, and the event's ref updates in
//! `position` order (an empty list for events that are not pushes).
//!
//! # What the chain cannot show
//!
//! A chain proves the rows are the ones written, in order, up to the last one; it cannot
//! show that rows were cut off the end, or that someone with write access rewrote the
//! chain from some event on. Keeping the head (`seq`, `hash`) somewhere else (a log, a
//! ticket) closes both: `audit verify` prints it.

use std::collections::HashMap;

use duckdb::Connection;
use duckdb::types::Value;
use sha2::{Digest, Sha256};

use super::record::{Event, RefUpdate};
use super::{Error, Store};

/// The chain's format, stored in `portcullis_meta`.
pub const FORMAT: &str = "sha256-v1";
/// `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];
const MAGIC: &[u8] = b"PCAUDIT1";
/// Events [`verify`] reads per query.
const VERIFY_CHUNK: i64 = 50_000;

/// The hashed fields of one event, borrowed from an [`Event`] (writer) or from a row
/// read back (verifier), so both hash exactly the same bytes.
pub(super) struct Fields<'a> {
    pub seq: i64,
    pub event_id: &'a str,
    pub session_id: &'a str,
    pub ts_us: i64,
    pub protocol: &'a str,
    pub target: &'a str,
    pub subject: Option<&'a str>,
    pub groups: Option<&'a [String]>,
    pub client_addr: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub kind: &'a str,
    pub statement: Option<&'a str>,
    pub fingerprint: Option<&'a str>,
    pub decision: &'a str,
    pub rule_ids: Option<&'a [String]>,
    pub monitored_rules: Option<&'a [String]>,
    pub message: Option<&'a str>,
    pub rows: Option<i64>,
    pub masked_columns: Option<&'a [String]>,
    pub result: Option<&'a str>,
    pub duration_us: Option<i64>,
    pub error: Option<&'a str>,
    pub refs: &'a [RefUpdate],
    pub parameters: Option<&'a str>,
}

impl<'a> Fields<'a> {
    pub fn of(seq: i64, e: &'a Event) -> Fields<'a> {
        Fields {
            seq,
            event_id: &e.event_id,
            session_id: &e.session_id,
            ts_us: e.ts_us,
            protocol: e.protocol.as_str(),
            target: &e.target,
            subject: e.subject.as_deref(),
            groups: Some(&e.groups),
            client_addr: e.client_addr.as_deref(),
            prompt: e.prompt.as_deref(),
            kind: &e.kind,
            statement: e.statement.as_deref(),
            fingerprint: e.fingerprint.as_deref(),
            decision: e.decision.as_str(),
            rule_ids: Some(&e.rule_ids),
            monitored_rules: Some(&e.monitored_rules),
            message: e.message.as_deref(),
            rows: e.rows,
            masked_columns: Some(&e.masked_columns),
            result: e.result.as_deref(),
            duration_us: e.duration_us,
            error: e.error.as_deref(),
            refs: &e.refs,
            parameters: e.parameters.as_deref(),
        }
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        int(out, Some(self.seq));
        text(out, Some(self.event_id));
        text(out, Some(self.session_id));
        int(out, Some(self.ts_us));
        text(out, Some(self.protocol));
        text(out, Some(self.target));
        text(out, self.subject);
        list(out, self.groups);
        text(out, self.client_addr);
        text(out, self.prompt);
        text(out, Some(self.kind));
        text(out, self.statement);
        text(out, self.fingerprint);
        text(out, Some(self.decision));
        list(out, self.rule_ids);
        list(out, self.monitored_rules);
        text(out, self.message);
        int(out, self.rows);
        list(out, self.masked_columns);
        text(out, self.result);
        int(out, self.duration_us);
        text(out, self.error);
        out.push(5);
        len(out, self.refs.len());
        for r in self.refs {
            text(out, Some(&r.name));
            text(out, Some(&r.old_oid));
            text(out, Some(&r.new_oid));
            text(out, Some(&r.kind));
            out.push(3);
            out.push(u8::from(r.forced));
            int(out, r.commits);
        }
        // Added with schema 2, after everything else and only when present, so events
        // written before it hash exactly as they did.
        if let Some(p) = self.parameters {
            out.push(6);
            text(out, Some(p));
        }
    }

    /// `sha256(prev || canonical(self))`; `scratch` is reused between calls.
    pub fn hash(&self, prev: &[u8; 32], scratch: &mut Vec<u8>) -> [u8; 32] {
        scratch.clear();
        self.encode(scratch);
        let mut h = Sha256::new();
        h.update(prev);
        h.update(&scratch[..]);
        h.finalize().into()
    }
}

fn len(out: &mut Vec<u8>, n: usize) {
    // Text and lists past 4 GiB cannot reach the writer (messages are capped far below).
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn text(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
}

fn list(out: &mut Vec<u8>, v: Option<&[String]>) {
    match v {
        None => out.push(0),
        Some(items) => {
            out.push(4);
            len(out, items.len());
            for s in items {
                text(out, Some(s));
            }
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The last event of a chain: what to keep elsewhere to detect truncation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

/// Reads the chain's head (`None` for an empty store).
pub(super) fn head(conn: &Connection) -> duckdb::Result<Option<(i64, [u8; 32])>> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(row.map(|(seq, hash)| (seq, unhex32(&hash).unwrap_or(GENESIS))))
}

/// The first event where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The `seq` the chain expected at this point.
    pub seq: i64,
    /// The event found there (empty when the row is missing altogether).
    pub event_id: String,
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Events checked before the first break (all of them when intact).
    pub events: u64,
    /// The last intact event.
    pub head: Option<Head>,
    pub broken: Option<Break>,
}

/// Checks the chain of the store at `path` (opened read-only).
pub fn verify(path: &std::path::Path) -> Result<Report, Error> {
    let store = Store::open_read_only(path)?;
    verify_connection(store.connection())
}

/// Checks the chain over an open connection.
pub fn verify_connection(conn: &Connection) -> Result<Report, Error> {
    verify_in_chunks(conn, VERIFY_CHUNK)
}

fn verify_in_chunks(conn: &Connection, chunk: i64) -> Result<Report, Error> {
    let mut refs: HashMap<String, Vec<RefUpdate>> = HashMap::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT event_id, ref, old_oid, new_oid, kind, forced, commits \
                 FROM ref_updates ORDER BY event_id, position",
            )
            .map_err(Error::query)?;
        let mut rows = stmt.query([]).map_err(Error::query)?;
        while let Some(r) = rows.next().map_err(Error::query)? {
            let get = |i| r.get::<_, String>(i);
            let update = RefUpdate {
                name: get(1).map_err(Error::query)?,
                old_oid: get(2).map_err(Error::query)?,
                new_oid: get(3).map_err(Error::query)?,
                kind: get(4).map_err(Error::query)?,
                forced: r.get(5).map_err(Error::query)?,
                commits: r.get(6).map_err(Error::query)?,
            };
            refs.entry(get(0).map_err(Error::query)?)
                .or_default()
                .push(update);
        }
    }
    let sql = format!(
        "SELECT event_id, session_id, seq, epoch_us(ts), protocol, target, subject, groups, \
         client_addr, prompt, kind, statement, fingerprint, decision, rule_ids, \
         monitored_rules, message, rows, masked_columns, result, duration_us, error, \
         prev_hash, hash, rowid, {} FROM events \
         WHERE seq > ? OR (seq = ? AND rowid > ?) ORDER BY seq, rowid LIMIT ?",
        super::schema::parameters_column(conn)
    );
    let mut stmt = conn.prepare(&sql).map_err(Error::query)?;
    let mut prev = GENESIS;
    let mut expected_seq = 1i64;
    let mut checked = 0u64;
    let mut head = None;
    let mut scratch = Vec::new();
    let mut seen_pushes = 0usize;
    let broken = |seq, event_id: &str, reason: String| Break {
        seq,
        event_id: event_id.to_string(),
        reason,
    };
    // Chunks in (seq, rowid) order keep memory flat however long the chain is.
    let (mut last_seq, mut last_rowid) = (i64::MIN, i64::MIN);
    loop {
        let mut rows = stmt
            .query(duckdb::params![
                last_seq,
                last_seq,
                last_rowid,
                VERIFY_CHUNK
            ])
            .map_err(Error::query)?;
        let mut in_chunk = 0i64;
        while let Some(r) = rows.next().map_err(Error::query)? {
            in_chunk += 1;
            last_rowid = r.get(24).map_err(Error::query)?;
            let s = |i| r.get::<_, String>(i).map_err(Error::query);
            let o = |i| r.get::<_, Option<String>>(i).map_err(Error::query);
            let n = |i| r.get::<_, Option<i64>>(i).map_err(Error::query);
            let l = |i| -> Result<Option<Vec<String>>, Error> {
                match r.get::<_, Value>(i).map_err(Error::query)? {
                    Value::Null => Ok(None),
                    Value::List(items) => items
                        .into_iter()
                        .map(|v| match v {
                            Value::Text(t) => Ok(t),
                            other => Err(Error::Query(format!(
                                "column {} holds {other:?}, not text",
                                super::schema::EVENT_COLUMNS[i]
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some),
                    other => Err(Error::Query(format!(
                        "column {} holds {other:?}, not a list",
                        super::schema::EVENT_COLUMNS[i]
                    ))),
                }
            };
            let event_id = s(0)?;
            let seq: i64 = r.get(2).map_err(Error::query)?;
            last_seq = seq;
            let fail = |reason: String| broken(expected_seq, &event_id, reason);
            if seq != expected_seq {
                let reason = if seq > expected_seq {
                    format!(
                        "seq jumps from {} to {seq}: events are missing",
                        expected_seq - 1
                    )
                } else {
                    format!("seq {seq} appears again after {}", expected_seq - 1)
                };
                return Ok(Report {
                    events: checked,
                    head,
                    broken: Some(fail(reason)),
                });
            }
            let (groups, rule_ids, monitored, masked) = match (l(7), l(14), l(15), l(18)) {
                (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
                (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
                    return Ok(Report {
                        events: checked,
                        head,
                        broken: Some(fail(e.to_string())),
                    });
                }
            };
            let no_refs = Vec::new();
            let event_refs = refs.get(&event_id).unwrap_or(&no_refs);
            if !event_refs.is_empty() {
                seen_pushes += 1;
            }
            let (session_id, protocol, target, kind, decision) =
                (s(1)?, s(4)?, s(5)?, s(10)?, s(13)?);
            let (subject, client_addr, prompt, statement, fingerprint) =
                (o(6)?, o(8)?, o(9)?, o(11)?, o(12)?);
            let (message, result, error, parameters) = (o(16)?, o(19)?, o(21)?, o(25)?);
            let fields = Fields {
                seq,
                event_id: &event_id,
                session_id: &session_id,
                ts_us: r.get(3).map_err(Error::query)?,
                protocol: &protocol,
                target: &target,
                subject: subject.as_deref(),
                groups: groups.as_deref(),
                client_addr: client_addr.as_deref(),
                prompt: prompt.as_deref(),
                kind: &kind,
                statement: statement.as_deref(),
                fingerprint: fingerprint.as_deref(),
                decision: &decision,
                rule_ids: rule_ids.as_deref(),
                monitored_rules: monitored.as_deref(),
                message: message.as_deref(),
                rows: n(17)?,
                masked_columns: masked.as_deref(),
                result: result.as_deref(),
                duration_us: n(20)?,
                error: error.as_deref(),
                refs: event_refs,
                parameters: parameters.as_deref(),
            };
            let (stored_prev, stored_hash) = (s(22)?, s(23)?);
            if unhex32(&stored_prev) != Some(prev) {
                return Ok(Report {
                    events: checked,
                    head,
                    broken: Some(fail(format!(
                        "prev_hash {stored_prev} is not the previous event's hash {}",
                        hex(&prev)
                    ))),
                });
            }
            let computed = fields.hash(&prev, &mut scratch);
            if unhex32(&stored_hash) != Some(computed) {
                return Ok(Report {
                    events: checked,
                    head,
                    broken: Some(fail(
                        "the row's content does not match its hash: it was edited".to_string(),
                    )),
                });
            }
            prev = computed;
            checked += 1;
            head = Some(Head {
                seq,
                hash: stored_hash,
            });
            expected_seq += 1;
        }
        if in_chunk < chunk {
            break;
        }
    }
    if seen_pushes < refs.len() {
        // ref_updates rows whose event is not in the chain were added afterwards.
        let mut orphans: Vec<&String> = refs.keys().collect();
        orphans.sort();
        for id in orphans {
            let exists: i64 = conn
                .query_row(
                    "SELECT count(*) FROM events WHERE event_id = ?",
                    [id],
                    |r| r.get(0),
                )
                .map_err(Error::query)?;
            if exists == 0 {
                return Ok(Report {
                    events: checked,
                    head,
                    broken: Some(Break {
                        seq: expected_seq,
                        event_id: id.clone(),
                        reason: "ref_updates rows name an event that is not in the chain".into(),
                    }),
                });
            }
        }
    }
    Ok(Report {
        events: checked,
        head,
        broken: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditHandle, Decision, Event, Protocol, WriterOptions};

    fn store(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.duckdb");
        let audit = AuditHandle::start(&path, WriterOptions::default()).expect("writer");
        for i in 0..n {
            let mut e = Event::new("s", Protocol::Postgres, "app", "query", Decision::Allowed);
            e.statement = Some(format!("SELECT {i}").into());
            audit
                .record_blocking(e)
                .and_then(|t| t.wait())
                .expect("recorded");
        }
        audit.shutdown().expect("shutdown");
        (dir, path)
    }

    #[test]
    fn chunks_cover_the_whole_chain_and_catch_duplicates_across_them() {
        let (_dir, path) = store(25);
        {
            let conn = Connection::open(&path).expect("open");
            for chunk in [1, 2, 7, 25, 100] {
                let r = verify_in_chunks(&conn, chunk).expect("verify");
                assert_eq!((r.events, r.broken), (25, None), "chunk {chunk}");
            }
            conn.execute_batch("INSERT INTO events SELECT * FROM events WHERE seq = 7")
                .expect("duplicate a row");
            for chunk in [1, 3, 7, 100] {
                let b = verify_in_chunks(&conn, chunk)
                    .expect("verify")
                    .broken
                    .expect("broken");
                assert_eq!(b.seq, 8, "chunk {chunk}");
                assert!(b.reason.contains("seq 7 appears again"), "{}", b.reason);
            }
        }
    }

    #[test]
    fn the_encoding_separates_null_empty_and_adjacent_fields() {
        let e = Event::new("s", Protocol::Git, "t", "push", Decision::Denied);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut f = Fields::of(1, &e);
        f.encode(&mut a);
        f.groups = None;
        f.encode(&mut b);
        assert_ne!(a, b, "NULL list differs from an empty one");
        let mut e2 = e.clone();
        e2.target = "ts".into();
        e2.session_id = "".into();
        let mut e3 = e.clone();
        e3.session_id = "st".into();
        e3.target = "".into();
        let (mut c, mut d) = (Vec::new(), Vec::new());
        Fields::of(1, &e2).encode(&mut c);
        Fields::of(1, &e3).encode(&mut d);
        assert_ne!(c, d, "lengths keep field boundaries");
    }
}
