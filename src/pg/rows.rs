//! Result rows on the wire (PostgreSQL "Message Formats"): RowDescription read into
//! fields, DataRow values rewritten. I/O-free. A row none of whose values change is not
//! touched; a changed one is framed again with correct lengths.

use bytes::{BufMut, Bytes, BytesMut};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The table the column comes from (0 for expressions), and its attribute number.
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    /// 0 text, 1 binary (0 in a statement's description: Bind decides).
    pub format: i16,
}

/// The fields of a RowDescription body; `None` if it is malformed.
pub fn row_description(body: &[u8]) -> Option<Vec<Field>> {
    let mut b = body;
    let n = take_i16(&mut b)?;
    let mut fields = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0)?;
        let name = String::from_utf8_lossy(&b[..end]).into_owned();
        b = &b[end + 1..];
        let table_oid = take_i32(&mut b)? as u32;
        let column = take_i16(&mut b)?;
        let type_oid = take_i32(&mut b)? as u32;
        let _typlen = take_i16(&mut b)?;
        let _typmod = take_i32(&mut b)?;
        let format = take_i16(&mut b)?;
        fields.push(Field {
            name,
            table_oid,
            column,
            type_oid,
            format,
        });
    }
    Some(fields)
}

/// The values of a DataRow body (`None` is SQL NULL); `None` if it is malformed.
pub fn data_row(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let mut b = body;
    let n = take_i16(&mut b)?;
    let mut values = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = take_i32(&mut b)?;
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return None;
        }
        values.push(Some(&b[..len]));
        b = &b[len..];
    }
    b.is_empty().then_some(values)
}

/// A DataRow message (tag and length included) holding `values`.
pub fn encode_data_row(values: &[Option<std::borrow::Cow<'_, [u8]>>]) -> Bytes {
    let body_len: usize = 2 + values
        .iter()
        .map(|v| 4 + v.as_ref().map_or(0, |v| v.len()))
        .sum::<usize>();
    let mut out = BytesMut::with_capacity(1 + 4 + body_len);
    out.put_u8(b'D');
    out.put_i32((4 + body_len) as i32);
    out.put_i16(values.len() as i16);
    for v in values {
        match v {
            None => out.put_i32(-1),
            Some(v) => {
                out.put_i32(v.len() as i32);
                out.put_slice(v);
            }
        }
    }
    out.freeze()
}

fn take_i16(b: &mut &[u8]) -> Option<i16> {
    let (head, rest) = b.split_first_chunk::<2>()?;
    *b = rest;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(b: &mut &[u8]) -> Option<i32> {
    let (head, rest) = b.split_first_chunk::<4>()?;
    *b = rest;
    Some(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    #[test]
    fn a_data_row_round_trips_with_nulls() {
        let row = encode_data_row(&[
            Some(Cow::Borrowed(&b"ab"[..])),
            None,
            Some(Cow::Borrowed(&b""[..])),
        ]);
        assert_eq!(row[0], b'D');
        let len = i32::from_be_bytes([row[1], row[2], row[3], row[4]]) as usize;
        assert_eq!(len + 1, row.len());
        let values = data_row(&row[5..]).expect("well formed");
        assert_eq!(values, vec![Some(&b"ab"[..]), None, Some(&b""[..])]);
        // Cut short, or with bytes left over: malformed.
        assert_eq!(data_row(&row[5..row.len() - 1]).map(|_| ()), None);
    }
}
