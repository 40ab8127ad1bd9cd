//! What a read returned, for its audit event: the row count from CommandComplete and the
//! first `audit.result_rows` rows (RowDescription + DataRow), as JSON text. The frames are
//! only read here, after masking: the sample holds what the agent saw.

use crate::gateway::mask::{MaskedBy, Plan};

/// Results seen since the last ReadyForQuery. The sample is written as JSON text while
/// the frames pass (no value tree): each result set is `{"columns":[...],"rows":[...]}`,
/// several sets an array of them.
pub struct Results {
    keep: usize,
    /// Finished sets, comma-separated.
    sets: Vec<u8>,
    set_count: usize,
    /// The open set's column names and rows, each comma-separated JSON.
    columns: Vec<u8>,
    column_count: usize,
    rows: Vec<u8>,
    row_count: usize,
    /// Rows kept since the last ReadyForQuery, over every set.
    kept: usize,
    count: Option<i64>,
    error: Option<String>,
    /// Columns masked since the last ReadyForQuery (`column:rule`, each once).
    masked: Vec<String>,
}

impl Results {
    pub fn new(keep: usize) -> Results {
        Results {
            keep,
            sets: Vec::new(),
            set_count: 0,
            columns: Vec::new(),
            column_count: 0,
            rows: Vec::new(),
            row_count: 0,
            kept: 0,
            count: None,
            error: None,
            masked: Vec::new(),
        }
    }

    /// Takes note of one server message (`body` without tag and length).
    pub fn observe(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'T' => {
                self.finish_set();
                self.column_count = row_description(body, &mut self.columns);
            }
            b'D' if self.kept < self.keep => {
                let mark = self.rows.len();
                if self.row_count > 0 {
                    self.rows.push(b',');
                }
                if data_row(body, &mut self.rows).is_some() {
                    self.row_count += 1;
                    self.kept += 1;
                } else {
                    self.rows.truncate(mark);
                }
            }
            // COPY ... TO STDOUT: each line of text is a row of the sample.
            b'd' if self.kept < self.keep => {
                if self.row_count > 0 {
                    self.rows.push(b',');
                }
                let line = String::from_utf8_lossy(body);
                json_str(&mut self.rows, line.trim_end_matches('\n'));
                self.row_count += 1;
                self.kept += 1;
            }
            b'C' => {
                if let Some(n) = command_rows(body) {
                    // Saturating: the counts come from the server, and two near i64::MAX
                    // overflowed the sum (issue 14, fuzzing).
                    let count = self.count.get_or_insert(0);
                    *count = count.saturating_add(n);
                }
                self.finish_set();
            }
            b'E' if self.error.is_none() => self.error = error_message(body),
            _ => {}
        }
    }

    /// The first server error since the last ReadyForQuery (`SQLSTATE: message`).
    pub fn take_error(&mut self) -> Option<String> {
        self.error.take()
    }

    /// Takes note of the columns masked in a row, as `column:rule` (each once; a label is
    /// made only the first time).
    pub fn masked(&mut self, plan: &Plan, columns: &[MaskedBy]) {
        for (i, rule) in columns {
            let name = plan.column_name(*i);
            let known = self.masked.iter().any(|m| {
                m.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .is_some_and(|r| r == &**rule)
            });
            if !known {
                self.masked.push(format!("{name}:{rule}"));
            }
        }
    }

    /// The rows affected or returned, the sample as JSON text, and the columns masked;
    /// resets for the next ReadyForQuery.
    pub fn take(&mut self) -> (Option<i64>, Option<String>, Vec<String>) {
        self.finish_set();
        // The sample is copied out at its exact size; the buffers keep their capacity,
        // so a session's later results are written without allocating.
        let sample = match self.set_count {
            0 => None,
            1 => Some(utf8(self.sets.to_vec())),
            _ => {
                let mut all = Vec::with_capacity(self.sets.len() + 2);
                all.push(b'[');
                all.extend_from_slice(&self.sets);
                all.push(b']');
                Some(utf8(all))
            }
        };
        self.sets.clear();
        self.set_count = 0;
        self.kept = 0;
        // A result with a large value grew them: let that go rather than keep it for
        // the session's life.
        for buffer in [&mut self.sets, &mut self.rows, &mut self.columns] {
            if buffer.capacity() > KEEP_BYTES {
                *buffer = Vec::new();
            }
        }
        (self.count.take(), sample, std::mem::take(&mut self.masked))
    }

    fn finish_set(&mut self) {
        if self.column_count > 0 || self.row_count > 0 {
            if self.set_count > 0 {
                self.sets.push(b',');
            }
            self.sets.extend_from_slice(b"{\"columns\":[");
            self.sets.extend_from_slice(&self.columns);
            self.sets.extend_from_slice(b"],\"rows\":[");
            self.sets.extend_from_slice(&self.rows);
            self.sets.extend_from_slice(b"]}");
            self.set_count += 1;
        }
        self.columns.clear();
        self.column_count = 0;
        self.rows.clear();
        self.row_count = 0;
    }
}

