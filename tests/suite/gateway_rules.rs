//! The default SQL rules end to end through the PostgreSQL gateway: every `sql.*` rule
//! refuses over the simple protocol (psql) and the extended protocol (tokio-postgres,
//! where Parse is judged), with SQLSTATE 42501 and the rule id, and nothing of a refused
//! query reaches the database. Around that: psql meta-commands, LISTEN/NOTIFY, prompt
//! capture in the event log, sessions and transactions that outlive a refusal, and bad
//! tokens on the wire.
//!
//! Every test runs its own cluster and gateway (`setup()`), and checks the database's
//! state directly as the `portcullis` role, never through the gateway under test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::identity::{self, KeyAlg, MintOptions};
use serde_json::Value;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::support::gateway::{AUDIENCE, Gateway, ISSUER, setup};
use crate::support::pg::PgCluster;

/// SQLSTATE `insufficient_privilege`: what every refusal carries.
const REFUSED: &str = "42501";
/// SQLSTATE `invalid_password`: what a bad token gets.
const BAD_TOKEN: &str = "28P01";

/// What a refused statement's error message must say.
fn denied_by(rule: &str) -> String {
    format!("portcullis: denied by {rule}")
}

/// Review is refused, saying so, until approvals exist.
fn approval_required_by(rule: &str) -> String {
    format!("portcullis: approval required by {rule}")
}

/// One statement (or multi-statement query) each default rule must refuse, and the
/// phrase its error message must contain. Adversarial shapes included: writes hidden
/// in CTEs, EXPLAIN ANALYZE and PREPARE, and statements hidden after `;` (after a
/// string or dollar quote holding a `;`).
fn refused_statements() -> Vec<(String, &'static str)> {
    let destructive = denied_by("sql.destructive-ddl");
    let unbounded = denied_by("sql.unbounded-write");
    let privilege = denied_by("sql.privilege");
    let escape = denied_by("sql.server-escape");
    let parser = denied_by("sql.parser-setting");
    let dynamic = approval_required_by("sql.dynamic");
    let ddl = approval_required_by("sql.ddl");
    let unparsed = denied_by("sql.unparsed");
    vec![
        (destructive.clone(), "DROP TABLE users"),
        (
            destructive.clone(),
            "drop table if exists \"users\" cascade",
        ),
        (destructive.clone(), "TRUNCATE users"),
        (destructive.clone(), "ALTER TABLE users DROP COLUMN email"),
        (
            destructive.clone(),
            "INSERT INTO users VALUES (3, 'c@x.io'); SELECT 1; DROP TABLE users",
        ),
        (unbounded.clone(), "DELETE FROM users"),
        (
            unbounded.clone(),
            "UPDATE users SET email = NULL WHERE 1 = 1",
        ),
        (unbounded.clone(), "DELETE FROM users WHERE id = id"),
        (
            unbounded.clone(),
            "WITH d AS (DELETE FROM users RETURNING *) SELECT count(*) FROM d",
        ),
        (unbounded.clone(), "EXPLAIN ANALYZE DELETE FROM users"),
        (unbounded.clone(), "PREPARE p AS DELETE FROM users"),
        (
            unbounded.clone(),
            "INSERT INTO users VALUES (4, 'd@x.io'); SELECT 'a;'; DELETE FROM users",
        ),
        (destructive.clone(), "SELECT $x$ ; $x$; TRUNCATE users"),
        (privilege.clone(), "GRANT ALL ON users TO public"),
        (privilege.clone(), "CREATE ROLE intruder LOGIN SUPERUSER"),
        (privilege.clone(), "SET ROLE postgres"),
        (
            privilege.clone(),
            "SELECT set_config('role', 'postgres', false)",
        ),
        (privilege.clone(), "ALTER SYSTEM SET fsync = off"),
        (escape.clone(), "COPY users TO PROGRAM 'cat'"),
        (escape.clone(), "COPY users FROM '/etc/passwd'"),
        (escape.clone(), "SELECT pg_read_file('/etc/passwd')"),
        (
            escape.clone(),
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
        ),
        (parser.clone(), "SET standard_conforming_strings = off"),
        (parser.clone(), "SET client_encoding TO 'SJIS'"),
        (
            dynamic.clone(),
            "DO $$ BEGIN EXECUTE 'DROP TABLE users'; END $$",
        ),
        (
            dynamic.clone(),
            "SELECT query_to_xml('DELETE FROM users RETURNING *', true, false, '')",
        ),
        (ddl.clone(), "CREATE TABLE t (id int primary key)"),
        (ddl.clone(), "ALTER TABLE users ADD COLUMN age int"),
        (ddl.clone(), "CREATE INDEX users_email_idx ON users (email)"),
        (unparsed.clone(), "SELEC * FROM users"),
    ]
}

