//! The statement cache's key without the tokenizer: one pass over a query string that
//! replaces each literal value with its kind, drops comments and folds whitespace, so
//! `SELECT a FROM t WHERE id = 7 -- x` and `SELECT a FROM t WHERE id = 8` share a key
//! and the second is judged without being tokenized ([`super::Analyzer`]).
//!
//! Everything else is kept as written (names, keywords, operators, `$n`), so two texts
//! with one key tokenize alike but for their literals' values: the key is never
//! coarser than the shape the facts are cached under. The scan gives up (`None`, the
//! tokenizer's path) on anything it does not read exactly as sqlparser and PostgreSQL
//! do: more than one statement, numbers other than `123` and `1.5` (exponents, `.5`,
//! `0x1F`, `1_000`, integers of over 18 digits), string prefixes other than `E` (`N'`, `B'`, `X'`, `U&'`, or any
//! name touching a quote), `U&"..."` names, adjacent string literals (PostgreSQL joins
//! them across a newline), a comment touching an operator, and whatever
//! [`super::lexically_plain`] already refuses (backslashes, dollar quotes, nested
//! comments, unusual whitespace).

use std::ops::Range;

/// What [`scan`] makes of a single-statement query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The text with literals as `?s` (string), `?e` (E-string), each with `0` or `1`
    /// after it when that is its length, `?n` (an integer of at most 18 digits) or `?f`
    /// (a decimal),
    /// comments and whitespace runs as one space.
    pub key: String,
    /// The statement's text within the query: first to last token, without a trailing
    /// `;` or comments (as the tokenizer's split cuts it).
    pub text: Range<usize>,
}

/// Scans `sql`; `literals`, when given, gets each literal value's place (the inside
/// of a string's quotes, a number's digits).
pub fn scan(sql: &str, literals: Option<&mut Vec<Range<usize>>>) -> Option<Key> {
    let mut key = String::with_capacity(sql.len());
    let text = scan_into(sql, literals, &mut key)?;
    Some(Key { key, text })
}

/// [`scan`] into `key` (cleared first), a buffer the caller reuses: returns the
/// statement's text range. `key` holds a partial key when it gives up.
pub fn scan_into(
    sql: &str,
    mut literals: Option<&mut Vec<Range<usize>>>,
    key: &mut String,
) -> Option<Range<usize>> {
    let b = sql.as_bytes();
    key.clear();
    let mut i = 0;
    let mut first = None;
    let mut end = 0;
    let mut space = false;
    let mut ended = false;
    let mut after_string = false;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b' ' | b'\t' | b'\n' => {
                space = true;
                i += 1;
                continue;
            }
            b'-' if next == Some(b'-') => {
                if i > 0 && is_operator(b[i - 1]) {
                    return None;
                }
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p);
                space = true;
                continue;
            }
            b'/' if next == Some(b'*') => {
                if i > 0 && is_operator(b[i - 1]) {
                    return None;
                }
                let close = find(&b[i + 2..], b"*/")?;
                if find(&b[i + 2..i + 2 + close], b"/*").is_some() {
                    return None;
                }
                i += 2 + close + 2;
                space = true;
                continue;
            }
            _ if ended => {
                if c == b';' {
                    i += 1;
                    continue;
                }
                return None;
            }
            b';' => {
                ended = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        if space && !key.is_empty() {
            key.push(' ');
        }
        space = false;
        first.get_or_insert(i);
        let string = c == b'\'' || (matches!(c, b'E' | b'e') && next == Some(b'\''));
        if string && after_string {
            return None;
        }
        after_string = string;
        let start = i;
        match c {
            b'\'' => {
                i = closing(b, i, b'\'')?;
                key.push_str(["?s0", "?s1", "?s"][short_len(&b[start + 1..i - 1])]);
                note(&mut literals, start + 1..i - 1);
            }
            b'E' | b'e' if next == Some(b'\'') => {
                if i > 0 && is_name(b[i - 1]) {
                    return None;
                }
                i = closing(b, i + 1, b'\'')?;
                key.push_str(["?e0", "?e1", "?e"][short_len(&b[start + 2..i - 1])]);
                note(&mut literals, start + 2..i - 1);
            }
            b'"' => {
                i = closing(b, i, b'"')?;
                key.push_str(&sql[start..i]);
            }
            b'0'..=b'9' => {
                if i > 0 && (is_name(b[i - 1]) || b[i - 1] == b'.') {
                    return None;
                }
                i = digits(b, i);
                let mut tag = "?n";
                if i - start > super::fingerprint::MAX_PLAIN_DIGITS {
                    return None;
                }
                if b.get(i) == Some(&b'.') {
                    if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                        return None;
                    }
                    i = digits(b, i + 1);
                    tag = "?f";
                }
                if b.get(i).is_some_and(|&x| is_name(x) || x == b'.') {
                    return None;
                }
                key.push_str(tag);
                note(&mut literals, start..i);
            }
            b'$' => {
                if !next.is_some_and(|x| x.is_ascii_digit()) {
                    return None;
                }
                i = digits(b, i + 1);
                if b.get(i).is_some_and(|&x| is_name(x)) {
                    return None;
                }
                key.push_str(&sql[start..i]);
            }
            b'.' if next.is_some_and(|x| x.is_ascii_digit()) => return None,
            c if is_name(c) => {
                while i < b.len() && is_name(b[i]) {
                    i += 1;
                }
                // A name touching a quote is a prefix (`N'..'`, `U&'..'`) or a typed
                // literal written without a space: not worth reading exactly.
                if matches!(b.get(i), Some(b'\'' | b'"' | b'&')) {
                    return None;
                }
                key.push_str(&sql[start..i]);
            }
            _ => {
                // Punctuation and operators, one byte at a time, as written. Every
                // byte left here is ASCII: names took the others.
                i += 1;
                key.push(c as char);
            }
        }
        end = i;
    }
    Some(first?..end)
}

