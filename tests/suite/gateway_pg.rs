//! The PostgreSQL gateway end to end (issue #3): a private PostgreSQL cluster with SCRAM
//! auth, `portcullis serve` as a child process, real clients (psql, tokio-postgres).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::support::gateway::{Gateway, Options, setup};
use crate::support::pg::PgCluster;

#[test]
fn psql_simple_protocol_allows_reads_and_denies_unbounded_writes() {
    let (pg, gw) = setup();
    let token = gw.token("alice", &["dev"]);
    let (ok, out, err) = gw.psql(&token, &["-c", "SELECT email FROM users ORDER BY id"]);
    assert!(ok, "{err}\n{}", gw.log());
    // The email column is masked for an agent outside `pii-readers`.
    assert_eq!(out, "a***@x.io\nb***@x.io\n");

    let (ok, _, err) = gw.psql(&token, &["-c", "DELETE FROM users"]);
    assert!(!ok);
    assert!(
        err.contains("portcullis: denied by sql.unbounded-write"),
        "{err}"
    );

    // One denied statement in a multi-statement query: nothing of it runs.
    let (ok, _, err) = gw.psql(
        &token,
        &[
            "-c",
            "INSERT INTO users VALUES (3, 'c@x.io'); DROP TABLE users",
        ],
    );
    assert!(!ok);
    assert!(err.contains("sql.destructive-ddl"), "{err}");
    let direct = pg.psql(
        "portcullis",
        pg.user_password(),
        "app",
        "SELECT count(*) FROM users",
    );
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout),
        "2\n",
        "nothing of the denied query ran"
    );

    // The session stays usable after a refusal; the transaction status stays truthful.
    let (ok, out, err) = gw.psql(
        &token,
        &[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "DELETE FROM users",
            "-c",
            "SELECT 41 + 1",
        ],
    );
    assert!(ok || out.contains("42"), "{err}");
    assert!(out.contains("42"), "{out}{err}");
    assert!(
        gw.log().contains("\"decision\":\"denied\""),
        "events are logged:\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_prepared_statements_and_refusals() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let token = gw.token("bob", &["dev"]);
    let conn_str = format!("{} password={token}", gw.conninfo());
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .expect("connect through the gateway");
    tokio::spawn(connection);

    let stmt = client
        .prepare("SELECT email FROM users WHERE id = $1")
        .await
        .expect("prepare");
    let row = client.query_one(&stmt, &[&1i32]).await.expect("query");
    assert_eq!(row.get::<_, String>(0), "a***@x.io");
    // Binary results and parameters of other types.
    let row = client
        .query_one("SELECT $1::int8 * 2, $2::text", &[&21i64, &"x"])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 42);

    let err = client
        .prepare("DELETE FROM users WHERE 1 = 1")
        .await
        .expect_err("denied");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("denied by sql.unbounded-write"),
        "{}",
        db.message()
    );

    // Pipelined: an allowed query, a denied one, an allowed one, each in its own batch.
    let (a, b, c) = tokio::join!(
        client.query_one("SELECT 1::int4", &[]),
        client.execute("TRUNCATE users", &[]),
        client.query_one("SELECT 3::int4", &[]),
    );
    assert_eq!(a.expect("first").get::<_, i32>(0), 1);
    assert_eq!(
        b.expect_err("denied").code().map(|c| c.code()),
        Some("42501")
    );
    assert_eq!(c.expect("third").get::<_, i32>(0), 3);

    // Inside a transaction a refusal aborts it, as a server error would.
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute("UPDATE users SET email = 'z' WHERE id = 2", &[])
        .await
        .expect("bounded update");
    assert!(client.execute("DELETE FROM users", &[]).await.is_err());
    let after = client
        .query("SELECT 1", &[])
        .await
        .expect_err("transaction is aborted");
    assert_eq!(after.code().map(|c| c.code()), Some("25P02"));
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let row = client
        .query_one("SELECT email FROM users WHERE id = 2", &[])
        .await
        .expect("query");
    assert_eq!(
        row.get::<_, String>(0),
        "b***@x.io",
        "the rolled-back update is gone"
    );
}

