//! The rule language: syntax, load-time checks, evaluation semantics.

use portcullis::policy::value::{Agent, List, Record, Records, Target, Value};
use portcullis::policy::{Decision, RuleSet, Subject};
use portcullis::sql::analyze;

fn load(text: &str) -> RuleSet {
    let mut set = RuleSet::default();
    set.add_text("test.rules", text)
        .unwrap_or_else(|e| panic!("rules should load: {e}"));
    set
}

fn load_err(text: &str) -> String {
    let mut set = RuleSet::default();
    match set.add_text("bad.rules", text) {
        Ok(()) => panic!("rules should not load:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn judge(set: &RuleSet, sql: &str, groups: &[&str]) -> (Decision, Vec<String>) {
    let agent = Agent {
        sub: "alice".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        name: None,
    };
    let v = portcullis::gateway::judge_statements(
        set,
        &analyze(sql),
        &agent,
        &Target { name: "app".into() },
    );
    (v.decision, v.rule_ids().map(String::from).collect())
}

#[test]
fn errors_name_file_line_column_and_what_was_expected() {
    let e = load_err("rule a on sql {\n  when stmt.kind ==\n  deny \"x\"\n}\n");
    assert!(
        e.starts_with("bad.rules:3:3: syntax error: expected"),
        "{e}"
    );
    assert!(e.contains("value"), "{e}");
    let e = load_err("rule a on sql {\n  when stmt.knd == \"drop\"\n  deny \"x\"\n}\n");
    assert_eq!(e, "bad.rules:2:8: unknown fact `stmt.knd` for `sql` rules");
    let e = load_err("rule a on sql { when stmt.text matches \"(\" deny \"x\" }");
    assert!(e.starts_with("bad.rules:1:40: bad regex"), "{e}");
    let e = load_err("rule a on sql { when foo.bar deny \"x\" }");
    assert!(e.contains("1:22: unknown name `foo`"), "{e}");
    let e = load_err("rule a on sql { when true mask redact }");
    assert!(e.contains("`mask` is only for rules `on mask`"), "{e}");
    let e =
        load_err("rule a on sql { when true deny \"x\" }\nrule a on sql { when true deny \"y\" }");
    assert_eq!(
        e,
        "bad.rules:2:1: rule a is already defined at bad.rules:1:1"
    );
    let e = load_err("rule a on sql { when any w in stmt.writes: w.tabel == \"x\" deny \"x\" }");
    assert!(e.contains("unknown fact `stmt.writes.tabel`"), "{e}");
    let e = load_err("rule a on sqlx { when true deny \"x\" }");
    assert!(e.contains("1:11: syntax error: expected a subject"), "{e}");
}

#[test]
fn strictest_decision_wins_and_monitor_only_reports() {
    let set = load(
        r#"
        rule watch on sql monitor { when stmt.kind == "select" deny "would deny selects" }
        rule note on sql { when stmt.kind == "select" log }
        rule ask on sql { when "users" in stmt.tables_read review "reads users" by "dba" timeout 10m }
        rule stop on sql { when stmt.kind == "delete" deny "no deletes" }
        "#,
    );
    assert_eq!(
        judge(&set, "SELECT 1", &[]),
        (Decision::Allow, vec!["note".to_string()])
    );
    let agent = Agent::default();
    let v = portcullis::gateway::judge_statements(
        &set,
        &analyze("SELECT 1"),
        &agent,
        &Target::default(),
    );
    assert_eq!(
        v.monitored().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["watch"]
    );
    assert_eq!(
        judge(&set, "SELECT * FROM users", &[]),
        (Decision::Review, vec!["ask".to_string()])
    );
    assert_eq!(
        judge(&set, "SELECT * FROM users; DELETE FROM t WHERE id = 1", &[]),
        (Decision::Deny, vec!["stop".to_string()])
    );
}

#[test]
fn group_exemptions_with_unless() {
    let set = load(
        r#"rule protect-payroll on sql {
             when "payroll.salaries" in stmt.tables_written
             unless "dba" in agent.groups and agent.sub != "intern"
             deny "payroll is written by the DBA team only"
             test deny "UPDATE payroll.salaries SET amount = 0 WHERE id = 1"
             test allow "UPDATE payroll.salaries SET amount = 0 WHERE id = 1" groups ["dba"]
           }"#,
    );
    assert_eq!(
        judge(
            &set,
            "UPDATE Payroll.Salaries SET amount = 1 WHERE id = 1",
            &[]
        )
        .0,
        Decision::Deny
    );
    assert_eq!(
        judge(
            &set,
            "UPDATE payroll.salaries SET amount = 1 WHERE id = 1",
            &["ops", "dba"]
        )
        .0,
        Decision::Allow
    );
    assert_eq!(set.rules()[0].tests.len(), 2);
}

#[test]
fn operators_over_lists_strings_globs_and_regexes() {
    let set = load(
        r#"
        rule glob on sql { when any t in stmt.tables_written: t glob ["audit.*", "*_log"] deny "append-only" }
        rule re on sql { when stmt.text matches "(?i)pg_sleep" review "slow" }
        rule len on sql { when len(stmt.tables_read) >= 3 review "wide join" }
        rule all on sql { when stmt.kind == "insert" and all t in stmt.tables_written: (t not in ["a", "b"]) log }
        rule inter on sql { when stmt.functions intersects ["md5", "sha256"] and not stmt.text contains "salt" deny "unsalted hash" }
        "#,
    );
    assert_eq!(
        judge(&set, "UPDATE audit.events SET x = 1 WHERE id = 1", &[]).0,
        Decision::Deny
    );
    assert_eq!(
        judge(&set, "UPDATE public.audit SET x = 1 WHERE id = 1", &[]).0,
        Decision::Allow,
        "globs are anchored"
    );
    assert_eq!(
        judge(&set, "DELETE FROM app_log WHERE id = 1", &[]).0,
        Decision::Deny
    );
    assert_eq!(judge(&set, "SELECT PG_SLEEP(1)", &[]).0, Decision::Review);
    assert_eq!(
        judge(&set, "SELECT * FROM a, b, c", &[]).0,
        Decision::Review
    );
    assert_eq!(judge(&set, "SELECT * FROM a, b", &[]).0, Decision::Allow);
    assert_eq!(
        judge(&set, "INSERT INTO c VALUES (1)", &[]),
        (Decision::Allow, vec!["all".to_string()])
    );
    assert_eq!(
        judge(&set, "INSERT INTO a VALUES (1)", &[]),
        (Decision::Allow, vec![])
    );
    assert_eq!(judge(&set, "SELECT md5(x) FROM t", &[]).0, Decision::Deny);
    assert_eq!(
        judge(&set, "SELECT md5(x || 'salt') FROM t", &[]).0,
        Decision::Allow
    );
}

/// A fact source that is not SQL: the engine is generic over records.
struct Commit {
    email: String,
    size: i64,
}
impl Record for Commit {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "author_email" => Value::Str(&self.email),
            "size" => Value::Int(self.size),
            _ => Value::Null,
        }
    }
}
struct Push {
    commits: Vec<Commit>,
}
impl Record for Push {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            // One list plays both parts: the evaluator only sees records by path.
            "commits" | "files" => Value::List(List::Records(&self.commits as &dyn Records)),
            _ => Value::Null,
        }
    }
}

