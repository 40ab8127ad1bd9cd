//! The few backend messages the gateway writes itself, and the frontend messages it
//! reads (PostgreSQL "Message Formats"). Everything else passes through as raw frames.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Error;
use super::frame::cstr;

pub enum Severity {
    Error,
    Fatal,
}

fn message(tag: u8, body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_u8(tag);
    b.put_u32(0);
    body(&mut b);
    let len = (b.len() - 1) as u32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// ErrorResponse (B): severity, SQLSTATE and message.
pub fn error_response(severity: Severity, code: &str, text: &str) -> Bytes {
    let severity = match severity {
        Severity::Error => "ERROR",
        Severity::Fatal => "FATAL",
    };
    report(b'E', severity, code, text)
}

/// NoticeResponse (B) with only a severity (`NOTICE`, `WARNING`, ...), SQLSTATE and
/// message.
pub fn notice_response(severity: &str, code: &str, text: &str) -> Bytes {
    report(b'N', severity, code, text)
}

/// An error or notice with the fields every client reads.
fn report(tag: u8, severity: &str, code: &str, text: &str) -> Bytes {
    message(tag, |b| {
        for (field, value) in [
            (b'S', severity),
            (b'V', severity),
            (b'C', code),
            (b'M', text),
        ] {
            b.put_u8(field);
            b.put_slice(value.as_bytes());
            b.put_u8(0);
        }
        b.put_u8(0);
    })
}

/// AuthenticationCleartextPassword (B).
pub fn auth_cleartext() -> Bytes {
    message(b'R', |b| b.put_u32(3))
}

/// AuthenticationOk (B).
pub fn auth_ok() -> Bytes {
    message(b'R', |b| b.put_u32(0))
}

/// BackendKeyData (B).
pub fn backend_key_data(pid: u32, secret: u32) -> Bytes {
    message(b'K', |b| {
        b.put_u32(pid);
        b.put_u32(secret);
    })
}

/// Query (F) with `text`: used to put a refusal at the right place in the stream.
pub fn query(text: &str) -> Bytes {
    message(b'Q', |b| {
        b.put_slice(text.as_bytes());
        b.put_u8(0);
    })
}

/// Parse (F) of `text` under statement name `name`.
pub fn parse(name: &str, text: &str) -> Bytes {
    message(b'P', |b| {
        b.put_slice(name.as_bytes());
        b.put_u8(0);
        b.put_slice(text.as_bytes());
        b.put_u8(0);
        b.put_u16(0);
    })
}

/// The SQL text of a Query (F) body.
pub fn query_text(body: &[u8]) -> Result<&str, Error> {
    let mut b = body;
    cstr(&mut b)
}

/// `(statement name, SQL text)` of a Parse (F) body.
pub fn parse_body(body: &[u8]) -> Result<(&str, &str), Error> {
    let mut b = body;
    let name = cstr(&mut b)?;
    let text = cstr(&mut b)?;
    Ok((name, text))
}

/// The parameter type section of a Parse (F) body (its count and OIDs, as sent).
pub fn parse_parameter_types(body: &[u8]) -> Result<&[u8], Error> {
    let mut b = body;
    cstr(&mut b)?;
    cstr(&mut b)?;
    Ok(b)
}

/// Parse (F) of the unnamed statement `text` with the parameter type section `types`
/// (as [`parse_parameter_types`] returns it).
pub fn parse_typed(text: &str, types: &[u8]) -> Bytes {
    message(b'P', |b| {
        b.put_u8(0);
        b.put_slice(text.as_bytes());
        b.put_u8(0);
        b.put_slice(types);
    })
}

/// Bind (F) of the unnamed portal to the unnamed statement with `parameters` (their
/// format codes and values, as [`bind_parameters`] returns them); results in text.
pub fn bind_raw(parameters: &[u8]) -> Bytes {
    message(b'B', |b| {
        b.put_u8(0);
        b.put_u8(0);
        b.put_slice(parameters);
        b.put_u16(0);
    })
}

/// Execute (F) of the unnamed portal, all rows; then Sync.
pub fn execute_and_sync() -> Bytes {
    let mut b = bytes::BytesMut::with_capacity(14);
    b.put_slice(&message(b'E', |b| {
        b.put_u8(0);
        b.put_u32(0);
    }));
    b.put_slice(&[b'S', 0, 0, 0, 4]);
    b.freeze()
}

/// CopyData holding `data`.
pub fn copy_data(data: &[u8]) -> Bytes {
    message(b'd', |b| b.put_slice(data))
}

/// Describe (F) of portal `name`: the gateway's own, for an Execute nothing described.
pub fn describe_portal(name: &str) -> Bytes {
    describe(b'P', name)
}

/// Describe (F) of a statement (`S`) or portal (`P`) named `name`.
pub fn describe(kind: u8, name: &str) -> Bytes {
    message(b'D', |b| {
        b.put_u8(kind);
        b.put_slice(name.as_bytes());
        b.put_u8(0);
    })
}

/// `(portal, statement, result format codes)` of a Bind (F) body; the codes are read
/// in place, not copied.
pub fn bind_body(body: &[u8]) -> Result<(&str, &str, FormatCodes<'_>), Error> {
    let short = || Error::Protocol("short Bind message".into());
    let mut b = body;
    let portal = cstr(&mut b)?;
    let statement = cstr(&mut b)?;
    let n = take_i16(&mut b).ok_or_else(short)?;
    for _ in 0..n {
        take_i16(&mut b).ok_or_else(short)?;
    }
    let n = take_i16(&mut b).ok_or_else(short)?;
    for _ in 0..n {
        let len = b
            .split_first_chunk::<4>()
            .map(|(h, _)| i32::from_be_bytes(*h))
            .ok_or_else(short)?;
        b = &b[4..];
        if len > 0 {
            b = b.get(len as usize..).ok_or_else(short)?;
        }
    }
    let n = take_i16(&mut b).ok_or_else(short)?.max(0) as usize;
    let codes = b.get(..2 * n).ok_or_else(short)?;
    Ok((portal, statement, FormatCodes(codes)))
}

/// A Bind's statement name and the bytes of its parameters (their format codes and
/// values, as sent): what a held request's identity includes.
pub fn bind_parameters(body: &[u8]) -> Option<(&str, &[u8])> {
    let mut b = body;
    cstr(&mut b).ok()?;
    let statement = cstr(&mut b).ok()?;
    let start = body.len() - b.len();
    let n = take_i16(&mut b)?;
    for _ in 0..n {
        take_i16(&mut b)?;
    }
    let n = take_i16(&mut b)?;
    for _ in 0..n {
        let (h, _) = b.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*h);
        b = &b[4..];
        if len > 0 {
            b = b.get(len as usize..)?;
        }
    }
    let end = body.len() - b.len();
    Some((statement, &body[start..end]))
}

