//! Issue #13: real clients keep working through the gateway with the default packs:
//! `pg_dump` in plain, custom (`-Fc`) and directory (`-Fd -j 2`) formats, whose schema
//! equals a direct dump's, and psql's meta-commands.

use std::path::Path;
use std::process::Command;

use crate::support::gateway::{Gateway, setup};
use crate::support::pg::PgCluster;

fn schema(pg: &PgCluster) {
    pg.query(
        "CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users(id), \
           total numeric(10,2) NOT NULL DEFAULT 0, note text); \
         CREATE INDEX orders_user ON orders (user_id); \
         CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100; \
         CREATE FUNCTION order_count(u int) RETURNS bigint LANGUAGE sql STABLE \
           AS 'SELECT count(*) FROM orders WHERE user_id = u'; \
         COMMENT ON TABLE orders IS 'what users bought'; \
         INSERT INTO orders (user_id, total, note) VALUES (1, 120, 'first'), (2, 5, NULL)",
    );
}

/// Runs a PostgreSQL client program with a clean `PG*` environment; (ok, stdout, stderr).
fn client(program: &str, password: &str, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(PgCluster::bin(program));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .env("PGPASSWORD", password)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A dump without what differs between two runs of the same dump (`\restrict` keys).
fn stable(dump: &str) -> String {
    dump.lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn direct(pg: &PgCluster) -> String {
    format!("{} sslmode=disable", pg.conninfo("portcullis", "app"))
}

#[test]
fn issue_13_pg_dump_through_the_gateway_dumps_the_same_schema_as_a_direct_run() {
    let (pg, gw) = setup();
    schema(&pg);
    let agent = gw.token("alice", &["dev"]);
    let (ok, want, err) = client("pg_dump", pg.user_password(), &["-s", "-d", &direct(&pg)]);
    assert!(ok, "{err}");
    let (ok, got, err) = client("pg_dump", &agent, &["-s", "-d", &gw.conninfo()]);
    assert!(ok, "plain pg_dump through the gateway: {err}\n{}", gw.log());
    assert_eq!(stable(&got), stable(&want));
    assert!(got.contains("CREATE VIEW public.big_orders"), "{got}");
}

/// Restores `archive` as a schema-only script.
fn restored(archive: &Path) -> String {
    let (ok, script, err) = client(
        "pg_restore",
        "",
        &["-s", "-f", "-", archive.to_str().expect("utf-8")],
    );
    assert!(ok, "{err}");
    stable(&script)
}

#[test]
fn issue_13_pg_dump_custom_and_parallel_directory_formats_work_through_the_gateway() {
    let (pg, gw) = setup();
    schema(&pg);
    let dir = tempfile::tempdir().expect("temp dir");
    // A reader of personal data: no column of these tables is masked for it, so the
    // data's COPY is served too.
    let reader = gw.token("rita", &["dev", "pii-readers"]);
    let want = dir.path().join("direct.dump");
    let (ok, _, err) = client(
        "pg_dump",
        pg.user_password(),
        &["-Fc", "-f", want.to_str().unwrap(), "-d", &direct(&pg)],
    );
    assert!(ok, "{err}");
    let custom = dir.path().join("gateway.dump");
    let (ok, _, err) = client(
        "pg_dump",
        &reader,
        &["-Fc", "-f", custom.to_str().unwrap(), "-d", &gw.conninfo()],
    );
    assert!(ok, "pg_dump -Fc through the gateway: {err}\n{}", gw.log());
    assert_eq!(restored(&custom), restored(&want));
    let parallel = dir.path().join("gateway.d");
    let (ok, _, err) = client(
        "pg_dump",
        &reader,
        &[
            "-Fd",
            "-j",
            "2",
            "-f",
            parallel.to_str().unwrap(),
            "-d",
            &gw.conninfo(),
        ],
    );
    assert!(
        ok,
        "pg_dump -Fd -j 2 through the gateway: {err}\n{}",
        gw.log()
    );
    assert_eq!(restored(&parallel), restored(&want));
    // The data came through as well (the orders' rows).
    let (ok, data, err) = client(
        "pg_restore",
        "",
        &["-a", "-t", "orders", "-f", "-", parallel.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(data.contains("first"), "{data}");
}

#[test]
fn issue_13_psql_meta_commands_answer_as_they_do_directly() {
    let (pg, gw) = setup();
    schema(&pg);
    let agent = gw.token("alice", &["dev"]);
    for meta in [
        "\\dt",
        "\\d orders",
        "\\dv",
        "\\df order_count",
        "\\di",
        "\\dn",
        "\\l",
        "\\du",
        "\\d+ big_orders",
        "\\sf order_count",
        "\\dx",
        "\\dT",
        "\\conninfo",
    ] {
        let (ok, want, err) = client(
            "psql",
            pg.user_password(),
            &["-X", "-d", &direct(&pg), "-c", meta],
        );
        assert!(ok, "{meta} directly: {err}");
        let (ok, got, err) =
            crate::support::gateway::psql_at(&gw.conninfo(), &agent, &["-c", meta]);
        assert!(ok, "{meta} through the gateway: {err}");
        if meta == "\\conninfo" {
            continue; // it names the port, which differs
        }
        // psql -At through the gateway, aligned directly: compare the names each lists.
        let names = |text: &str| {
            let mut v: Vec<String> = text
                .lines()
                .flat_map(|l| l.split(['|', ' ']).map(str::trim).map(str::to_string))
                .filter(|w| !w.is_empty() && w.chars().any(char::is_alphabetic))
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let (g, w) = (names(&got), names(&want));
        assert!(g.iter().all(|n| w.contains(n)), "{meta}: {got}\nvs\n{want}");
    }
    let _: &Gateway = &gw;
}