/// Buffers larger than this are dropped after a result instead of kept for the next.
const KEEP_BYTES: usize = 64 << 10;

/// Sample bytes as text: built from `str`s and ASCII only, so always UTF-8.
fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `s` as a JSON string (serde_json's escaping, without a value tree).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Column names of a RowDescription, as comma-separated JSON strings; returns how many.
fn row_description(body: &[u8], out: &mut Vec<u8>) -> usize {
    let Some(count) = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return 0;
    };
    let mut at = 2;
    let mut names = 0;
    for _ in 0..count {
        let Some(len) = body[at..].iter().position(|&b| b == 0) else {
            break;
        };
        if names > 0 {
            out.push(b',');
        }
        json_str(out, &String::from_utf8_lossy(&body[at..at + len]));
        names += 1;
        // name, NUL, then table oid (4), attnum (2), type oid (4), size (2), mod (4), format (2)
        at += len + 1 + 18;
        if at > body.len() {
            break;
        }
    }
    names
}

/// A DataRow's values as a JSON array: text as strings, NULL as null, anything not UTF-8
/// (binary format) as `\x` hex. `None` (with part of it written) when the row is cut.
fn data_row(body: &[u8], out: &mut Vec<u8>) -> Option<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let count = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let mut at = 2;
    out.push(b'[');
    for i in 0..count {
        if i > 0 {
            out.push(b',');
        }
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            out.extend_from_slice(b"null");
            continue;
        }
        let bytes = body.get(at..at + len as usize)?;
        at += len as usize;
        match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                json_str(out, s)
            }
            _ => {
                // The string `\x<hex>`, its backslash escaped.
                out.extend_from_slice(b"\"\\\\x");
                for b in bytes {
                    out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
                out.push(b'"');
            }
        }
    }
    out.push(b']');
    Some(())
}

