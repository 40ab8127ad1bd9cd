//! Statement kinds: from the AST when sqlparser reads the statement, and from its leading
//! keywords when it cannot (`DO`, `ALTER SYSTEM`, `REINDEX`, ... are outside sqlparser's
//! grammar but their meaning is settled by the first words).

use sqlparser::ast::{SetExpr, Statement};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

/// The kind of an unreadable statement whose leading words do not settle its meaning.
pub const UNKNOWN: &str = "unknown";

/// `(kind, is_ddl)` of a parsed statement. Statements we do not name are `other` and count
/// as DDL, so an unfamiliar command is reviewed rather than waved through.
pub fn classify(stmt: &Statement) -> (&'static str, bool) {
    use Statement as S;
    match stmt {
        S::Query(q) => (query_kind(&q.body), false),
        S::Insert(_) => ("insert", false),
        S::Update(_) => ("update", false),
        S::Delete(_) => ("delete", false),
        S::Merge(_) => ("merge", false),
        S::Truncate(_) => ("truncate", false),
        S::Copy { .. } => ("copy", false),
        S::CreateTable(_) => ("create_table", true),
        S::AlterTable(_) | S::RenameTable(_) => ("alter_table", true),
        S::Drop { .. }
        | S::DropFunction(_)
        | S::DropDomain(_)
        | S::DropProcedure { .. }
        | S::DropPolicy(_)
        | S::DropRule(_)
        | S::DropTrigger(_)
        | S::DropExtension(_)
        | S::DropOperator(_)
        | S::DropOperatorFamily(_)
        | S::DropOperatorClass(_)
        | S::DropSecret { .. }
        | S::DropConnector { .. } => ("drop", true),
        S::Grant(_) | S::GrantRole(_) => ("grant", false),
        S::Revoke(_) | S::RevokeRole(_) | S::Deny(_) => ("revoke", false),
        S::CreateRole(_) | S::CreateUser(_) => ("create_role", false),
        S::AlterRole { .. } | S::AlterUser(_) => ("alter_role", false),
        S::AlterDefaultPrivileges(_) => ("alter_default_privileges", false),
        S::Set(_) => ("set", false),
        S::Reset(_) => ("reset", false),
        S::ShowVariable { .. } | S::ShowVariables { .. } | S::ShowStatus { .. } => ("show", false),
        S::StartTransaction { .. } => ("begin", false),
        S::Commit { .. } => ("commit", false),
        S::Rollback { .. } => ("rollback", false),
        S::Savepoint { .. } => ("savepoint", false),
        S::ReleaseSavepoint { .. } => ("release", false),
        S::Call(_) => ("call", false),
        S::Prepare { .. } => ("prepare", false),
        S::Execute { .. } => ("execute", false),
        S::Deallocate { .. } => ("deallocate", false),
        S::Explain { .. } | S::ExplainTable { .. } => ("explain", false),
        S::Vacuum(_) => ("vacuum", false),
        S::Analyze(_) => ("analyze", false),
        S::LISTEN { .. } => ("listen", false),
        S::UNLISTEN { .. } => ("unlisten", false),
        S::NOTIFY { .. } => ("notify", false),
        S::Discard { .. } => ("discard", false),
        S::Declare { .. } => ("declare", false),
        S::Fetch { .. } => ("fetch", false),
        S::Close { .. } => ("close", false),
        S::Lock(_) | S::LockTables { .. } => ("lock", false),
        S::RefreshMaterializedView(_) => ("refresh", false),
        S::Load { .. } => ("load", false),
        S::CreateIndex(_) => ("create_index", true),
        S::CreateView(_) => ("create_view", true),
        S::CreateFunction(_) | S::CreateProcedure { .. } | S::CreateAggregate(_) => {
            ("create_function", true)
        }
        S::CreateSchema { .. } => ("create_schema", true),
        S::CreateDatabase { .. } => ("create_database", true),
        S::CreateExtension(_) => ("create_extension", true),
        S::CreateSequence { .. } => ("create_sequence", true),
        S::CreateType { .. } | S::CreateDomain(_) => ("create_type", true),
        S::CreateTrigger(_) => ("create_trigger", true),
        S::CreatePolicy(_) => ("create_policy", true),
        S::CreateRule(_) => ("create_rule", true),
        S::Comment { .. } => ("comment", true),
        _ => ("other", true),
    }
}

