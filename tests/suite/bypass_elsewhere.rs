//! Issue #9 beyond SQL and git: TLS required per listener, sessions that end with their
//! token, `/metrics` behind a token, and auditors' queries that can neither stall the
//! agents' writes nor run without a time limit.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::gateway::{
    AUDIENCE, Gateway, ISSUER, Options, free_port, http, wait_listening,
};
use crate::support::pg::PgCluster;

/// A cluster with a `notes` table and a gateway set up by `options` in front of it.
pub fn start(options: Options) -> (PgCluster, Gateway) {
    let pg = PgCluster::start();
    pg.query("CREATE TABLE notes (id int primary key, body text)");
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: "sslmode=disable".into(),
            ..options
        },
    );
    (pg, gw)
}

#[test]
fn issue_9_a_listener_that_requires_tls_refuses_plain_text_clients() {
    let pg = PgCluster::start();
    let pki_dir = tempfile::tempdir().expect("temp dir");
    let pki = crate::support::tls::TestPki::new(pki_dir.path());
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: "sslmode=disable".into(),
            client_tls: Some((pki.server_cert_path(), pki.server_key_path())),
            postgres: "tls_required = true\n".into(),
            ..Options::default()
        },
    );
    let token = gw.token("alice", &["dev"]);
    let conninfo = |mode: &str| {
        format!(
            "host=localhost port={} user=agent dbname=app sslmode={mode} sslrootcert={}",
            gw.port,
            pki.ca_cert_path().display()
        )
    };
    let (ok, out, err) = gw.psql_with(&conninfo("disable"), &token, &["-c", "SELECT 1"]);
    assert!(!ok, "a plain-text client was served: {out}");
    assert!(err.contains("requires TLS"), "{err}");
    // Over TLS (verified against the test CA) the same client is served.
    let (ok, out, err) = gw.psql_with(&conninfo("verify-full"), &token, &["-c", "SELECT 7"]);
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "7\n");
    assert!(
        gw.log().contains("requires TLS"),
        "the refusal is recorded\n{}",
        gw.log()
    );
}

#[test]
fn issue_9_tls_required_without_a_certificate_is_a_config_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[identity]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_path = \"jwks.json\"\n\n\
             [[postgres]]\nname = \"app\"\nlisten = \"127.0.0.1:1\"\n\
             upstream = \"postgres://u@127.0.0.1:5432/app\"\ntls_required = true\n"
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls_required"), "{err}");
}

/// A token that expired 25 s ago is still inside the 30 s clock leeway at login; the
/// session it opens ends at the first statement after the leeway runs out.
#[test]
fn issue_9_a_session_ends_with_its_token() {
    let (pg, gw) = start(Options::default());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "late", "groups": ["dev"],
        "iat": now - 600, "nbf": now - 600, "exp": now - 25,
    });
    let jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gw.dir.path().join("jwks.json")).expect("jwks"),
    )
    .expect("json");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = jwks["keys"][0]["kid"].as_str().map(str::to_string);
    let key = jsonwebtoken::EncodingKey::from_ec_pem(gw.key_pem.as_bytes()).expect("key");
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let conn_str = format!("{} password={token}", gw.conninfo());
        let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("login within the leeway: {e}\n{}", gw.log()));
        tokio::spawn(connection);
        client
            .simple_query("INSERT INTO notes VALUES (1, 'before')")
            .await
            .expect("served while the token is valid");
        let insert = client
            .prepare("INSERT INTO notes VALUES ($1, $2)")
            .await
            .expect("prepared while the token is valid");
        // Past exp + leeway: executing what was prepared before is refused too.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let err = client
            .execute(&insert, &[&2_i32, &"after"])
            .await
            .expect_err("the token has expired");
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "28000", "{}", db.message());
        assert!(db.message().contains("expired"), "{}", db.message());
        assert!(client.simple_query("SELECT 1").await.is_err(), "closed");
    });
    assert_eq!(
        pg.query("SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "before\n"
    );
}

