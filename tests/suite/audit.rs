//! The audit store (issue #5): writer, durability, hash chain, auditor commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::audit::{
    self, Approval, AuditHandle, Decision, Durability, Event, Protocol, RefUpdate, SessionEnd,
    SessionStart, WriterOptions,
};

use crate::support::portcullis;

/// A fresh folder and the store path inside it.
fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.duckdb");
    (dir, path)
}

fn options(durability: Durability) -> WriterOptions {
    WriterOptions {
        durability,
        ..WriterOptions::default()
    }
}

/// The `i`-th statement of session `session`; every tenth is a write, every seventh
/// denied.
fn statement(session: &str, i: usize) -> Event {
    let denied = i % 7 == 3;
    let mut e = Event::new(
        session,
        Protocol::Postgres,
        "app",
        audit::record::kind::QUERY,
        if denied {
            Decision::Denied
        } else {
            Decision::Allowed
        },
    );
    e.subject = Some(format!("agent-{}", i % 3).into());
    e.groups = vec!["dev".into(), format!("team-{}", i % 2)].into();
    e.client_addr = Some("127.0.0.1:50000".into());
    e.prompt = Some(format!("task {}", i / 10).into());
    let write = i % 10 == 9;
    e.statement = Some(
        if write {
            format!("UPDATE accounts SET balance = balance - 1 WHERE id = {i}")
        } else {
            format!("SELECT id, email FROM users WHERE id = {i}")
        }
        .into(),
    );
    e.fingerprint = Some(if write { "f-update" } else { "f-select" }.into());
    e.must_be_durable = write;
    if denied {
        e.rule_ids = vec!["sql.no-email".into()];
        e.message = Some("email is off limits".into());
    } else {
        e.rows = Some(1);
        e.result = Some(format!(r#"[[{i},"u{i}@example.com"]]"#));
        e.masked_columns = vec!["email".into()];
    }
    e.monitored_rules = if i.is_multiple_of(5) {
        vec!["sql.watch-users".into()]
    } else {
        Vec::new()
    };
    e.duration_us = Some(100 + i as i64);
    e
}

fn push(session: &str) -> Event {
    let mut e = Event::new(
        session,
        Protocol::Git,
        "repo",
        audit::record::kind::PUSH,
        Decision::Allowed,
    );
    e.subject = Some("agent-0".into());
    e.statement = Some("push 2 refs".into());
    e.must_be_durable = true;
    e.refs = vec![
        RefUpdate {
            name: "refs/heads/main".into(),
            old_oid: "a".repeat(40),
            new_oid: "b".repeat(40),
            kind: "update".into(),
            forced: false,
            commits: Some(2),
        },
        RefUpdate {
            name: "refs/tags/v1".into(),
            old_oid: "0".repeat(40),
            new_oid: "c".repeat(40),
            kind: "create".into(),
            forced: false,
            commits: None,
        },
    ];
    e
}

/// Writes `n` statements of session `s1`, a push of session `g1`, session rows and an
/// approval, and shuts the writer down.
fn fill(path: &Path, n: usize) {
    let audit = AuditHandle::start(path, options(Durability::Writes)).expect("writer starts");
    let started_us = audit::record::now_us();
    audit
        .record_blocking(SessionStart {
            session_id: "s1".into(),
            protocol: Protocol::Postgres,
            target: "app".into(),
            subject: Some("agent-0".into()),
            groups: vec!["dev".into()],
            client_addr: Some("127.0.0.1:50000".into()),
            started_us,
        })
        .and_then(|t| t.wait())
        .expect("recorded");
    for i in 0..n {
        let e = if i == n / 2 {
            push("g1")
        } else {
            statement("s1", i)
        };
        audit
            .record_blocking(e)
            .and_then(|t| t.wait())
            .expect("recorded");
    }
    audit
        .record_blocking(Approval {
            approval_id: "ap1".into(),
            event_id: "e-held".into(),
            requested_us: audit::record::now_us(),
            decided_us: None,
            approver: None,
            state: "pending".into(),
            reason: None,
        })
        .and_then(|t| t.wait())
        .expect("recorded");
    audit
        .record_blocking(Approval {
            approval_id: "ap1".into(),
            event_id: "e-held".into(),
            requested_us: audit::record::now_us(),
            decided_us: Some(audit::record::now_us()),
            approver: Some("dba".into()),
            state: "approved".into(),
            reason: Some("looks fine".into()),
        })
        .and_then(|t| t.wait())
        .expect("recorded");
    audit
        .record_blocking(SessionEnd {
            session_id: "s1".into(),
            started_us: Some(started_us),
            ended_us: audit::record::now_us(),
            reason: Some("client closed".into()),
        })
        .and_then(|t| t.wait())
        .expect("recorded");
    audit.shutdown().expect("clean shutdown");
}

fn sql(path: &Path, query: &str) -> audit::QueryResult {
    audit::query(path, query).unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn text(v: &duckdb::types::Value) -> String {
    audit::query::to_text(v)
}

fn texts(r: &audit::QueryResult) -> Vec<Vec<String>> {
    r.rows
        .iter()
        .map(|row| row.iter().map(text).collect())
        .collect()
}

#[test]
fn many_events_from_many_threads_are_all_written_in_one_chain() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            queue: 64,
            max_batch: 500,
            ..options(Durability::Async)
        },
    )
    .expect("writer starts");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let audit = audit.clone();
            std::thread::spawn(move || {
                for i in 0..5000 {
                    let ticket = audit
                        .record_blocking(statement(&format!("s{t}"), i))
                        .expect("queued");
                    assert!(!ticket.waits(), "async acknowledges on enqueue");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
    audit
        .record_blocking(push("g1"))
        .and_then(|t| t.wait())
        .expect("recorded");
    audit.shutdown().expect("clean shutdown");

    let r = sql(
        &path,
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq), count(DISTINCT event_id) FROM events",
    );
    let row: Vec<String> = r.rows[0].iter().map(text).collect();
    assert_eq!(row, ["20001", "20001", "1", "20001", "20001"]);
    // Each producer's events keep their order.
    let r = sql(
        &path,
        "SELECT session_id, count(*) FROM (SELECT session_id, seq, \
         row_number() OVER (PARTITION BY session_id ORDER BY seq) AS n, \
         CAST(regexp_extract(statement, 'id = (\\d+)', 1) AS INTEGER) AS i FROM events WHERE kind = 'query') \
         WHERE n - 1 <> i GROUP BY 1",
    );
    assert!(r.rows.is_empty(), "out of order: {:?}", r.rows);
    // Lists, timestamps, NULLs and ref updates come back as written.
    let r = sql(
        &path,
        "SELECT groups, rule_ids, masked_columns, rows, message, ts <= now()::TIMESTAMP \
         FROM events WHERE session_id = 's0' AND statement LIKE '%id = 3'",
    );
    let row: Vec<String> = r.rows[0].iter().map(text).collect();
    assert_eq!(
        row,
        [
            "[dev, team-1]",
            "[sql.no-email]",
            "[]",
            "NULL",
            "email is off limits",
            "true"
        ]
    );
    let r = sql(
        &path,
        "SELECT r.position, r.ref, r.kind, r.forced, r.commits FROM ref_updates r \
         JOIN events e USING (event_id) WHERE e.kind = 'push' ORDER BY r.position",
    );
    let rows = texts(&r);
    assert_eq!(
        rows,
        [
            ["0", "refs/heads/main", "update", "false", "2"],
            ["1", "refs/tags/v1", "create", "false", "NULL"]
        ]
    );
    let report = audit::verify(&path).expect("verify runs");
    assert_eq!(report.broken, None);
    assert_eq!(report.events, 20001);
}

#[test]
fn sessions_and_approvals_are_summarised() {
    let (_dir, path) = store();
    fill(&path, 20);
    let r = sql(
        &path,
        "SELECT session_id, subject, groups, ended_at IS NOT NULL, end_reason FROM sessions",
    );
    let row: Vec<String> = r.rows[0].iter().map(text).collect();
    assert_eq!(row, ["s1", "agent-0", "[dev]", "true", "client closed"]);
    let r = sql(
        &path,
        "SELECT approval_id, state, approver, reason FROM approvals",
    );
    assert_eq!(r.rows.len(), 1, "one row per approval, its latest state");
    let row: Vec<String> = r.rows[0].iter().map(text).collect();
    assert_eq!(row, ["ap1", "approved", "dba", "looks fine"]);
}

#[test]
fn a_session_end_closes_its_own_row_however_it_reaches_the_store() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(&path, options(Durability::Async)).expect("writer starts");
    let start = |id: &str, started_us: i64| {
        audit
            .record_blocking(SessionStart {
                session_id: id.into(),
                protocol: Protocol::Postgres,
                target: "app".into(),
                subject: Some("agent-0".into()),
                groups: vec![],
                client_addr: None,
                started_us,
            })
            .and_then(|t| t.wait())
            .expect("queued");
    };
    let end = |id: &str, started_us: Option<i64>, ended_us: i64| {
        audit
            .record_blocking(SessionEnd {
                session_id: id.into(),
                started_us,
                ended_us,
                reason: Some(format!("{id} closed")),
            })
            .and_then(|t| t.wait())
            .expect("queued");
    };
    // Started and ended within one batch: the row is appended whole.
    start("same-batch", 1_000_000);
    end("same-batch", Some(1_000_000), 1_000_001);
    // Ended after the start was committed: found by its start time.
    start("committed", 2_000_000);
    // Ended by a record that does not know its start (a journal from before it was
    // kept), or names a start time the row does not hold: found by id alone.
    start("no-start-time", 3_000_000);
    start("wrong-start-time", 4_000_000);
    start("still-open", 4_000_000);
    audit.flush_blocking().expect("committed");
    end("committed", Some(2_000_000), 2_000_001);
    end("no-start-time", None, 3_000_001);
    end("wrong-start-time", Some(4_000_001), 4_000_002);
    audit.shutdown().expect("clean shutdown");

    let r = sql(
        &path,
        "SELECT session_id, epoch_us(ended_at), end_reason FROM sessions ORDER BY started_at, session_id",
    );
    let rows = texts(&r);
    assert_eq!(
        rows,
        [
            ["same-batch", "1000001", "same-batch closed"],
            ["committed", "2000001", "committed closed"],
            ["no-start-time", "3000001", "no-start-time closed"],
            ["still-open", "NULL", "NULL"],
            ["wrong-start-time", "4000002", "wrong-start-time closed"],
        ]
    );
}

#[test]
fn sessions_a_stopped_gateway_left_open_are_closed_when_it_starts_again() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(&path, options(Durability::Writes)).expect("writer starts");
    audit
        .record_blocking(SessionStart {
            session_id: "cut".into(),
            protocol: Protocol::Postgres,
            target: "app".into(),
            subject: Some("agent-0".into()),
            groups: vec![],
            client_addr: None,
            started_us: audit::record::now_us(),
        })
        .and_then(|t| t.wait())
        .expect("recorded");
    audit
        .shutdown()
        .expect("stopped without ending the session");
    let open = sql(
        &path,
        "SELECT count(*) FROM sessions WHERE ended_at IS NULL",
    );
    assert_eq!(text(&open.rows[0][0]), "1");
    AuditHandle::start(&path, options(Durability::Writes))
        .expect("writer starts again")
        .shutdown()
        .expect("clean shutdown");
    let r = sql(
        &path,
        "SELECT ended_at IS NOT NULL, end_reason FROM sessions",
    );
    let row: Vec<String> = r.rows[0].iter().map(text).collect();
    assert_eq!(row[0], "true");
    assert!(row[1].contains("gateway stopped"), "{row:?}");
}