/// Statements that only *mention* destructive SQL in comments, strings or dollar
/// quotes: allowed, with the single value each returns (as text).
const HARMLESS_MENTIONS: &[(&str, &str)] = &[
    ("SELECT 1 -- DROP TABLE users", "1"),
    ("/* DELETE FROM users */ SELECT 2", "2"),
    ("SELECT 'DROP TABLE users'", "DROP TABLE users"),
    ("SELECT $$TRUNCATE users$$", "TRUNCATE users"),
    ("SELECT 'DO $$ BEGIN END $$'", "DO $$ BEGIN END $$"),
];

/// Everything a statement in [`refused_statements`] could have changed, as one string:
/// the rows and columns of `users`, the relations in `public` (tables, indexes), the
/// privileges on `users` and the roles.
fn database_state(pg: &PgCluster) -> String {
    pg.query(
        "SELECT concat_ws(' | ',
            (SELECT string_agg(id || ':' || coalesce(email, 'NULL'), ',' ORDER BY id) FROM users),
            (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped),
            (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'public'::regnamespace),
            (SELECT coalesce(relacl::text, 'default') FROM pg_class WHERE oid = 'users'::regclass),
            (SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles
              WHERE rolname NOT LIKE 'pg\\_%'))",
    )
}

/// psql through the gateway with SQLSTATEs in its error lines (`ERROR:  42501: ...`).
fn psql_verbose(gw: &Gateway, token: &str, sql: &str) -> (bool, String, String) {
    gw.psql(token, &["-v", "VERBOSITY=verbose", "-c", sql])
}

/// Asserts that `err` is the gateway's refusal: SQLSTATE 42501 and `phrase`.
fn assert_refusal(err: &tokio_postgres::Error, phrase: &str, what: &str, gw: &Gateway) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {err}\n{}", gw.log()));
    assert_eq!(
        db.code().code(),
        REFUSED,
        "{what}: wrong SQLSTATE ({})\n{}",
        db.message(),
        gw.log()
    );
    assert!(
        db.message().contains(phrase),
        "{what}: expected {phrase:?} in {:?}\n{}",
        db.message(),
        gw.log()
    );
}

/// The JSON statement events in the gateway's log (one per judged statement).
fn statement_events(gw: &Gateway) -> Vec<Value> {
    gw.log()
        .lines()
        .filter_map(|line| {
            let start = line.find("{\"session_id\"")?;
            serde_json::Deserializer::from_str(&line[start..])
                .into_iter::<Value>()
                .next()?
                .ok()
        })
        .filter(|e| e.get("statement").is_some())
        .collect()
}

/// The one event whose statement text is exactly `statement`.
fn event_for(gw: &Gateway, statement: &str) -> Value {
    let matching: Vec<Value> = statement_events(gw)
        .into_iter()
        .filter(|e| e["statement"] == statement)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one event for {statement:?}\n{}",
        gw.log()
    );
    matching.into_iter().next().expect("one event")
}

