//! Issue #12: just-in-time approvals. A statement a rule sends to review waits on the
//! wire for an approver in the rule's group, then runs on the same session, or is
//! refused; undecided at the end of the hold, the identical request is admitted once
//! after approval. Through the gateway against a real PostgreSQL, with psql and
//! tokio-postgres, and approvers using the HTTP API and the CLI.

use std::time::{Duration, Instant};

use crate::support::gateway::{Gateway, Options, api, decide, free_port, http, pending};
use crate::support::pg::PgCluster;

/// A gateway with approvals on an admin listener; `approvals` is the section's body.
pub fn start(approvals: &str, rules: Option<&str>) -> (PgCluster, Gateway, u16) {
    start_with_env(approvals, rules, Vec::new())
}

fn start_with_env(
    approvals: &str,
    rules: Option<&str>,
    env: Vec<(String, String)>,
) -> (PgCluster, Gateway, u16) {
    let pg = PgCluster::start();
    pg.query("CREATE TABLE users (id int PRIMARY KEY, email text); INSERT INTO users VALUES (1, 'a@x.io'), (2, 'b@x.io')");
    let admin = free_port();
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: "sslmode=disable".into(),
            server: format!("admin_listen = \"127.0.0.1:{admin}\"\n"),
            sections: format!("[approvals]\n{approvals}\n"),
            rules: rules.map(str::to_string),
            env,
            ..Options::default()
        },
    );
    crate::support::gateway::wait_listening(admin, || gw.log());
    (pg, gw, admin)
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

fn exists(pg: &PgCluster, table: &str) -> bool {
    pg.query(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
        .trim()
        == "t"
}

#[test]
fn issue_12_psql_waits_for_an_approver_then_the_statement_runs_on_the_same_session() {
    let (pg, gw, admin) = start("hold = \"20s\"\ntimeout = \"60s\"", None);
    let agent = gw.token("alice", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let psql = gw.psql_in_background(
        &agent,
        &[
            "-c",
            "CREATE TABLE held_a (id int)",
            "-c",
            "SELECT 'same session'",
        ],
    );
    let id = pending(admin, &dba, "CREATE TABLE held_a");
    assert!(!exists(&pg, "held_a"), "nothing ran before approval");

    // What the approver sees.
    let (status, r) = api(admin, "GET", &format!("/api/approvals/{id}"), &dba, "");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["subject"], "alice");
    assert_eq!(r["rule"], "sql.ddl");
    assert_eq!(r["group"], "dba");
    assert_eq!(r["groups"], serde_json::json!(["dev"]));

    // The agent cannot approve its own request; a non-member cannot either.
    let (status, why) = api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        &agent,
        "",
    );
    assert_eq!(status, 403, "{why}");
    let other = gw.token("oscar", &["dev"]);
    let (status, why) = api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        &other,
        "",
    );
    assert_eq!(status, 403, "{why}");
    assert!(why.to_string().contains("dba"), "{why}");

    let r = decide(
        admin,
        &dba,
        &id,
        "approve",
        r#"{"reason": "migration ticket 42"}"#,
    );
    assert_eq!(r["state"], "approved");
    let (ok, out, err) = psql.join().expect("psql");
    assert!(ok, "{err}\n{}", gw.log());
    assert!(err.contains(&format!("held for approval {id}")), "{err}");
    assert!(err.contains("approved by dora"), "{err}");
    assert!(out.contains("same session"), "{out}");
    assert!(exists(&pg, "held_a"));
    // Never twice.
    let (status, why) = api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/reject"),
        &dba,
        "",
    );
    assert_eq!(status, 409, "{why}");
}

#[test]
fn issue_12_a_rejected_statement_gets_the_reason_and_nothing_runs() {
    let (pg, gw, admin) = start("hold = \"20s\"", None);
    let agent = gw.token("alice", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let psql = gw.psql_in_background(
        &agent,
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "CREATE TABLE held_r (id int)",
        ],
    );
    let id = pending(admin, &dba, "held_r");
    decide(
        admin,
        &dba,
        &id,
        "reject",
        r#"{"reason": "not during business hours"}"#,
    );
    let (ok, _, err) = psql.join().expect("psql");
    assert!(!ok);
    assert!(err.contains("42501"), "{err}");
    assert!(err.contains("rejected by dora"), "{err}");
    assert!(err.contains("not during business hours"), "{err}");
    assert!(!exists(&pg, "held_r"));
}

