//! Issue 14, item 2: every execution is on the record. A statement prepared once and run
//! many times (extended protocol) is recorded once per run, with the values it was bound
//! with, masked as results are; and what the gateway knows of a prepared statement is not
//! lost to a second Parse of its name. Through the gateway against a real PostgreSQL.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::gateway_audit::{audit_rows, verify_ok};
use crate::support::gateway::setup_seeded;
use crate::support::pg::PgCluster;

fn seed(pg: &PgCluster) {
    pg.query(
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         CREATE TABLE customers (id int PRIMARY KEY, name text, password text); \
         INSERT INTO customers VALUES (1, 'Jane', 'hunter2-hunter2')",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_each_run_of_a_prepared_statement_is_recorded_with_its_values() {
    let (_pg, mut gw) = setup_seeded(seed).await;
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    let key = format!("AKIA{}", "Q7".repeat(8));
    let insert = client
        .prepare("INSERT INTO notes VALUES ($1, $2)")
        .await
        .expect("prepare");
    for (id, body) in [(1, "first"), (2, "second"), (3, key.as_str())] {
        client
            .execute(&insert, &[&id, &body])
            .await
            .expect("insert");
    }
    let select = client
        .prepare("SELECT body FROM notes WHERE id = $1")
        .await
        .expect("prepare");
    for id in [1, 2] {
        client.query(&select, &[&id]).await.expect("select");
    }
    // `password` is masked for agents by the built-in pack: the values bound into a
    // statement over that table are withheld from the record.
    client
        .execute(
            "UPDATE customers SET password = $1 WHERE id = $2",
            &[&"new-secret-value", &1i32],
        )
        .await
        .expect("update");
    drop(client);
    gw.terminate();
    let db = gw.audit_path();
    verify_ok(&db);

    let runs = audit_rows(
        &db,
        "SELECT statement, parameters, rows FROM events \
         WHERE kind = 'execute' AND decision = 'allowed' ORDER BY seq",
    );
    let of = |prefix: &str| -> Vec<serde_json::Value> {
        runs.iter()
            .filter(|r| r["statement"].as_str().unwrap().starts_with(prefix))
            .map(|r| serde_json::from_str(r["parameters"].as_str().unwrap()).unwrap())
            .collect()
    };
    // Binary values (tokio-postgres binds in binary) as hex; the key by its detector.
    let inserts = of("INSERT INTO notes");
    assert_eq!(inserts.len(), 3, "{runs:?}");
    assert_eq!(inserts[0][0], "\\x00000001");
    assert_eq!(inserts[0][1], format!("\\x{}", hex(b"first")));
    assert_eq!(inserts[1][1], format!("\\x{}", hex(b"second")));
    let all = serde_json::to_string(&runs).unwrap();
    assert!(!all.contains(&hex(key.as_bytes())), "{all}");
    assert!(!all.contains("new-secret-value") && !all.contains(&hex(b"new-secret-value")));
    assert_eq!(of("SELECT body FROM notes").len(), 2, "{runs:?}");
    let update = of("UPDATE customers");
    assert_eq!(update.len(), 1, "{runs:?}");
    for v in update[0].as_array().unwrap() {
        assert!(v.as_str().unwrap().starts_with("[masked:"), "{v}");
    }
    assert!(
        inserts[2][1]
            .as_str()
            .unwrap()
            .contains("[secret:aws-access-key-id]"),
        "{runs:?}"
    );
    // Reads' runs wait for their results: each has its own row count.
    let rows: Vec<i64> = runs
        .iter()
        .filter(|r| r["statement"].as_str().unwrap().starts_with("SELECT"))
        .map(|r| r["rows"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(rows, vec![1, 1], "{runs:?}");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A hand-framed protocol client: what libpq and tokio-postgres never send (a second
/// Parse of a statement name in use).
struct Raw(TcpStream);

impl Raw {
    fn connect(port: u16, token: &str) -> Raw {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut body = 196608u32.to_be_bytes().to_vec();
        for kv in ["user", "agent", "database", "app"] {
            body.extend_from_slice(kv.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        s.write_all(&m).unwrap();
        let mut raw = Raw(s);
        let (tag, _) = raw.read();
        assert_eq!(tag, b'R');
        let mut password = token.as_bytes().to_vec();
        password.push(0);
        raw.send(b'p', &password);
        raw.until_ready();
        raw
    }

    fn send(&mut self, tag: u8, body: &[u8]) {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        self.0.write_all(&m).unwrap();
    }

    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        self.0.read_exact(&mut head).expect("a message");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.0.read_exact(&mut body).unwrap();
        (head[0], body)
    }

    /// The messages up to ReadyForQuery: the error texts among them.
    fn until_ready(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        loop {
            match self.read() {
                (b'Z', _) => return errors,
                (b'E', body) => errors.push(String::from_utf8_lossy(&body).into_owned()),
                _ => {}
            }
        }
    }

    fn parse(&mut self, name: &str, sql: &str) {
        let mut b = Vec::new();
        for s in [name, sql] {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        self.send(b'P', &b);
    }

    fn bind_execute(&mut self, name: &str) {
        let mut b = vec![0];
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        self.send(b'B', &b);
        self.send(b'E', &[0, 0, 0, 0, 0]);
    }

    fn sync(&mut self) -> Vec<String> {
        self.send(b'S', &[]);
        self.until_ready()
    }
}

/// A Parse that reuses the name of a statement held for review fails on the server and
/// leaves the held statement in place: its runs must still wait for approval.
#[test]
fn issue_14_a_second_parse_of_a_held_statement_name_does_not_release_it() {
    let (pg, gw, _admin) = crate::approvals::start("hold = \"2s\"\ntimeout = \"60s\"", None);
    let mut raw = Raw::connect(gw.port, &gw.token("alice", &["dev"]));
    raw.parse("s1", "CREATE TABLE held_twice (id int)");
    assert!(
        raw.sync().is_empty(),
        "parsing runs nothing and is not held"
    );
    raw.parse("s1", "SELECT 1");
    let errors = raw.sync();
    assert!(
        errors.iter().any(|e| e.contains("already exists")),
        "{errors:?}"
    );
    raw.bind_execute("s1");
    let errors = raw.sync();
    assert!(
        errors.iter().any(|e| e.contains("approval")),
        "the run was not held: {errors:?}"
    );
    assert_eq!(
        pg.query("SELECT to_regclass('held_twice') IS NULL").trim(),
        "t",
        "the held statement ran without approval"
    );
}
