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

#[test]
fn issue_15_a_write_through_a_view_is_sized_by_the_table_it_reaches() {
    // The sizes asked with the plan are matched to the tables the plan writes, not to
    // the names the statement used: a whole-table write through an updatable view (a
    // relation with no rows of its own) is weighed against the table under it.
    let (pg, gw) = setup();
    big(&pg);
    pg.query("CREATE VIEW big_view AS SELECT id, name FROM big");
    let agent = gw.token("alice", &["dev"]);
    for sql in [
        "UPDATE big_view SET name = 'gone' WHERE id > 0",
        "DELETE FROM big_view WHERE id > 0",
    ] {
        let (ok, _, err) = gw.psql(&agent, &["-c", sql]);
        assert!(!ok, "{sql} ran");
        assert!(err.contains("sql.blast-radius"), "{sql}: {err}");
    }
    let (ok, _, err) = gw.psql(&agent, &["-c", "DELETE FROM big_view WHERE id <= 2"]);
    assert!(ok, "{err}");
    assert_eq!(
        count(&pg, "SELECT count(*) FROM big WHERE name LIKE 'n%'"),
        "4998"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_sessions_writing_at_once_are_each_weighed_on_a_few_catalog_connections() {
    let (pg, gw) = setup_seeded(big).await;
    let token = gw.token("alice", &["dev"]);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(gw.client(&token).await);
    }
    // Every session asks the planner at once, many times: each whole-table write is
    // refused and each bounded one goes, whichever connection weighed it.
    let runs = clients.iter().enumerate().map(|(i, c)| async move {
        for k in 0..10 {
            let id = (i * 10 + k + 1) as i32;
            let bounded = c
                .execute(
                    "UPDATE big SET name = 'x' || name WHERE id = $1::int",
                    &[&id],
                )
                .await;
            assert!(bounded.is_ok(), "{bounded:?}");
            let whole = c
                .simple_query("DELETE FROM big WHERE id > 0")
                .await
                .expect_err("the whole table");
            assert!(
                whole.to_string().contains("sql.blast-radius")
                    || format!("{:?}", whole.as_db_error()).contains("sql.blast-radius"),
                "{whole:?}"
            );
        }
    });
    futures_util::future::join_all(runs).await;
    let pg = std::sync::Arc::new(pg);
    let (rows, updated, catalog) = tokio::task::spawn_blocking(move || {
        (
            count(&pg, "SELECT count(*) FROM big"),
            count(&pg, "SELECT count(*) FROM big WHERE name LIKE 'xn%'"),
            count(
                &pg,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'portcullis-catalog'",
            ),
        )
    })
    .await
    .expect("counted");
    assert_eq!(rows, "5000");
    assert_eq!(updated, "80");
    let catalog: usize = catalog.parse().expect("a count");
    assert!((1..=4).contains(&catalog), "{catalog} catalog connections");
}
