//! Issue #9, writes: UPDATE, DELETE, MERGE and `ON CONFLICT DO UPDATE` that reach every
//! row of their table although they carry a condition. Each is sent through the gateway
//! to a real PostgreSQL, and judged by what the database holds afterwards; the bounded
//! twins run and change exactly the rows they name.

use crate::support::gateway::{Gateway, setup};
use crate::support::pg::PgCluster;

const REFUSED: &str = "42501";
const UNBOUNDED: &str = "portcullis: denied by sql.unbounded-write";

/// The tables the statements below touch, created directly (not through the gateway).
const SCHEMA: &str = "
    CREATE TABLE orders (id int primary key, user_id int, total int);
    INSERT INTO orders VALUES (10, 1, 50), (11, 2, -5);
    CREATE TABLE staging (id int primary key, email text);
    INSERT INTO staging VALUES (2, 'staged@x.io');";

/// Whole-table writes an adversarial agent would try, each refused.
const BYPASSES: &[&str] = &[
    "DELETE FROM users WHERE id = 1 OR now() IS NOT NULL",
    "DELETE FROM users WHERE id = 1 OR random() >= 0",
    "DELETE FROM users WHERE id = 1 OR EXISTS (SELECT 1 FROM pg_class)",
    "UPDATE users SET email = 'x' WHERE \"id\" = id",
    "DELETE FROM users WHERE email COLLATE \"C\" = email",
    "DELETE FROM users WHERE id + 0 = id",
    "DELETE FROM users WHERE id = 1 OR NOT id = 1",
    "DELETE FROM users WHERE 5 < id OR id <= 5",
    "DELETE FROM users WHERE id IS DISTINCT FROM NULL",
    "DELETE FROM users WHERE id IN (SELECT id FROM users UNION SELECT 0)",
    "DELETE FROM users WHERE id = ANY(ARRAY(SELECT id FROM users))",
    "UPDATE users SET email = 'x' FROM users u2 WHERE users.id = u2.id",
    "DELETE FROM public.users USING users u WHERE public.users.id = u.id",
    "DELETE FROM users USING (VALUES (1)) v(x) WHERE v.x = 1",
    "DELETE FROM users USING orders WHERE orders.total > 0",
    "INSERT INTO users SELECT * FROM users ON CONFLICT (id) DO UPDATE SET email = 'x'",
    "MERGE INTO users USING (SELECT id FROM users) s ON users.id = s.id WHEN MATCHED THEN DELETE",
    "MERGE INTO users USING (VALUES (1)) v(id) ON true WHEN MATCHED THEN DELETE",
    "MERGE INTO users USING (VALUES (1)) v(id) ON users.id = v.id \
     WHEN NOT MATCHED BY SOURCE THEN DELETE",
    "WITH d AS (UPDATE users SET email = 'x' WHERE id = 1 OR id <> 1 RETURNING *) \
     SELECT count(*) FROM d",
    "EXPLAIN ANALYZE MERGE INTO users USING users s ON users.id = s.id WHEN MATCHED THEN DELETE",
];

/// Every row of the three tables, as one string.
fn rows(pg: &PgCluster) -> String {
    pg.query(
        "SELECT concat_ws(' | ',
            (SELECT string_agg(id || ':' || coalesce(email, 'NULL'), ',' ORDER BY id) FROM users),
            (SELECT string_agg(id || ':' || user_id || ':' || total, ',' ORDER BY id) FROM orders),
            (SELECT string_agg(id || ':' || email, ',' ORDER BY id) FROM staging))",
    )
}

fn start() -> (PgCluster, Gateway) {
    let (pg, gw) = setup();
    pg.query(SCHEMA);
    (pg, gw)
}

fn assert_unbounded_refusal(err: &tokio_postgres::Error, sql: &str, gw: &Gateway) {
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql:?}: not a server error: {err}\n{}", gw.log()));
    assert_eq!(db.code().code(), REFUSED, "{sql:?}: {}", db.message());
    assert!(
        db.message().contains(UNBOUNDED),
        "{sql:?}: expected {UNBOUNDED:?} in {:?}",
        db.message()
    );
}

