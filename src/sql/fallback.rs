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
    if is(0, Keyword::SET) {
        set_words(facts, &tokens);
    } else if is(0, Keyword::COPY) && (1..tokens.len()).any(|i| is(i, Keyword::PROGRAM)) {
        facts.kind = "copy";
        facts.kinds = vec!["copy"];
        facts.copy_program = true;
    } else if is(0, Keyword::CREATE) {
        routine_body(facts, &tokens, body_depth);
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
    let value = match (tokens.get(i), tokens.get(i + 1)) {
        (Some(Token::SingleQuotedString(s)), None) => Some(s.trim().to_lowercase()),
        (Some(Token::Word(w)), None) => Some(w.value.to_lowercase()),
        (Some(Token::Number(n, _)), None) => Some(n.clone()),
        _ => None,
    };
    facts.kind = "set";
    facts.kinds = vec!["set"];
    facts.is_ddl = false;
    facts.settings.push(name.clone());
    facts.sets.push(SetFact { name, value });
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
