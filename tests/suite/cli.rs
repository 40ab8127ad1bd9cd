//! The `portcullis` binary as a user runs it.

use crate::support::portcullis;

#[test]
fn check_sql_exit_codes_and_output() {
    let (code, out, _) = portcullis(&["check", "sql", "SELECT * FROM users WHERE id = 1"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("decision: allow"), "{out}");

    let (code, out, _) = portcullis(&["check", "sql", "SELECT 1; DELETE FROM users"]);
    assert_eq!(code, 10, "{out}");
    assert!(out.contains("sql.unbounded-write"), "{out}");
    assert!(out.contains("statement 2/2: delete -> deny"), "{out}");

    let (code, out, _) = portcullis(&[
        "check",
        "sql",
        "CREATE INDEX CONCURRENTLY i ON users (email)",
    ]);
    assert_eq!(code, 11, "{out}");
    assert!(out.contains("sql.ddl"), "{out}");

    let (code, out, _) = portcullis(&["check", "sql", "SELEC 1", "--unparsed", "review"]);
    assert_eq!(code, 11, "{out}");
}

#[test]
fn check_sql_json_has_every_fact() {
    let (code, out, _) = portcullis(&[
        "check",
        "sql",
        "--json",
        "WITH d AS (DELETE FROM users RETURNING *) SELECT 1",
    ]);
    assert_eq!(code, 10);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rules"][0], "sql.unbounded-write");
    let facts = &v["statements"][0]["facts"];
    assert_eq!(facts["kind"], "select");
    assert_eq!(facts["kinds"], serde_json::json!(["select", "delete"]));
    assert_eq!(facts["writes"][0]["table"], "users");
    for key in [
        "tables_read",
        "functions",
        "fingerprint",
        "has_where",
        "where_always_true",
        "copy_program",
        "statement_count",
    ] {
        assert!(facts.get(key).is_some(), "{key} missing");
    }
}

#[test]
fn check_sql_with_custom_rules_and_groups() {
    let dir = std::env::temp_dir().join(format!("portcullis-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rules = dir.join("team.rules");
    std::fs::write(
        &rules,
        "rule team.no-secrets-table on sql {\n  when \"secrets\" in stmt.tables_read\n  unless \"security\" in agent.groups\n  deny \"the secrets table is off limits\"\n}\n",
    )
    .expect("write rules");
    let r = rules.to_str().expect("utf-8 path");
    let (code, out, _) = portcullis(&["check", "sql", "--rules", r, "SELECT * FROM secrets"]);
    assert_eq!(code, 10, "{out}");
    assert!(out.contains("team.no-secrets-table"), "{out}");
    let (code, _, _) = portcullis(&[
        "check",
        "sql",
        "--rules",
        r,
        "--groups",
        "dev,security",
        "SELECT * FROM secrets",
    ]);
    assert_eq!(code, 0);

    std::fs::write(
        &rules,
        "rule broken on sql {\n  when stmt.kind = \"x\"\n  deny \"x\"\n}\n",
    )
    .expect("write rules");
    let (code, _, err) = portcullis(&["check", "sql", "--rules", r, "SELECT 1"]);
    assert_eq!(code, 1);
    assert!(err.contains("team.rules:2:"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rules_test_prints_a_table_and_fails_on_a_mismatch() {
    let (code, out, _) = portcullis(&["rules", "test", "rules"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.ends_with(" passed, 0 failed")),
        "{out}"
    );

    let dir = std::env::temp_dir().join(format!("portcullis-cases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("wrong.cases"),
        "=== allow\nDROP TABLE users\n=== deny sql.destructive-ddl\nDROP TABLE users\n",
    )
    .expect("write");
    let (code, out, _) = portcullis(&["rules", "test", dir.to_str().expect("utf-8"), "--failures"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("expected allow, got deny sql.destructive-ddl"),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rules_show_prints_the_builtin_pack() {
    let (code, out, _) = portcullis(&["rules", "show"]);
    assert_eq!(code, 0);
    assert!(out.contains("rule sql.unbounded-write on sql"));
}

#[test]
fn bad_usage_exits_2() {
    let (code, _, err) = portcullis(&["check", "sql"]);
    assert_eq!(code, 2, "{err}");
}
