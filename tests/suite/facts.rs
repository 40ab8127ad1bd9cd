//! SQL facts from the real parser: what rules can rely on.

use portcullis::sql::{Analyzer, SharedShapes, SqlFacts, analyze};

fn one(sql: &str) -> SqlFacts {
    let mut a = analyze(sql);
    assert_eq!(
        a.statements.len(),
        1,
        "expected one statement in {sql:?}: {:?}",
        a.statements
    );
    a.statements.remove(0)
}

#[test]
fn kinds_reach_every_nested_write() {
    for (sql, top) in [
        (
            "WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) FROM d",
            "select",
        ),
        ("EXPLAIN ANALYZE DELETE FROM users", "explain"),
        (
            "EXPLAIN (ANALYZE true, BUFFERS) DELETE FROM users",
            "explain",
        ),
        ("PREPARE p(int) AS DELETE FROM users", "prepare"),
        (
            "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM users",
            "create_rule",
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DELETE FROM users $$",
            "create_function",
        ),
        (
            "CREATE FUNCTION f() RETURNS void AS 'DELETE FROM users' LANGUAGE SQL",
            "create_function",
        ),
        (
            "WITH a AS (WITH b AS (DELETE FROM users RETURNING id) SELECT id FROM b) SELECT * FROM a",
            "select",
        ),
        (
            "SELECT * FROM (WITH x AS (DELETE FROM users RETURNING 1) SELECT * FROM x) s",
            "select",
        ),
    ] {
        let f = one(sql);
        assert_eq!(f.kind, top, "{sql}");
        assert!(f.kinds.contains(&"delete"), "{sql}: kinds {:?}", f.kinds);
        assert!(!f.has_where, "{sql}");
        assert_eq!(f.writes.len(), 1, "{sql}");
        assert_eq!(f.writes[0].table, "users", "{sql}");
    }
}

#[test]
fn plain_explain_does_not_run_its_statement() {
    let f = one("EXPLAIN DELETE FROM users");
    assert_eq!(f.kind, "explain");
    assert!(f.writes.is_empty());
    assert!(!f.explain_analyze);
    assert!(
        one("EXPLAIN (ANALYZE off) DELETE FROM users")
            .writes
            .is_empty()
    );
}

#[test]
fn every_statement_of_a_multi_statement_string() {
    let a = analyze(
        "SELECT 1;; /* c; */ DELETE FROM users ; -- tail\n UPDATE t SET a = 1 WHERE id = 2",
    );
    let kinds: Vec<_> = a.statements.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["select", "delete", "update"]);
    assert!(a.statements.iter().all(|s| s.statement_count == 3));
    assert_eq!(a.statements[1].text, "DELETE FROM users");
    assert_eq!(a.statements[1].index, 2);
}

#[test]
fn always_true_where_clauses() {
    for cond in [
        "1=1",
        "'a'='a'",
        "TRUE",
        "NOT FALSE",
        "id = id",
        "users.id = users.id",
        "x = 5 OR true",
        "id IS NOT NULL",
        "1 IN (1)",
        "2 > 1",
        "1 + 1 = 2",
        "'true'::boolean",
        "TRUE IS TRUE",
        "EXISTS (SELECT 1)",
        "email IS NULL OR email IS NOT NULL",
        "(((1 = 1)))",
        "NOT (id <> id)",
        "'1' = 1",
        "1 BETWEEN 0 AND 2",
        "name LIKE '%'",
        "coalesce(true, false)",
        "(SELECT true)",
        "id IN (SELECT id FROM users)",
        "user_id IS NOT NULL",
        "5 = 5 AND 'x' = 'x'",
        "'yes'",
        // Names no column, so it cannot pick rows: all of them, none, or a random subset.
        "$1",
        "$1 = $2",
        "random() < 0.5",
        "now() = now()",
        "current_user = 'app'",
        "id = users.id",
        "EXISTS (SELECT 1 FROM users u2 WHERE u2.id = users.id)",
        "lower(email) = lower(email)",
        "id >= 0 OR id < 0",
        "amount < 10 OR amount > 5",
        "status = 'a' OR status <> 'a'",
        "id IN (SELECT id FROM users WHERE true)",
        "id = ANY (SELECT id FROM users)",
    ] {
        let f = one(&format!("DELETE FROM users WHERE {cond}"));
        assert!(f.where_always_true, "WHERE {cond} should be always true");
        assert!(f.has_where);
    }
    for cond in [
        "id = 1",
        "id = $1",
        "1 = 0 OR id = 3",
        "name LIKE 'a%'",
        "email IS NOT NULL",
        "id IN (1, 2)",
        "id IN (SELECT user_id FROM orders)",
        "a = b",
        "NOT TRUE OR id = 4",
        "EXISTS (SELECT 1 FROM t WHERE t.x = users.id)",
        "id > 0",
        "1 IN (2, 3)",
        "false",
        "1 = 0",
        "random() = random() AND id = 3",
        "id > 0 OR id < 0",
        "id > 10 OR id < 5",
        "lower(a) = lower(b)",
    ] {
        let f = one(&format!("UPDATE users SET a = 1 WHERE {cond}"));
        assert!(!f.where_always_true, "WHERE {cond} is not provably true");
    }
}

