//! Issue #11, the first part: result columns masked on the wire by what they are (name,
//! source through the catalog) and by what they hold (content detectors), in the simple
//! and extended protocols, text and binary, and in the audit sample. Through the gateway
//! against a real PostgreSQL, with psql and tokio-postgres.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::gateway::{Gateway, setup};
use crate::support::pg::PgCluster;

const CARD: &str = "4111 1111 1111 1111";

fn seed(pg: &PgCluster) {
    pg.query(&format!(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, password text, \
         note text, active boolean, visits int, profile jsonb); \
         INSERT INTO customers VALUES \
         (1, 'Jane', 'jane.doe@example.com', 'hunter2-hunter2', 'pay with {CARD} today', \
          true, 3, '{{\"contact\": \"jane.doe@example.com\"}}'), \
         (2, 'Bob', NULL, 'sw0rdfish-sw0rdfish', 'no card on file', false, 0, NULL)"
    ));
}

/// Every row of a simple query, as text (`None` for NULL).
async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn start() -> (PgCluster, Gateway) {
    let (pg, gw) = setup();
    seed(&pg);
    (pg, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_columns_are_masked_by_name_source_and_content_in_the_simple_protocol() {
    let (_pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    let got = rows(
        &client,
        "SELECT id, name, email, password, note, active, visits FROM customers ORDER BY id",
    )
    .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        got[0],
        vec![
            s("1"),
            s("Jane"),
            s("j***@example.com"),
            s("[redacted]"),
            s("pay with **** **** **** 1111 today"),
            s("t"),
            s("3"),
        ]
    );
    assert_eq!(
        got[1],
        vec![
            s("2"),
            s("Bob"),
            None,
            s("[redacted]"),
            s("no card on file"),
            s("f"),
            s("0"),
        ]
    );
    // Renamed, through a CTE and a subquery: the wire still names the source column.
    for sql in [
        "SELECT password AS p, email AS contact FROM customers WHERE id = 1",
        "WITH c AS (SELECT * FROM customers) SELECT password AS p, email AS contact FROM c WHERE id = 1",
        "SELECT p, contact FROM (SELECT password p, email contact, id FROM customers) s WHERE id = 1",
    ] {
        assert_eq!(
            rows(&client, sql).await,
            vec![vec![s("[redacted]"), s("j***@example.com")]],
            "{sql}"
        );
    }
    // An expression is masked as what it is made from: a value derived from an email
    // is redacted (its shape is no longer an email's), one derived from the note is
    // read for content like the note.
    assert_eq!(
        rows(
            &client,
            "SELECT upper(email), note || '!' FROM customers WHERE id = 1"
        )
        .await,
        vec![vec![
            s("[redacted]"),
            s("pay with **** **** **** 1111 today!")
        ]]
    );
    // Without a table behind it, an expression is read for content.
    assert_eq!(
        rows(&client, "SELECT 'mail jane.doe@example.com now'").await,
        vec![vec![s("mail j***@example.com now")]]
    );
    // A JSON value holding an email stays valid JSON.
    let json = rows(&client, "SELECT profile FROM customers WHERE id = 1").await;
    let v: serde_json::Value =
        serde_json::from_str(json[0][0].as_deref().expect("a value")).expect("valid JSON");
    assert_eq!(v["contact"], "j***@example.com");
    // What holds nothing sensitive comes back as it is: plain columns, numbers,
    // booleans.
    assert_eq!(
        rows(
            &client,
            "SELECT count(*), bool_and(active), sum(visits), min(name) = 'Bob' FROM customers"
        )
        .await,
        vec![vec![s("2"), s("f"), s("3"), s("t")]]
    );
}

/// What must never come back, in any spelling the leak attempts below produce.
const RAW: &[&str] = &[
    "jane.doe",
    "hunter2",
    "2retnuh",
    "eod.enaj",
    "68756e74657232",
    "4111",
    "JANE.DOE",
    "HUNTER2",
    "sw0rdfish",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_laundering_a_masked_column_through_expressions_leaks_nothing() {
    let (_pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    for sql in [
        "SELECT reverse(password), reverse(email) FROM customers",
        "SELECT encode(convert_to(password, 'UTF8'), 'hex') FROM customers",
        "SELECT convert_to(password, 'UTF8')::text FROM customers",
        "SELECT translate(password, 'h', 'H'), upper(email) FROM customers",
        "SELECT row_to_json(c)::text FROM customers c",
        "SELECT to_jsonb(c) FROM customers c",
        "SELECT string_agg(password || email, ',') FROM customers",
        "SELECT array_agg(password)::text FROM customers",
        "SELECT name FROM customers UNION ALL SELECT password FROM customers",
        "SELECT email FROM customers UNION SELECT note FROM customers",
        "SELECT (SELECT password FROM customers WHERE id = 1)",
        "SELECT CASE WHEN id = 1 THEN password ELSE email END FROM customers",
        "SELECT coalesce(email, password) FROM customers",
        "SELECT substr(password, 1, 7) || substr(password, 8) FROM customers",
        "SELECT format('%s', password) FROM customers",
        "WITH x AS (SELECT password || '' AS p FROM customers) SELECT * FROM x",
        "SELECT t.* FROM customers c, LATERAL (SELECT c.password || '') t",
    ] {
        let got = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        for m in got {
            if let SimpleQueryMessage::Row(r) = m {
                for i in 0..r.len() {
                    let v = r.get(i).unwrap_or_default();
                    for raw in RAW {
                        assert!(!v.contains(raw), "{sql} returned {v:?}");
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_prepared_statements_are_masked_in_text_and_binary() {
    let (_pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    // tokio-postgres prepares (Parse + Describe), then binds with binary results.
    let stmt = client
        .prepare("SELECT id, email, password, active, visits FROM customers WHERE id = $1")
        .await
        .expect("prepare");
    for _ in 0..2 {
        let row = client.query_one(&stmt, &[&1i32]).await.expect("query");
        assert_eq!(row.get::<_, i32>(0), 1);
        assert_eq!(row.get::<_, String>(1), "j***@example.com");
        assert_eq!(row.get::<_, String>(2), "[redacted]");
        // Booleans and integers keep their binary encoding.
        assert!(row.get::<_, bool>(3));
        assert_eq!(row.get::<_, i32>(4), 3);
    }
    // Two statements prepared before either runs keep their own plans.
    let a = client
        .prepare("SELECT password FROM customers WHERE id = 1")
        .await
        .expect("a");
    let b = client
        .prepare("SELECT name FROM customers WHERE id = 1")
        .await
        .expect("b");
    let (ra, rb) = tokio::join!(client.query_one(&b, &[]), client.query_one(&a, &[]));
    assert_eq!(ra.expect("b").get::<_, String>(0), "Jane");
    assert_eq!(rb.expect("a").get::<_, String>(0), "[redacted]");
    // A one-off query (an unnamed statement) is masked too.
    let row = client
        .query_one("SELECT email FROM customers WHERE id = $1", &[&1i32])
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "j***@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_reader_group_sees_personal_data_but_never_credentials() {
    let (_pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let client = gw.client(&gw.token("analyst", &["pii-readers"])).await;
    let got = rows(
        &client,
        "SELECT email, password, note FROM customers WHERE id = 1",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some("jane.doe@example.com".into()),
            Some("[redacted]".into()),
            Some(format!("pay with {CARD} today")),
        ]]
    );
}

#[test]
fn issue_11_psql_and_the_audit_sample_see_only_masked_values() {
    let (_pg, mut gw) = start();
    let token = gw.token("agent", &["dev"]);
    let (ok, out, err) = gw.psql(
        &token,
        &[
            "-At",
            "-c",
            "SELECT email, password FROM customers WHERE id = 1",
        ],
    );
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "j***@example.com|[redacted]\n");
    gw.terminate();
    assert!(
        !gw.log().contains("jane.doe@example.com") && !gw.log().contains("hunter2"),
        "the log holds a raw value"
    );
    let (code, out, err) = crate::support::portcullis(&[
        "audit",
        "sql",
        "--db",
        gw.audit_path().to_str().expect("utf-8 path"),
        "--format",
        "json",
        "SELECT result, masked_columns FROM events WHERE statement LIKE 'SELECT email%'",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(rows.len(), 1, "{out}");
    let result = rows[0]["result"].as_str().expect("a sample");
    assert!(result.contains("j***@example.com"), "{result}");
    assert!(
        !result.contains("jane.doe") && !result.contains("hunter2"),
        "{result}"
    );
    let masked = rows[0]["masked_columns"].to_string();
    assert!(
        masked.contains("email:mask.email") && masked.contains("password:mask.credentials"),
        "{masked}"
    );
}

#[test]
fn issue_11_copy_to_stdout_is_read_for_content_or_refused() {
    let (pg, gw) = start();
    pg.query(
        "CREATE TABLE notes (id int, body text); \
         INSERT INTO notes VALUES (1, 'call jane.doe@example.com about 4111 1111 1111 1111')",
    );
    let token = gw.token("agent", &["dev"]);
    let (ok, out, err) = gw.psql(&token, &["-c", "COPY notes TO STDOUT WITH (FORMAT csv)"]);
    assert!(ok, "{err}\n{}", gw.log());
    assert_eq!(out, "1,call j***@example.com about **** **** **** 1111\n");
    // A table with a column masked by what it is cannot be copied out raw, by name or
    // through a query.
    for sql in [
        "COPY customers TO STDOUT",
        "COPY (SELECT id, password FROM customers) TO STDOUT",
    ] {
        let (ok, out, err) = gw.psql(&token, &["-c", sql]);
        assert!(
            !ok && err.contains("COPY TO STDOUT of a table with masked columns"),
            "{sql}: {err}"
        );
        assert!(
            !out.contains("hunter2") && !err.contains("hunter2"),
            "{out}"
        );
    }
}

/// `portcullis check sql --config <the gateway's config> <sql>`: its stdout, after
/// asserting it succeeded.
fn check_with_config(pg: &PgCluster, gw: &Gateway, sql: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "sql", "--groups", "dev", "--config"])
        .arg(gw.dir.path().join("portcullis.toml"))
        .arg(sql)
        .env(
            "TEST_UPSTREAM_PASSWORD",
            pg.password_of("portcullis").expect("the gateway's role"),
        )
        .output()
        .expect("portcullis runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn issue_11_check_sql_shows_the_masking_plan_the_gateway_would_use() {
    let (pg, gw) = start();
    let text = check_with_config(
        &pg,
        &gw,
        "SELECT id, password AS p, email, note, upper(name), length(password) FROM customers",
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
            .to_string()
    };
    assert!(line("id").ends_with("as it is"), "{text}");
    let p = line("p");
    assert!(
        p.contains("public.customers.password")
            && p.ends_with("masked by mask.credentials (redact)"),
        "{text}"
    );
    assert!(
        line("email").ends_with("masked by mask.email (email)"),
        "{text}"
    );
    assert!(line("note").ends_with("read for content"), "{text}");
    let upper = line("upper");
    assert!(
        upper.contains("derived from public.customers.name") && upper.ends_with("read for content"),
        "{text}"
    );
    let length = line("length");
    assert!(
        length.contains("derived from public.customers.password")
            && length.ends_with("masked by mask.credentials (null: not text)"),
        "{text}"
    );
    // A write's RETURNING is planned too, and describing it runs nothing.
    let text = check_with_config(
        &pg,
        &gw,
        "UPDATE customers SET name = 'changed' WHERE id = 1 RETURNING email",
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("email ")
                && l.ends_with("masked by mask.email (email)")),
        "{text}"
    );
    assert_eq!(
        pg.query("SELECT name FROM customers WHERE id = 1"),
        "Jane\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_views_cursors_and_returning_are_masked() {
    let (pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    // A DBA's views, one over the other, renaming the sensitive columns.
    tokio::task::block_in_place(|| {
        pg.query(
            "CREATE VIEW contacts AS SELECT id, name, email AS reach, password AS word FROM customers; \
             CREATE VIEW contacts2 AS SELECT id, reach AS r, word AS w FROM contacts",
        )
    });
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    for sql in [
        "SELECT reach, word FROM contacts WHERE id = 1",
        "SELECT r, w FROM contacts2 WHERE id = 1",
    ] {
        let got = rows(&client, sql).await;
        for v in got[0].iter().flatten() {
            assert!(
                !v.contains("jane") && !v.contains("hunter2"),
                "{sql} returned {v:?}"
            );
        }
    }
    // A cursor's rows and a write's RETURNING carry a description like any query.
    let got = rows(
        &client,
        "BEGIN; DECLARE c CURSOR FOR SELECT email, password FROM customers ORDER BY id; \
         FETCH 1 FROM c; COMMIT",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![
            Some("j***@example.com".into()),
            Some("[redacted]".into())
        ]]
    );
    let got = rows(
        &client,
        "UPDATE customers SET visits = visits + 1 WHERE id = 1 RETURNING email, visits",
    )
    .await;
    assert_eq!(
        got,
        vec![vec![Some("j***@example.com".into()), Some("4".into())]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_server_errors_cannot_quote_a_masked_value() {
    let (pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    for sql in [
        "SELECT password::int FROM customers WHERE id = 1",
        "SELECT 1 / 0 FROM customers WHERE email = 'x' OR password::date IS NULL",
        "INSERT INTO customers SELECT * FROM customers WHERE id = 1",
    ] {
        let err = client.simple_query(sql).await.expect_err("an error");
        let db = err.as_db_error().expect("a server error");
        let text = format!("{} {:?} {:?}", db.message(), db.detail(), db.hint());
        assert!(
            !text.contains("hunter2") && !text.contains("jane.doe"),
            "{sql}: {text}"
        );
        assert!(text.contains("withheld"), "{sql}: {text}");
        assert_ne!(
            db.code().code(),
            "42501",
            "the server's own SQLSTATE: {text}"
        );
    }
    // The session goes on, and errors elsewhere keep their words.
    tokio::task::block_in_place(|| pg.query("CREATE TABLE plain (n int)"));
    let err = client
        .simple_query("SELECT 'abc'::int FROM plain")
        .await
        .expect_err("an error");
    assert!(
        err.as_db_error()
            .expect("a server error")
            .message()
            .contains("invalid input syntax"),
        "{err}"
    );
}
