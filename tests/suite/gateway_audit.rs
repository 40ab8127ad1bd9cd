//! The gateways record into the DuckDB audit store: real psql, pgbench and git sessions
//! through `portcullis serve`, then the auditor's own commands on the file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::gateway::setup;
use crate::support::git::{GitGateway, UpstreamSpec, git, git_ok, seeded_upstream};
use crate::support::pg::PgCluster;
use crate::support::portcullis;

/// `portcullis audit sql --format json` on `db`: the rows as JSON objects.
pub fn audit_rows(db: &Path, sql: &str) -> Vec<serde_json::Value> {
    let (code, out, err) = portcullis(&[
        "audit",
        "sql",
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        sql,
    ]);
    assert_eq!(code, 0, "audit sql failed: {err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("JSON rows")
}

pub fn verify_ok(db: &Path) {
    let (code, out, err) = portcullis(&["audit", "verify", "--db", db.to_str().unwrap()]);
    assert_eq!(code, 0, "the chain must verify:\n{out}{err}");
}

#[test]
fn psql_sessions_are_recorded_with_identity_prompt_statement_and_decision() {
    let (_pg, mut gw) = setup();
    let token = gw.token("agent-42", &["dev"]);
    let (ok, _, err) = gw.psql(
        &token,
        &[
            "-c",
            "SET portcullis.prompt = 'how many users are there?'",
            "-c",
            "SELECT count(*) FROM users",
            "-c",
            "UPDATE users SET email = 'c@x.io' WHERE id = 2",
        ],
    );
    assert!(ok, "{err}\n{}", gw.log());
    let (ok, _, err) = gw.psql(&token, &["-c", "DELETE FROM users"]);
    assert!(!ok && err.contains("sql.unbounded-write"), "{err}");
    let (ok, _, _) = gw.psql(&token, &["-c", "SELECT * FROM no_such_table"]);
    assert!(!ok, "the server's own error");
    let (ok, _, _) = gw.psql("not-a-token", &["-c", "SELECT 1"]);
    assert!(!ok);
    gw.terminate();
    let db = gw.audit_path();

    let rows = audit_rows(
        &db,
        "SELECT subject, groups, prompt, kind, statement, decision, rule_ids, protocol, rows, result \
         FROM events WHERE kind <> 'refusal' ORDER BY seq",
    );
    let find = |text: &str| {
        rows.iter()
            .find(|r| r["statement"].as_str().is_some_and(|s| s.contains(text)))
            .unwrap_or_else(|| panic!("no event for {text:?} in {rows:#?}"))
    };
    let select = find("SELECT count(*) FROM users");
    assert_eq!(select["subject"], "agent-42");
    assert_eq!(select["decision"], "allowed");
    assert_eq!(select["protocol"], "postgres");
    assert_eq!(select["prompt"], "how many users are there?");
    assert_eq!(select["groups"], serde_json::json!(["dev"]));
    // What the agent saw: the row count and the rows as sent.
    assert_eq!(select["rows"], 1);
    let seen: serde_json::Value =
        serde_json::from_str(select["result"].as_str().expect("a result sample")).unwrap();
    assert_eq!(seen["columns"], serde_json::json!(["count"]));
    assert_eq!(seen["rows"], serde_json::json!([["2"]]));
    let update = find("UPDATE users SET email");
    assert_eq!(update["decision"], "allowed");
    let missing = audit_rows(
        &db,
        "SELECT decision, error FROM events WHERE statement = 'SELECT * FROM no_such_table'",
    );
    assert_eq!(missing[0]["decision"], "allowed");
    assert!(
        missing[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("42P01")),
        "the server's error is recorded: {missing:?}"
    );
    let delete = find("DELETE FROM users");
    assert_eq!(delete["decision"], "denied");
    assert_eq!(
        delete["rule_ids"],
        serde_json::json!(["sql.unbounded-write"])
    );

    // Sessions have a start and an end; the bad token is a refusal event.
    let sessions = audit_rows(
        &db,
        "SELECT subject, started_at IS NOT NULL AS started, ended_at IS NOT NULL AS ended \
         FROM sessions WHERE subject = 'agent-42'",
    );
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert!(
        sessions
            .iter()
            .all(|s| s["started"] == true && s["ended"] == true)
    );
    let refusals = audit_rows(&db, "SELECT message FROM events WHERE kind = 'refusal'");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    verify_ok(&db);
}

#[test]
fn every_write_that_reached_postgres_survives_a_crash_of_the_gateway() {
    writes_survive_a_crash("simple", "query");
}

/// Issue 14: with the extended protocol a statement is prepared once and run many times;
/// each run is an event of its own, durable before it went upstream.
#[test]
fn issue_14_every_run_of_a_prepared_write_survives_a_crash_of_the_gateway() {
    writes_survive_a_crash("prepared", "execute");
}

/// pgbench's TPC-B-like script through the gateway in `mode` (`-M`), killed (SIGKILL) in
/// the middle of its run: every history row that reached PostgreSQL has an allowed event
/// of `kind`, and the chain verifies.
fn writes_survive_a_crash(mode: &str, kind: &str) {
    let (pg, mut gw) = setup();
    let init = Command::new(PgCluster::bin("pgbench"))
        .args(["-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p"])
        .arg(pg.port().to_string())
        .args(["-U", "portcullis", "app"])
        .env("PGPASSWORD", pg.user_password())
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let token = gw.token("bench", &[]);
    let mut bench = Command::new(PgCluster::bin("pgbench"))
        .args([
            "-n",
            "-M",
            mode,
            "-c",
            "2",
            "-T",
            "30",
            "-h",
            "127.0.0.1",
            "-p",
        ])
        .arg(gw.port.to_string())
        .args(["-U", "agent", "app"])
        .env("PGPASSWORD", &token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench runs");
    std::thread::sleep(Duration::from_secs(3));
    gw.kill();
    let _ = bench.wait();
    let history = pg.psql(
        "portcullis",
        pg.user_password(),
        "app",
        "SELECT count(*) FROM pgbench_history",
    );
    let reached: i64 = String::from_utf8_lossy(&history.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert!(reached > 0, "pgbench wrote nothing through the gateway");
    let db = gw.audit_path();
    let recorded = audit_rows(
        &db,
        &format!(
            "SELECT count(*) AS n FROM events WHERE kind = '{kind}' \
             AND statement LIKE 'INSERT INTO pgbench_history%' AND decision = 'allowed'"
        ),
    );
    let recorded = recorded[0]["n"].as_i64().expect("a count");
    assert!(
        recorded >= reached,
        "{reached} history rows reached PostgreSQL but only {recorded} INSERT events are recorded"
    );
    if mode == "prepared" {
        // Each run carries the values it was bound with: pgbench binds four.
        let runs = audit_rows(
            &db,
            "SELECT parameters FROM events WHERE kind = 'execute' \
             AND statement LIKE 'INSERT INTO pgbench_history%' LIMIT 5",
        );
        for r in runs {
            let values: Vec<serde_json::Value> =
                serde_json::from_str(r["parameters"].as_str().expect("parameters")).unwrap();
            assert_eq!(values.len(), 4, "{r}");
            assert!(
                values
                    .iter()
                    .all(|v| v.as_str().is_some_and(|s| !s.is_empty())),
                "{r}"
            );
        }
    }
    verify_ok(&db);
}

#[test]
fn pushes_are_recorded_with_their_ref_updates() {
    let root = tempfile::tempdir().unwrap();
    let upstream = seeded_upstream(root.path(), "app");
    let mut gw = GitGateway::start(&[("app", UpstreamSpec::Local(upstream))], None);
    let url = gw.url("app", &gw.token("agent-9"));
    let work = root.path().join("work");
    git_ok(root.path(), &["clone", "-q", &url, work.to_str().unwrap()]);
    git_ok(&work, &["checkout", "-q", "-b", "topic", "origin/feature"]);
    std::fs::write(work.join("n.txt"), "n\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "n"]);
    let head = git_ok(&work, &["rev-parse", "HEAD"]);
    git_ok(
        &work,
        &[
            "push",
            "-q",
            "-o",
            "prompt=ship the notes",
            "origin",
            "topic:refs/heads/topic",
        ],
    );
    git_ok(&work, &["reset", "-q", "--hard", "origin/main~1"]);
    let out = git(&work, &["push", "--force", "origin", "HEAD:main"]);
    assert!(!out.status.success());
    gw.terminate();
    let db = gw.audit_path();
    let rows = audit_rows(
        &db,
        "SELECT e.subject, e.prompt, e.decision, e.rule_ids, r.ref, r.new_oid, r.kind, r.forced \
         FROM events e JOIN ref_updates r USING (event_id) \
         WHERE e.protocol = 'git' ORDER BY e.seq",
    );
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["subject"], "agent-9");
    assert_eq!(rows[0]["prompt"], "ship the notes");
    assert_eq!(rows[0]["decision"], "allowed");
    assert_eq!(rows[0]["ref"], "refs/heads/topic");
    assert_eq!(rows[0]["new_oid"], head.as_str());
    assert_eq!(rows[0]["kind"], "create");
    assert_eq!(rows[1]["decision"], "denied");
    assert_eq!(
        rows[1]["rule_ids"],
        serde_json::json!(["git.protected-force"])
    );
    assert_eq!(rows[1]["forced"], true);
    verify_ok(&db);
}

#[test]
fn the_gateway_refuses_to_start_without_its_audit_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = portcullis::identity::generate_key(portcullis::identity::KeyAlg::Es256).unwrap();
    let jwks = portcullis::identity::jwks_for(&key).unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let bare = seeded_upstream(dir.path(), "app");
    // The store's folder does not exist and cannot be created (a file is in the way).
    std::fs::write(dir.path().join("blocked"), "a file").unwrap();
    let config = format!(
        "[server]\ngit_listen = \"127.0.0.1:{}\"\n\n[identity]\nissuer = \"i\"\naudience = \"a\"\n\
         jwks_path = \"jwks.json\"\n\n[audit]\npath = \"blocked/audit.duckdb\"\n\n\
         [[git]]\nname = \"app\"\nupstream = {:?}\n",
        crate::support::gateway::free_port(),
        bare.to_str().unwrap()
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(dir.path().join("portcullis.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit store"), "{err}");
}

#[test]
fn the_admin_api_reports_health_and_metrics() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().unwrap();
    let upstream = seeded_upstream(root.path(), "app");
    let admin = crate::support::gateway::free_port();
    let gw =
        GitGateway::start_with_admin(&[("app", UpstreamSpec::Local(upstream))], None, Some(admin));
    crate::support::gateway::wait_listening(admin, || gw.log());
    let url = gw.url("app", &gw.token("agent-9"));
    let work = root.path().join("work");
    git_ok(root.path(), &["clone", "-q", &url, work.to_str().unwrap()]);
    git_ok(&work, &["checkout", "-q", "-b", "t", "origin/feature"]);
    std::fs::write(work.join("t.txt"), "t\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "t"]);
    git_ok(&work, &["push", "-q", "origin", "t:refs/heads/t"]);
    let out = git(&work, &["push", "--force", "origin", "HEAD~2:main"]);
    assert!(!out.status.success());
    let get = |path: &str, token: Option<&str>| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body
    };
    let health = get("/healthz", None);
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = get(
        "/metrics",
        Some(&gw.token_in("prometheus", &["monitoring"])),
    );
    // An auditor queries the live store through the admin API with `audit sql --config`.
    let config = gw.config_path();
    let audit_sql = |token: &str, sql: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["audit", "sql", "--format", "json", "--config"])
            .arg(&config)
            .arg(sql)
            .env("PORTCULLIS_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let auditor = gw.token_in("carol", &["auditors"]);
    let (ok, out, err) = audit_sql(
        &auditor,
        "SELECT subject, decision FROM events WHERE protocol = 'git' ORDER BY seq",
    );
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["decision"], "allowed");
    assert_eq!(rows[1]["decision"], "denied");
    // A developer's token is not an auditor's; writes and file access are refused.
    let (ok, _, err) = audit_sql(&gw.token("agent-9"), "SELECT 1");
    assert!(!ok && err.contains("auditors"), "{err}");
    for bad in [
        "COPY events TO '/tmp/portcullis-exfil.csv'",
        "DELETE FROM events",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT 1; DROP TABLE events",
    ] {
        let (ok, _, err) = audit_sql(&auditor, bad);
        assert!(!ok, "{bad} must be refused");
        assert!(!err.is_empty(), "{bad}: a reason is given");
    }
    for line in [
        "portcullis_pushes_total{decision=\"allowed\"} 1",
        "portcullis_pushes_total{decision=\"denied\"} 1",
        "portcullis_rule_matches_total{subject=\"git\",rule=\"git.protected-force\"} 1",
        "portcullis_push_seconds_count 2",
        "portcullis_audit_queue_depth",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}
