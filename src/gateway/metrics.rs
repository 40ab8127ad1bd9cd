//! Counters and latency histograms for `/metrics`, updated as events are recorded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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

/// Numbers every worker adds to, in stripes: a thread adds to its own stripe (its own
/// cache line) and the exposition sums them. One shared counter per number made each
/// statement's additions bounce a cache line between the cores.
struct Striped<const N: usize>([Stripe<N>; STRIPES]);

const STRIPES: usize = 8;

#[repr(align(128))]
struct Stripe<const N: usize>([AtomicU64; N]);

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Striped(std::array::from_fn(|_| {
            Stripe(std::array::from_fn(|_| AtomicU64::new(0)))
        }))
    }
}

impl<const N: usize> Striped<N> {
    fn add(&self, i: usize, n: u64) {
        thread_local! {
            static MINE: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
            };
        }
        let stripe = MINE.with(|s| *s);
        self.0[stripe].0[i].fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self, i: usize) -> u64 {
        self.0.iter().map(|s| s.0[i].load(Ordering::Relaxed)).sum()
    }
}

/// One counter per label, lock-free: bumped once per statement on the hot path.
#[derive(Default)]
struct Counters(Striped<{ LABELS.len() }>);

impl Counters {
    fn bump(&self, label: &str) {
        if let Some(i) = LABELS.iter().position(|l| *l == label) {
            self.0.add(i, 1);
        }
    }

    fn write(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (i, l) in LABELS.iter().enumerate() {
            let n = self.0.sum(i);
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

/// Each observation lands in one bucket, its own, and the exposition adds them up into
/// Prometheus's cumulative buckets: an observation is three additions to the thread's
/// stripe, not one per bucket it falls under.
#[derive(Default)]
struct Histogram(Striped<{ BUCKETS_US.len() + 2 }>);

const COUNT: usize = BUCKETS_US.len();
const SUM_US: usize = BUCKETS_US.len() + 1;

impl Histogram {
    fn observe(&self, us: u64) {
        if let Some(i) = BUCKETS_US.iter().position(|bound| us <= *bound) {
            self.0.add(i, 1);
        }
        self.0.add(COUNT, 1);
        self.0.add(SUM_US, us);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        // Others may observe while this reads: each line is a running total, so no
        // bucket shows less than the one before it, and `+Inf` no less than the last.
        let mut below = 0;
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            below += self.0.sum(i);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {below}");
        }
        let count = self.0.sum(COUNT).max(below);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.0.sum(SUM_US) as f64 / 1e6;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_exposed_with_cumulative_buckets() {
        let h = Histogram::default();
        for us in [1, 5, 6, 30, 2_000_000] {
            h.observe(us);
        }
        let mut out = String::new();
        h.write(&mut out, "judge_seconds", "help");
        let buckets: Vec<&str> = out.lines().filter(|l| l.contains("_bucket")).collect();
        assert_eq!(
            buckets,
            [
                "judge_seconds_bucket{le=\"0.000005\"} 2",
                "judge_seconds_bucket{le=\"0.00001\"} 3",
                "judge_seconds_bucket{le=\"0.000025\"} 3",
                "judge_seconds_bucket{le=\"0.00005\"} 4",
                "judge_seconds_bucket{le=\"0.0001\"} 4",
                "judge_seconds_bucket{le=\"0.00025\"} 4",
                "judge_seconds_bucket{le=\"0.001\"} 4",
                "judge_seconds_bucket{le=\"0.01\"} 4",
                "judge_seconds_bucket{le=\"0.1\"} 4",
                "judge_seconds_bucket{le=\"1\"} 4",
                "judge_seconds_bucket{le=\"+Inf\"} 5",
            ]
        );
        assert!(
            out.contains("judge_seconds_sum 2.000042\njudge_seconds_count 5"),
            "{out}"
        );
    }

    #[test]
    fn what_many_threads_count_is_counted_once_each() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.statement("allowed", &[], 7);
                    }
                    m.session("started");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut out = String::new();
        m.statements
            .write(&mut out, "statements", "help", "decision");
        m.sessions.write(&mut out, "sessions", "help", "state");
        m.judge.write(&mut out, "judge", "help");
        for line in [
            "statements{decision=\"allowed\"} 12000",
            "sessions{state=\"started\"} 12",
            "judge_bucket{le=\"0.000005\"} 0",
            "judge_bucket{le=\"0.00001\"} 12000",
            "judge_bucket{le=\"+Inf\"} 12000",
            "judge_sum 0.084",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
    }
}