#[test]
fn issue_12_undecided_at_the_end_of_the_hold_then_admitted_once_on_retry() {
    let (pg, gw, admin) = start("hold = \"1s\"\ntimeout = \"60s\"", None);
    let alice = gw.token("alice", &["dev"]);
    let carol = gw.token("carol", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let sql = "CREATE TABLE held_p (id int)";
    let (ok, _, err) = gw.psql(&alice, &["-c", sql]);
    assert!(!ok);
    assert!(
        err.contains("is pending") && err.contains("again once approved"),
        "{err}"
    );
    assert!(!exists(&pg, "held_p"));
    let id = pending(admin, &dba, "held_p");
    // Sending it again while pending joins the same request.
    let (ok, _, err) = gw.psql(&alice, &["-c", sql]);
    assert!(
        !ok && err.contains(&format!("approval {id} is pending")),
        "{err}"
    );

    decide(admin, &dba, &id, "approve", "");
    // Another subject, or a changed statement, is not what was approved.
    let (ok, _, err) = gw.psql(&carol, &["-c", sql]);
    assert!(!ok && err.contains("is pending"), "{err}");
    let (ok, _, err) = gw.psql(&alice, &["-c", "CREATE TABLE held_p (id bigint)"]);
    assert!(!ok && err.contains("is pending"), "{err}");
    assert!(!exists(&pg, "held_p"));
    // The identical request runs, once, on a new session.
    let (ok, _, err) = gw.psql(&alice, &["-c", sql]);
    assert!(ok, "{err}\n{}", gw.log());
    assert!(
        err.contains(&format!("approved by dora (approval {id})")),
        "{err}"
    );
    assert!(exists(&pg, "held_p"));
    let (ok, _, err) = gw.psql(&alice, &["-c", sql]);
    assert!(!ok && err.contains("is pending"), "admitted twice: {err}");
    assert!(
        !err.contains(&format!("approval {id} ")),
        "a new request: {err}"
    );
}

#[test]
fn issue_12_a_request_nobody_decides_expires() {
    let (pg, gw, admin) = start("hold = \"1s\"\ntimeout = \"2s\"", None);
    let alice = gw.token("alice", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let (ok, _, err) = gw.psql(&alice, &["-c", "CREATE TABLE held_e (id int)"]);
    assert!(!ok && err.contains("is pending"), "{err}");
    let id = pending(admin, &dba, "held_e");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, r) = api(admin, "GET", &format!("/api/approvals/{id}"), &dba, "");
        if r["state"] == "expired" {
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, why) = api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        &dba,
        "",
    );
    assert_eq!(status, 409, "{why}");
    assert!(why.to_string().contains("expired"), "{why}");
    assert!(!exists(&pg, "held_e"));
}