#[test]
fn issue_9_metrics_need_a_token_unless_made_public() {
    let admin = free_port();
    let (_pg, gw) = start(Options {
        server: format!("admin_listen = \"127.0.0.1:{admin}\"\n"),
        ..Options::default()
    });
    wait_listening(admin, || gw.log());
    let (ok, _, err) = gw.psql(&gw.token("alice", &["dev"]), &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
    let anonymous = http(admin, "GET", "/metrics", None, "");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let agent = http(
        admin,
        "GET",
        "/metrics",
        Some(&gw.token("alice", &["dev"])),
        "",
    );
    assert!(agent.starts_with("HTTP/1.1 403"), "{agent}");
    let monitoring = http(
        admin,
        "GET",
        "/metrics",
        Some(&gw.token("prometheus", &["monitoring"])),
        "",
    );
    assert!(monitoring.starts_with("HTTP/1.1 200"), "{monitoring}");
    assert!(
        monitoring.contains("portcullis_statements_total"),
        "{monitoring}"
    );
    let health = http(admin, "GET", "/healthz", None, "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    let admin = free_port();
    let (_pg2, public) = start(Options {
        server: format!("admin_listen = \"127.0.0.1:{admin}\"\nmetrics_public = true\n"),
        ..Options::default()
    });
    wait_listening(admin, || public.log());
    let anonymous = http(admin, "GET", "/metrics", None, "");
    assert!(anonymous.starts_with("HTTP/1.1 200"), "{anonymous}");
}

/// A long auditor query runs on a connection of its own: the agents' statements are
/// judged, recorded and answered while it runs, and it is cancelled at the limit.
#[test]
fn issue_9_an_auditor_query_neither_stalls_agents_nor_runs_forever() {
    let admin = free_port();
    let (pg, gw) = start(Options {
        server: format!("admin_listen = \"127.0.0.1:{admin}\"\n"),
        sections: "[audit]\nquery_timeout = \"4s\"\n".into(),
        ..Options::default()
    });
    wait_listening(admin, || gw.log());
    let token = gw.token("alice", &["dev"]);
    for i in 0..20 {
        let (ok, _, err) = gw.psql(&token, &["-c", &format!("SELECT {i}")]);
        assert!(ok, "{err}");
    }
    let auditor = gw.token("carol", &["auditors"]);
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = {
        let (auditor, finished) = (auditor.clone(), finished.clone());
        std::thread::spawn(move || {
            // Tens of events to the seventh power: far longer than the limit.
            let sql = "SELECT count(*) FROM events a, events b, events c, events d, \
                       events e, events f, events g";
            let response = http(admin, "POST", "/api/audit/query", Some(&auditor), sql);
            finished.store(true, std::sync::atomic::Ordering::SeqCst);
            response
        })
    };
    // Let the query start, then write through the gateway while it runs.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let (ok, _, err) = gw.psql(
            &token,
            &["-c", &format!("INSERT INTO notes VALUES ({i}, 'during')")],
        );
        assert!(ok, "{err}\n{}", gw.log());
    }
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "the agents' writes waited for the auditor's query"
    );
    let response = slow.join().expect("auditor thread");
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(response.contains("audit.query_timeout"), "{response}");
    assert_eq!(pg.query("SELECT count(*) FROM notes"), "3\n");
    // The writes are on the record, and the store still answers.
    let rows = http(
        admin,
        "POST",
        "/api/audit/query?format=csv",
        Some(&auditor),
        "SELECT count(*) FROM events WHERE statement LIKE 'INSERT INTO notes%'",
    );
    assert!(rows.starts_with("HTTP/1.1 200"), "{rows}");
    assert!(rows.trim_end().ends_with('3'), "{rows}");
    // Issue #10: an auditor's command reads the gateway's config without its secrets
    // (the upstream password's variable is not set here).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "sql", "--format", "csv", "--config"])
        .arg(gw.dir.path().join("portcullis.toml"))
        .arg("SELECT count(*) FROM events WHERE statement LIKE 'INSERT INTO notes%'")
        .env("PORTCULLIS_TOKEN", &auditor)
        .env_remove("TEST_UPSTREAM_PASSWORD")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with('3'), "{stdout}");
}