#[test]
fn identifiers_are_normalised_like_postgres() {
    let f = one(
        r#"SELECT * FROM Public.Users JOIN "Orders" o ON true JOIN "Sales"."Q1" ON true JOIN U&"d\0061t\+000061" ON true"#,
    );
    assert_eq!(
        f.tables_read,
        ["public.users", "Orders", "Sales.Q1", "data"]
    );
    let f = one(r#"DELETE FROM U&"!0075sers" UESCAPE '!' WHERE id = 1"#);
    assert_eq!(f.tables_written, ["users"]);
    let f = one("UPDATE App.Accounts SET x = 1 WHERE id = 1");
    assert_eq!(f.tables_written, ["app.accounts"]);
}

#[test]
fn functions_from_every_position() {
    let f = one(
        "SELECT upper(a) FROM generate_series(1, 3) g, LATERAL unnest(arr(g)) u \
         WHERE length(b) > (SELECT max(x) FROM t WHERE abs(x) > 0) ORDER BY lower(c)",
    );
    for name in [
        "upper",
        "generate_series",
        "unnest",
        "arr",
        "length",
        "max",
        "abs",
        "lower",
    ] {
        assert!(
            f.functions.iter().any(|x| x == name),
            "{name} missing from {:?}",
            f.functions
        );
    }
    assert!(
        !f.tables_read.iter().any(|t| t == "generate_series"),
        "{:?}",
        f.tables_read
    );
    let f =
        one("CREATE TABLE t (a text DEFAULT pg_read_file('/etc/passwd'), CHECK (length(a) > 0))");
    assert!(f.functions.iter().any(|x| x == "pg_read_file"));
    let f = one(r#"SELECT "pg_catalog"."pg_read_file"('x'), PG_CATALOG.LO_IMPORT('y')"#);
    assert!(f.functions.iter().any(|x| x == "pg_read_file"));
    assert!(f.functions.iter().any(|x| x == "lo_import"));
    let f = one("INSERT INTO t VALUES (pg_ls_dir('.'))");
    assert!(f.functions.iter().any(|x| x == "pg_ls_dir"));
}

#[test]
fn words_in_literals_and_comments_are_not_facts() {
    for sql in [
        "SELECT 'DROP TABLE users; DELETE FROM users'",
        "SELECT $$DELETE FROM users$$",
        "SELECT $tag$ DROP TABLE x; $$ nested $$ $tag$",
        r"SELECT E'it\'s; DELETE FROM users'",
        "SELECT 1 -- DELETE FROM users",
        "SELECT 1 /* DELETE FROM users; /* nested */ DROP TABLE t; */",
        r#"SELECT 1 AS "DELETE FROM users""#,
        "SELECT 'pg_read_file(x)'",
    ] {
        let a = analyze(sql);
        assert_eq!(a.statements.len(), 1, "{sql}");
        let f = &a.statements[0];
        assert_eq!(f.kinds, ["select"], "{sql}");
        assert!(
            f.writes.is_empty() && f.drop_kind.is_none() && f.functions.is_empty(),
            "{sql}: {f:?}"
        );
    }
}

#[test]
fn fingerprint_is_stable_across_values_case_and_layout() {
    let a = one("SELECT * FROM users WHERE id = 1 AND name = 'bob' AND x IN (1, 2, 3)");
    let b = one("select *\n  from USERS  where ID = 42 and NAME = 'alice' and X in (7) -- c");
    assert_eq!(
        a.fingerprint, b.fingerprint,
        "{} vs {}",
        a.normalized, b.normalized
    );
    let c = one("SELECT * FROM users WHERE id = -5 AND name = $1 AND x IN ($2, $3)");
    assert_eq!(
        a.fingerprint, c.fingerprint,
        "{} vs {}",
        a.normalized, c.normalized
    );
    let d = one("SELECT * FROM orders WHERE id = 1 AND name = 'bob' AND x IN (1)");
    assert_ne!(a.fingerprint, d.fingerprint);
    assert_eq!(a.fingerprint.len(), 16);
}

#[test]
fn settings_from_set_reset_and_set_config() {
    let f = one("SET LOCAL standard_conforming_strings TO 'off'");
    assert_eq!(
        (f.sets[0].name.as_str(), f.sets[0].value.as_deref()),
        ("standard_conforming_strings", Some("off"))
    );
    let f = one("SELECT set_config('ROLE', 'postgres', false)");
    assert_eq!(
        (f.sets[0].name.as_str(), f.sets[0].value.as_deref()),
        ("role", Some("postgres"))
    );
    let f = one("SELECT set_config(name, 'x', false) FROM t");
    assert_eq!(f.sets[0].name, "*");
    let f = one("SET ROLE NONE");
    assert_eq!(f.sets[0].value.as_deref(), Some("none"));
    let f = one("RESET search_path");
    assert_eq!(
        (f.sets[0].name.as_str(), f.sets[0].value.as_deref()),
        ("search_path", Some("default"))
    );
}

#[test]
fn unreadable_statements_are_classified_by_their_first_words() {
    for (sql, kind) in [
        ("DO $$ BEGIN DELETE FROM users; END $$", "do"),
        ("ALTER SYSTEM SET fsync = off", "alter_system"),
        ("REINDEX TABLE users", "reindex"),
        ("CLUSTER users USING users_pkey", "cluster"),
        // Read by PostgreSQL's grammar: a statement the gateway does not name is `other`.
        ("ALTER DOMAIN d SET NOT NULL", "other"),
        ("SELEC 1", "unknown"),
        ("SELECT 'open", "unknown"),
        ("SELECT 1 /* open", "unknown"),
        ("SELECT $$ open", "unknown"),
    ] {
        let f = one(sql);
        assert_eq!(f.kind, kind, "{sql}");
        assert!(!f.parsed, "{sql}");
    }
    let f = one("DELETE FROM users WHERE CURRENT OF c");
    assert!(f.parsed && f.has_where && f.writes.len() == 1);
}

#[test]
fn copy_facts() {
    assert!(one("COPY t TO PROGRAM 'gzip > /tmp/x'").copy_program);
    assert!(one("COPY t FROM '/etc/passwd'").copy_file);
    let f = one("COPY t FROM STDIN WITH (FORMAT csv)");
    assert!(!f.copy_file && !f.copy_program && f.tables_written == ["t"]);
    let f = one("COPY t TO STDOUT");
    assert_eq!(f.tables_read, ["t"]);
}

#[test]
fn ddl_and_limit_facts() {
    let f = one("CREATE INDEX CONCURRENTLY i ON users (email)");
    assert!(f.is_ddl && f.concurrently);
    assert!(one("CREATE TEMPORARY TABLE s (id int)").temporary);
    assert_eq!(
        one("DROP MATERIALIZED VIEW mv").drop_kind.as_deref(),
        Some("materialized_view")
    );
    assert_eq!(
        one("ALTER TABLE users DROP COLUMN email")
            .drop_kind
            .as_deref(),
        Some("column")
    );
    assert_eq!(one("SELECT * FROM t LIMIT 10").limit, Some(10));
    let f = one("WITH c AS (SELECT 1) SELECT * FROM c JOIN t ON true");
    assert_eq!(f.tables_read, ["t"], "CTE names are not tables");
}

fn as_json(sql: &str, analyzer: &mut Analyzer) -> (String, String) {
    let cached = serde_json::to_string(&analyzer.analyze(sql)).expect("facts serialize");
    let fresh = serde_json::to_string(&analyze(sql)).expect("facts serialize");
    (cached, fresh)
}

#[test]
fn shape_cache_never_changes_facts() {
    let corpus = portcullis::cases::load_cases(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus"
    )))
    .expect("corpus parses");
    let mut analyzer = Analyzer::default();
    for case in &corpus {
        analyzer.analyze(&case.sql);
    }
    assert!(
        analyzer.cached_shapes() > 100,
        "the corpus should fill the cache"
    );
    for case in corpus.iter().rev() {
        let (cached, fresh) = as_json(&case.sql, &mut analyzer);
        assert_eq!(cached, fresh, "{}", case.origin);
    }
    // Same shape, different literals: the facts that depend on the values must not be
    // taken from the cache.
    for (warm, probe) in [
        ("DELETE FROM t WHERE 1 = 2", "DELETE FROM t WHERE 1 = 1"),
        (
            "DELETE FROM t WHERE $1 = $2",
            "DELETE FROM t WHERE 'a' = 'a'",
        ),
        (
            "DELETE FROM t WHERE boolean 'f'",
            "DELETE FROM t WHERE boolean 't'",
        ),
        (
            "UPDATE t SET a = 1 WHERE 'x' LIKE 'y'",
            "UPDATE t SET a = 1 WHERE 'x' LIKE '%'",
        ),
        ("DELETE FROM t WHERE -1 > 0", "DELETE FROM t WHERE 1 > 0"),
        ("SELECT * FROM t LIMIT 10", "SELECT * FROM t LIMIT 100000"),
        (
            "SET standard_conforming_strings = 'on'",
            "SET standard_conforming_strings = 'off'",
        ),
        (
            "SELECT set_config('app.x', 'b', false)",
            "SELECT set_config('role', 'postgres', false)",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ DELETE FROM users $$",
        ),
        (
            "EXPLAIN (ANALYZE false) DELETE FROM t",
            "EXPLAIN (ANALYZE true) DELETE FROM t",
        ),
        (
            "MERGE INTO t USING s ON 1 = 2 WHEN MATCHED THEN DELETE",
            "MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN DELETE",
        ),
    ] {
        let mut analyzer = Analyzer::default();
        analyzer.analyze(warm);
        let (cached, fresh) = as_json(probe, &mut analyzer);
        assert_eq!(cached, fresh, "{probe} after {warm}");
    }
}