/// Review for every DELETE, decided by `dba`, for the extended-protocol tests.
const DELETE_REVIEW: &str = r#"
rule team.review-deletes on sql {
  when "delete" in stmt.kinds
  review "deletes need a second pair of eyes" by "dba"
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_tokio_postgres_held_inside_a_transaction_then_approved() {
    let (pg, gw, admin) =
        tokio::task::spawn_blocking(|| start("hold = \"20s\"", Some(DELETE_REVIEW)))
            .await
            .expect("setup");
    let client = gw.client(&gw.token("alice", &["dev"])).await;
    let dba = gw.token("dora", &["dba"]);
    client
        .batch_execute("BEGIN; INSERT INTO users VALUES (3, 'c@x.io')")
        .await
        .expect("begin");
    let held = tokio::spawn(async move {
        let n = client
            .execute("DELETE FROM users WHERE id = $1", &[&2i32])
            .await;
        (client, n)
    });
    let id = tokio::task::spawn_blocking(move || {
        let id = pending(admin, &dba, "DELETE FROM users");
        decide(admin, &dba, &id, "approve", "");
        id
    })
    .await
    .expect("approve");
    let (client, n) = held.await.expect("held task");
    assert_eq!(n.expect("the DELETE ran once approved"), 1);
    client.batch_execute("COMMIT").await.expect("commit");
    let left = tokio::task::spawn_blocking(move || pg.query("SELECT id FROM users ORDER BY id"))
        .await
        .expect("query");
    assert_eq!(
        left, "1\n3\n",
        "approval {id}: the insert before and the delete both committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_approved_extended_request_is_admitted_only_with_the_same_parameters() {
    let (pg, gw, admin) =
        tokio::task::spawn_blocking(|| start("hold = \"1s\"", Some(DELETE_REVIEW)))
            .await
            .expect("setup");
    let client = gw.client(&gw.token("alice", &["dev"])).await;
    let dba = gw.token("dora", &["dba"]);
    let sql = "DELETE FROM users WHERE id = $1";
    let e = client.execute(sql, &[&2i32]).await.expect_err("pending");
    assert!(message(&e).contains("is pending"), "{e:?}");
    tokio::task::spawn_blocking(move || {
        let id = pending(admin, &dba, "DELETE FROM users");
        decide(admin, &dba, &id, "approve", "");
    })
    .await
    .expect("approve");
    // Other parameters are another request.
    let e = client.execute(sql, &[&1i32]).await.expect_err("pending");
    assert!(message(&e).contains("is pending"), "{e:?}");
    assert_eq!(client.execute(sql, &[&2i32]).await.expect("admitted"), 1);
    let left = tokio::task::spawn_blocking(move || pg.query("SELECT id FROM users ORDER BY id"))
        .await
        .expect("query");
    assert_eq!(left, "1\n");
}

#[test]
fn issue_12_the_cli_lists_and_decides_and_the_audit_says_who_approved_what_and_why() {
    let (_pg, gw, admin) = start("hold = \"20s\"", None);
    let agent = gw.token("alice", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let psql = gw.psql_in_background(&agent, &["-c", "CREATE TABLE held_c (id int)"]);
    let id = pending(admin, &dba, "held_c");
    let config = gw.dir.path().join("portcullis.toml");
    let cli = |args: &[&str], token: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("PORTCULLIS_TOKEN", token)
            .output()
            .expect("portcullis runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = cli(&["approvals", "list"], &dba);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("alice") && out.contains("held_c"),
        "{out}"
    );
    let (ok, _, err) = cli(
        &["approvals", "approve", &id, "--reason", "ticket 7"],
        &gw.token("alice", &["dev"]),
    );
    assert!(!ok && err.contains("cannot decide"), "{err}");
    let (ok, out, err) = cli(&["approvals", "approve", &id, "--reason", "ticket 7"], &dba);
    assert!(ok, "{err}");
    assert!(out.contains("approved"), "{out}");
    let (ok, _, err) = psql.join().expect("psql");
    assert!(ok, "{err}");

    // Who approved what, when, and why: one query.
    let auditor = gw.token("audrey", &["auditors"]);
    let sql =
        "SELECT a.approver, a.reason, a.state, e.subject, e.statement, a.decided_at IS NOT NULL \
               FROM approvals a JOIN events e USING (event_id) WHERE a.approval_id = '"
            .to_string()
            + &id
            + "'";
    let raw = http(
        admin,
        "POST",
        "/api/audit/query?format=csv",
        Some(&auditor),
        &sql,
    );
    assert!(
        raw.contains("dora,ticket 7,approved,alice,CREATE TABLE held_c (id int),true"),
        "{raw}"
    );
    // The held statement's own event carries the final decision.
    let raw = http(
        admin,
        "POST",
        "/api/audit/query?format=csv",
        Some(&auditor),
        "SELECT decision FROM events WHERE kind = 'query' AND statement LIKE 'CREATE TABLE held_c%'",
    );
    assert!(raw.contains("approved"), "{raw}");
}

/// A local webhook receiver: every request's headers (lower-cased names) and body.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push_str(&lower);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx
                .send((headers, String::from_utf8_lossy(&body).into_owned()))
                .is_err()
            {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn issue_12_the_webhook_hears_every_request_and_decision_signed() {
    let (hook, heard) = webhook_receiver();
    let (_pg, gw, admin) = start_with_env(
        &format!(
            "hold = \"1s\"\nwebhook = \"http://127.0.0.1:{hook}/hook\"\n\
             webhook_secret_env = \"TEST_HOOK_SECRET\""
        ),
        None,
        vec![("TEST_HOOK_SECRET".into(), "hook-secret".into())],
    );
    let (ok, _, err) = gw.psql(
        &gw.token("alice", &["dev"]),
        &["-c", "CREATE TABLE hooked (id int)"],
    );
    assert!(!ok && err.contains("is pending"), "{err}");
    let dba = gw.token("dora", &["dba"]);
    let id = pending(admin, &dba, "hooked");
    let _ = decide(admin, &dba, &id, "reject", "");
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            heard
                .recv_timeout(Duration::from_secs(20))
                .expect("a webhook call"),
        );
    }
    for (headers, body) in &got {
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(v["approval"]["id"], id.as_str(), "{body}");
        assert!(
            v["text"].as_str().is_some_and(|t| t.contains("alice")),
            "{body}"
        );
        let signature = portcullis::gateway::webhook::signature("hook-secret", body.as_bytes());
        assert!(
            headers.contains(&format!("x-portcullis-signature: {signature}")),
            "{headers}"
        );
    }
    assert!(got[0].1.contains("\"event\":\"requested\""), "{}", got[0].1);
    assert!(
        got[0].1.contains(&format!("/approvals/{id}")),
        "the link: {}",
        got[0].1
    );
    assert!(got[1].1.contains("\"event\":\"rejected\""), "{}", got[1].1);
}

#[test]
fn issue_12_the_approver_sees_the_planners_estimate_and_may_approve_similar_requests() {
    let (pg, gw, admin) = start("hold = \"20s\"", Some(DELETE_REVIEW));
    let alice = gw.token("alice", &["dev"]);
    let dba = gw.token("dora", &["dba"]);
    let psql = gw.psql_in_background(&alice, &["-c", "DELETE FROM users WHERE id = 2"]);
    let id = pending(admin, &dba, "DELETE FROM users");
    let (_, r) = api(admin, "GET", &format!("/api/approvals/{id}"), &dba, "");
    let estimate = r["estimate"].as_str().unwrap_or_default().to_string();
    assert!(estimate.starts_with("about 1 row(s) (delete"), "{r}");
    decide(
        admin,
        &dba,
        &id,
        "approve",
        r#"{"reason": "cleanup", "similar_for": "10m"}"#,
    );
    let (ok, _, err) = psql.join().expect("psql");
    assert!(ok, "{err}");
    // The same shape by the same agent now passes at once, recorded as approved.
    let (ok, _, err) = gw.psql(&alice, &["-c", "DELETE FROM users WHERE id = 1"]);
    assert!(ok, "{err}");
    assert!(err.contains("approved by dora"), "{err}");
    assert_eq!(pg.query("SELECT count(*) FROM users").trim(), "0");
    // Not for another agent, nor another shape.
    pg.query("INSERT INTO users VALUES (5, 'e@x.io')");
    let carol = gw.token("carol", &["dev"]);
    let held = gw.psql_in_background(&carol, &["-c", "DELETE FROM users WHERE id = 5"]);
    let other = pending(admin, &dba, "DELETE FROM users WHERE id = 5");
    let _ = decide(admin, &dba, &other, "reject", "");
    assert!(!held.join().expect("psql").0);
    let auditor = gw.token("audrey", &["auditors"]);
    let raw = http(
        admin,
        "POST",
        "/api/audit/query?format=csv",
        Some(&auditor),
        "SELECT count(*) FROM events WHERE kind = 'approval.granted'",
    );
    assert!(raw.trim_end().ends_with("\n1"), "{raw}");
}

#[test]
fn issue_12_a_rules_own_timeout_ends_a_held_request_as_expired() {
    let rules = r#"
rule team.review-deletes on sql {
  when "delete" in stmt.kinds
  review "deletes need a second pair of eyes" by "dba" timeout 2s
}
"#;
    let (pg, gw, admin) = start("hold = \"20s\"", Some(rules));
    let started = Instant::now();
    let (ok, _, err) = gw.psql(
        &gw.token("alice", &["dev"]),
        &["-c", "DELETE FROM users WHERE id = 1"],
    );
    assert!(!ok);
    assert!(err.contains("expired before anyone decided it"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the rule's timeout, not the hold"
    );
    let (_, list) = api(
        admin,
        "GET",
        "/api/approvals?state=expired",
        &gw.token("dora", &["dba"]),
        "",
    );
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(pg.query("SELECT count(*) FROM users").trim(), "2");
}
