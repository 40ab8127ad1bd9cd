//! Statement fingerprints: the statement's shape with every literal replaced, whitespace
//! and comments dropped, keywords and unquoted names lower-cased, and runs of literals in
//! lists folded to one, so `WHERE id IN (1, 2)` and `where ID in (7,8,9)` share a
//! fingerprint. Like pg_stat_statements' query id, but stable across versions (FNV-1a).

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::split::is_layout;

const PLACEHOLDER: &str = "?";

/// Digits of an integer literal that always fits in 64 bits, signed or not.
pub const MAX_PLAIN_DIGITS: usize = 18;

/// Returns the normalized text, its 64-bit fingerprint as 16 hex digits, and the shape
/// key: the normalized text without list folding and with each literal's token type kept
/// (a `'string'` and a `$$string$$` are not always interchangeable to the parser), which
/// is what [`super::Analyzer`] caches facts under.
pub fn fingerprint(tokens: &[TokenWithSpan]) -> (String, String, String) {
    let mut out = String::with_capacity(64);
    let mut shape = String::with_capacity(64);
    // Tail of `out`: the last two pieces written, to fold `? , ?` and spot operands.
    let mut last = Piece::None;
    let mut before_last = Piece::None;
    let mut iter = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !is_layout(t))
        .peekable();
    while let Some(token) = iter.next() {
        let piece = match token {
            Token::EOF => continue,
            Token::Minus
                if matches!(iter.peek(), Some(Token::Number(..)))
                    && !matches!(last, Piece::Operand | Piece::Placeholder) =>
            {
                // A sign belongs to the literal in the fingerprint, but the shape keeps
                // it: facts cached for `-1` must not serve `1`.
                shape.push_str(" -");
                continue;
            }
            Token::Placeholder(_) | Token::Number(..) => Piece::Placeholder,
            t if is_literal(t) => Piece::Placeholder,
            Token::Comma => Piece::Comma,
            Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => {
                Piece::Operand
            }
            Token::RParen => Piece::Operand,
            _ => Piece::Other,
        };
        shape.push(' ');
        if piece == Piece::Placeholder {
            shape.push_str(literal_tag(token));
        } else if let Token::Word(w) = token {
            match w.quote_style {
                // A quoted name is written back quoted, its quote character doubled, so
                // it can never read as other tokens (`"id = ""id"` is one name, not
                // `"id" = "id"`).
                Some(q) => {
                    shape.push(q);
                    for c in w.value.chars() {
                        shape.push(c);
                        if c == q {
                            shape.push(c);
                        }
                    }
                    shape.push(q);
                }
                None => shape.push_str(&w.value),
            }
        } else {
            push_symbol(&mut shape, token);
        }
        // Fold `? , ?` into `?` so lists of any length share a shape.
        if piece == Piece::Placeholder && last == Piece::Comma && before_last == Piece::Placeholder
        {
            out.truncate(out.len() - 2);
            last = Piece::Placeholder;
            before_last = Piece::None;
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        match token {
            _ if piece == Piece::Placeholder => out.push_str(PLACEHOLDER),
            Token::Word(w) if w.quote_style.is_some() => {
                out.push('"');
                out.push_str(&w.value.replace('"', "\"\""));
                out.push('"');
            }
            Token::Word(w) if w.value.is_ascii() => {
                let from = out.len();
                out.push_str(&w.value);
                out[from..].make_ascii_lowercase();
            }
            Token::Word(w) => out.extend(w.value.chars().flat_map(char::to_lowercase)),
            t => push_symbol(&mut out, t),
        }
        before_last = last;
        last = piece;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in out.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (out, format!("{hash:016x}"), shape)
}

/// Punctuation as text, without the formatting machinery for the common ones.
fn push_symbol(out: &mut String, t: &Token) {
    let s = match t {
        Token::Comma => ",",
        Token::LParen => "(",
        Token::RParen => ")",
        Token::Eq => "=",
        Token::Period => ".",
        Token::Mul => "*",
        Token::Plus => "+",
        Token::Minus => "-",
        Token::Lt => "<",
        Token::Gt => ">",
        Token::LtEq => "<=",
        Token::GtEq => ">=",
        Token::Neq => "<>",
        Token::DoubleColon => "::",
        Token::SemiColon => ";",
        other => {
            use std::fmt::Write;
            let _ = write!(out, "{other}");
            return;
        }
    };
    out.push_str(s);
}

/// A literal's token type, standing in for its value in the shape key.
fn literal_tag(t: &Token) -> &'static str {
    match t {
        // Where the grammar wants a small integer (`numeric(10, 2)`, `LIMIT 10`), a
        // decimal or an integer too long for 64 bits does not parse: facts cached for
        // one must not serve the others (the quick key's differential test found it).
        Token::Number(n, _)
            if n.len() <= MAX_PLAIN_DIGITS && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            "?n"
        }
        Token::Number(n, _) if n.bytes().all(|b| b.is_ascii_digit()) => "?L",
        Token::Number(..) => "?f",
        Token::Placeholder(_) => "?p",
        // Where it wants one character (`COPY ... DELIMITER ','`), an empty or longer
        // string does not parse: strings are told apart by length, none, one, more.
        Token::SingleQuotedString(s) => ["?s0", "?s1", "?s"][short_len(s)],
        Token::DollarQuotedString(_) => "?d",
        Token::NationalStringLiteral(_) => "?N",
        Token::EscapedStringLiteral(s) => ["?e0", "?e1", "?e"][short_len(s)],
        Token::UnicodeStringLiteral(_) => "?u",
        Token::HexStringLiteral(_) => "?x",
        _ => "?b",
    }
}

/// A string's length in characters, counted up to 2.
fn short_len(s: &str) -> usize {
    s.chars().take(2).count()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Piece {
    None,
    Placeholder,
    Comma,
    /// A name or a closing parenthesis: a following `-` is binary minus.
    Operand,
    Other,
}

fn is_literal(t: &Token) -> bool {
    matches!(
        t,
        Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
    )
}
