//! The admin HTTP server on `server.admin_listen`: `/healthz` and `/metrics` (Prometheus
//! text). Counters live in [`Metrics`], which the [`Recorder`] updates as events pass.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::event::Recorder;

/// Upper bounds (µs) of the latency histograms' buckets.
const BUCKETS_US: [u64; 10] = [5, 10, 25, 50, 100, 250, 1_000, 10_000, 100_000, 1_000_000];

/// Counters and latency histograms for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    statements: Mutex<BTreeMap<&'static str, u64>>,
    pushes: Mutex<BTreeMap<&'static str, u64>>,
    sessions: Mutex<BTreeMap<&'static str, u64>>,
    rules: Mutex<BTreeMap<(&'static str, String), u64>>,
    judge: Histogram,
    push: Histogram,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    if let Ok(mut m) = map.lock() {
        *m.entry(key).or_default() += 1;
    }
}

impl Metrics {
    pub fn statement(&self, decision: &'static str, rules: &[&str], judge_us: u64) {
        bump(&self.statements, decision);
        for r in rules {
            bump(&self.rules, ("sql", r.to_string()));
        }
        self.judge.observe(judge_us);
    }

    pub fn push(&self, decision: &'static str, rules: &[&str], duration_us: u64) {
        bump(&self.pushes, decision);
        for r in rules {
            bump(&self.rules, ("git", r.to_string()));
        }
        self.push.observe(duration_us);
    }

    pub fn session(&self, state: &'static str) {
        bump(&self.sessions, state);
    }

    /// The Prometheus text exposition of every counter, plus the audit writer's.
    pub fn render(&self, recorder: &Recorder) -> String {
        let mut out = String::new();
        let counters = |out: &mut String,
                        name: &str,
                        help: &str,
                        map: &Mutex<BTreeMap<&'static str, u64>>,
                        label: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(m) = map.lock() {
                for (k, v) in m.iter() {
                    let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
                }
            }
        };
        counters(
            &mut out,
            "portcullis_statements_total",
            "SQL statements judged, by decision.",
            &self.statements,
            "decision",
        );
        counters(
            &mut out,
            "portcullis_pushes_total",
            "Git pushes judged, by decision.",
            &self.pushes,
            "decision",
        );
        counters(
            &mut out,
            "portcullis_connections_total",
            "PostgreSQL sessions, by state (started, ended, refused).",
            &self.sessions,
            "state",
        );
        let _ = writeln!(
            out,
            "# HELP portcullis_rule_matches_total Requests decided by each rule.\n# TYPE portcullis_rule_matches_total counter"
        );
        if let Ok(m) = self.rules.lock() {
            for ((subject, rule), v) in m.iter() {
                let _ = writeln!(
                    out,
                    "portcullis_rule_matches_total{{subject=\"{subject}\",rule=\"{rule}\"}} {v}"
                );
            }
        }
        self.judge.write(
            &mut out,
            "portcullis_statement_judge_seconds",
            "Time to parse and judge one query string.",
        );
        self.push.write(
            &mut out,
            "portcullis_push_seconds",
            "Time from a push's first byte to its verdict being recorded.",
        );
        if let Some(stats) = recorder.audit_stats() {
            let _ = writeln!(
                out,
                "# HELP portcullis_audit_queue_depth Records waiting for the audit writer.\n# TYPE portcullis_audit_queue_depth gauge\nportcullis_audit_queue_depth {}",
                stats.queued
            );
            let _ = writeln!(
                out,
                "# HELP portcullis_audit_events_committed_total Events committed to the audit store.\n# TYPE portcullis_audit_events_committed_total counter\nportcullis_audit_events_committed_total {}",
                stats.committed_events
            );
            let _ = writeln!(
                out,
                "# HELP portcullis_audit_commits_total Audit store commits.\n# TYPE portcullis_audit_commits_total counter\nportcullis_audit_commits_total {}",
                stats.commits
            );
        }
        out
    }
}

/// The admin routes.
pub fn router(recorder: Recorder) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(recorder)
}

async fn healthz(State(recorder): State<Recorder>) -> Response {
    match recorder.check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(recorder): State<Recorder>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        recorder.metrics().render(&recorder),
    )
        .into_response()
}