#[test]
fn a_restarted_writer_continues_the_chain() {
    let (_dir, path) = store();
    fill(&path, 10);
    fill(&path, 10);
    let report = audit::verify(&path).expect("verify runs");
    assert_eq!(report.broken, None);
    assert_eq!(report.events, 20);
    assert_eq!(report.head.expect("a head").seq, 20);
}

#[test]
fn durability_writes_waits_only_for_writes_and_commits_reads_soon() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(&path, options(Durability::Writes)).expect("writer starts");
    let read = audit.record_blocking(statement("s", 0)).expect("queued");
    assert!(!read.waits(), "a read is acknowledged on enqueue");
    let write = audit.record_blocking(statement("s", 9)).expect("queued");
    assert!(write.waits(), "a write waits until it is durable");
    write.wait().expect("durable");
    // Durable in the journal, which carries the read queued before it; DuckDB gets
    // both in a later, larger commit.
    let (frames, torn) = audit::journal::read(&path).expect("the journal reads");
    assert_eq!((frames.len(), torn), (2, 0), "{frames:?}");
    assert!(
        matches!(&frames[1], audit::journal::Frame::Event { seq: 2, event }
        if event.statement.as_deref() == Some("UPDATE accounts SET balance = balance - 1 WHERE id = 9")),
        "{frames:?}"
    );
    // A read alone is committed by the group-commit timer.
    let read = audit.record_blocking(statement("s", 1)).expect("queued");
    assert!(!read.waits());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while audit.stats().committed_events < 3 {
        assert!(std::time::Instant::now() < deadline, "never committed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !audit::journal::pending(&path),
        "a commit empties the journal"
    );
    audit.shutdown().expect("clean shutdown");
    assert!(
        !audit::journal::path_for(&path).exists(),
        "a clean stop removes it"
    );
}

