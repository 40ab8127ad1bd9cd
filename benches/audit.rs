//! Audit writer throughput and memory (issue #5's target: ≥ 100,000 events/s sustained,
//! bounded memory). Run: `cargo bench --bench audit` (`AUDIT_BENCH_EVENTS=N` to change
//! the count, default 1,000,000 per mode).
//!
//! Each durability mode runs in a child process of its own, so each peak RSS (`VmHWM`) is
//! that mode's alone:
//!
//! * `async`: 4 producer threads, nothing waits: the writer's raw pace.
//! * `writes`: 64 tokio tasks (sessions), every tenth event a write whose ticket the task
//!   awaits before going on, as a gateway does before sending a write upstream.
//! * `all`: 64 tokio tasks awaiting every ticket.
//! * `writer`: the writer alone: 300,000 events (at most) built before the clock starts,
//!   sent from one thread with nothing waiting.
//!
//! Events/s counts from the first `record` until the last commit (the writer's shutdown).
//!
//! `cargo bench --bench audit -- sessions` measures session rows instead: a store that
//! already holds `AUDIT_BENCH_SESSIONS` sessions (default 200,000), then 2,000 more
//! sessions each way a session's end can reach it, in CPU per session (start and end).

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::audit::{
    AuditHandle, Decision, Durability, Event, Protocol, Record, SessionEnd, SessionStart,
    WriterOptions,
};