/// One bound value: `None` is NULL; `binary` for format code 1.
pub type BoundValue<'a> = Option<(bool, &'a [u8])>;

/// The values in a Bind's parameter section (as [`bind_parameters`] returns it), each
/// with its format; `None` when the section is malformed.
pub fn parameter_values(section: &[u8]) -> Option<Vec<BoundValue<'_>>> {
    let mut b = section;
    let n_formats = take_i16(&mut b)?.max(0) as usize;
    let formats = b.get(..2 * n_formats)?;
    b = &b[2 * n_formats..];
    let binary = |i: usize| {
        let at = if n_formats == 1 { 0 } else { i };
        formats
            .get(2 * at..2 * at + 2)
            .is_some_and(|c| i16::from_be_bytes([c[0], c[1]]) == 1)
    };
    let n = take_i16(&mut b)?.max(0) as usize;
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let (h, rest) = b.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*h);
        b = rest;
        if len < 0 {
            values.push(None);
            continue;
        }
        let value = b.get(..len as usize)?;
        b = &b[len as usize..];
        values.push(Some((binary(i), value)));
    }
    Some(values)
}

/// A Bind's result format codes as they sit in the message (Int16 each).
#[derive(Debug, Clone)]
pub struct FormatCodes<'a>(&'a [u8]);

impl<'a> IntoIterator for FormatCodes<'a> {
    type Item = i16;
    type IntoIter = std::iter::Map<std::slice::ChunksExact<'a, u8>, fn(&[u8]) -> i16>;

    fn into_iter(self) -> Self::IntoIter {
        fn code(c: &[u8]) -> i16 {
            i16::from_be_bytes([c[0], c[1]])
        }
        self.0.chunks_exact(2).map(code as fn(&[u8]) -> i16)
    }
}

/// `(kind, name)` of a Describe or Close (F) body: `S` a statement, `P` a portal.
pub fn target_body(body: &[u8]) -> Result<(u8, &str), Error> {
    let (&kind, mut b) = body
        .split_first()
        .ok_or_else(|| Error::Protocol("empty Describe or Close message".into()))?;
    Ok((kind, cstr(&mut b)?))
}

fn take_i16(b: &mut &[u8]) -> Option<i16> {
    let (head, rest) = b.split_first_chunk::<2>()?;
    *b = rest;
    Some(i16::from_be_bytes(*head))
}

/// The message (`M`) of an ErrorResponse or NoticeResponse body.
pub fn error_text(body: &[u8]) -> String {
    fields(body)
        .into_iter()
        .find(|(c, _)| *c == b'M')
        .map(|(_, m)| m)
        .unwrap_or_default()
}

/// The fields of an ErrorResponse or NoticeResponse body, by field code.
pub fn fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut b = body;
    while let Some((&code, rest)) = b.split_first() {
        if code == 0 {
            break;
        }
        b = rest;
        match cstr(&mut b) {
            Ok(v) => out.push((code, v.to_string())),
            Err(_) => break,
        }
    }
    out
}

/// The startup parameters (`user`, `database`, `options`, ...) of a StartupMessage body.
pub fn startup_params(body: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut b = body;
    let mut out = Vec::new();
    loop {
        let key = cstr(&mut b)?;
        if key.is_empty() {
            return Ok(out);
        }
        let value = cstr(&mut b)?;
        out.push((key.to_string(), value.to_string()));
    }
}

/// A list of NUL-terminated strings ended by an empty one (SASL mechanism lists).
pub fn fields_nul_list(body: &[u8]) -> Vec<String> {
    let mut b = body;
    let mut out = Vec::new();
    while let Ok(s) = cstr(&mut b) {
        if s.is_empty() {
            break;
        }
        out.push(s.to_string());
    }
    out
}
