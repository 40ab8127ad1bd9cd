//! Splits a query string into statements with sqlparser's tokenizer, which understands
//! quotes, dollar quotes, E-strings and (nested) comments the way PostgreSQL does, so a
//! `;` inside any of them never splits and keywords inside them never become facts.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// One statement's tokens and where its text lies in the query.
pub struct Piece {
    pub tokens: Vec<TokenWithSpan>,
    pub start: usize,
    pub end: usize,
}

/// Tokenizes `sql` and splits it at top-level semicolons. Empty statements (only
/// whitespace and comments) are dropped, as PostgreSQL ignores them.
pub fn split(sql: &str) -> Result<Vec<Piece>, String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| e.to_string())?;
    let tokens = continued_strings(synonyms(unicode_identifiers(tokens)));
    let lines = LineIndex::new(sql);
    // Find the top-level semicolons first, then cut the token vector at them, so a
    // one-statement query (the common case) moves its tokens without copying.
    let mut cuts = Vec::new();
    let mut parens = 0usize;
    // Inside `BEGIN ATOMIC ... END` (a SQL-standard function body) `;` does not split;
    // `CASE ... END` nests inside it.
    let mut atomic = 0usize;
    let mut cases = 0usize;
    let mut previous_word: Option<Keyword> = None;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => parens += 1,
            Token::RParen => parens = parens.saturating_sub(1),
            Token::Word(w) if w.quote_style.is_none() => {
                match w.keyword {
                    Keyword::ATOMIC if previous_word == Some(Keyword::BEGIN) => atomic += 1,
                    Keyword::CASE if atomic > 0 => cases += 1,
                    Keyword::END if atomic > 0 && cases > 0 => cases -= 1,
                    Keyword::END if atomic > 0 => atomic -= 1,
                    _ => {}
                }
                previous_word = Some(w.keyword);
                continue;
            }
            Token::SemiColon if parens == 0 && atomic == 0 => cuts.push(i),
            Token::Whitespace(_) => continue,
            _ => {}
        }
        previous_word = None;
    }
    let mut rest = tokens;
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut tails = Vec::with_capacity(cuts.len() + 1);
    for &cut in cuts.iter().rev() {
        let mut tail = rest.split_off(cut);
        tail.remove(0); // the semicolon
        tails.push(tail);
    }
    tails.push(rest);
    for piece in tails.into_iter().rev() {
        push_piece(&mut pieces, piece, &lines, sql);
    }
    Ok(pieces)
}

fn push_piece(pieces: &mut Vec<Piece>, tokens: Vec<TokenWithSpan>, lines: &LineIndex, sql: &str) {
    let significant = |t: &&TokenWithSpan| !matches!(t.token, Token::Whitespace(_) | Token::EOF);
    let (Some(first), Some(last)) = (
        tokens.iter().find(significant),
        tokens.iter().rev().find(significant),
    ) else {
        return;
    };
    let start = lines.offset(sql, first.span.start).unwrap_or(0);
    let end = lines
        .offset(sql, last.span.end)
        .unwrap_or(sql.len())
        .max(start);
    pieces.push(Piece { tokens, start, end });
}

/// Spellings PostgreSQL accepts and sqlparser does not, rewritten to ones with the same
/// facts: `ANALYSE` (reserved, never a name) is `ANALYZE`; the row locks `FOR NO KEY
/// UPDATE` / `FOR KEY SHARE` read as `FOR UPDATE` / `FOR SHARE`; `GROUP BY DISTINCT` only
/// removes duplicate grouping sets.
fn synonyms(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut previous: [Keyword; 2] = [Keyword::NoKeyword; 2];
    let mut drop: Vec<usize> = Vec::new();
    let mut last_word_at = [usize::MAX; 2];
    for (i, t) in tokens.iter_mut().enumerate() {
        let Token::Word(w) = &mut t.token else {
            if !matches!(t.token, Token::Whitespace(_)) {
                previous = [Keyword::NoKeyword; 2];
            }
            continue;
        };
        if w.quote_style.is_some() {
            previous = [Keyword::NoKeyword; 2];
            continue;
        }
        if w.value.eq_ignore_ascii_case("analyse") {
            w.value = "ANALYZE".into();
            w.keyword = Keyword::ANALYZE;
        }
        match (previous, w.keyword) {
            // FOR NO KEY UPDATE → FOR UPDATE: drop NO and KEY.
            ([Keyword::FOR, Keyword::NO], Keyword::KEY) => drop.extend([last_word_at[1], i]),
            ([Keyword::FOR, Keyword::KEY], Keyword::SHARE) => drop.push(last_word_at[1]),
            ([Keyword::GROUP, Keyword::BY], Keyword::DISTINCT) => drop.push(i),
            _ => {}
        }
        previous = [previous[1], w.keyword];
        last_word_at = [last_word_at[1], i];
    }
    if drop.is_empty() {
        return tokens;
    }
    let mut keep = (0..tokens.len()).map(|i| !drop.contains(&i));
    tokens.retain(|_| keep.next().unwrap_or(true));
    tokens
}