/// `sql` with other literal values, spacing and comments: each literal in turn and all
/// at once given other values (found by the quick key's own scan, so a literal it
/// wrongly found would show), spaces made newlines or comments, comments added.
fn variants(sql: &str) -> Vec<String> {
    let mut out = vec![
        sql.to_string(),
        sql.replace(' ', "\n  "),
        sql.replacen(' ', " /* c */ ", 2),
        format!("-- lead\n{sql}"),
        format!("{sql} -- trail"),
        format!("{sql};"),
    ];
    let mut literals = Vec::new();
    if portcullis::sql::quick::scan(sql, Some(&mut literals)).is_none() {
        return out;
    }
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let replaced = |only: Option<usize>, n: &str, s: &str| {
        let mut text = sql.to_string();
        for (i, r) in literals.iter().enumerate().rev() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let with = if number(&sql[r.clone()]) { n } else { s };
            text.replace_range(r.clone(), with);
        }
        text
    };
    for (n, s) in [
        ("0", ""),
        ("1", "x"),
        ("2.5", "%"),
        ("99999999999999999999", "DELETE FROM users"),
        ("10", "it''s"),
        ("3", "on"),
        ("7", "postgres"),
    ] {
        out.push(replaced(None, n, s));
        for i in 0..literals.len().min(3) {
            out.push(replaced(Some(i), n, s));
        }
    }
    out
}

