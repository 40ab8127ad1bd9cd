//! Facts for a statement sqlparser cannot read, from its tokens alone. Only what the
//! tokens settle is claimed: the kind from the leading keywords, names called like
//! functions (`name(`), simple `SET name TO value` forms, `COPY ... PROGRAM`, and the
//! string body of a `LANGUAGE sql` function or procedure (parsed as SQL in turn).
//! Everything else stays `unknown`, which the default pack denies.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::{SetFact, SqlFacts, kind};

const MAX_BODY_DEPTH: usize = 4;

pub fn words_only(facts: &mut SqlFacts, text: &str, body_depth: usize) {
    let tokens: Vec<Token> = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    let (kind, is_ddl, drop_kind) = kind::classify_words(&tokens);
    facts.kind = kind;
    facts.kinds = vec![kind];
    facts.is_ddl = is_ddl;
    facts.drop_kind = drop_kind;
    for pair in tokens.windows(2) {
        if let (Token::Word(w), Token::LParen) = (&pair[0], &pair[1]) {
            let name = if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_lowercase()
            };
            if !facts.functions.contains(&name) {
                facts.functions.push(name);
            }
        }
    }
    let is = |i: usize, k: Keyword| matches!(tokens.get(i), Some(Token::Word(w)) if w.quote_style.is_none() && w.keyword == k);
    if facts.kind == kind::UNKNOWN {
        writes_in_words(facts, &tokens);
    }
    if matches!(facts.kind, "alter_table" | "alter") {
        alter_drops(facts, &tokens);
    }
    if is(0, Keyword::SET) {
        set_words(facts, &tokens);
    } else if is(0, Keyword::COPY) {
        copy_words(facts, &tokens);
    } else if is(0, Keyword::CREATE) {
        routine_body(facts, &tokens, body_depth);
    }
}

/// `ALTER TABLE t DROP [COLUMN] c, ALTER COLUMN d SET ...`, `ALTER TYPE t DROP ATTRIBUTE
/// a`: any action (at parenthesis depth 0) that drops a column or attribute, wherever it
/// stands in the list. `DROP DEFAULT`, `DROP NOT NULL`, `DROP EXPRESSION` and `DROP
/// IDENTITY` belong to `ALTER COLUMN` and drop no data; `DROP CONSTRAINT` drops none
/// either. Other `ALTER ... DROP` forms (a domain's constraint, a publication's table)
/// drop no data and are left to `sql.ddl`.
fn alter_drops(facts: &mut SqlFacts, tokens: &[Token]) {
    let table = facts.kind == "alter_table";
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0 && w.quote_style.is_none() && w.keyword == Keyword::DROP =>
            {
                let next = match tokens.get(i + 1) {
                    Some(Token::Word(n)) if n.quote_style.is_none() => n.value.to_lowercase(),
                    _ => String::new(),
                };
                let drops = match next.as_str() {
                    "column" => Some("column"),
                    "attribute" => Some("attribute"),
                    "default" | "not" | "expression" | "identity" | "constraint" => None,
                    _ if table => Some("column"),
                    _ => None,
                };
                if let Some(kind) = drops {
                    facts.drop_kind = Some(kind.into());
                    return;
                }
            }
            _ => {}
        }
    }
}

/// `SET [SESSION | LOCAL] name { TO | = } value`, `SET ROLE x`, `SET SESSION AUTHORIZATION x`.
fn set_words(facts: &mut SqlFacts, tokens: &[Token]) {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        Some(Token::Word(w)) => Some(w.value.clone()),
        _ => None,
    };
    let mut i = 1;
    while matches!(word(i).as_deref(), Some("session" | "local"))
        && word(i + 1).as_deref() != Some("authorization")
    {
        i += 1;
    }
    let name = match word(i).as_deref() {
        Some("session") if word(i + 1).as_deref() == Some("authorization") => {
            i += 1;
            "session_authorization".to_string()
        }
        Some(n) => n.to_string(),
        None => return,
    };
    i += 1;
    if matches!(tokens.get(i), Some(Token::Eq)) || word(i).as_deref() == Some("to") {
        i += 1;
    }
    // Only a single value is read; anything longer is not a constant we can name.
    let raw_value = match (tokens.get(i), tokens.get(i + 1)) {
        (Some(Token::SingleQuotedString(s)), None) => Some(s.clone()),
        (Some(Token::Word(w)), None) => Some(w.value.clone()),
        (Some(Token::Number(n, _)), None) => Some(n.clone()),
        _ => None,
    };
    let value = raw_value.as_deref().map(|v| v.trim().to_lowercase());
    facts.kind = "set";
    facts.kinds = vec!["set"];
    facts.is_ddl = false;
    facts.settings.push(name.clone());
    facts.sets.push(SetFact {
        name,
        value,
        raw_value,
    });
}

