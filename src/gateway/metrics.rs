//! Counters and latency histograms for `/metrics`, updated as events are recorded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::record::Recorder;

/// Upper bounds (µs) of the latency histograms' buckets.
const BUCKETS_US: [u64; 10] = [5, 10, 25, 50, 100, 250, 1_000, 10_000, 100_000, 1_000_000];

/// The words the gateways count by: decisions and session states.
const LABELS: [&str; 8] = [
    "allowed",
    "denied",
    "review",
    "error",
    "monitored",
    "started",
    "ended",
    "refused",
];

/// One counter per label, lock-free: bumped once per statement on the hot path.
#[derive(Default)]
struct Counters([AtomicU64; LABELS.len()]);

impl Counters {
    fn bump(&self, label: &str) {
        if let Some(i) = LABELS.iter().position(|l| *l == label) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, n) in LABELS.iter().zip(&self.0) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {n}");
            }
        }
    }
}

/// Counters and latency histograms for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    statements: Counters,
    pushes: Counters,
    sessions: Counters,
    /// Per rule: only requests a rule decided take this lock.
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

fn bump_rule(map: &Mutex<BTreeMap<(&'static str, String), u64>>, key: (&'static str, &str)) {
    if let Ok(mut m) = map.lock() {
        *m.entry((key.0, key.1.to_string())).or_default() += 1;
    }
}

impl Metrics {
    pub fn statement(&self, decision: &'static str, rules: &[&str], judge_us: u64) {
        self.statements.bump(decision);
        for r in rules {
            bump_rule(&self.rules, ("sql", r));
        }
        self.judge.observe(judge_us);
    }

    pub fn push(&self, decision: &'static str, rules: &[&str], duration_us: u64) {
        self.pushes.bump(decision);
        for r in rules {
            bump_rule(&self.rules, ("git", r));
        }
        self.push.observe(duration_us);
    }

    pub fn session(&self, state: &'static str) {
        self.sessions.bump(state);
    }

    /// The Prometheus text exposition of every counter, plus the audit writer's.
    pub fn render(&self, recorder: &Recorder) -> String {
        let mut out = String::new();
        self.statements.write(
            &mut out,
            "portcullis_statements_total",
            "SQL statements judged, by decision.",
            "decision",
        );
        self.pushes.write(
            &mut out,
            "portcullis_pushes_total",
            "Git pushes judged, by decision.",
            "decision",
        );
        self.sessions.write(
            &mut out,
            "portcullis_connections_total",
            "PostgreSQL sessions, by state (started, ended, refused).",
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