/// Issue 15: the quick key (one pass over the text, no tokenizer) never maps two
/// statements the tokenizer's path reads differently to one entry. Every corpus case and
/// its variants, analysed by an analyzer warmed on the whole corpus and by the
/// tokenizer's path alone: the facts match to the byte.
#[test]
fn issue_15_the_quick_key_never_changes_facts() {
    let corpus = portcullis::cases::load_cases(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus"
    )))
    .expect("corpus parses");
    let mut analyzer = Analyzer::new(1 << 20);
    for case in &corpus {
        analyzer.analyze(&case.sql);
    }
    let mut texts = 0;
    for case in &corpus {
        for text in variants(&case.sql) {
            let quick = serde_json::to_string(&analyzer.analyze(&text)).expect("facts");
            let fresh = serde_json::to_string(&analyze(&text)).expect("facts");
            assert_eq!(quick, fresh, "{text:?} (a variant of {})", case.origin);
            texts += 1;
        }
    }
    assert!(
        analyzer.quick_keys() > 100,
        "the corpus should exercise the quick key ({} keys over {texts} texts)",
        analyzer.quick_keys()
    );
}

/// Issue 15: a session's analyzer takes the quick keys other sessions read. An analyzer
/// that has read nothing itself, answering the corpus and its variants from what another
/// one read, gives the facts the tokenizer's path gives, to the byte.
#[test]
fn issue_15_shapes_another_session_read_never_change_facts() {
    let corpus = portcullis::cases::load_cases(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus"
    )))
    .expect("corpus parses");
    let shared = std::sync::Arc::new(SharedShapes::new(1 << 20));
    let mut first = Analyzer::sharing(shared.clone());
    for case in &corpus {
        first.analyze(&case.sql);
    }
    assert!(
        shared.len() > 100,
        "the corpus should fill it ({})",
        shared.len()
    );
    for case in &corpus {
        for text in variants(&case.sql) {
            let mut second = Analyzer::sharing(shared.clone());
            let (taken, fresh) = as_json(&text, &mut second);
            assert_eq!(taken, fresh, "{text:?} (a variant of {})", case.origin);
        }
    }
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    // Too deep for sqlparser; PostgreSQL's grammar reads it (or the statement is unknown).
    let deep = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    let f = one(&deep);
    assert!(
        !f.parsed && matches!(f.kind, "unknown" | "select"),
        "{}",
        f.kind
    );
    let deep = format!(
        "DELETE FROM t WHERE {}",
        vec!["NOT"; 5000].join(" ") + " true"
    );
    let f = one(&deep);
    assert!(
        f.kind == "unknown" || f.writes.iter().all(|w| w.where_always_true),
        "{f:?}"
    );
    // A long flat chain is a deep left-leaning tree for every walker after the parser.
    let long = format!(
        "DELETE FROM t WHERE {} OR true",
        vec!["a = 1"; 50_000].join(" AND ")
    );
    let f = one(&long);
    assert!(f.kind == "unknown" || f.where_always_true, "{}", f.kind);
    let long = format!("SELECT {}", vec!["1"; 50_000].join(" + "));
    assert!(matches!(one(&long).kind, "unknown" | "select"));
}