/// `'a'` newline `'b'` is one string `'ab'` in PostgreSQL (only when the whitespace
/// between them holds a newline).
fn continued_strings(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    use sqlparser::tokenizer::Whitespace;
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for t in tokens {
        if let Token::SingleQuotedString(next) = &t.token {
            // Find the previous string with only whitespace (including a newline) between.
            let tail = out.iter().rposition(|p| {
                !matches!(
                    p.token,
                    Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline)
                )
            });
            if let Some(i) = tail {
                let newline = out[i + 1..]
                    .iter()
                    .any(|p| matches!(p.token, Token::Whitespace(Whitespace::Newline)));
                if newline && let Token::SingleQuotedString(prev) = &mut out[i].token {
                    prev.push_str(next);
                    out[i].span.end = t.span.end;
                    out.truncate(i + 1);
                    continue;
                }
            }
        }
        out.push(t);
    }
    out
}

/// Folds `U&"d\0061t\+000061"` (three tokens to sqlparser) into the quoted identifier
/// PostgreSQL reads (`data`), honouring `UESCAPE 'c'`. A malformed escape is left as it
/// is, so the statement fails to parse and is judged unreadable.
fn unicode_identifiers(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    if !tokens.iter().any(|t| t.token == Token::Ampersand) {
        return tokens;
    }
    let adjacent = |a: &TokenWithSpan, b: &TokenWithSpan| a.span.end == b.span.start;
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let is_prefix = matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u"))
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Ampersand))
            && matches!(tokens.get(i + 2).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style == Some('"'))
            && adjacent(&tokens[i], &tokens[i + 1])
            && adjacent(&tokens[i + 1], &tokens[i + 2]);
        if !is_prefix {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let Token::Word(word) = &tokens[i + 2].token else {
            unreachable!("checked above")
        };
        // An optional `UESCAPE 'c'` follows, after layout.
        let mut next = i + 3;
        let mut escape = '\\';
        let mut j = next;
        while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
            j += 1;
        }
        if let Some(Token::Word(u)) = tokens.get(j).map(|t| &t.token)
            && u.quote_style.is_none()
            && u.value.eq_ignore_ascii_case("uescape")
        {
            let mut k = j + 1;
            while matches!(tokens.get(k).map(|t| &t.token), Some(Token::Whitespace(_))) {
                k += 1;
            }
            if let Some(Token::SingleQuotedString(c)) = tokens.get(k).map(|t| &t.token) {
                let mut chars = c.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    escape = c;
                    next = k + 1;
                }
            }
        }
        match decode_unicode_escapes(&word.value, escape) {
            Some(value) => {
                let mut folded = tokens[i + 2].clone();
                folded.span.start = tokens[i].span.start;
                if let Token::Word(w) = &mut folded.token {
                    w.value = value;
                }
                out.push(folded);
                i = next;
            }
            None => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

fn decode_unicode_escapes(raw: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != escape {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            out.push(escape);
            continue;
        }
        let digits = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let hex: String = chars.by_ref().take(digits).collect();
        if hex.len() != digits {
            return None;
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

/// Is this token only layout (whitespace or a comment)?
pub fn is_layout(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Maps the tokenizer's (line, column-in-characters) locations to byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(sql: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The byte offset of a location; the tokenizer's end locations point one past the
    /// token's last character.
    fn offset(&self, sql: &str, at: Location) -> Option<usize> {
        let line_start = *self
            .starts
            .get(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let rest = &sql[line_start..];
        Some(
            line_start
                + rest
                    .char_indices()
                    .nth(column)
                    .map_or(rest.len(), |(i, _)| i),
        )
    }
}