fn event(session: &str, i: usize) -> Event {
    let write = i % 10 == 9;
    let mut e = Event::new(
        session,
        Protocol::Postgres,
        "app",
        "query",
        Decision::Allowed,
    );
    e.subject = Some("agent-7".into());
    e.groups = vec!["dev".into(), "oncall".into()].into();
    e.client_addr = Some("127.0.0.1:51234".into());
    e.prompt = Some("fix the failing invoice job".into());
    e.statement = Some(
        if write {
            format!("UPDATE pgbench_accounts SET abalance = abalance + 17 WHERE aid = {i}")
        } else {
            format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i}")
        }
        .into(),
    );
    e.fingerprint = Some(if write { "6f1c2a9e" } else { "0b7d3e41" }.into());
    e.rows = Some(1);
    e.result = (!write).then(|| format!("[[{}]]", i % 5000));
    e.monitored_rules = if i.is_multiple_of(4) {
        vec!["sql.watch-accounts".into()]
    } else {
        Vec::new()
    };
    e.duration_us = Some(85);
    e.must_be_durable = write;
    e
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process has used, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn run(name: &str, n: usize) {
    let writer_only = name == "writer";
    let mode = if writer_only {
        Durability::Async
    } else {
        Durability::parse(name).expect("a durability mode")
    };
    let n = if writer_only { n.min(300_000) } else { n };
    let prebuilt: Vec<Event> = if writer_only {
        (0..n).map(|i| event("session-0", i)).collect()
    } else {
        Vec::new()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.duckdb");
    let audit = AuditHandle::start(
        &path,
        WriterOptions {
            durability: mode,
            ..WriterOptions::default()
        },
    )
    .expect("writer starts");
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    match mode {
        Durability::Async if writer_only => {
            for e in prebuilt {
                let ticket = audit.record_blocking(e).expect("queued");
                ticket.wait().expect("acknowledged");
            }
        }
        Durability::Async => {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let audit = audit.clone();
                    std::thread::spawn(move || {
                        let session = format!("session-{t}");
                        for i in (t..n).step_by(4) {
                            let ticket = audit.record_blocking(event(&session, i)).expect("queued");
                            ticket.wait().expect("acknowledged");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("producer");
            }
        }
        Durability::Writes | Durability::All => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("runtime");
            let tasks = 64;
            let audit = Arc::new(audit.clone());
            runtime.block_on(async {
                let handles: Vec<_> = (0..tasks)
                    .map(|t| {
                        let audit = audit.clone();
                        tokio::spawn(async move {
                            let session = format!("session-{t}");
                            for i in (t..n).step_by(tasks) {
                                let ticket =
                                    audit.record(event(&session, i)).await.expect("queued");
                                ticket.durable().await.expect("durable");
                            }
                        })
                    })
                    .collect();
                for h in handles {
                    h.await.expect("task");
                }
            });
        }
    }
    let stats = audit.stats();
    audit.shutdown().expect("clean shutdown");
    let total = start.elapsed();
    let cpu = cpu_seconds() - cpu_start;
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let writer_peak = peak_rss_kib();
    let check = Instant::now();
    let report = portcullis::audit::verify(&path).expect("verify");
    assert_eq!(report.events as usize, n, "every event written");
    let verify = check.elapsed();
    println!(
        "{:<7} {:>9} events {:>8.2} s {:>10.0} events/s  cpu {:>5.1} us/event  commits {:>6}  peak RSS {:>4} MiB  file {:>4} MiB  verify {:>6.0} events/s, peak RSS {:>4} MiB",
        name,
        n,
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        cpu * 1e6 / n as f64,
        stats.commits,
        writer_peak / 1024,
        size >> 20,
        n as f64 / verify.as_secs_f64().max(1e-9),
        peak_rss_kib() / 1024,
    );
}

fn session_start(id: &str, started_us: i64) -> SessionStart {
    SessionStart {
        session_id: id.into(),
        protocol: Protocol::Postgres,
        target: "app".into(),
        subject: Some("agent-7".into()),
        groups: vec!["dev".into()],
        client_addr: Some("127.0.0.1:51234".into()),
        started_us,
    }
}

fn session_end(id: &str, started_us: Option<i64>, ended_us: i64) -> SessionEnd {
    SessionEnd {
        session_id: id.into(),
        started_us,
        ended_us,
        reason: None,
    }
}

/// Queues a record nobody waits for (`async` acknowledges it at once).
fn queued(audit: &AuditHandle, record: impl Into<Record>) {
    audit
        .record_blocking(record)
        .and_then(|t| t.wait())
        .expect("queued");
}

/// Sessions `from..from + n`, 100 to a commit; `committed_first` commits the starts
/// before the ends arrive (as for any session longer than a batch), and `by_start` says
/// whether the ends know their start time. CPU per session.
fn sessions_round(
    audit: &AuditHandle,
    from: usize,
    n: usize,
    committed_first: bool,
    by_start: bool,
) -> f64 {
    let cpu = cpu_seconds();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(100) {
        for &i in chunk {
            queued(audit, session_start(&format!("s{i}"), i as i64));
        }
        if committed_first {
            audit.flush_blocking().expect("committed");
        }
        for &i in chunk {
            let end = session_end(&format!("s{i}"), by_start.then_some(i as i64), i as i64 + 1);
            queued(audit, end);
        }
        audit.flush_blocking().expect("committed");
    }
    (cpu_seconds() - cpu) * 1e6 / n as f64
}

fn sessions() {
    let existing: usize = std::env::var("AUDIT_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.duckdb");
    let options = WriterOptions {
        durability: Durability::Async,
        ..WriterOptions::default()
    };
    let audit = AuditHandle::start(&path, options).expect("writer starts");
    for i in 0..existing {
        let id = format!("s{i}");
        queued(&audit, session_start(&id, i as i64));
        queued(&audit, session_end(&id, Some(i as i64), i as i64 + 1));
    }
    audit.flush_blocking().expect("committed");
    let n = 2_000;
    let mut from = existing;
    for (label, committed_first, by_start) in [
        ("start and end in one commit", false, true),
        (
            "end after the start's commit, found by start time",
            true,
            true,
        ),
        (
            "end after the start's commit, found by id alone",
            true,
            false,
        ),
    ] {
        let us = sessions_round(&audit, from, n, committed_first, by_start);
        from += n;
        println!("sessions {existing:>9} stored: {label:<50} cpu {us:>8.1} us/session");
    }
    audit.shutdown().expect("clean shutdown");
}

fn main() {
    let n: usize = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    if let Some(mode) = args.next() {
        if mode == "writer" || Durability::parse(&mode).is_some() {
            run(&mode, n);
        } else if mode == "sessions" {
            sessions();
        }
        // Anything else is a cargo bench filter: run nothing, as criterion would.
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for mode in ["writer", "async", "writes", "all"] {
        let status = std::process::Command::new(&exe)
            .arg(mode)
            .status()
            .expect("child runs");
        assert!(status.success(), "{mode} failed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