/// Issue 15: a write is durable once its ticket is answered, before DuckDB commits it.
/// The files as a crash leaves them (copied while the writer runs with nothing
/// committed) open with every acknowledged record, the chain continuing, the session
/// closed; a journal that comes back after it was applied adds nothing twice.
#[test]
fn acknowledged_writes_survive_a_crash_before_any_commit() {
    let (dir, path) = store();
    fill(&path, 5);
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            max_delay: Duration::from_secs(60),
            ..options(Durability::Writes)
        },
    )
    .expect("writer starts");
    audit
        .record_blocking(SessionStart {
            session_id: "s2".into(),
            protocol: Protocol::Postgres,
            target: "app".into(),
            subject: Some("agent-1".into()),
            groups: vec![],
            client_addr: None,
            started_us: audit::record::now_us(),
        })
        .expect("queued")
        .wait()
        .expect("queued");
    for i in 0..30 {
        let ticket = audit.record_blocking(statement("s2", i)).expect("queued");
        if ticket.waits() {
            ticket.wait().expect("durable");
        }
    }
    assert_eq!(audit.stats().committed_events, 0, "nothing committed yet");
    let crashed = |name: &str| {
        let copy = dir.path().join(name).join("audit.duckdb");
        std::fs::create_dir(copy.parent().unwrap()).expect("folder");
        for (from, to) in [
            (path.clone(), copy.clone()),
            (
                audit::journal::path_for(&path),
                audit::journal::path_for(&copy),
            ),
            (
                path.with_extension("duckdb.wal"),
                copy.with_extension("duckdb.wal"),
            ),
        ] {
            if from.exists() {
                std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
            }
        }
        copy
    };
    let copy = crashed("crash");
    let cut_short = crashed("cut-short");
    let journal = std::fs::read(audit::journal::path_for(&copy)).expect("journal");
    audit.shutdown().expect("clean shutdown");

    // An auditor opening the crashed store gets the journal committed first.
    let report = audit::verify(&copy).expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 5 + 30);
    let last = sql(&copy, "SELECT statement FROM events WHERE seq = 35");
    assert_eq!(
        text(&last.rows[0][0]),
        &*statement("s2", 29).statement.unwrap()
    );
    let s2 = sql(
        &copy,
        "SELECT ended_at IS NOT NULL, end_reason FROM sessions WHERE session_id = 's2'",
    );
    assert_eq!(s2.rows.len(), 1, "{s2:?}");
    assert_eq!(text(&s2.rows[0][0]), "true");
    assert!(!audit::journal::pending(&copy), "applied and emptied");

    // A crash between the commit and emptying the journal: applying it again adds nothing.
    std::fs::write(audit::journal::path_for(&copy), &journal).expect("journal back");
    let report = audit::verify(&copy).expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 35);
    let sessions = sql(
        &copy,
        "SELECT count(*) FROM sessions WHERE session_id = 's2'",
    );
    assert_eq!(text(&sessions.rows[0][0]), "1");

    // A journal cut short by the crash keeps its whole frames.
    std::fs::write(
        audit::journal::path_for(&cut_short),
        &journal[..journal.len() - 5],
    )
    .expect("journal");
    let report = audit::verify(&cut_short).expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 34, "the last write's frame was never whole");

    // A journal that does not continue the store's chain is not applied over the gap.
    let (_other_dir, other) = store();
    fill(&other, 3);
    std::fs::write(audit::journal::path_for(&other), &journal).expect("journal");
    let err = audit::verify(&other).expect_err("a gap");
    assert!(
        err.to_string().contains("the journal holds event 6"),
        "{err}"
    );
}