#[test]
fn self_joins_on_the_key_match_every_row() {
    for sql in [
        "DELETE FROM users USING users u2 WHERE users.id = u2.id",
        "UPDATE users SET name = 'x' FROM users u2 WHERE users.id = u2.id",
        "UPDATE users u SET name = 'x' FROM users u2 WHERE u.id = u2.id",
        "MERGE INTO users USING users AS u2 ON users.id = u2.id WHEN MATCHED THEN DELETE",
    ] {
        assert!(one(sql).where_always_true, "{sql}");
    }
    assert!(!one("DELETE FROM users USING orders o WHERE users.id = o.user_id").where_always_true);
}

#[test]
fn writes_inside_unreadable_statements_are_still_seen() {
    // sqlparser cannot read XMLELEMENT(NAME ...); PostgreSQL's tree shows the DELETE.
    let f = one("WITH d AS (DELETE FROM users RETURNING id) SELECT xmlelement(name x, id) FROM d");
    assert_eq!(f.kind, "select");
    assert!(f.read_by_postgres && f.kinds.contains(&"delete"));
    assert_eq!((f.writes[0].kind, f.writes[0].has_where), ("delete", false));
    let f = one("UPDATE users SET bio = xmlelement(name b, name)::text WHERE id = 1");
    assert!(f.writes[0].has_where);
    let f = one("SELECT xmlelement(name x, id) FROM t FOR UPDATE");
    assert!(f.writes.is_empty(), "FOR UPDATE is a lock, not a write");
}