/// The `AS '<body>'` of `CREATE [OR REPLACE] FUNCTION|PROCEDURE ... LANGUAGE sql`.
fn routine_body(facts: &mut SqlFacts, tokens: &[Token], body_depth: usize) {
    let kw = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == k);
    if !tokens
        .iter()
        .take(4)
        .any(|t| kw(t, Keyword::FUNCTION) || kw(t, Keyword::PROCEDURE))
    {
        return;
    }
    facts.kind = "create_function";
    facts.kinds = vec!["create_function"];
    let language = tokens
        .windows(2)
        .find(|p| kw(&p[0], Keyword::LANGUAGE))
        .map(|p| match &p[1] {
            Token::Word(w) => w.value.to_lowercase(),
            Token::SingleQuotedString(s) => s.to_lowercase(),
            other => other.to_string(),
        });
    if language.as_deref().is_some_and(|l| l != "sql") {
        return;
    }
    for p in tokens.windows(2) {
        let body = match (&p[0], &p[1]) {
            (a, Token::SingleQuotedString(s)) if kw(a, Keyword::AS) => s.clone(),
            (a, Token::DollarQuotedString(d)) if kw(a, Keyword::AS) => d.value.clone(),
            _ => continue,
        };
        if body_depth >= MAX_BODY_DEPTH {
            facts.kinds.push(kind::UNKNOWN);
            return;
        }
        for inner in super::analyze_nested(&body, body_depth + 1).statements {
            facts.absorb(inner);
        }
    }
}

/// `COPY ... {FROM | TO} PROGRAM '...'` or `COPY ... {FROM | TO} '<file>'`: the target
/// settles the server-escape question whatever else the statement holds.
fn copy_words(facts: &mut SqlFacts, tokens: &[Token]) {
    let kw = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == k);
    for p in tokens.windows(2) {
        if !(kw(&p[0], Keyword::FROM) || kw(&p[0], Keyword::TO)) {
            continue;
        }
        match &p[1] {
            t if kw(t, Keyword::PROGRAM) => facts.copy_program = true,
            Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_) => facts.copy_file = true,
            _ => {}
        }
    }
    if facts.copy_program || facts.copy_file {
        facts.kind = "copy";
        facts.kinds = vec!["copy"];
    }
}

/// In an unreadable statement, every `DELETE`/`UPDATE` that starts a command (not
/// `FOR UPDATE`, `ON DELETE`, `ON CONFLICT DO UPDATE`, trigger events) is recorded as a
/// write, bounded only if a `WHERE` follows it at the same parenthesis depth. A guess on
/// the safe side: with `server.unparsed = review`, an unbounded write is still denied.
fn writes_in_words(facts: &mut SqlFacts, tokens: &[Token]) {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let has_conflict = (0..tokens.len()).any(|i| word(i) == Some(Keyword::CONFLICT));
    for i in 0..tokens.len() {
        let k = match word(i) {
            Some(k @ (Keyword::DELETE | Keyword::UPDATE)) => k,
            _ => continue,
        };
        let before = i.checked_sub(1).and_then(word);
        let not_a_command = match k {
            Keyword::DELETE => before == Some(Keyword::ON),
            _ => {
                matches!(
                    before,
                    Some(
                        Keyword::FOR
                            | Keyword::KEY
                            | Keyword::ON
                            | Keyword::OR
                            | Keyword::BEFORE
                            | Keyword::AFTER
                            | Keyword::OF
                    )
                ) || (before == Some(Keyword::DO) && has_conflict)
            }
        };
        if not_a_command {
            continue;
        }
        let mut depth = 0i32;
        let mut has_where = false;
        for t in &tokens[i + 1..] {
            match t {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Word(w)
                    if depth == 0 && w.quote_style.is_none() && w.keyword == Keyword::WHERE =>
                {
                    has_where = true;
                    break;
                }
                _ => {}
            }
        }
        let table = tokens[i + 1..]
            .iter()
            .find_map(|t| match t {
                Token::Word(w)
                    if w.quote_style.is_some()
                        || !matches!(w.keyword, Keyword::FROM | Keyword::ONLY) =>
                {
                    Some(if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_lowercase()
                    })
                }
                _ => None,
            })
            .unwrap_or_default();
        let kind = if k == Keyword::DELETE {
            "delete"
        } else {
            "update"
        };
        if !facts.kinds.contains(&kind) {
            facts.kinds.push(kind);
        }
        facts.writes.push(super::Write {
            kind,
            table,
            has_where,
            where_always_true: false,
        });
        facts.has_where &= has_where;
    }
}