#[test]
fn durability_all_waits_for_every_event_and_async_for_none() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            max_delay: Duration::from_secs(3600),
            ..options(Durability::All)
        },
    )
    .expect("writer starts");
    for i in 0..20 {
        let ticket = audit.record_blocking(statement("s", i)).expect("queued");
        assert!(ticket.waits());
        ticket.wait().expect("durable");
        // Each in the journal before its ticket is answered, one sync each.
        let (frames, _) = audit::journal::read(&path).expect("the journal reads");
        assert_eq!(frames.len(), i + 1);
        assert_eq!(audit.stats().journal_syncs, i as u64 + 1);
    }
    audit.shutdown().expect("clean shutdown");
    assert_eq!(audit::verify(&path).expect("verify").events, 20);

    let (_dir, path) = store();
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            max_delay: Duration::from_secs(3600),
            ..options(Durability::Async)
        },
    )
    .expect("writer starts");
    for i in 0..20 {
        let ticket = audit.record_blocking(statement("s", i)).expect("queued");
        assert!(!ticket.waits(), "async never waits, writes included");
        ticket.wait().expect("acknowledged");
    }
    assert_eq!(
        audit.stats().committed_events,
        0,
        "nothing forced a commit yet"
    );
    audit.flush_blocking().expect("flushed");
    assert_eq!(audit.stats().committed_events, 20);
    audit.shutdown().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_await_tickets_and_back_pressure_loses_nothing() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            queue: 1,
            max_batch: 16,
            ..options(Durability::Writes)
        },
    )
    .expect("writer starts");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let audit = audit.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let ticket = audit
                    .record(statement(&format!("s{t}"), i))
                    .await
                    .expect("queued");
                ticket.durable().await.expect("durable");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    audit.flush().await.expect("flushed");
    assert_eq!(audit.stats().committed_events, 2000, "none dropped");
    tokio::task::spawn_blocking(move || audit.shutdown())
        .await
        .expect("join")
        .expect("clean shutdown");
    assert_eq!(audit::verify(&path).expect("verify").events, 2000);
}

