//! Statement fingerprints: the statement's shape with every literal replaced, whitespace
//! and comments dropped, keywords and unquoted names lower-cased, and runs of literals in
//! lists folded to one, so `WHERE id IN (1, 2)` and `where ID in (7,8,9)` share a
//! fingerprint. Like pg_stat_statements' query id, but stable across versions (FNV-1a).

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::split::is_layout;

const PLACEHOLDER: &str = "?";

/// Returns the normalized text and its 64-bit fingerprint as 16 hex digits.
pub fn fingerprint(tokens: &[TokenWithSpan]) -> (String, String) {
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut iter = tokens
        .iter()
        .map(|t| &t.token)
        .filter(|t| !is_layout(t))
        .peekable();
    while let Some(token) = iter.next() {
        let piece = match token {
            Token::EOF => continue,
            Token::Minus
                if matches!(iter.peek(), Some(Token::Number(..))) && !after_operand(&out) =>
            {
                continue;
            }
            Token::Word(w) if w.quote_style.is_some() => format!("\"{}\"", w.value),
            Token::Word(w) => w.value.to_lowercase(),
            Token::Placeholder(_) | Token::Number(..) => PLACEHOLDER.to_string(),
            t if is_literal(t) => PLACEHOLDER.to_string(),
            t => t.to_string(),
        };
        // Fold `? , ?` into `?` so lists of any length share a shape.
        if piece == PLACEHOLDER
            && out.len() >= 2
            && out[out.len() - 1] == ","
            && out[out.len() - 2] == PLACEHOLDER
        {
            out.pop();
            continue;
        }
        out.push(piece);
    }
    let normalized = out.join(" ");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in normalized.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (normalized, format!("{hash:016x}"))
}

fn after_operand(out: &[String]) -> bool {
    out.last().is_some_and(|p| {
        p == PLACEHOLDER
            || p == ")"
            || p.chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '"' || c == '_')
    })
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
