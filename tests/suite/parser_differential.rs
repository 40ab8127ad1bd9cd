//! Issue #13: PostgreSQL's own grammar as a second reader. Through the gateway against a
//! real PostgreSQL, judged by the data: what sqlparser accepts and PostgreSQL rejects is
//! refused by the gateway (42501, not the server's 42601), what only PostgreSQL can read is
//! classified from its parse tree and judged like anything else.

use crate::support::gateway::{setup, setup_seeded};
use crate::support::pg::PgCluster;

fn tags(pg: &PgCluster) {
    pg.query(
        "CREATE TABLE tagged (id int PRIMARY KEY, tags text[] NOT NULL); \
         INSERT INTO tagged VALUES (1, '{a,b}'), (2, '{c,d}')",
    );
}

fn first_tags(pg: &PgCluster) -> String {
    pg.query("SELECT string_agg(tags[1], ',' ORDER BY id) FROM tagged")
        .trim()
        .to_string()
}

#[test]
fn issue_13_statements_only_postgres_reads_are_judged_from_its_parse_tree() {
    let (pg, gw) = setup();
    tags(&pg);
    let agent = gw.token("alice", &["dev"]);

    // sqlparser 0.64 cannot read `SET tags[1] = ...`; without a WHERE it is refused as
    // an unbounded write, from PostgreSQL's reading of it.
    let (ok, _, err) = gw.psql(&agent, &["-c", "UPDATE tagged SET tags[1] = 'x'"]);
    assert!(!ok, "an unbounded write ran");
    assert!(err.contains("sql.unbounded-write"), "{err}");
    let (ok, _, err) = gw.psql(
        &agent,
        &[
            "-c",
            "WITH RECURSIVE r(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM r WHERE id < 3) \
             CYCLE id SET c USING p, d AS (DELETE FROM tagged RETURNING id) SELECT count(*) FROM d",
        ],
    );
    assert!(!ok, "a DELETE in a CTE only PostgreSQL reads ran");
    assert!(err.contains("sql.unbounded-write"), "{err}");
    assert_eq!(first_tags(&pg), "a,c");

    // Bounded, it goes through: the gateway no longer refuses what only PostgreSQL reads.
    let (ok, _, err) = gw.psql(
        &agent,
        &["-c", "UPDATE tagged SET tags[1] = 'x' WHERE id = 1"],
    );
    assert!(ok, "{err}");
    assert_eq!(first_tags(&pg), "x,c");
}

#[test]
fn issue_13_what_postgres_rejects_is_refused_by_the_gateway_and_nothing_of_the_string_runs() {
    let (pg, gw) = setup();
    tags(&pg);
    let agent = gw.token("alice", &["dev"]);
    // sqlparser reads `123abc` as `123 AS abc`; PostgreSQL rejects it. The whole string
    // is refused before anything of it reaches the server.
    let (ok, _, err) = gw.psql(
        &agent,
        &["-c", "INSERT INTO tagged VALUES (3, '{e}'); SELECT 123abc"],
    );
    assert!(!ok);
    assert!(err.contains("sql.parser-differential"), "{err}");
    assert!(
        !err.contains("trailing junk"),
        "the server was asked: {err}"
    );
    assert_eq!(pg.query("SELECT count(*) FROM tagged").trim(), "2");
    // The session and the gateway go on.
    let (ok, out, err) = gw.psql(&agent, &["-tAc", "SELECT count(*) FROM tagged"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_extended_protocol_gets_the_same_second_reading() {
    let (_pg, gw) = setup_seeded(tags).await;
    let client = gw.client(&gw.token("alice", &["dev"])).await;
    for sql in [
        "SELECT id FROM tagged FETCH FIRST 2 ROW WITH TIES",
        "select distinct from tagged",
    ] {
        let err = client.prepare(sql).await.expect_err(sql);
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "42501", "{sql}: {db:?}");
        assert!(
            db.message().contains("sql.parser-differential"),
            "{sql}: {db:?}"
        );
    }
    // Only PostgreSQL reads it; bound, it runs.
    let update = client
        .prepare("UPDATE tagged SET tags[1] = $1 WHERE id = $2")
        .await
        .expect("prepared");
    assert_eq!(
        client.execute(&update, &[&"y", &2i32]).await.expect("ran"),
        1
    );
    let row = client
        .query_one("SELECT tags[1] FROM tagged WHERE id = 2", &[])
        .await
        .expect("read");
    assert_eq!(row.get::<_, String>(0), "y");
}

#[test]
fn issue_13_a_deep_expression_is_read_by_both_without_harm() {
    let (_pg, gw) = setup();
    let agent = gw.token("alice", &["dev"]);
    // 3,000 nested operators: PostgreSQL's tree is as deep as the chain.
    let sql = format!("SELECT 1{}", " + 1".repeat(3000));
    let (ok, out, err) = gw.psql(&agent, &["-tAc", &sql]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "3001");
}