#[test]
fn an_unusable_store_is_reported_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A folder where the file should be.
    let err = AuditHandle::start(dir.path(), WriterOptions::default())
        .err()
        .expect("a folder is not a store");
    assert!(matches!(err, audit::Error::Open { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    // Not a DuckDB file.
    let bogus = dir.path().join("bogus.duckdb");
    std::fs::write(&bogus, b"not a database at all, just text").expect("write");
    let err = AuditHandle::start(&bogus, WriterOptions::default())
        .err()
        .expect("garbage is not a store");
    assert!(matches!(err, audit::Error::Open { .. }), "{err}");
}

#[test]
fn a_writer_that_stops_refuses_new_records() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(&path, WriterOptions::default()).expect("writer starts");
    let other = audit.clone();
    audit.shutdown().expect("clean shutdown");
    assert!(matches!(other.check(), Err(audit::Error::Closed)));
    assert!(matches!(
        other.record_blocking(statement("s", 0)),
        Err(audit::Error::Closed)
    ));
}

/// Opens the store behind the writer's back, as someone with the file would.
fn tamper(path: &Path, sql: &str) {
    let conn = duckdb::Connection::open(path).expect("open the file directly");
    conn.execute_batch(sql).expect("tamper");
}

fn event_id_at(path: &Path, seq: i64) -> String {
    text(
        &sql(
            path,
            &format!("SELECT event_id FROM events WHERE seq = {seq}"),
        )
        .rows[0][0],
    )
}

fn verify_cli(path: &Path) -> (i32, String) {
    let (code, out, err) = portcullis(&["audit", "verify", "--db", path.to_str().expect("utf-8")]);
    (code, format!("{out}{err}"))
}

#[test]
fn verify_passes_an_intact_store() {
    let (_dir, path) = store();
    fill(&path, 50);
    let (code, out) = verify_cli(&path);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("intact: 50 events, head seq 50 hash "),
        "{out}"
    );
}

#[test]
fn verify_finds_an_edited_statement() {
    let (_dir, path) = store();
    fill(&path, 50);
    let id = event_id_at(&path, 17);
    tamper(
        &path,
        "UPDATE events SET statement = 'SELECT 1' WHERE seq = 17",
    );
    let report = audit::verify(&path).expect("verify runs");
    let broken = report.broken.expect("broken");
    assert_eq!((broken.seq, broken.event_id.as_str()), (17, id.as_str()));
    assert_eq!(report.events, 16);
    let (code, out) = verify_cli(&path);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("broken at seq 17 (event {id})")),
        "{out}"
    );
    assert!(out.contains("edited"), "{out}");
}

#[test]
fn verify_finds_an_edited_decision_and_list() {
    for (edit, seq) in [
        ("UPDATE events SET decision = 'allowed' WHERE seq = 4", 4),
        ("UPDATE events SET rule_ids = [] WHERE seq = 4", 4),
        (
            "UPDATE events SET ts = ts + INTERVAL 1 SECOND WHERE seq = 4",
            4,
        ),
        ("UPDATE events SET result = NULL WHERE seq = 5", 5),
        ("UPDATE events SET groups = NULL WHERE seq = 6", 6),
        ("UPDATE events SET hash = sha256('x') WHERE seq = 4", 4),
    ] {
        let (_dir, path) = store();
        fill(&path, 10);
        tamper(&path, edit);
        let broken = audit::verify(&path)
            .expect("verify runs")
            .broken
            .unwrap_or_else(|| panic!("not found: {edit}"));
        assert_eq!(broken.seq, seq, "{edit}: {broken:?}");
    }
}

#[test]
fn verify_finds_a_deleted_event() {
    let (_dir, path) = store();
    fill(&path, 50);
    tamper(&path, "DELETE FROM events WHERE seq = 23");
    let broken = audit::verify(&path)
        .expect("verify runs")
        .broken
        .expect("broken");
    assert_eq!(broken.seq, 23);
    assert!(broken.reason.contains("missing"), "{broken:?}");
    let (code, out) = verify_cli(&path);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken at seq 23"), "{out}");
}

#[test]
fn verify_finds_a_deleted_event_even_with_seq_renumbered() {
    let (_dir, path) = store();
    fill(&path, 50);
    let id = event_id_at(&path, 24);
    tamper(
        &path,
        "DELETE FROM events WHERE seq = 23; UPDATE events SET seq = seq - 1 WHERE seq > 23",
    );
    let broken = audit::verify(&path)
        .expect("verify runs")
        .broken
        .expect("broken");
    assert_eq!((broken.seq, broken.event_id.as_str()), (23, id.as_str()));
}