/// A string's length in characters (`''` is one), counted up to 2, as the shape
/// counts it.
fn short_len(inside: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < inside.len() && n < 2 {
        i += if inside[i] == b'\'' { 2 } else { 1 };
        // A UTF-8 character's continuation bytes are not characters.
        while inside.get(i).is_some_and(|&x| x & 0xC0 == 0x80) {
            i += 1;
        }
        n += 1;
    }
    n
}

fn note(literals: &mut Option<&mut Vec<Range<usize>>>, range: Range<usize>) {
    if let Some(l) = literals {
        l.push(range);
    }
}

/// A byte of an unquoted name: PostgreSQL reads every non-ASCII byte as a letter.
fn is_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// A byte PostgreSQL may read as part of an operator.
fn is_operator(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Past the quote closing the one at `i` (a doubled quote inside is part of it).
fn closing(b: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    i += 1;
    loop {
        let at = i + b[i..].iter().position(|&x| x == quote)?;
        if b.get(at + 1) == Some(&quote) {
            i = at + 2;
        } else {
            return Some(at + 1);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<String> {
        scan(sql, None).map(|k| k.key)
    }

    #[test]
    fn literals_comments_and_spacing_do_not_change_the_key() {
        let a = key("SELECT a FROM t WHERE id = 7 AND name = 'bob'").unwrap();
        assert_eq!(a, "SELECT a FROM t WHERE id = ?n AND name = ?s");
        for same in [
            "SELECT a FROM t WHERE id = 12345 AND name = 'it''s'",
            "SELECT  a\nFROM t /* note */ WHERE id = 7 AND name = 'al' -- why\n",
            "  SELECT a FROM t WHERE id = 725 AND name = 'DELETE FROM t';",
        ] {
            assert_eq!(key(same).as_deref(), Some(a.as_str()), "{same}");
        }
        assert_eq!(
            key("SELECT E'xy', $1, \"T\"\"x\""),
            Some("SELECT ?e, $1, \"T\"\"x\"".into())
        );
        assert_eq!(
            key("SELECT '', 'é', '''', 'ab'"),
            Some("SELECT ?s0, ?s1, ?s1, ?s".into())
        );
    }

    #[test]
    fn names_keywords_signs_and_operators_stay_as_written() {
        for (one, other) in [
            ("SELECT a1 FROM t", "SELECT a2 FROM t"),
            ("SELECT * FROM t", "select * from t"),
            ("SELECT 1 - 1", "SELECT 1 -1"),
            ("SELECT a <= b", "SELECT a < = b"),
            ("SELECT $1", "SELECT $2"),
            ("SELECT numeric(10, 2)", "SELECT numeric(2.5, 2)"),
        ] {
            assert_ne!(key(one), key(other), "{one} / {other}");
        }
    }

    #[test]
    fn what_it_cannot_read_exactly_goes_to_the_tokenizer() {
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT 1e5",
            "SELECT .5",
            "SELECT 0x1F",
            "SELECT 1_000",
            "SELECT 1.",
            "SELECT 1234567890123456789",
            "SELECT N'x'",
            "SELECT B'01'",
            "SELECT X'ff'",
            "SELECT U&'d\\0061t'",
            "SELECT U&\"a\"",
            "SELECT date'2020-01-01'",
            "SELECT 'a'\n'b'",
            "SELECT 'open",
            "SELECT \"open",
            "SELECT 1 /* open",
            "SELECT 1 +-- c\n 1",
            "SELECT $$x$$",
            "   ",
            "-- only a comment",
        ] {
            assert_eq!(key(sql), None, "{sql}");
        }
    }

    #[test]
    fn the_text_is_cut_as_the_split_cuts_it_and_literals_are_found() {
        let sql = "/* hi */ DELETE FROM t WHERE id = 42 AND s = 'x' ; -- bye";
        let mut lits = Vec::new();
        let k = scan(sql, Some(&mut lits)).unwrap();
        assert_eq!(&sql[k.text], "DELETE FROM t WHERE id = 42 AND s = 'x'");
        let found: Vec<&str> = lits.into_iter().map(|r| &sql[r]).collect();
        assert_eq!(found, ["42", "x"]);
    }
}