/// `SQLSTATE: message` of an ErrorResponse.
fn error_message(body: &[u8]) -> Option<String> {
    let mut code = "";
    let mut message = "";
    for field in body.split(|&b| b == 0) {
        let Some((&kind, text)) = field.split_first() else {
            continue;
        };
        let text = std::str::from_utf8(text).unwrap_or("");
        match kind {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (!message.is_empty()).then(|| format!("{code}: {message}"))
}

/// The row count of a CommandComplete tag (`SELECT 3`, `UPDATE 2`, `INSERT 0 1`).
fn command_rows(body: &[u8]) -> Option<i64> {
    let tag = std::str::from_utf8(body.strip_suffix(&[0]).unwrap_or(body)).ok()?;
    let mut words = tag.split(' ');
    let verb = words.next()?;
    if !matches!(
        verb,
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE"
    ) {
        return None;
    }
    words.next_back()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn row_desc(names: &[&str]) -> Vec<u8> {
        let mut b = (names.len() as u16).to_be_bytes().to_vec();
        for n in names {
            b.extend_from_slice(n.as_bytes());
            b.push(0);
            b.extend_from_slice(&[0; 18]);
        }
        b
    }

    fn data(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn a_large_value_is_not_kept_for_the_next_result() {
        let mut r = Results::new(2);
        let big = vec![b'x'; 1 << 20];
        r.observe(b'T', &row_desc(&["body"]));
        r.observe(b'D', &data(&[Some(&big)]));
        r.observe(b'C', b"SELECT 1\0");
        let (_, sample, _) = r.take();
        assert!(sample.unwrap().len() > 1 << 20);
        for buffer in [&r.sets, &r.rows, &r.columns] {
            assert!(buffer.capacity() <= KEEP_BYTES, "{}", buffer.capacity());
        }
        // Small results keep their buffers: the next one is written without growing.
        r.observe(b'T', &row_desc(&["n"]));
        r.observe(b'D', &data(&[Some(b"7")]));
        r.observe(b'C', b"SELECT 1\0");
        let (_, sample, _) = r.take();
        assert_eq!(
            sample.as_deref(),
            Some(r#"{"columns":["n"],"rows":[["7"]]}"#)
        );
        assert!(r.sets.capacity() > 0);
    }

    #[test]
    fn keeps_the_first_rows_and_counts_all() {
        let mut r = Results::new(2);
        r.observe(b'T', &row_desc(&["id", "email"]));
        r.observe(b'D', &data(&[Some(b"1"), Some(b"a@x.io")]));
        r.observe(b'D', &data(&[Some(b"2"), None]));
        r.observe(b'D', &data(&[Some(b"3"), Some(&[0, 159, 146])]));
        r.observe(b'C', b"SELECT 3\0");
        let (rows, sample, _) = r.take();
        assert_eq!(rows, Some(3));
        let v: Value = serde_json::from_str(&sample.unwrap()).unwrap();
        assert_eq!(v["columns"], json!(["id", "email"]));
        assert_eq!(v["rows"], json!([["1", "a@x.io"], ["2", null]]));
        assert_eq!(r.take(), (None, None, vec![]), "reset after take");
    }

    /// The sample's exact text, as auditors read it (serde_json's compact form).
    #[test]
    fn the_sample_is_compact_json_set_by_set() {
        let mut r = Results::new(3);
        r.observe(b'T', &row_desc(&["id", "na\"me"]));
        r.observe(
            b'D',
            &data(&[Some(b"1"), Some("a\\b\n\tc \u{e9}".as_bytes())]),
        );
        r.observe(b'D', &data(&[None, Some(&[7])]));
        r.observe(b'C', b"SELECT 2\0");
        assert_eq!(
            r.take().1.unwrap(),
            r#"{"columns":["id","na\"me"],"rows":[["1","a\\b\n\tc é"],[null,"\\x07"]]}"#
        );
        // Two sets (a multi-statement query), a COPY's lines, an empty result, and the
        // row limit shared by all of them.
        r.observe(b'T', &row_desc(&["a"]));
        r.observe(b'D', &data(&[Some(b"x")]));
        r.observe(b'C', b"SELECT 1\0");
        r.observe(b'T', &row_desc(&[]));
        r.observe(b'C', b"SELECT 0\0");
        r.observe(b'd', b"1\tq\"\n");
        r.observe(b'd', b"2\n");
        r.observe(b'd', b"3\n");
        r.observe(b'C', b"COPY 3\0");
        r.observe(b'T', &row_desc(&["b"]));
        r.observe(b'C', b"SELECT 0\0");
        let (rows, sample, _) = r.take();
        assert_eq!(rows, Some(4));
        assert_eq!(
            sample.unwrap(),
            r#"[{"columns":["a"],"rows":[["x"]]},{"columns":[],"rows":["1\tq\"","2"]},{"columns":["b"],"rows":[]}]"#
        );
        // A cut row is left out whole.
        r.observe(b'T', &row_desc(&["c"]));
        r.observe(b'D', &[0, 2, 0, 0, 0, 1, b'y', 0, 0]);
        r.observe(b'D', &data(&[Some(b"z")]));
        assert_eq!(r.take().1.unwrap(), r#"{"columns":["c"],"rows":[["z"]]}"#);
    }

    #[test]
    fn writes_count_without_rows_and_binary_is_hex() {
        let mut r = Results::new(10);
        r.observe(b'C', b"INSERT 0 5\0");
        assert_eq!(r.take(), (Some(5), None, vec![]));
        r.observe(b'T', &row_desc(&["b"]));
        r.observe(b'D', &data(&[Some(&[0, 1, 255])]));
        r.observe(b'C', b"SELECT 1\0");
        let (_, sample, _) = r.take();
        assert!(sample.unwrap().contains("\\\\x0001ff"));
        // Truncated or hostile frames are ignored, not trusted.
        r.observe(b'D', &[0, 5, 0, 0]);
        r.observe(b'T', &[0, 9, b'x']);
        assert_eq!(command_rows(b"BEGIN\0"), None);
    }
}
