//! Issue #9, the SQL side beside the writes, through the gateway against a real
//! PostgreSQL and judged by the data: setting names in any case, `pg_settings` by a
//! three-part name, `SET "ROLE"`, the fact-cache key, `(x).f` calls, the replication
//! role, and a setting changed under the session (ParameterStatus).

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::gateway::{Gateway, Options, setup};
use crate::support::pg::PgCluster;

const REFUSED: &str = "42501";

fn users(pg: &PgCluster) -> String {
    pg.query("SELECT string_agg(id || ':' || email, ',' ORDER BY id) FROM users")
}

/// The single value a simple query returns, as text.
async fn value(client: &Client, sql: &str) -> String {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"));
    rows.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql:?} returned no row"))
}

#[track_caller]
fn assert_refused(result: Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>, rule: &str) {
    let err = result.expect_err("refused");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), REFUSED, "{}", db.message());
    assert!(
        db.message().contains(&format!("denied by {rule}")),
        "expected {rule}: {}",
        db.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_setting_names_in_any_case_cannot_change_how_sql_is_read() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    tokio::task::block_in_place(|| pg.query("CREATE TABLE orders (id int)"));
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    for sql in [
        "SET \"STANDARD_CONFORMING_STRINGS\" = off",
        "SET SESSION Standard_Conforming_Strings TO 'off'",
        "UPDATE app.pg_catalog.pg_settings SET setting = 'off' \
         WHERE name = 'standard_conforming_strings'",
        "SELECT set_config('STANDARD_CONFORMING_STRINGS', 'off', false)",
        "SET \"CLIENT_ENCODING\" = 'SJIS'",
        "SET \"BACKSLASH_QUOTE\" = on",
    ] {
        assert_refused(client.simple_query(sql).await, "sql.parser-setting");
    }
    // A name the gateway cannot pin down is every setting: refused by both rules.
    let err = client
        .simple_query(
            "UPDATE pg_settings SET \"SETTING\" = 'off' WHERE 'standard_conforming_strings' = name",
        )
        .await
        .expect_err("refused");
    assert_eq!(
        err.as_db_error().map(|d| d.code().code()),
        Some(REFUSED),
        "{err}"
    );
    assert_eq!(
        value(&client, "SHOW standard_conforming_strings").await,
        "on"
    );
    assert_eq!(value(&client, "SHOW client_encoding").await, "UTF8");
    // What the setting was for: read with conforming strings, this is one SELECT of two
    // string literals, and it runs as exactly that.
    let trick = "SELECT 'a\\' , ' ; DROP TABLE orders CASCADE; -- '";
    client
        .simple_query(trick)
        .await
        .unwrap_or_else(|e| panic!("{trick:?}: {e}"));
    assert_eq!(
        tokio::task::block_in_place(|| pg.query("SELECT to_regclass('orders') IS NOT NULL")),
        "t\n",
        "the table must still exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_a_quoted_role_name_is_still_set_role() {
    let (_pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    let before = value(&client, "SELECT current_user").await;
    for sql in [
        "SET \"ROLE\" = postgres",
        "SET Role postgres",
        "SELECT set_config('ROLE', 'postgres', false)",
        "UPDATE pg_settings SET setting = 'postgres' WHERE name = 'ROLE'",
    ] {
        assert_refused(client.simple_query(sql).await, "sql.privilege");
    }
    assert_eq!(value(&client, "SELECT current_user").await, before);
}

/// A statement that fails at PostgreSQL must not leave facts behind for another
/// statement whose tokens it only resembles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_the_fact_cache_cannot_be_poisoned_by_a_quoted_name() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let before = tokio::task::block_in_place(|| users(&pg));
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    // One quoted column name `id = "id`: PostgreSQL says it does not exist (and the
    // planner, asked first, cannot estimate it: refused before it goes up).
    client
        .simple_query("DELETE FROM users WHERE \"id = \"\"id\"")
        .await
        .expect_err("no such column");
    assert_refused(
        client
            .simple_query("DELETE FROM users WHERE \"id\" = \"id\"")
            .await,
        "sql.unbounded-write",
    );
    // One quoted column named like the call's tokens once read.
    let _ = client
        .simple_query("SELECT \"pg_read_file ( ?s )\"")
        .await
        .expect_err("no such column");
    assert_refused(
        client
            .simple_query("SELECT \"pg_read_file\"('/etc/hostname')")
            .await,
        "sql.server-escape",
    );
    assert_eq!(tokio::task::block_in_place(|| users(&pg)), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_functional_notation_is_a_call() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let victim = gw.client(&gw.token("victim", &["dev"])).await;
    let victim_pid = value(&victim, "SELECT pg_backend_pid()").await;
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    assert_refused(
        client
            .simple_query(&format!("SELECT ({victim_pid}).pg_terminate_backend"))
            .await,
        "sql.server-escape",
    );
    assert_refused(
        client
            .simple_query(
                "SELECT (pid).pg_terminate_backend FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
            .await,
        "sql.server-escape",
    );
    assert_refused(
        client
            .simple_query("SELECT ('/etc/hostname'::text).pg_read_file")
            .await,
        "sql.server-escape",
    );
    // The other session is alive and still served.
    assert_eq!(value(&victim, "SELECT 41 + 1").await, "42");
    // A composite field is not a call.
    tokio::task::block_in_place(|| {
        pg.query(
            "CREATE TYPE addr AS (city text); CREATE TABLE places (a addr);
             INSERT INTO places VALUES (ROW('Oslo'))",
        )
    });
    assert_eq!(value(&client, "SELECT (a).city FROM places").await, "Oslo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_triggers_stay_on() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    for sql in [
        "SET session_replication_role = replica",
        "SET \"SESSION_REPLICATION_ROLE\" TO 'replica'",
        "SELECT set_config('session_replication_role', 'replica', false)",
    ] {
        assert_refused(client.simple_query(sql).await, "sql.session-setting");
    }
    assert_eq!(
        value(&client, "SHOW session_replication_role").await,
        "origin"
    );
    drop(pg);
}

/// A setting changed where the gateway cannot see it (here a function the DBA created)
/// ends the session: nothing more is judged by a reading the server no longer shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_a_setting_changed_under_the_session_ends_it() {
    let (pg, gw) = tokio::task::spawn_blocking(setup).await.expect("setup");
    tokio::task::block_in_place(|| {
        pg.query(
            "CREATE FUNCTION loosen() RETURNS text LANGUAGE sql
               AS $$ SELECT set_config('standard_conforming_strings', 'off', false) $$;
             CREATE TABLE orders (id int)",
        )
    });
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    let err = client
        .simple_query("SELECT loosen()")
        .await
        .expect_err("the session ends");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), REFUSED);
    assert!(
        db.message().contains("standard_conforming_strings = off"),
        "{}",
        db.message()
    );
    assert!(
        client
            .simple_query("SELECT 'a\\' , ' ; DROP TABLE orders CASCADE; -- '")
            .await
            .is_err(),
        "the session must be closed"
    );
    assert_eq!(
        tokio::task::block_in_place(|| pg.query("SELECT to_regclass('orders') IS NOT NULL")),
        "t\n"
    );
    assert!(
        gw.log().contains("standard_conforming_strings = off"),
        "the session's end is recorded with its reason\n{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_a_shape_judged_before_is_judged_again_by_rules_that_read_its_text() {
    // A session remembers, per statement shape, what the rules that read only the shape
    // made of it. A rule that reads the text sees every text: the same shape with another
    // literal, after it was allowed many times, is still refused by it.
    let rules = r#"
rule team.no-canary on sql {
  when stmt.text contains "canary"
  deny "no canaries"
}
rule team.no-orders on sql {
  when "orders" in stmt.tables_read
  deny "orders are not read here"
}
"#;
    let (pg, gw) = tokio::task::spawn_blocking(move || {
        let pg = PgCluster::start();
        let gw = Gateway::start_with(
            &pg,
            Options {
                upstream_params: "sslmode=disable".into(),
                rules: Some(rules.into()),
                ..Options::default()
            },
        );
        pg.query("CREATE TABLE notes (body text); CREATE TABLE orders (id int)");
        (pg, gw)
    })
    .await
    .expect("setup");
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    for i in 0..5 {
        client
            .simple_query(&format!("INSERT INTO notes VALUES ('note {i}')"))
            .await
            .unwrap_or_else(|e| panic!("insert {i}: {e}"));
    }
    assert_refused(
        client
            .simple_query("INSERT INTO notes VALUES ('a canary')")
            .await,
        "team.no-canary",
    );
    client
        .simple_query("INSERT INTO notes VALUES ('note 5')")
        .await
        .expect("allowed again");
    assert_refused(
        client
            .simple_query("INSERT INTO notes VALUES ('canary 2')")
            .await,
        "team.no-canary",
    );
    // A rule on the shape alone refuses every statement of its shape, remembered or not.
    for id in 1..=3 {
        assert_refused(
            client
                .simple_query(&format!("SELECT * FROM orders WHERE id = {id}"))
                .await,
            "team.no-orders",
        );
    }
    let bodies = tokio::task::block_in_place(|| {
        pg.query("SELECT string_agg(body, ',' ORDER BY body) FROM notes")
    });
    assert_eq!(bodies.trim(), "note 0,note 1,note 2,note 3,note 4,note 5");
}
