//! What a read returned, for its audit event: the row count from CommandComplete and the
//! first `audit.result_rows` rows (RowDescription + DataRow), as JSON text. The frames are
//! only read here, after masking: the sample holds what the agent saw.

use serde_json::{Value, json};

use crate::gateway::mask::{MaskedBy, Plan};

/// Results seen since the last ReadyForQuery.
pub struct Results {
    keep: usize,
    sets: Vec<Value>,
    columns: Vec<String>,
    rows: Vec<Value>,
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
            columns: Vec::new(),
            rows: Vec::new(),
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
                self.columns = row_description(body);
            }
            b'D' if self.kept < self.keep => {
                if let Some(row) = data_row(body) {
                    self.rows.push(Value::Array(row));
                    self.kept += 1;
                }
            }
            // COPY ... TO STDOUT: each line of text is a row of the sample.
            b'd' if self.kept < self.keep => {
                let line = String::from_utf8_lossy(body);
                self.rows
                    .push(Value::String(line.trim_end_matches('\n').to_string()));
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
        let sample = match self.sets.len() {
            0 => None,
            1 => Some(self.sets[0].to_string()),
            _ => Some(Value::Array(std::mem::take(&mut self.sets)).to_string()),
        };
        self.sets.clear();
        self.kept = 0;
        (self.count.take(), sample, std::mem::take(&mut self.masked))
    }

    fn finish_set(&mut self) {
        if !self.columns.is_empty() || !self.rows.is_empty() {
            self.sets.push(json!({
                "columns": std::mem::take(&mut self.columns),
                "rows": std::mem::take(&mut self.rows),
            }));
        }
    }
}

/// Column names of a RowDescription.
fn row_description(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(count) = body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return out;
    };
    let mut at = 2;
    for _ in 0..count {
        let Some(len) = body[at..].iter().position(|&b| b == 0) else {
            break;
        };
        out.push(String::from_utf8_lossy(&body[at..at + len]).into_owned());
        // name, NUL, then table oid (4), attnum (2), type oid (4), size (2), mod (4), format (2)
        at += len + 1 + 18;
        if at > body.len() {
            break;
        }
    }
    out
}

/// A DataRow's values: text as strings, NULL as null, anything not UTF-8 (binary format)
/// as `\x` hex.
fn data_row(body: &[u8]) -> Option<Vec<Value>> {
    let count = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let mut at = 2;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            out.push(Value::Null);
            continue;
        }
        let bytes = body.get(at..at + len as usize)?;
        at += len as usize;
        out.push(match std::str::from_utf8(bytes) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => {
                Value::String(s.to_string())
            }
            _ => Value::String(format!(
                "\\x{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )),
        });
    }
    Some(out)
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