#[test]
fn quantifiers_and_sizes_over_any_subject() {
    let set = load(
        r#"
        rule big on git { when any f in push.files: f.size > 50MiB deny "too big" }
        rule corp on git { when not (all c in push.commits: c.author_email glob "*@corp.example") review "outside author" }
        "#,
    );
    let judge = |commits: Vec<(&str, i64)>| {
        let push = Push {
            commits: commits
                .into_iter()
                .map(|(e, s)| Commit {
                    email: e.into(),
                    size: s,
                })
                .collect(),
        };
        set.judge(Subject::Git, &[("push", &push)]).decision
    };
    assert_eq!(judge(vec![("a@corp.example", 10)]), Decision::Allow);
    assert_eq!(
        judge(vec![("a@corp.example", 10), ("b@corp.example", 60 << 20)]),
        Decision::Deny
    );
    assert_eq!(
        judge(vec![("a@corp.example", 10), ("x@gmail.com", 1)]),
        Decision::Review
    );
    assert_eq!(judge(vec![]), Decision::Allow, "all over nothing holds");
}

#[test]
fn builtin_pack_loads_and_every_rule_carries_tests() {
    let set = RuleSet::builtin().expect("built-in packs parse");
    let ids: Vec<_> = set.rules().iter().map(|r| r.id.as_str()).collect();
    for id in [
        "sql.destructive-ddl",
        "sql.unbounded-write",
        "sql.privilege",
        "sql.server-escape",
        "sql.dynamic",
        "sql.ddl",
        "sql.unparsed",
    ] {
        assert!(ids.contains(&id), "{id} missing from the default pack");
    }
    // Inline tests are SQL statements; git rules are exercised by corpus/git scenarios.
    assert!(
        set.rules()
            .iter()
            .filter(|r| r.subject == Subject::Sql)
            .all(|r| !r.tests.is_empty())
    );
    for id in [
        "git.protected-force",
        "git.protected-delete",
        "git.protected-push",
        "git.tag-rewrite",
        "git.secrets",
        "git.secret-files",
        "git.large-file",
    ] {
        assert!(ids.contains(&id), "{id} missing from the default pack");
    }
}

#[test]
fn unparsed_follows_the_server_setting() {
    let mut set = RuleSet::builtin().expect("built-in packs parse");
    assert_eq!(judge(&set, "SELEC 1", &[]).0, Decision::Deny);
    assert!(set.set_decision("sql.unparsed", Decision::Review));
    assert_eq!(
        judge(&set, "SELEC 1", &[]),
        (Decision::Review, vec!["sql.unparsed".to_string()])
    );
}