#[test]
fn verify_finds_swapped_events() {
    let (_dir, path) = store();
    fill(&path, 50);
    let second = event_id_at(&path, 31);
    tamper(
        &path,
        "UPDATE events SET seq = CASE seq WHEN 30 THEN 31 ELSE 30 END WHERE seq IN (30, 31)",
    );
    let broken = audit::verify(&path)
        .expect("verify runs")
        .broken
        .expect("broken");
    assert_eq!(
        (broken.seq, broken.event_id.as_str()),
        (30, second.as_str())
    );
}

#[test]
fn verify_finds_edited_and_added_ref_updates() {
    let (_dir, path) = store();
    fill(&path, 10);
    let push_seq = text(&sql(&path, "SELECT seq FROM events WHERE kind = 'push'").rows[0][0]);
    tamper(
        &path,
        "UPDATE ref_updates SET forced = true WHERE position = 0",
    );
    let broken = audit::verify(&path)
        .expect("verify runs")
        .broken
        .expect("broken");
    assert_eq!(broken.seq.to_string(), push_seq);

    let (_dir, path) = store();
    fill(&path, 10);
    tamper(
        &path,
        "INSERT INTO ref_updates VALUES ('forged', 0, 'refs/heads/main', 'a', 'b', 'update', true, 1)",
    );
    let broken = audit::verify(&path)
        .expect("verify runs")
        .broken
        .expect("broken");
    assert_eq!(broken.event_id, "forged");
}

fn sql_cli(path: &Path, query: &str, format: &str) -> (i32, String, String) {
    portcullis(&[
        "audit",
        "sql",
        query,
        "--db",
        path.to_str().expect("utf-8"),
        "--format",
        format,
    ])
}

#[test]
fn audit_sql_answers_in_three_formats() {
    let (_dir, path) = store();
    fill(&path, 30);
    let q = "SELECT subject, count(*) AS denied, list(DISTINCT rule_ids[1]) AS rules \
             FROM events WHERE decision = 'denied' GROUP BY subject ORDER BY subject";
    let (code, out, err) = sql_cli(&path, q, "table");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "subject | denied | rules");
    assert!(lines[1].starts_with("--------+--------+"), "{out}");
    assert_eq!(lines[2], "agent-0 | 2      | [sql.no-email]", "{out}");
    assert_eq!(lines.last(), Some(&"(3 rows)"), "{out}");

    let (code, out, err) = sql_cli(&path, q, "json");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v[0],
        serde_json::json!({"subject": "agent-0", "denied": 2, "rules": ["sql.no-email"]})
    );
    assert_eq!(v.as_array().map(Vec::len), Some(3));

    let (code, out, err) = sql_cli(
        &path,
        "SELECT seq, statement, 'say \"hi\", ok' AS quote FROM events WHERE seq = 1",
        "csv",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "seq,statement,quote\n1,\"SELECT id, email FROM users WHERE id = 0\",\"say \"\"hi\"\", ok\"\n"
    );
}

#[test]
fn audit_sql_refuses_anything_but_a_query() {
    let (_dir, path) = store();
    fill(&path, 5);
    for q in [
        "COPY events TO '/tmp/portcullis-audit-x.csv'",
        "ATTACH '/tmp/portcullis-audit-x.duckdb' AS x",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/passwd')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE events",
        "CREATE TABLE t (x INT)",
        "UPDATE events SET statement = 'x'",
        "DELETE FROM events",
        "PRAGMA enable_profiling",
        "SET enable_external_access = true",
        "SELECT * FROM 'https://example.com/x.csv'",
    ] {
        let (code, out, err) = sql_cli(&path, q, "table");
        assert_eq!(code, 1, "{q}: {out}");
        assert!(
            err.contains("refused") || err.contains("cannot parse"),
            "{q}: {err}"
        );
    }
    assert!(!Path::new("/tmp/portcullis-audit-x.csv").exists());
    // The store is untouched.
    assert_eq!(audit::verify(&path).expect("verify").events, 5);
}

#[test]
fn duckdb_itself_refuses_what_slipped_past_the_parser() {
    let (_dir, path) = store();
    fill(&path, 5);
    let store = audit::Store::open_read_only(&path).expect("opens read-only");
    let conn = store.connection();
    for q in [
        "COPY events TO '/tmp/portcullis-audit-y.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "ATTACH '/tmp/portcullis-audit-y.duckdb' AS y",
        "SET enable_external_access = true",
        "INSTALL httpfs",
        "DELETE FROM events",
    ] {
        let r = audit::query::query_connection(conn, q);
        assert!(r.is_err(), "{q}: DuckDB ran it");
    }
    assert!(!Path::new("/tmp/portcullis-audit-y.csv").exists());
}

