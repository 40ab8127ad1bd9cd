//! `portcullis audit replay`: one session's timeline.

use std::fmt::Write as _;
use std::path::Path;

use duckdb::types::Value;

use super::query::{timestamp, to_text};
use super::{Error, Store};

/// The session's summary and its events in `seq` order, as printable lines; `Ok(None)`
/// when the store knows no such session.
pub fn replay(path: &Path, session_id: &str) -> Result<Option<String>, Error> {
    let store = Store::open_read_only(path)?;
    let conn = store.connection();
    let mut out = String::new();
    let session = conn.query_row(
        "SELECT protocol, target, subject, groups, client_addr, epoch_us(started_at), \
         epoch_us(ended_at), end_reason FROM sessions WHERE session_id = ? \
         ORDER BY started_at LIMIT 1",
        [session_id],
        |r| {
            Ok([
                r.get::<_, Value>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ])
        },
    );
    let found_session = match session {
        Ok(
            [
                protocol,
                target,
                subject,
                groups,
                client,
                started,
                ended,
                reason,
            ],
        ) => {
            let opt = |v: &Value| match v {
                Value::Null => "-".to_string(),
                v => to_text(v),
            };
            let at = |v: &Value| match v {
                Value::BigInt(us) => timestamp(*us),
                _ => "-".into(),
            };
            writeln!(
                out,
                "session {session_id}: {} {} as {} {} from {}",
                to_text(&protocol),
                to_text(&target),
                opt(&subject),
                opt(&groups),
                opt(&client)
            )
            .ok();
            write!(out, "  started {}, ended {}", at(&started), at(&ended)).ok();
            if !matches!(reason, Value::Null) {
                write!(out, " ({})", to_text(&reason)).ok();
            }
            out.push('\n');
            true
        }
        Err(duckdb::Error::QueryReturnedNoRows) => false,
        Err(e) => return Err(Error::query(e)),
    };
    let sql = format!(
        "SELECT seq, epoch_us(ts), kind, decision, statement, rule_ids, monitored_rules, \
         message, rows, duration_us, error, prompt, subject, \
         (SELECT list(r.ref || ' ' || r.old_oid || '..' || r.new_oid || ' ' || r.kind \
             || CASE WHEN r.forced THEN ' forced' ELSE '' END ORDER BY r.position) \
          FROM ref_updates r WHERE r.event_id = e.event_id), {} \
         FROM events e WHERE session_id = ? ORDER BY seq",
        super::schema::parameters_column(conn)
    );
    let mut stmt = conn.prepare(&sql).map_err(Error::query)?;
    let mut rows = stmt.query([session_id]).map_err(Error::query)?;
    let mut events = 0;
    let mut prompt: Option<String> = None;
    while let Some(r) = rows.next().map_err(Error::query)? {
        events += 1;
        let v = |i| r.get::<_, Value>(i).unwrap_or(Value::Null);
        let seq: i64 = r.get(0).map_err(Error::query)?;
        let ts: i64 = r.get(1).map_err(Error::query)?;
        let this_prompt: Option<String> = r.get(11).map_err(Error::query)?;
        if this_prompt.is_some() && this_prompt != prompt {
            writeln!(out, "  prompt: {}", this_prompt.as_deref().unwrap_or("")).ok();
        }
        prompt = this_prompt;
        let statement = match v(4) {
            Value::Null => String::new(),
            s => to_text(&s).split_whitespace().collect::<Vec<_>>().join(" "),
        };
        writeln!(
            out,
            "#{seq} {} {} {} {statement}",
            timestamp(ts),
            to_text(&v(2)),
            to_text(&v(3)).to_uppercase()
        )
        .ok();
        let mut details = Vec::new();
        if let Value::Text(p) = v(14) {
            details.push(format!("parameters: {p}"));
        }
        for (label, i) in [("rules", 5), ("monitored", 6)] {
            if let Value::List(items) = v(i)
                && !items.is_empty()
            {
                details.push(format!(
                    "{label}: {}",
                    items.iter().map(to_text).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for (label, i) in [("message", 7), ("rows", 8), ("us", 9), ("error", 10)] {
            let value = v(i);
            if !matches!(value, Value::Null) {
                details.push(format!("{label}: {}", to_text(&value)));
            }
        }
        if !found_session
            && events == 1
            && let Value::Text(s) = v(12)
        {
            details.push(format!("subject: {s}"));
        }
        if !details.is_empty() {
            writeln!(out, "    {}", details.join("; ")).ok();
        }
        if let Value::List(refs) = v(13) {
            for r in refs {
                writeln!(out, "    ref {}", to_text(&r)).ok();
            }
        }
    }
    if !found_session && events == 0 {
        return Ok(None);
    }
    writeln!(
        out,
        "({events} event{})",
        if events == 1 { "" } else { "s" }
    )
    .ok();
    Ok(Some(out))
}