#[test]
fn every_default_sql_rule_refuses_over_the_simple_protocol() {
    let (pg, gw) = setup();
    let before = database_state(&pg);
    let token = gw.token("alice", &["dev"]);
    for (phrase, sql) in refused_statements() {
        let (ok, out, err) = psql_verbose(&gw, &token, sql);
        assert!(!ok, "{sql:?} was not refused: {out}\n{}", gw.log());
        assert!(
            err.contains(&format!("ERROR:  {REFUSED}: {phrase}")),
            "{sql:?}: expected SQLSTATE {REFUSED} and {phrase:?}, got:\n{err}\n{}",
            gw.log()
        );
        assert!(
            out.is_empty(),
            "{sql:?}: part of a refused query ran: {out}"
        );
        assert_eq!(
            database_state(&pg),
            before,
            "{sql:?} changed the database\n{}",
            gw.log()
        );
    }
    // The INSERTs in front of refused statements did not happen.
    assert_eq!(
        pg.query("SELECT count(*) FROM users WHERE id IN (3, 4)"),
        "0\n"
    );
    for (sql, value) in HARMLESS_MENTIONS {
        let (ok, out, err) = gw.psql(&token, &["-c", sql]);
        assert!(ok, "{sql:?} was refused: {err}\n{}", gw.log());
        assert_eq!(out, format!("{value}\n"), "{sql:?}");
    }
    assert_eq!(database_state(&pg), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_sql_rule_refuses_parse_over_the_extended_protocol() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let before = tokio::task::block_in_place(|| database_state(&pg));
    let client = gw.client(&gw.token("bob", &["dev"])).await;
    for (phrase, sql) in refused_statements() {
        let err = client
            .prepare(sql)
            .await
            .expect_err(&format!("prepare {sql:?} was not refused"));
        assert_refusal(&err, &phrase, &format!("prepare {sql:?}"), &gw);
        let err = client
            .execute(sql, &[])
            .await
            .expect_err(&format!("execute {sql:?} was not refused"));
        assert_refusal(&err, &phrase, &format!("execute {sql:?}"), &gw);
        // The session is still usable after each refusal.
        let row = client
            .query_one("SELECT 40 + 2", &[])
            .await
            .unwrap_or_else(|e| panic!("after {sql:?}: {e}\n{}", gw.log()));
        assert_eq!(row.get::<_, i32>(0), 42);
    }
    tokio::task::block_in_place(|| {
        assert_eq!(
            database_state(&pg),
            before,
            "a refused Parse changed the database\n{}",
            gw.log()
        );
    });
    // A refused Parse with parameters, prepared under a name and then bound.
    let err = client
        .prepare("DELETE FROM users WHERE $1::int IS NOT NULL OR true")
        .await
        .expect_err("always-true WHERE with a parameter");
    assert_refusal(&err, &denied_by("sql.unbounded-write"), "parameter", &gw);

    for (sql, value) in HARMLESS_MENTIONS {
        let stmt = client
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("prepare {sql:?} was refused: {e}\n{}", gw.log()));
        let row = client.query_one(&stmt, &[]).await.expect("query");
        let got = match row.columns()[0].type_() {
            &tokio_postgres::types::Type::INT4 => row.get::<_, i32>(0).to_string(),
            _ => row.get::<_, String>(0),
        };
        assert_eq!(&got, value, "{sql:?}");
    }
}

