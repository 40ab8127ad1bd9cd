//! Issue #11: the masking corpus (`corpus/mask/`). Every leak attempt runs through the
//! gateway against a real PostgreSQL holding `schema.sql`, and nothing sensitive may
//! come back in any spelling; every clean read must come back exactly as it does on a
//! direct connection.

use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::gateway::setup;
use crate::support::pg::PgCluster;

/// The sensitive values of `corpus/mask/schema.sql`.
const SENSITIVE: &[&str] = &[
    "hunter2-hunter2",
    "sw0rdfish-sw0rdfish",
    "jane.doe",
    "4111 1111 1111 1111",
    "4111111111111111",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "vault-pass-123",
];

/// A sensitive value's spellings a laundering expression may produce.
fn spellings(raw: &str) -> Vec<String> {
    let reversed: String = raw.chars().rev().collect();
    let hex: String = raw.bytes().map(|b| format!("{b:02x}")).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    // A fragment long enough to identify the value but short enough to survive
    // being cut in two.
    let half = raw.len() / 2;
    vec![
        raw.to_lowercase(),
        reversed.to_lowercase(),
        hex,
        b64[..b64.len().min(12)].to_string(),
        raw[..half.max(6).min(raw.len())].to_lowercase(),
    ]
}

/// Every value of every row the query string returns, or the error it got.
async fn values(client: &Client, sql: &str) -> Result<Vec<Option<String>>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| {
        e.as_db_error()
            .map(|d| format!("{}: {}", d.code().code(), d.message()))
            .unwrap_or_else(|| e.to_string())
    })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(move |i| r.get(i).map(str::to_string)))
            }
            _ => None,
        })
        .flatten()
        .collect())
}

/// The cases of a `.mask` file: (label, note, body).
fn cases(file: &str) -> Vec<(String, String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus/mask")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("corpus file");
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix("=== ") {
            let (label, note) = header.split_once('|').unwrap_or((header, ""));
            out.push((label.trim().into(), note.trim().into(), String::new()));
        } else if let Some((_, _, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    for (_, _, body) in &mut out {
        *body = body.trim().to_string();
    }
    out
}

/// A client through the gateway whose notices are kept.
async fn client_with_notices(
    gw: &crate::support::gateway::Gateway,
    token: &str,
) -> (Client, Arc<Mutex<Vec<String>>>) {
    let conn = format!("{} password={token}", gw.conninfo());
    let (client, mut connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect through the gateway");
    let notices = Arc::new(Mutex::new(Vec::new()));
    let kept = notices.clone();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notice(n)) => kept
                    .lock()
                    .expect("not poisoned")
                    .push(n.message().to_string()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

fn start() -> (PgCluster, crate::support::gateway::Gateway) {
    let (pg, gw) = setup();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/mask/schema.sql");
    pg.query(&std::fs::read_to_string(schema).expect("schema"));
    (pg, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_the_masking_corpus_leaks_nothing_and_changes_nothing_clean() {
    let (pg, gw) = tokio::task::spawn_blocking(start).await.expect("setup");
    let leaks = cases("leaks.mask");
    let clean = cases("clean.mask");
    assert!(leaks.len() >= 40 && clean.len() >= 10, "the corpus is read");

    let mut failures = Vec::new();
    for (label, note, sql) in &leaks {
        assert_eq!(label, "leak", "{note}");
        // A fresh session per case: a refusal or an error leaves nothing behind.
        let (client, notices) = client_with_notices(&gw, &gw.token("agent", &["dev"])).await;
        let mut got = match values(&client, sql).await {
            Ok(values) => values.into_iter().flatten().collect::<Vec<_>>(),
            Err(error) => vec![error],
        };
        got.extend(notices.lock().expect("not poisoned").drain(..));
        for v in &got {
            let lower = v.to_lowercase();
            for raw in SENSITIVE {
                if spellings(raw).iter().any(|s| lower.contains(s.as_str())) {
                    failures.push(format!("{note}: {sql}\n  returned {v:?}"));
                }
            }
        }
        // The numbers a masked column is turned into do not come back either.
        if note.contains("as numbers") || note.contains("length") {
            assert!(
                got.is_empty(),
                "{note}: {sql} returned numbers derived from a password: {got:?}"
            );
        }
    }
    assert!(failures.is_empty(), "leaks:\n{}", failures.join("\n"));

    let direct_conn = format!(
        "{} password={}",
        pg.conninfo("portcullis", "app"),
        pg.user_password()
    );
    let (direct, connection) = tokio_postgres::connect(&direct_conn, tokio_postgres::NoTls)
        .await
        .expect("direct connection");
    tokio::spawn(connection);
    let client = gw.client(&gw.token("agent", &["dev"])).await;
    for (label, note, sql) in &clean {
        assert_eq!(label, "clean", "{note}");
        let want = values(&direct, sql).await.expect("runs directly");
        let got = values(&client, sql)
            .await
            .unwrap_or_else(|e| panic!("{note}: {sql} failed through the gateway: {e}"));
        assert_eq!(got, want, "{note}: {sql}");
    }
}