#[test]
fn bad_tokens_are_refused_without_echoing_them() {
    let (_pg, gw) = setup();
    // Expiry (with its 30 s leeway) is covered in identity.rs, without waiting here.
    let wrong_aud = gw.token_with("eve", &[], "someone-else", Duration::from_secs(600));
    for (token, why) in [(wrong_aud.as_str(), "audience"), ("not-a-jwt", "malformed")] {
        let (ok, _, err) = gw.psql(token, &["-c", "SELECT 1"]);
        assert!(!ok, "{why} token was accepted");
        assert!(!err.contains(token), "the error echoes the token: {err}");
        assert!(err.to_lowercase().contains("portcullis"), "{why}: {err}");
    }
    // A good token still works afterwards.
    let (ok, _, err) = gw.psql(&gw.token("alice", &[]), &["-c", "SELECT 1"]);
    assert!(ok, "{err}");
}

#[test]
fn garbage_and_oversized_messages_get_errors_and_others_keep_working() {
    let (_pg, gw) = setup();
    // Garbage instead of a startup packet.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    s.write_all(&[0xff; 64]).expect("write");
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.read_to_end(&mut buf);
    // Issue #10: it gets a protocol error (an ErrorResponse, SQLSTATE 08P01), then the
    // connection closes.
    assert_eq!(buf.first(), Some(&b'E'), "{buf:?}");
    assert!(
        String::from_utf8_lossy(&buf).contains("08P01"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    // A connection cut in the middle of a startup packet.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    s.write_all(&[0, 0, 0, 40, 0, 3]).expect("write");
    drop(s);
    // An oversized message after login: the gateway says so and closes that session.
    let token = gw.token("mallory", &[]);
    let huge = gw.dir.path().join("huge.sql");
    std::fs::write(&huge, format!("SELECT '{}';", "x".repeat(2 << 20))).expect("write");
    let (ok, _, err) = gw.psql(&token, &["-f", huge.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert!(err.contains("exceeds the limit"), "{err}");
    // Everyone else is still served.
    let (ok, out, err) = gw.psql(&gw.token("alice", &[]), &["-c", "SELECT 7"]);
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "7\n");
}

#[test]
fn tls_to_clients_and_to_the_upstream() {
    let pg = PgCluster::start_with_tls();
    let pki_dir = tempfile::tempdir().expect("temp dir");
    let pki = crate::support::tls::TestPki::new(pki_dir.path());
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: format!(
                "sslmode=verify-full&sslrootcert={}",
                pg.ca_cert_path().display()
            ),
            client_tls: Some((pki.server_cert_path(), pki.server_key_path())),
            rules: None,
            upstream_user: None,
            ..Options::default()
        },
    );
    let token = gw.token("alice", &[]);
    for mode in ["require", "verify-full"] {
        let conninfo = format!(
            "host=localhost port={} user=agent dbname=app sslmode={mode} sslrootcert={}",
            gw.port,
            pki.ca_cert_path().display()
        );
        let (ok, out, err) = gw.psql_with(
            &conninfo,
            &token,
            &[
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
        );
        assert!(ok, "{mode}: {err}\n{}", gw.log());
        assert_eq!(
            out, "t\n",
            "the gateway's own upstream connection is encrypted"
        );
    }
    // A client that trusts another CA refuses the gateway's certificate.
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other = crate::support::tls::TestPki::new(other_dir.path());
    let conninfo = format!(
        "host=localhost port={} user=agent dbname=app sslmode=verify-full sslrootcert={}",
        gw.port,
        other.ca_cert_path().display()
    );
    let (ok, _, err) = gw.psql_with(&conninfo, &token, &["-c", "SELECT 1"]);
    assert!(!ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_upstream_query() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let conn_str = format!("{} password={}", gw.conninfo(), gw.token("alice", &[]));
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let err = sleeper
        .await
        .expect("join")
        .expect_err("the sleep is cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn copy_in_and_out_and_pgbench_through_the_gateway() {
    let (pg, gw) = setup();
    let token = gw.token("alice", &[]);
    let csv = gw.dir.path().join("in.csv");
    std::fs::write(&csv, "10,j@x.io\n11,k@x.io\n").expect("write csv");
    let copy_in = format!("\\copy users FROM '{}' WITH (FORMAT csv)", csv.display());
    let (ok, _, err) = gw.psql(&token, &["-c", &copy_in]);
    assert!(ok, "{err}\n{}", gw.log());
    // Copying out a table with a masked column (users.email) is for those who may read
    // it (docs/masking.md).
    let reader = gw.token("alice", &["pii-readers"]);
    let (ok, out, err) = gw.psql(
        &reader,
        &["-c", "COPY (SELECT id FROM users ORDER BY id) TO STDOUT"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "1\n2\n10\n11\n");
    let (ok, _, err) = gw.psql(&token, &["-c", "COPY users TO PROGRAM 'cat'"]);
    assert!(!ok && err.contains("sql.server-escape"), "{err}");

    // pgbench -i needs DDL (reviewed by the default pack), so the schema is made directly;
    // the benchmark itself runs through the gateway, simple and prepared protocols.
    let init = pgbench(
        pg.port(),
        "portcullis",
        pg.user_password(),
        &["-i", "-s", "1", "-q"],
    );
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for args in [
        vec!["-S", "-t", "200"],
        vec!["-t", "50"],
        vec!["-S", "-M", "prepared", "-c", "4", "-t", "100"],
    ] {
        let mut run = vec!["-n"];
        run.extend(&args);
        let out = pgbench(gw.port, "agent", &token, &run);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pgbench {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "{stdout}"
        );
    }
}

#[test]
fn pgbench_initialises_through_the_gateway_under_a_team_pack() {
    // A team that lets its migration tool change the schema keeps only some rules;
    // pgbench -i (DROP, CREATE, TRUNCATE, COPY FROM STDIN, ALTER, VACUUM) then passes.
    let pg = PgCluster::start();
    let rules = r#"
rule team.unbounded-write on sql {
  when any w in stmt.writes: (not w.has_where or w.where_always_true)
  deny "DELETE or UPDATE without a WHERE clause"
}
rule team.no-escape on sql {
  when stmt.copy_program or stmt.copy_file
  deny "no server files"
}
"#;
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: "sslmode=disable".into(),
            rules: Some(rules.into()),
            ..Options::default()
        },
    );
    let token = gw.token("migrator", &["dba"]);
    let run = |args: &[&str]| pgbench(gw.port, "agent", &token, args);
    let init = run(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&init.stderr),
        gw.log()
    );
    let bench = run(&["-n", "-t", "30", "-c", "2"]);
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(String::from_utf8_lossy(&bench.stdout).contains("number of failed transactions: 0"));
}

#[test]
fn the_gateway_logs_in_upstream_with_md5_too() {
    let pg = PgCluster::start();
    let gw = Gateway::start_with(
        &pg,
        Options {
            upstream_params: "sslmode=disable".into(),
            upstream_user: Some("md5user".into()),
            ..Options::default()
        },
    );
    let (ok, out, err) = gw.psql(&gw.token("alice", &[]), &["-c", "SELECT current_user"]);
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(
        out, "md5user\n",
        "the agent runs as the gateway's role, never its own"
    );
}

#[test]
fn gssenc_and_ssl_requests_are_answered_before_startup() {
    let (_pg, gw) = setup();
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = [0u8; 1];
    // GSSENCRequest (1234 5680): no GSSAPI encryption.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .expect("write");
    s.read_exact(&mut answer).expect("an answer");
    assert_eq!(&answer, b"N");
    // SSLRequest (1234 5679): this gateway has no certificate configured.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .expect("write");
    s.read_exact(&mut answer).expect("an answer");
    assert_eq!(&answer, b"N");
    // A protocol version the gateway does not speak gets a clean FATAL error.
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).expect("write");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    assert!(String::from_utf8_lossy(&reply).contains("unsupported protocol version 2.0"));
}

/// Runs pgbench against `port` as `user` on database `app`.
fn pgbench(port: u16, user: &str, password: &str, args: &[&str]) -> std::process::Output {
    Command::new(PgCluster::bin("pgbench"))
        .args(args)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "app",
        ])
        .env("PGPASSWORD", password)
        .output()
        .expect("pgbench runs")
}
