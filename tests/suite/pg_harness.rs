//! The test harness's PostgreSQL ([`support::pg`]) is what every gateway test
//! compares against, so it is held to its promises: real SCRAM and MD5
//! logins over TCP, refusals with the real SQLSTATE, verifiable TLS, and
//! clusters that do not see each other.

use std::process::Output;
use std::thread;

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::support::pg::{DATABASE, MD5_USER, PgCluster, SUPERUSER, USER};
use crate::support::tls::TestPki;

/// psql's stdout, trimmed, after asserting it succeeded.
fn stdout(pg: &PgCluster, out: Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}\n--- stderr ---\n{}\n--- server log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        pg.log()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn user_logs_in_with_psql_and_owns_app() {
    let pg = PgCluster::start();
    let out = pg.psql(USER, pg.user_password(), DATABASE, "SELECT 1");
    assert_eq!(stdout(&pg, out), "1");

    let sql = "SELECT current_user, pg_get_userbyid(datdba) FROM pg_database \
               WHERE datname = current_database()";
    let out = pg.psql(USER, pg.user_password(), DATABASE, sql);
    assert_eq!(stdout(&pg, out), "portcullis|portcullis");
}

#[test]
fn passwords_are_stored_as_scram_and_md5() {
    let pg = PgCluster::start();
    // SCRAM verifiers read `SCRAM-SHA-256$…`; MD5 hashes `md5<32 hex>`.
    let sql = "SELECT rolname, split_part(rolpassword, '$', 1) FROM pg_authid \
               WHERE rolname IN ('postgres', 'portcullis', 'md5user') ORDER BY rolname";
    let out = pg.psql(SUPERUSER, pg.superuser_password(), "postgres", sql);
    let rows = stdout(&pg, out);
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("md5user|md5"), "{rows:?}");
    assert_eq!(rows[1], "portcullis|SCRAM-SHA-256", "{rows:?}");
    assert_eq!(rows[2], "postgres|SCRAM-SHA-256", "{rows:?}");

    let sql = "SELECT user_name::text, auth_method FROM pg_hba_file_rules \
               WHERE type = 'host' ORDER BY line_number LIMIT 2";
    let out = pg.psql(SUPERUSER, pg.superuser_password(), "postgres", sql);
    assert_eq!(
        stdout(&pg, out),
        "{md5user}|md5\n{all}|scram-sha-256",
        "the md5 line must come before the scram lines"
    );
}

#[tokio::test]
async fn user_logs_in_with_tokio_postgres() {
    let pg = PgCluster::start();
    let (client, connection) = tokio_postgres::connect(&pg.url(USER, DATABASE), NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n--- server log ---\n{}", pg.log()));
    let connection = tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await.expect("SELECT 1");
    assert_eq!(row.get::<_, i32>(0), 1);
    drop(client);
    connection
        .await
        .expect("connection task")
        .expect("clean close");
}

#[tokio::test]
async fn wrong_password_is_refused_with_28p01() {
    let pg = PgCluster::start();
    let url = format!(
        "postgres://{USER}:wrong@{}:{}/{DATABASE}",
        pg.host(),
        pg.port()
    );
    let err = match tokio_postgres::connect(&url, NoTls).await {
        Ok(_) => panic!("a wrong password logged in"),
        Err(err) => err,
    };
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");

    let out = pg.psql(MD5_USER, "wrong", DATABASE, "SELECT 1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed for user \"md5user\""),
        "{stderr}"
    );
}

#[test]
fn md5_user_logs_in() {
    let pg = PgCluster::start();
    let out = pg.psql(MD5_USER, pg.md5_password(), DATABASE, "SELECT current_user");
    assert_eq!(stdout(&pg, out), "md5user");
}

#[test]
fn tls_cluster_passes_verify_full() {
    let pg = PgCluster::start_with_tls();
    let conninfo = format!(
        "host=localhost port={} user={USER} dbname={DATABASE} sslmode=verify-full sslrootcert={}",
        pg.port(),
        pg.ca_cert_path().display()
    );
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    let out = pg.psql_conninfo(&conninfo, pg.user_password(), sql);
    assert_eq!(stdout(&pg, out), "t");

    // A CA that did not sign the server's certificate is refused.
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = TestPki::new(other.path()).ca_cert_path();
    let conninfo = format!(
        "host=localhost port={} user={USER} dbname={DATABASE} sslmode=verify-full sslrootcert={}",
        pg.port(),
        other_ca.display()
    );
    let out = pg.psql_conninfo(&conninfo, pg.user_password(), "SELECT 1");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn two_clusters_run_at_once() {
    let [a, b] = [
        thread::spawn(PgCluster::start),
        thread::spawn(PgCluster::start),
    ]
    .map(|handle| handle.join().expect("cluster starts"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.user_password(), b.user_password());
    for pg in [&a, &b] {
        let out = pg.psql(USER, pg.user_password(), DATABASE, "SHOW port");
        assert_eq!(stdout(pg, out), pg.port().to_string());
    }
    // Each cluster's password is its own.
    let out = a.psql(USER, b.user_password(), DATABASE, "SELECT 1");
    assert!(!out.status.success(), "{}", a.log());
}