#[test]
fn issue_9_whole_table_writes_are_refused_over_the_simple_protocol() {
    let (pg, gw) = start();
    let before = rows(&pg);
    let token = gw.token("mallory", &["dev"]);
    for sql in BYPASSES {
        let (ok, out, err) = gw.psql(&token, &["-v", "VERBOSITY=verbose", "-c", sql]);
        assert!(!ok, "{sql:?} was not refused: {out}\n{}", gw.log());
        assert!(
            err.contains(&format!("ERROR:  {REFUSED}: {UNBOUNDED}")),
            "{sql:?}: {err}"
        );
        assert_eq!(rows(&pg), before, "{sql:?} changed the data\n{}", gw.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_whole_table_writes_are_refused_when_prepared() {
    let (pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let before = tokio::task::block_in_place(|| rows(&pg));
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    for sql in BYPASSES {
        let err = client
            .prepare(sql)
            .await
            .expect_err(&format!("{sql:?} was prepared"));
        assert_unbounded_refusal(&err, sql, &gw);
    }
    // A parameter as an OR arm: judged at Parse, before any value is bound.
    let err = client
        .execute("DELETE FROM users WHERE id = $1 OR $2", &[&1_i32, &true])
        .await
        .expect_err("an OR arm that is a parameter");
    assert_unbounded_refusal(&err, "OR $2", &gw);
    assert_eq!(tokio::task::block_in_place(|| rows(&pg)), before);
}

/// The per-session fact cache must not carry a bounded verdict over to a statement of
/// the same shape whose literal makes it unbounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_9_a_bounded_shape_does_not_vouch_for_its_unbounded_twin() {
    let (pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let before = tokio::task::block_in_place(|| rows(&pg));
    let client = gw.client(&gw.token("mallory", &["dev"])).await;
    for (bounded, unbounded) in [
        (
            "DELETE FROM users WHERE id IN (SELECT id FROM users WHERE 1 = 2)",
            "DELETE FROM users WHERE id IN (SELECT id FROM users WHERE 1 = 1)",
        ),
        (
            "DELETE FROM users WHERE id < 1 OR id > 2",
            "DELETE FROM users WHERE id < 2 OR id > 1",
        ),
    ] {
        client
            .simple_query(bounded)
            .await
            .unwrap_or_else(|e| panic!("{bounded:?}: {e}\n{}", gw.log()));
        let err = client
            .simple_query(unbounded)
            .await
            .expect_err(&format!("{unbounded:?} ran after its bounded twin"));
        assert_unbounded_refusal(&err, unbounded, &gw);
    }
    assert_eq!(tokio::task::block_in_place(|| rows(&pg)), before);
}

#[test]
fn issue_9_bounded_writes_run_and_change_only_their_rows() {
    let (pg, gw) = start();
    let token = gw.token("alice", &["dev"]);
    let run = |sql: &str| {
        let (ok, out, err) = gw.psql(&token, &["-c", sql]);
        assert!(ok, "{sql:?} was refused: {err}\n{}", gw.log());
        out
    };
    run("DELETE FROM users WHERE id = 1 OR email = 'nobody@x.io'");
    run("INSERT INTO users VALUES (1, 'a@x.io'), (3, 'c@x.io')");
    run("UPDATE users SET email = 'paid@x.io' \
         WHERE id IN (SELECT user_id FROM orders WHERE total > 0)");
    run(
        "INSERT INTO users SELECT * FROM staging ON CONFLICT (id) DO UPDATE SET email = excluded.email",
    );
    run(
        "MERGE INTO users USING (VALUES (3, 'merged@x.io')) v(id, email) ON users.id = v.id \
         WHEN MATCHED THEN UPDATE SET email = v.email",
    );
    run("DELETE FROM orders USING users u WHERE u.id = orders.user_id AND orders.total < 0");
    run("DELETE FROM users WHERE email = 'x OR true'");
    assert_eq!(
        rows(&pg),
        "1:paid@x.io,2:staged@x.io,3:merged@x.io | 10:1:50 | 2:staged@x.io\n"
    );
    // A plain EXPLAIN plans without running: allowed, and nothing changes.
    let plan = run("EXPLAIN DELETE FROM users WHERE id = 1 OR now() IS NOT NULL");
    assert!(plan.contains("Delete on users"), "{plan}");
    assert_eq!(pg.query("SELECT count(*) FROM users"), "3\n");
}