fn query_kind(body: &SetExpr) -> &'static str {
    match body {
        SetExpr::Insert(_) => "insert",
        SetExpr::Update(_) => "update",
        SetExpr::Delete(_) => "delete",
        SetExpr::Merge(_) => "merge",
        SetExpr::Query(q) => query_kind(&q.body),
        _ => "select",
    }
}

/// What the leading keywords of an unreadable statement settle: `(kind, is_ddl,
/// drop_kind)`. Returns [`UNKNOWN`] where reading the rest would be needed. `tokens` holds
/// no whitespace or comments.
pub fn classify_words(tokens: &[Token]) -> (&'static str, bool, Option<String>) {
    let words: Vec<(Keyword, String)> = tokens
        .iter()
        .take(4)
        .map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => (w.keyword, w.value.to_lowercase()),
            other => (Keyword::NoKeyword, other.to_string()),
        })
        .collect();
    let kw = |i: usize| words.get(i).map_or(Keyword::NoKeyword, |w| w.0);
    let word = |i: usize| words.get(i).map_or("", |w| w.1.as_str());
    let role_word = |i: usize| matches!(kw(i), Keyword::ROLE | Keyword::USER | Keyword::GROUP);
    match kw(0) {
        Keyword::DO => ("do", false, None),
        Keyword::ALTER if kw(1) == Keyword::SYSTEM => ("alter_system", false, None),
        Keyword::ALTER if role_word(1) => ("alter_role", false, None),
        Keyword::ALTER if kw(1) == Keyword::DEFAULT => ("alter_default_privileges", false, None),
        Keyword::ALTER if kw(1) == Keyword::TABLE => ("alter_table", true, None),
        Keyword::ALTER => ("alter", true, None),
        Keyword::CREATE if role_word(1) => ("create_role", false, None),
        Keyword::CREATE => ("create_other", true, None),
        Keyword::DROP => ("drop", true, Some(drop_object(word(1), word(2)))),
        Keyword::TRUNCATE => ("truncate", false, None),
        Keyword::GRANT => ("grant", false, None),
        Keyword::REVOKE => ("revoke", false, None),
        Keyword::VACUUM => ("vacuum", false, None),
        // Transaction control: only modes and a transaction name can follow.
        Keyword::START if kw(1) == Keyword::TRANSACTION => ("begin", false, None),
        Keyword::BEGIN => ("begin", false, None),
        Keyword::PREPARE if kw(1) == Keyword::TRANSACTION => ("prepare_transaction", false, None),
        Keyword::COMMIT if word(1) == "prepared" => ("commit_prepared", false, None),
        Keyword::ROLLBACK if word(1) == "prepared" => ("rollback_prepared", false, None),
        Keyword::ANALYZE => ("analyze", false, None),
        // `TABLE name` is `SELECT * FROM name`; anything more is not settled by words.
        Keyword::TABLE
            if tokens.len() <= 4
                && tokens[1..]
                    .iter()
                    .all(|t| matches!(t, Token::Word(_) | Token::Period)) =>
        {
            ("select", false, None)
        }
        _ => match word(0) {
            "reassign" => ("reassign_owned", false, None),
            "reindex" => ("reindex", false, None),
            "cluster" => ("cluster", false, None),
            "checkpoint" => ("checkpoint", false, None),
            "move" => ("fetch", false, None),
            "load" => ("load", false, None),
            "security" | "import" => ("other", true, None),
            "comment" => ("comment", true, None),
            _ => (UNKNOWN, false, None),
        },
    }
}

/// `DROP MATERIALIZED VIEW` → `materialized_view`, `DROP TABLE` → `table`.
fn drop_object(first: &str, second: &str) -> String {
    match first {
        "materialized" | "foreign" | "event" | "text" | "access" if !second.is_empty() => {
            format!("{first}_{second}")
        }
        "" => "unknown".to_string(),
        other => other.to_string(),
    }
}
