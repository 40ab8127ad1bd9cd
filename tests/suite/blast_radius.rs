//! Issue #13: the planner's opinion on blast radius. Before an UPDATE, DELETE or MERGE
//! goes upstream the gateway asks the upstream's planner how many rows it touches; a
//! write that reaches (nearly) all of a table that is not tiny is refused, whatever its
//! WHERE looks like. Through the gateway against a real PostgreSQL; judged by the data.

use crate::support::gateway::{setup, setup_seeded};
use crate::support::pg::PgCluster;

fn big(pg: &PgCluster) {
    pg.query(
        "CREATE TABLE big (id int PRIMARY KEY, name text NOT NULL); \
         INSERT INTO big SELECT g, 'n' || g FROM generate_series(1, 5000) g; ANALYZE big",
    );
}

fn count(pg: &PgCluster, sql: &str) -> String {
    pg.query(sql).trim().to_string()
}

#[test]
fn issue_13_writes_that_are_always_true_only_by_type_or_range_are_refused() {
    let (pg, gw) = setup();
    big(&pg);
    let agent = gw.token("alice", &["dev"]);
    for sql in [
        "DELETE FROM big WHERE id >= -2147483648",
        "UPDATE big SET name = 'gone' WHERE id > 0",
        "DELETE FROM big WHERE id BETWEEN 1 AND 5000",
        "WITH d AS (DELETE FROM big WHERE id <> -1 RETURNING id) SELECT count(*) FROM d",
        "MERGE INTO big b USING (SELECT 1 AS k) s ON b.id > 0 WHEN MATCHED THEN DELETE",
    ] {
        let (ok, _, err) = gw.psql(&agent, &["-c", sql]);
        assert!(!ok, "{sql} ran");
        assert!(err.contains("sql.blast-radius"), "{sql}: {err}");
    }
    assert_eq!(
        count(&pg, "SELECT count(*) FROM big WHERE name LIKE 'n%'"),
        "5000"
    );

    // Bounded writes, and tiny tables, go through.
    let (ok, _, err) = gw.psql(&agent, &["-c", "DELETE FROM big WHERE id <= 10"]);
    assert!(ok, "{err}");
    let (ok, _, err) = gw.psql(
        &agent,
        &["-c", "UPDATE users SET email = 'x@x.io' WHERE id > 0"],
    );
    assert!(ok, "a two-row table may be rewritten whole: {err}");
    assert_eq!(count(&pg, "SELECT count(*) FROM big"), "4990");
    // The session's own temporary table is invisible to the planner's connection: it is
    // the agent's scratch space, not refused for that.
    let (ok, _, err) = gw.psql(
        &agent,
        &[
            "-c",
            "CREATE TEMP TABLE scratch AS SELECT g AS id FROM generate_series(1, 5000) g; \
             DELETE FROM scratch WHERE id > 0",
        ],
    );
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_prepared_writes_are_judged_with_the_values_each_run_binds() {
    let (pg, gw) = setup_seeded(big).await;
    let client = gw.client(&gw.token("alice", &["dev"])).await;
    let delete = client
        .prepare("DELETE FROM big WHERE id >= $1")
        .await
        .expect("prepared");
    // The same statement: a bounded run goes through, a whole-table run does not.
    assert_eq!(
        client.execute(&delete, &[&4990i32]).await.expect("bounded"),
        11
    );
    let e = client
        .execute(&delete, &[&i32::MIN])
        .await
        .expect_err("the whole table");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("sql.blast-radius"), "{e:?}");
    // The session goes on.
    assert_eq!(
        client.execute(&delete, &[&4980i32]).await.expect("bounded"),
        10
    );
    let left = tokio::task::spawn_blocking(move || count(&pg, "SELECT count(*) FROM big"))
        .await
        .expect("count");
    assert_eq!(left, "4979");
}

#[test]
fn issue_15_a_quoted_search_path_does_not_hide_the_plan() {
    // The planner is asked with the session's search_path set first; `set_config`
    // answers with the path, and a single quoted name is itself valid JSON. Read as the
    // plan, it made every estimate fail, so every bounded write was refused.
    let (pg, gw) = setup();
    pg.query(
        "CREATE SCHEMA \"Sales\"; \
         CREATE TABLE \"Sales\".orders (id int PRIMARY KEY, note text NOT NULL); \
         INSERT INTO \"Sales\".orders SELECT g, 'n' FROM generate_series(1, 5000) g; \
         ANALYZE \"Sales\".orders",
    );
    let agent = gw.token("alice", &["dev"]);
    let (ok, _, err) = gw.psql(
        &agent,
        &[
            "-c",
            "SET search_path TO \"Sales\"",
            "-c",
            "DELETE FROM orders WHERE id <= 3",
        ],
    );
    assert!(ok, "a bounded write by the session's path: {err}");
    let (ok, _, err) = gw.psql(
        &agent,
        &[
            "-c",
            "SET search_path TO \"Sales\"",
            "-c",
            "DELETE FROM orders WHERE id > 0",
        ],
    );
    assert!(!ok, "the whole table went");
    assert!(err.contains("sql.blast-radius"), "{err}");
    assert_eq!(count(&pg, "SELECT count(*) FROM \"Sales\".orders"), "4997");
}