#[test]
fn audit_sql_finds_the_store_through_the_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    fill(&dir.path().join("trail.duckdb"), 3);
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[audit]\npath = \"trail.duckdb\"\ndurability = \"all\"\n",
    )
    .expect("write config");
    let (code, out, err) = portcullis(&[
        "audit",
        "sql",
        "SELECT count(*) AS n FROM events",
        "--config",
        config.to_str().expect("utf-8"),
        "--format",
        "csv",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "n\n3\n");

    std::fs::write(&config, "[audit]\ndurability = \"sometimes\"\n").expect("write config");
    let (code, _, err) = portcullis(&[
        "audit",
        "verify",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("audit.durability"), "{err}");
}

#[test]
fn replay_prints_a_session_timeline() {
    let (_dir, path) = store();
    fill(&path, 12);
    let (code, out, err) = portcullis(&[
        "audit",
        "replay",
        "s1",
        "--db",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("session s1: postgres app as agent-0 [dev] from 127.0.0.1:50000"),
        "{out}"
    );
    assert!(out.contains("(client closed)"), "{out}");
    assert!(out.contains("  prompt: task 0\n"), "{out}");
    assert!(
        out.contains("query DENIED SELECT id, email FROM users WHERE id = 3\n"),
        "{out}"
    );
    assert!(
        out.contains("rules: sql.no-email; message: email is off limits"),
        "{out}"
    );
    assert!(out.contains("query ALLOWED UPDATE accounts"), "{out}");
    assert!(out.contains("(11 events)"), "{out}");
    let first = out.find("WHERE id = 1\n").expect("statement 1");
    let second = out.find("WHERE id = 2\n").expect("statement 2");
    assert!(first < second, "in seq order");

    let (code, out, _) = portcullis(&[
        "audit",
        "replay",
        "g1",
        "--db",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "ref refs/heads/main {}..{} update",
            "a".repeat(40),
            "b".repeat(40)
        )),
        "{out}"
    );

    let (code, _, err) = portcullis(&[
        "audit",
        "replay",
        "nope",
        "--db",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no session nope"), "{err}");
}

#[test]
fn export_writes_parquet_that_duckdb_reads_back() {
    let (dir, path) = store();
    fill(&path, 40);
    let out_dir = dir.path().join("parquet");
    let (code, out, err) = portcullis(&[
        "audit",
        "export",
        "--parquet",
        out_dir.to_str().expect("utf-8"),
        "--db",
        path.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    let conn = duckdb::Connection::open_in_memory().expect("in-memory DuckDB");
    let read = |table: &str, q: &str| -> String {
        let file = out_dir.join(format!("{table}.parquet"));
        let q = q.replace("{t}", &format!("read_parquet('{}')", file.display()));
        conn.query_row(&q, [], |r| r.get::<_, String>(0))
            .unwrap_or_else(|e| panic!("{q}: {e}"))
    };
    assert_eq!(
        read(
            "events",
            "SELECT count(*) || ' ' || max(seq) || ' ' || min(hash = prev_hash)::VARCHAR FROM {t}"
        ),
        "40 40 false"
    );
    let head = audit::verify(&path).expect("verify").head.expect("head");
    assert_eq!(
        read("events", "SELECT hash FROM {t} ORDER BY seq DESC LIMIT 1"),
        head.hash
    );
    assert_eq!(
        read("ref_updates", "SELECT count(*)::VARCHAR FROM {t}"),
        "2"
    );
    assert_eq!(read("sessions", "SELECT session_id FROM {t}"), "s1");
    assert_eq!(read("approvals", "SELECT state FROM {t}"), "approved");
    assert_eq!(
        read("events", "SELECT typeof(rule_ids) FROM {t} LIMIT 1"),
        "VARCHAR[]"
    );
}

/// The statement the injected failures below single out.
const POISON: &str = "SELECT 'this record cannot be committed'";

fn poisoned(e: &Event) -> bool {
    e.statement.as_deref() == Some(POISON)
}

/// Issue 14: a commit that fails is written again record by record on a reopened
/// store; a record the store still refuses is kept aside whole, the chain holds a note
/// in its place, and the writer goes on for everyone else. (Issue 15: the write was
/// durable in the journal before it went on, so its request was not refused.)
#[test]
fn a_failed_commit_is_retried_record_by_record_and_a_refused_record_is_kept_aside() {
    let (_dir, path) = store();
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            max_delay: Duration::from_secs(60),
            fail_commit_of: Some(poisoned),
            ..options(Durability::Writes)
        },
    )
    .expect("writer starts");
    for i in 0..20 {
        let ticket = audit
            .record_blocking(statement("s", i * 10))
            .expect("queued");
        assert!(!ticket.waits());
    }
    let mut bad = statement("s", 9);
    bad.statement = Some(POISON.into());
    let bad_id = bad.event_id.clone();
    audit
        .record_blocking(bad)
        .expect("queued")
        .wait()
        .expect("durable in the journal");
    // The commit of the whole batch fails, and so does the write's own.
    audit.flush_blocking().expect("the flush is answered");
    assert!(audit.check().is_ok(), "the writer goes on");
    for i in 20..40 {
        let _ = audit
            .record_blocking(statement("s", i * 10))
            .expect("queued");
    }
    audit
        .record_blocking(statement("s", 19))
        .expect("queued")
        .wait()
        .expect("later writes are committed");
    audit.shutdown().expect("shutdown");

    let report = audit::verify(&path).expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 42);
    let rows = sql(
        &path,
        "SELECT seq, kind, decision, statement IS NULL, message FROM events \
         WHERE seq = 21",
    );
    assert_eq!(text(&rows.rows[0][1]), "error");
    assert_eq!(text(&rows.rows[0][2]), "error");
    assert_eq!(text(&rows.rows[0][3]), "true");
    assert!(
        text(&rows.rows[0][4]).contains("could not be stored"),
        "{rows:?}"
    );
    assert_eq!(event_id_at(&path, 21), bad_id);
    // The reads before it were written again, in order, and nothing twice.
    let order = sql(
        &path,
        "SELECT count(DISTINCT event_id), min(seq), max(seq) FROM events",
    );
    assert_eq!(text(&order.rows[0][0]), "42");
    let refused = std::fs::read_to_string(path.with_extension("duckdb.refused"))
        .expect("the refused record is kept beside the store");
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert!(
        refused.contains(POISON) && refused.contains(&bad_id),
        "{refused}"
    );
}

/// When the store cannot even be reopened, the writer stops and every caller hears why.
#[test]
fn a_store_that_cannot_be_reopened_stops_the_writer_and_every_caller_hears_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("store");
    std::fs::create_dir(&folder).expect("folder");
    let path = folder.join("audit.duckdb");
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            fail_commit_of: Some(poisoned),
            ..options(Durability::Writes)
        },
    )
    .expect("writer starts");
    audit
        .record_blocking(statement("s", 9))
        .expect("queued")
        .wait()
        .expect("committed");
    std::fs::remove_dir_all(&folder).expect("the store's folder goes");
    let mut bad = statement("s", 19);
    bad.statement = Some(POISON.into());
    audit
        .record_blocking(bad)
        .expect("queued")
        .wait()
        .expect("durable in the journal, which stays open");
    let err = audit
        .flush_blocking()
        .expect_err("the commit cannot succeed");
    assert!(
        matches!(&err, audit::Error::Failed(reason) if reason.contains("cannot reopen the store")),
        "{err}"
    );
    assert!(matches!(audit.check(), Err(audit::Error::Failed(_))));
    assert!(matches!(
        audit.record_blocking(statement("s", 1)),
        Err(audit::Error::Failed(_))
    ));
    assert!(matches!(audit.shutdown(), Err(audit::Error::Failed(_))));
}

