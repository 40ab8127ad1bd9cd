//! Issue #14, the listener's part: a connection flood never stops a listener, a listener
//! refuses politely beyond its `max_connections`, and `/healthz` tells the truth.

use std::net::TcpStream;
use std::time::Duration;

use crate::support::gateway::{Options, free_port, http, wait_listening};

use crate::bypass_elsewhere::start;

fn flood(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_millis(500),
            )
            .ok()
        })
        .collect()
}

#[test]
fn issue_14_a_connection_flood_never_stops_a_listener() {
    let admin = free_port();
    let (_pg, gw) = start(Options {
        server: format!("admin_listen = \"127.0.0.1:{admin}\"\n"),
        // Far fewer descriptors than the flood: accepting fails with EMFILE.
        fd_limit: Some(48),
        ..Options::default()
    });
    wait_listening(admin, || gw.log());
    let token = gw.token("alice", &["dev"]);
    let held = flood(gw.port, 200);
    assert!(
        held.len() > 48,
        "the flood got through the kernel's backlog: {}",
        held.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    // Once the flood is gone, new clients are served again, and health says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = gw.psql(&token, &["-c", "SELECT 41 + 1"]);
        if ok {
            assert_eq!(out.trim(), "42");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not served after the flood: {err}\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        gw.log().contains("accept failed"),
        "the flood hit the limit:\n{}",
        gw.log()
    );
    let health = http(admin, "GET", "/healthz", None, "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

#[test]
fn issue_14_beyond_max_connections_a_client_is_told_so_and_others_go_on() {
    let (_pg, gw) = start(Options {
        postgres: "max_connections = 3\n".into(),
        ..Options::default()
    });
    let token = gw.token("alice", &["dev"]);
    let idle = flood(gw.port, 3);
    std::thread::sleep(Duration::from_millis(200));
    let (ok, _, err) = gw.psql(&token, &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("serves 3 connections at once"), "{err}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out, err) = gw.psql(&token, &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
}

#[test]
fn issue_14_a_long_statement_is_logged_as_its_beginning() {
    let (_pg, gw) = crate::support::gateway::setup();
    let filler = "x".repeat(60_000);
    let (ok, _, err) = gw.psql(
        &gw.token("alice", &["dev"]),
        &["-c", &format!("SELECT length('{filler}')")],
    );
    assert!(ok, "{err}");
    let log = gw.log();
    assert!(
        log.contains("bytes in all; the audit store has the full text"),
        "{log}"
    );
    assert!(
        !log.contains(&filler[..8_000]),
        "the whole statement went to the log"
    );
}

#[test]
fn issue_14_oversized_statements_neither_break_the_store_nor_stop_anyone_else() {
    let (_pg, mut gw) = crate::support::gateway::setup();
    let token = gw.token("mallory", &["dev"]);
    let dir = tempfile::tempdir().expect("temp dir");
    // Five statements near this harness's 1 MiB message limit, with 20 MB results: far
    // above what one event keeps.
    let big = "z".repeat(900_000);
    let file = dir.path().join("big.sql");
    std::fs::write(
        &file,
        format!("SELECT length('{big}'), repeat('y', {});\n", 20 << 20),
    )
    .expect("write");
    for _ in 0..5 {
        let (ok, _, err) = gw.psql(&token, &["-o", "/dev/null", "-f", file.to_str().unwrap()]);
        assert!(ok, "{err}");
    }
    // Everyone else is still served, and recorded.
    let (ok, out, err) = gw.psql(
        &gw.token("alice", &["dev"]),
        &["-c", "SELECT count(*) FROM users"],
    );
    assert!(ok && out.trim() == "2", "{err}\n{}", gw.log());
    gw.terminate();
    let db = gw.audit_path();
    crate::gateway_audit::verify_ok(&db);
    let rows = crate::gateway_audit::audit_rows(
        &db,
        "SELECT length(statement) AS s, length(result) AS r, \
         statement LIKE '%bytes in all, sha256 %' AS said FROM events \
         WHERE subject = 'mallory' AND kind = 'query'",
    );
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in rows {
        assert!(r["s"].as_i64().is_some_and(|n| n <= 16_384), "{r}");
        assert!(r["r"].as_i64().is_some_and(|n| n <= 16_384), "{r}");
        assert_eq!(r["said"], true, "{r}");
    }
}

/// A flood of large statements under a small audit memory limit: before fields were
/// cut to 16 KiB, DuckDB's checkpoints ran out of memory after about 100 MB of 64 KiB
/// texts and the store, with it every session, stopped.
#[test]
fn issue_14_a_flood_of_large_statements_under_a_small_audit_memory_limit_is_all_recorded() {
    let pg = crate::support::pg::PgCluster::start();
    let mut gw = crate::support::gateway::Gateway::start_with(
        &pg,
        crate::support::gateway::Options {
            upstream_params: "sslmode=disable".into(),
            sections: "[audit]\nmemory_limit = \"64MB\"\n".into(),
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flood.sql");
    let n = 1000;
    let filler = "z".repeat(80_000);
    let script: String = (0..n)
        .map(|i| format!("SELECT length('{i}{filler}'), repeat('{i}', 80000);\n"))
        .collect();
    std::fs::write(&file, script).expect("write");
    let (ok, _, err) = gw.psql(
        &gw.token("mallory", &["dev"]),
        &["-o", "/dev/null", "-f", file.to_str().unwrap()],
    );
    assert!(ok, "{err}\n{}", gw.log());
    let (ok, out, err) = gw.psql(&gw.token("alice", &["dev"]), &["-c", "SELECT 41 + 1"]);
    assert!(ok && out.trim() == "42", "{err}\n{}", gw.log());
    gw.terminate();
    let db = gw.audit_path();
    crate::gateway_audit::verify_ok(&db);
    let rows = crate::gateway_audit::audit_rows(
        &db,
        "SELECT count(*) AS n, max(length(statement)) AS s, max(length(result)) AS r \
         FROM events WHERE subject = 'mallory' AND kind = 'query' AND decision = 'allowed'",
    );
    assert_eq!(rows[0]["n"], n, "{rows:?}");
    assert!(
        rows[0]["s"].as_i64().is_some_and(|s| s <= 16_384),
        "{rows:?}"
    );
    assert!(
        rows[0]["r"].as_i64().is_some_and(|s| s <= 16_384),
        "{rows:?}"
    );
}

#[test]
fn issue_14_an_upstream_too_many_clients_reaches_the_client_as_such() {
    let (pg, gw) = crate::support::gateway::setup();
    let out = pg.psql(
        crate::support::pg::SUPERUSER,
        pg.superuser_password(),
        "app",
        "ALTER ROLE portcullis CONNECTION LIMIT 1",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = gw.token("alice", &["dev"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // One session holds the role's only connection while a second one asks.
    let (holder, connection) = runtime
        .block_on(tokio_postgres::connect(
            &format!("{} password={token}", gw.conninfo()),
            tokio_postgres::NoTls,
        ))
        .expect("the first session");
    runtime.spawn(connection);
    let refused = runtime
        .block_on(tokio_postgres::connect(
            &format!("{} password={token}", gw.conninfo()),
            tokio_postgres::NoTls,
        ))
        .err()
        .expect("refused");
    let db = refused.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "53300", "{refused:?}");
    assert!(db.message().contains("too many connections"), "{refused:?}");
    drop(holder);
}

#[test]
fn issue_14_a_copy_to_stdout_is_recorded_with_its_rows_and_a_sample() {
    let (pg, mut gw) = crate::support::gateway::setup();
    pg.query(
        "CREATE TABLE shipments (id int, note text); \
         INSERT INTO shipments SELECT g, 'box ' || g FROM generate_series(1, 5) g",
    );
    let (ok, out, err) = gw.psql(
        &gw.token("alice", &["dev"]),
        &["-c", "COPY shipments TO STDOUT"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    gw.terminate();
    let rows = crate::gateway_audit::audit_rows(
        &gw.audit_path(),
        "SELECT rows, result FROM events WHERE statement = 'COPY shipments TO STDOUT'",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["rows"], 5, "{rows:?}");
    let result = rows[0]["result"].as_str().unwrap_or_default();
    assert!(result.contains("1\\tbox 1"), "{result}");
}

/// Stalled clients (connected, silent) cannot starve others: at most `max_startups`
/// connections are logging in at once and a new one pushes out the oldest, so they
/// never fill `max_connections`; each is closed at `startup_timeout` anyway.
#[test]
fn issue_14_stalled_clients_cannot_keep_others_from_logging_in() {
    use std::io::Read;
    let (_pg, gw) = start(Options {
        postgres: "max_connections = 50\nmax_startups = 20\nstartup_timeout = \"3s\"\n".into(),
        ..Options::default()
    });
    let token = gw.token("alice", &["dev"]);
    let stalled = flood(gw.port, 200);
    assert!(stalled.len() >= 100, "{}", stalled.len());
    // Each real client gets in past the silent ones: they hold at most 20 places.
    for _ in 0..3 {
        let (ok, out, err) = gw.psql(&token, &["-c", "SELECT 41 + 1"]);
        assert!(ok && out.trim() == "42", "refused: {err}\n{}", gw.log());
    }
    assert!(gw.log().contains("(max_startups)"), "{}", gw.log());
    drop(stalled);
    // A silent connection with a place is closed at the deadline, without a word.
    for mut s in flood(gw.port, 5) {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut byte = [0u8; 1];
        assert!(
            matches!(s.read(&mut byte), Ok(0)),
            "still open, or answered"
        );
    }
    assert!(gw.log().contains("(startup_timeout)"), "{}", gw.log());
}

/// The upstream shut down under a running statement: the client gets PostgreSQL's own
/// FATAL (57P01), as it would directly, even though the gateway could no longer ask the
/// catalog about the result; new sessions work once the upstream is back.
#[test]
fn issue_14_a_statement_running_when_the_upstream_restarts_gets_the_servers_error() {
    let (pg, gw) = crate::support::gateway::setup();
    let token = gw.token("alice", &["dev"]);
    let running = gw.psql_in_background(&token, &["-c", "SELECT pg_sleep(60)"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pg
        .query("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
        .trim()
        != "1"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the statement never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.restart_fast();
    let (ok, _, err) = running.join().expect("psql thread");
    assert!(!ok);
    assert!(
        err.contains("terminating connection due to administrator command"),
        "{err}\n{}",
        gw.log()
    );
    let (ok, out, err) = gw.psql(&token, &["-c", "SELECT 41 + 1"]);
    assert!(ok && out.trim() == "42", "{err}\n{}", gw.log());
}