/// The JSON keys of `value` (an object), or of its first element when it is a list.
fn keys(value: &serde_json::Value) -> Vec<String> {
    let value = match value {
        serde_json::Value::Array(items) => items.first().cloned().unwrap_or_default(),
        other => other.clone(),
    };
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Compares the fact paths a schema lists under `root` with the keys the code's facts
/// serialize to (records in lists one level down); `not_facts` are serialized fields
/// that rules are not meant to read.
fn assert_schema_matches(
    schema: &[&str],
    root: &str,
    facts: &serde_json::Value,
    not_facts: &[&str],
) {
    let listed: Vec<&str> = schema
        .iter()
        .filter_map(|p| p.strip_prefix(&format!("{root}.")))
        .collect();
    let mut provided: Vec<String> = Vec::new();
    for key in keys(facts) {
        if not_facts.contains(&key.as_str()) {
            continue;
        }
        let inner = keys(&facts[&key]);
        if matches!(&facts[&key], serde_json::Value::Array(_)) && !inner.is_empty() {
            provided.extend(inner.iter().map(|k| format!("{key}.{k}")));
        }
        provided.push(key);
    }
    for p in &listed {
        // A field of records in a list the sample leaves empty cannot be seen here.
        let in_empty_list = p
            .split_once('.')
            .is_some_and(|(list, _)| facts[list].as_array().is_some_and(|a| a.is_empty()));
        assert!(
            in_empty_list || provided.iter().any(|k| k == p),
            "{root}.{p} is in policy/schema.rs but no fact provides it"
        );
    }
    for p in &provided {
        assert!(
            listed.contains(&p.as_str()),
            "{root}.{p} is provided but not in policy/schema.rs, so no rule can read it"
        );
    }
}

/// Issue #10: the fact names rules may use are exactly the facts the code provides.
#[test]
fn issue_10_the_schema_lists_exactly_the_facts_provided() {
    use portcullis::policy::schema::{GIT_FACTS, SQL_FACTS};
    let sql = one("WITH d AS (UPDATE t SET a = 1 WHERE id = 2 RETURNING *) \
         SELECT set_config('application_name', 'x', false) FROM d");
    assert!(!sql.writes.is_empty() && !sql.sets.is_empty());
    let sql = serde_json::to_value(&sql).expect("facts serialize");
    assert_schema_matches(SQL_FACTS, "stmt", &sql, &["parse_error"]);

    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["commit", "-q", "--allow-empty", "-m", "root"]);
    // The commit under test is on no ref, as a pushed one is before it lands.
    git(&["checkout", "-q", "--detach"]);
    std::fs::write(repo.join("a.txt"), "password = \"x9Kq2LmP7vR4tZ8wN3bY\"\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    let new = git(&["rev-parse", "HEAD"]);
    let update =
        portcullis::git::inspect::history::Update::parse(&"0".repeat(40), &new, "refs/heads/x")
            .expect("update");
    let facts = portcullis::git::inspect::history::inspect(
        repo,
        None,
        &[update],
        &portcullis::git::inspect::facts::Protected::default(),
        &portcullis::git::inspect::history::InspectOptions::default(),
    )
    .expect("inspects");
    let (r, p) = &facts[0];
    assert!(!p.secrets.is_empty() && !p.files.is_empty());
    assert_schema_matches(GIT_FACTS, "ref", &r.to_json(), &[]);
    assert_schema_matches(GIT_FACTS, "push", &p.to_json(), &[]);
}
