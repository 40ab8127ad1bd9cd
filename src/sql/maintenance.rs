//! Facts of the utility statements that lock live tables, read from their tokens (sqlparser
//! reads `LOCK` and plain `VACUUM`, not `REINDEX`, `CLUSTER` or `VACUUM (options)`): the
//! lock mode `LOCK` takes, whether `VACUUM` is `FULL`, whether `REINDEX` is `CONCURRENTLY`.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::SqlFacts;

/// `LOCK` without `IN ... MODE` takes the strongest lock.
const DEFAULT_LOCK_MODE: &str = "access exclusive";

pub fn collect(facts: &mut SqlFacts, text: &str) {
    if !facts
        .kinds
        .iter()
        .any(|k| matches!(*k, "lock" | "vacuum" | "reindex"))
    {
        return;
    }
    let words: Vec<String> = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
            Token::Whitespace(_) | Token::EOF => None,
            Token::LParen => Some("(".into()),
            Token::RParen => Some(")".into()),
            Token::Comma => Some(",".into()),
            other => Some(other.to_string()),
        })
        .collect();
    match words.first().map(String::as_str) {
        Some("lock") => facts.lock_mode = Some(lock_mode(&words)),
        Some("vacuum") => facts.vacuum_full = option_on(&words, "full"),
        Some("reindex") => facts.concurrently |= option_on(&words, "concurrently"),
        _ => {}
    }
}

/// The words between `IN` and `MODE`, or the default.
fn lock_mode(words: &[String]) -> String {
    let start = words.iter().position(|w| w == "in");
    let end = words.iter().position(|w| w == "mode");
    match (start, end) {
        (Some(s), Some(e)) if s < e => words[s + 1..e].join(" "),
        _ => DEFAULT_LOCK_MODE.to_string(),
    }
}

/// Whether `name` is on: as a bare keyword (`VACUUM FULL t`, `REINDEX TABLE CONCURRENTLY
/// t`) or in the option list (`(FULL)`, `(FULL true)`, not `(FULL false)`).
fn option_on(words: &[String], name: &str) -> bool {
    words.iter().enumerate().any(|(i, w)| {
        w == name
            && !words
                .get(i + 1)
                .is_some_and(|v| matches!(v.as_str(), "false" | "off" | "0" | "'false'" | "'off'"))
    })
}

#[cfg(test)]
mod tests {
    use crate::sql::analyze;

    fn facts(sql: &str) -> crate::sql::SqlFacts {
        analyze(sql).statements.remove(0)
    }

    #[test]
    fn lock_modes() {
        assert_eq!(
            facts("LOCK TABLE users").lock_mode.as_deref(),
            Some("access exclusive")
        );
        assert_eq!(
            facts("lock users in share row exclusive mode nowait")
                .lock_mode
                .as_deref(),
            Some("share row exclusive")
        );
        assert_eq!(
            facts("LOCK users IN ACCESS SHARE MODE")
                .lock_mode
                .as_deref(),
            Some("access share")
        );
    }

    #[test]
    fn vacuum_full_and_reindex_concurrently() {
        assert!(facts("VACUUM FULL users").vacuum_full);
        assert!(facts("VACUUM (FULL, ANALYZE) users").vacuum_full);
        assert!(!facts("VACUUM (FULL false) users").vacuum_full);
        assert!(!facts("VACUUM ANALYZE users").vacuum_full);
        assert!(facts("REINDEX TABLE CONCURRENTLY users").concurrently);
        assert!(facts("REINDEX (CONCURRENTLY) TABLE users").concurrently);
        assert!(!facts("REINDEX TABLE users").concurrently);
    }
}