/// A store written before `parameters` existed (schema 1) is migrated when the gateway
/// opens it, and its old events still verify next to new ones that carry parameters.
#[test]
fn a_schema_1_store_gains_parameters_and_still_verifies() {
    let (_dir, path) = store();
    fill(&path, 20);
    tamper(
        &path,
        "ALTER TABLE events DROP COLUMN parameters; \
         UPDATE portcullis_meta SET value = '1' WHERE key = 'schema_version'",
    );
    assert!(audit::verify(&path).expect("verify").broken.is_none());
    let audit = AuditHandle::start(&path, options(Durability::All)).expect("writer starts");
    let mut run = statement("s", 9);
    run.kind = audit::record::kind::EXECUTE.into();
    run.parameters = Some(r#"["1","x"]"#.into());
    audit
        .record_blocking(run)
        .expect("queued")
        .wait()
        .expect("committed");
    audit.shutdown().expect("shutdown");
    let report = audit::verify(&path).expect("verify");
    assert!(report.broken.is_none(), "{:?}", report.broken);
    assert_eq!(report.events, 21);
    let got = sql(&path, "SELECT parameters FROM events WHERE seq = 21");
    assert_eq!(text(&got.rows[0][0]), r#"["1","x"]"#);
    // Editing the values breaks the chain like any other field.
    tamper(
        &path,
        "UPDATE events SET parameters = '[\"2\",\"x\"]' WHERE seq = 21",
    );
    assert_eq!(
        audit::verify(&path).expect("verify").broken.map(|b| b.seq),
        Some(21)
    );
}