#[test]
fn psql_meta_commands_read_the_catalogue_through_the_gateway() {
    let (_pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    for (command, must_mention) in [
        ("\\d", &["users"][..]),
        ("\\dt", &["users"][..]),
        // Tuples-only output (-At) drops the footer, so no index names.
        ("\\d users", &["id|integer", "email|text"][..]),
        ("\\l", &["app"][..]),
        ("\\dn", &["public"][..]),
        ("\\du", &["portcullis"][..]),
    ] {
        let (ok, out, err) = gw.psql(&token, &["-c", command]);
        assert!(ok, "{command} failed: {err}\n{}", gw.log());
        for word in must_mention {
            assert!(
                out.contains(word),
                "{command} does not mention {word}: {out}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_notify_through_the_gateway() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let conn_str = format!("{} password={}", gw.conninfo(), gw.token("alice", &[]));
    let (listener, mut connection) = tokio_postgres::connect(&conn_str, NoTls)
        .await
        .expect("connect the listener");
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Drives the connection and forwards what arrives between queries.
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await.expect("LISTEN");

    // From psql (simple protocol) ...
    let token = gw.token("bob", &[]);
    let (ok, _, err) =
        tokio::task::block_in_place(|| gw.psql(&token, &["-c", "NOTIFY jobs, 'from psql'"]));
    assert!(ok, "NOTIFY: {err}\n{}", gw.log());
    // ... and from tokio-postgres (extended protocol).
    let notifier = gw.client(&token).await;
    notifier
        .execute("SELECT pg_notify('jobs', $1)", &[&"from tokio-postgres"])
        .await
        .expect("pg_notify");

    for expected in ["from psql", "from tokio-postgres"] {
        let got = tokio::time::timeout(Duration::from_secs(10), notifications.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification {expected:?}\n{}", gw.log()))
            .expect("the listener's connection is open");
        assert_eq!(got, ("jobs".to_string(), expected.to_string()));
    }
    // The listener's session still answers queries.
    let row = listener.query_one("SELECT 5", &[]).await.expect("query");
    assert_eq!(row.get::<_, i32>(0), 5);
}

#[test]
fn prompts_and_subjects_are_recorded_with_each_event() {
    let (_pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    let (_, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "SET portcullis.prompt = 'fix the login bug'",
            "-c",
            "SELECT 'after the prompt'",
            "-c",
            "DELETE FROM users",
            // A prompt change inside a refused query does not take effect.
            "-c",
            "SET portcullis.prompt = 'hidden'; DROP TABLE users",
            "-c",
            "SELECT 'after the refused prompt'",
            "-c",
            "SET portcullis.prompt = 'second task'",
            "-c",
            "SELECT 'after the second prompt'",
            "-c",
            "SET portcullis.prompt TO 'it''s the login bug'",
            "-c",
            "SELECT 'after a quoted prompt'",
        ],
    );
    assert!(out.contains("after a quoted prompt"), "{out}\n{err}");

    let event = event_for(&gw, "SELECT 'after the prompt'");
    assert_eq!(event["prompt"], "fix the login bug", "{event}");
    assert_eq!(event["subject"], "alice", "{event}");
    assert_eq!(event["decision"], "allowed", "{event}");

    let refused = event_for(&gw, "DELETE FROM users");
    assert_eq!(refused["prompt"], "fix the login bug", "{refused}");
    assert_eq!(refused["subject"], "alice", "{refused}");
    assert_eq!(refused["decision"], "denied", "{refused}");
    assert!(
        refused["rule_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|id| id == "sql.unbounded-write")),
        "{refused}"
    );

    let event = event_for(&gw, "SELECT 'after the refused prompt'");
    assert_eq!(event["prompt"], "fix the login bug", "{event}");
    let event = event_for(&gw, "SELECT 'after the second prompt'");
    assert_eq!(event["prompt"], "second task", "{event}");
    let event = event_for(&gw, "SELECT 'after a quoted prompt'");
    assert_eq!(event["prompt"], "it's the login bug", "{event}");

    // At start-up, through libpq's options; the setting also reaches the server.
    let conninfo = format!("{} options='-c portcullis.prompt=hello'", gw.conninfo());
    let bob = gw.token("bob", &[]);
    let (ok, out, err) = gw.psql_with(
        &conninfo,
        &bob,
        &[
            "-c",
            "SELECT 'with a start-up prompt'",
            "-c",
            "SHOW portcullis.prompt",
        ],
    );
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "with a start-up prompt\nhello\n");
    let event = event_for(&gw, "SELECT 'with a start-up prompt'");
    assert_eq!(event["prompt"], "hello", "{event}");
    assert_eq!(event["subject"], "bob", "{event}");

    // Spaces escaped with a backslash, as libpq passes them in options.
    let conninfo = format!(
        "{} options='-c portcullis.prompt=fix\\\\ the\\\\ bug'",
        gw.conninfo()
    );
    let (ok, out, err) = gw.psql_with(
        &conninfo,
        &bob,
        &[
            "-c",
            "SELECT 'with a spaced prompt'",
            "-c",
            "SHOW portcullis.prompt",
        ],
    );
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "with a spaced prompt\nfix the bug\n");
    let event = event_for(&gw, "SELECT 'with a spaced prompt'");
    assert_eq!(event["prompt"], "fix the bug", "{event}");

    // Every statement event names its subject.
    let events = statement_events(&gw);
    assert!(events.len() >= 8, "too few events:\n{}", gw.log());
    for event in &events {
        assert!(
            event["subject"] == "alice" || event["subject"] == "bob",
            "an event without its subject: {event}"
        );
    }
}

#[test]
fn a_session_outlives_refusals_interleaved_with_allowed_statements() {
    let (pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    let (_, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "SELECT pg_backend_pid()",
            "-c",
            "SELECT email FROM users WHERE id = 1",
            "-c",
            "DELETE FROM users",
            "-c",
            "SELECT email FROM users WHERE id = 2",
            "-c",
            "DROP TABLE users",
            "-c",
            "SELEC broken",
            "-c",
            "SELECT count(*) FROM users",
            "-c",
            "DO $$ BEGIN END $$",
            "-c",
            "SELECT pg_backend_pid()",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "every allowed statement returns its rows:\n{out}\n{err}\n{}",
        gw.log()
    );
    assert_eq!(
        &lines[1..4],
        ["a***@x.io", "b***@x.io", "2"],
        "{out}\n{err}"
    );
    assert_eq!(lines[0], lines[4], "one upstream session throughout");
    for phrase in [
        denied_by("sql.unbounded-write"),
        denied_by("sql.destructive-ddl"),
        denied_by("sql.unparsed"),
        approval_required_by("sql.dynamic"),
    ] {
        assert!(err.contains(&phrase), "missing {phrase:?} in:\n{err}");
    }
    assert_eq!(pg.query("SELECT count(*) FROM users"), "2\n");
}

#[test]
fn a_refusal_inside_a_transaction_aborts_it() {
    let (pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    // ROLLBACK: the allowed update is undone.
    let (_, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "BEGIN",
            "-c",
            "UPDATE users SET email = 'z@x.io' WHERE id = 2 RETURNING email",
            "-c",
            "DELETE FROM users",
            "-c",
            "SELECT 'in an aborted transaction'",
            "-c",
            "ROLLBACK",
            "-c",
            "SELECT email FROM users WHERE id = 2",
        ],
    );
    assert!(
        err.contains(&format!("{REFUSED}: {}", denied_by("sql.unbounded-write"))),
        "{err}"
    );
    assert!(
        err.contains("25P02"),
        "the transaction status is truthful: the next statement is refused by the server\n{err}"
    );
    assert!(!out.contains("in an aborted transaction"), "{out}");
    assert_eq!(
        out,
        "BEGIN\nz***@x.io\nUPDATE 1\nROLLBACK\nb***@x.io\n",
        "{err}\n{}",
        gw.log()
    );
    assert_eq!(pg.query("SELECT email FROM users WHERE id = 2"), "b@x.io\n");

    // COMMIT after a refusal: the server rolls back, as after any error.
    let (_, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "BEGIN",
            "-c",
            "UPDATE users SET email = 'y@x.io' WHERE id = 1",
            "-c",
            "TRUNCATE users",
            "-c",
            "COMMIT",
        ],
    );
    assert!(err.contains(&denied_by("sql.destructive-ddl")), "{err}");
    assert!(
        out.contains("ROLLBACK"),
        "COMMIT reports ROLLBACK: {out}\n{err}"
    );
    assert_eq!(
        pg.query("SELECT string_agg(email, ',' ORDER BY id) FROM users"),
        "a@x.io,b@x.io\n"
    );
}

#[test]
fn a_refusal_in_an_already_aborted_transaction_is_still_reported_as_a_refusal() {
    let (pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    let (_, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "BEGIN",
            "-c",
            "SELECT 1 / 0",
            "-c",
            "DELETE FROM users",
            "-c",
            "ROLLBACK",
            "-c",
            "SELECT count(*) FROM users",
        ],
    );
    assert!(err.contains("22012"), "division by zero aborts it: {err}");
    assert!(
        err.contains(&format!("{REFUSED}: {}", denied_by("sql.unbounded-write"))),
        "a refused statement in an aborted transaction gets the gateway's refusal \
         (42501 and the rule id), not the server's 25P02:\n{err}\n{}",
        gw.log()
    );
    assert!(out.ends_with("ROLLBACK\n2\n"), "{out}\n{err}");
    assert_eq!(pg.query("SELECT count(*) FROM users"), "2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_parse_in_an_already_aborted_transaction_is_still_reported_as_a_refusal() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let client = gw.client(&gw.token("bob", &["dev"])).await;
    client.batch_execute("BEGIN").await.expect("begin");
    let err = client
        .query("SELECT 1 / 0", &[])
        .await
        .expect_err("division by zero");
    assert_eq!(err.code().map(|c| c.code()), Some("22012"), "{err}");
    let err = client.prepare("TRUNCATE users").await.expect_err("refused");
    assert_refusal(
        &err,
        &denied_by("sql.destructive-ddl"),
        "Parse in an aborted transaction",
        &gw,
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let row = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 2);
}

/// The key id the gateway's JWKS publishes (the harness's signing key).
fn gateway_kid(gw: &Gateway) -> String {
    let jwks: Value = serde_json::from_str(
        &std::fs::read_to_string(gw.dir.path().join("jwks.json")).expect("read jwks"),
    )
    .expect("jwks is JSON");
    jwks["keys"][0]["kid"]
        .as_str()
        .expect("the JWKS key has a kid")
        .to_string()
}

/// Claims a good token would carry, for hand-built tokens.
fn valid_claims(sub: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "groups": ["dba"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    })
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Mints with `key_pem` and the gateway's issuer and audience.
fn mint_with(key_pem: &str, issuer: &str, kid: Option<String>) -> String {
    identity::mint(
        key_pem,
        MintOptions {
            sub: "root".into(),
            groups: vec!["dba".into()],
            ttl: Duration::from_secs(600),
            issuer: issuer.into(),
            audience: AUDIENCE.into(),
            agent: None,
            kid,
        },
    )
    .expect("mint")
}

/// Tokens the gateway must refuse, named.
fn bad_tokens(gw: &Gateway) -> Vec<(&'static str, String)> {
    let kid = gateway_kid(gw);
    let other_key = identity::generate_key(KeyAlg::Es256).expect("key");

    let good = gw.token("mallory", &["dev"]);
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64 payload"))
            .expect("JSON payload");
    claims["sub"] = "root".into();
    claims["groups"] = serde_json::json!(["dba"]);
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);

    let alg_none = format!(
        "{}.{}.",
        b64_json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64_json(&valid_claims("root"))
    );

    // Algorithm confusion: HS256 keyed with the public JWKS (HS256 is not configured).
    let jwks_text = std::fs::read_to_string(gw.dir.path().join("jwks.json")).expect("jwks");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &valid_claims("root"),
        &jsonwebtoken::EncodingKey::from_secret(jwks_text.as_bytes()),
    )
    .expect("HS256 token");

    vec![
        ("signed by another key", mint_with(&other_key, ISSUER, None)),
        (
            "signed by another key under the gateway's kid",
            mint_with(&other_key, ISSUER, Some(kid)),
        ),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("HS256 keyed with the public JWKS", hs256),
        (
            "wrong issuer",
            mint_with(&gw.key_pem, "https://evil.test/", None),
        ),
    ]
}

#[test]
fn bad_tokens_over_psql_are_refused_and_the_next_client_is_served() {
    let (_pg, gw) = setup();
    let good = gw.token("alice", &[]);
    for (why, token) in bad_tokens(&gw) {
        let (ok, out, err) = gw.psql(&token, &["-c", "SELECT 'let in'"]);
        assert!(!ok, "{why}: the token was accepted: {out}\n{}", gw.log());
        assert!(err.contains("portcullis"), "{why}: {err}");
        for secret in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !err.contains(secret),
                "{why}: the error echoes the token: {err}"
            );
            assert!(
                !gw.log().contains(secret),
                "{why}: the log holds the token:\n{}",
                gw.log()
            );
        }
        let (ok, out, err) = gw.psql(&good, &["-c", "SELECT 7"]);
        assert!(
            ok,
            "{why}: the next client was not served: {err}\n{}",
            gw.log()
        );
        assert_eq!(out, "7\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_sqlstate_28p01_over_tokio_postgres() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let good = gw.token("alice", &[]);
    for (why, token) in bad_tokens(&gw) {
        let conn_str = format!("{} password={token}", gw.conninfo());
        let err = match tokio_postgres::connect(&conn_str, NoTls).await {
            Ok(_) => panic!("{why}: the token was accepted\n{}", gw.log()),
            Err(e) => e,
        };
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{why}: not a server error: {err}"));
        assert_eq!(db.code().code(), BAD_TOKEN, "{why}: {}", db.message());
        assert!(!db.message().contains(&token), "{why}: {}", db.message());
        let client = gw.client(&good).await;
        let row = client.query_one("SELECT 7", &[]).await.expect("query");
        assert_eq!(row.get::<_, i32>(0), 7, "{why}");
    }
}
