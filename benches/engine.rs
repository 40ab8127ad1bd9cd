//! Parse + facts + evaluation with the default pack, per statement (issue #2's target:
//! ≤ 10 µs median for OLTP statements). Run: `cargo bench --bench engine`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::policy::RuleSet;
use portcullis::policy::value::{Agent, Target};
use portcullis::sql::{Analyzer, SharedShapes, analyze};

/// pgbench's built-in tpcb-like script and its select-only (`-S`) statement.
const PGBENCH: &[(&str, &str)] = &[
    (
        "select_only",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "update_accounts",
        "UPDATE pgbench_accounts SET abalance = abalance + -4052 WHERE aid = 48213;",
    ),
    (
        "update_tellers",
        "UPDATE pgbench_tellers SET tbalance = tbalance + -4052 WHERE tid = 7;",
    ),
    (
        "update_branches",
        "UPDATE pgbench_branches SET bbalance = bbalance + -4052 WHERE bid = 1;",
    ),
    (
        "insert_history",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4052, CURRENT_TIMESTAMP);",
    ),
    (
        "orm_select",
        r#"SELECT "users"."id", "users"."email", "users"."created_at" FROM "users" WHERE "users"."account_id" = $1 AND "users"."deleted_at" IS NULL ORDER BY "users"."created_at" DESC LIMIT $2"#,
    ),
];

fn engine(c: &mut Criterion) {
    let rules = RuleSet::builtin().expect("built-in packs parse");
    let agent = Agent {
        sub: "bench".into(),
        groups: vec!["dev".into()],
        name: None,
    };
    let target = Target { name: "app".into() };

    // Cold: every statement parsed from scratch.
    let mut group = c.benchmark_group("cold");
    for (name, sql) in PGBENCH {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let facts = analyze(black_box(sql));
                black_box(
                    portcullis::gateway::judge_statements(&rules, &facts, &agent, &target).decision,
                )
            })
        });
    }
    group.finish();

    // Warm: what a gateway connection pays once it has seen the statement's shape. The
    // literal changes on every iteration, as pgbench's random account ids do. `warm`
    // finds the facts by the quick key (no tokenizer); `warm_tokenized` the way it did
    // before it, tokenizing and fingerprinting each text.
    for (group_name, quick) in [("warm", true), ("warm_tokenized", false)] {
        let mut group = c.benchmark_group(group_name);
        for (name, sql) in PGBENCH {
            let mut analyzer = Analyzer::default();
            let variants: Vec<String> = (0..64)
                .map(|i| sql.replace("48213", &(48213 + i).to_string()))
                .collect();
            let mut i = 0;
            group.bench_function(*name, |b| {
                b.iter(|| {
                    i = (i + 1) % variants.len();
                    let text = black_box(&variants[i]);
                    let facts = if quick {
                        analyzer.analyze(text)
                    } else {
                        analyzer.analyze_tokenized(text)
                    };
                    black_box(
                        portcullis::gateway::judge_statements(&rules, &facts, &agent, &target)
                            .decision,
                    )
                })
            });
        }
        group.finish();
    }

    // A new session's first statement of a shape another session has read: what an
    // agent that connects for each command pays (compare with `cold`).
    let mut group = c.benchmark_group("first_of_session");
    for (name, sql) in PGBENCH {
        let shared = Arc::new(SharedShapes::new(4096));
        Analyzer::sharing(shared.clone()).analyze(sql);
        let variant = sql.replace("48213", "48214");
        group.bench_function(*name, |b| {
            b.iter(|| {
                let facts = Analyzer::sharing(shared.clone()).analyze(black_box(&variant));
                black_box(
                    portcullis::gateway::judge_statements(&rules, &facts, &agent, &target).decision,
                )
            })
        });
    }
    group.finish();

    // Where the cold time goes: sqlparser alone, for the simplest statement.
    let mut group = c.benchmark_group("sqlparser");
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    group.bench_function("tokenize/select_only", |b| {
        b.iter(|| {
            sqlparser::tokenizer::Tokenizer::new(&dialect, black_box(PGBENCH[0].1))
                .tokenize_with_location()
        })
    });
    group.bench_function("parse_sql/select_only", |b| {
        b.iter(|| sqlparser::parser::Parser::parse_sql(&dialect, black_box(PGBENCH[0].1)))
    });
    group.finish();

    // The whole corpus (adversarial and everyday statements alike), one pass per
    // iteration: criterion's time divided by the case count is the mean per statement.
    let corpus =
        portcullis::cases::load_cases(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"))
            .expect("corpus parses");
    let texts: Vec<String> = corpus.into_iter().map(|c| c.sql).collect();
    let mut group = c.benchmark_group("corpus");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("all_cases", |b| {
        b.iter(|| {
            for sql in &texts {
                let facts = analyze(black_box(sql));
                black_box(
                    portcullis::gateway::judge_statements(&rules, &facts, &agent, &target).decision,
                );
            }
        })
    });
    group.finish();

    // The engine alone, facts already computed: what rules cost on top of parsing.
    let facts = analyze(PGBENCH[0].1);
    c.bench_function("rules_only/select_only", |b| {
        b.iter(|| {
            black_box(
                portcullis::gateway::judge_statements(&rules, black_box(&facts), &agent, &target)
                    .decision,
            )
        })
    });
}

/// A read's audit sample (`pg::results`): the frames of one result observed as they pass
/// and the sample taken at ReadyForQuery, for pgbench's `-S` (one column, one row) and a
/// 100-row, 3-column result (the default `audit.result_rows`).
fn results(c: &mut Criterion) {
    use portcullis::pg::results::Results;
    fn row_description(names: &[&str]) -> Vec<u8> {
        let mut b = (names.len() as u16).to_be_bytes().to_vec();
        for n in names {
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(&[0; 19]);
        }
        b
    }
    fn data_row(values: &[&[u8]]) -> Vec<u8> {
        let mut b = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v);
        }
        b
    }
    let mut group = c.benchmark_group("results");
    let t = row_description(&["abalance"]);
    let d = data_row(&[b"-4052"]);
    let mut r = Results::new(100);
    group.bench_function("select_only", |b| {
        b.iter(|| {
            r.observe(b'T', black_box(&t));
            r.observe(b'D', black_box(&d));
            r.observe(b'C', b"SELECT 1\0");
            black_box(r.take())
        })
    });
    let t = row_description(&["id", "email", "created_at"]);
    let d = data_row(&[b"48213", b"ada@example.com", b"2026-12-06 08:30:00+00"]);
    group.bench_function("rows_100", |b| {
        b.iter(|| {
            r.observe(b'T', black_box(&t));
            for _ in 0..100 {
                r.observe(b'D', black_box(&d));
            }
            r.observe(b'C', b"SELECT 100\0");
            black_box(r.take())
        })
    });
    group.finish();
}

/// A statement's audit event as a session builds it on the hot path (`Recorder::
/// statement_event`: the judged `-S` statement, its shape and outcome; the session's
/// fields shared), and one run of a prepared statement's event (`Pending::execution`).
/// Handing it to the writer is not included.
fn event(c: &mut Criterion) {
    use portcullis::audit::{AuditHandle, WriterOptions};
    use portcullis::gateway::Outcome;
    use portcullis::gateway::record::{Recorder, Stamp, StatementEvent};
    let dir = tempfile::tempdir().expect("temp dir");
    let audit = AuditHandle::start(&dir.path().join("bench.duckdb"), WriterOptions::default())
        .expect("writer starts");
    let recorder = Recorder::new(audit, 100);
    let agent = Agent {
        sub: "agent-7".into(),
        groups: vec!["dev".into(), "oncall".into()],
        name: None,
    };
    let stamp = Stamp::new(
        "5f0c6b1e-1d3a-4c2b-9e8f-0a1b2c3d4e5f",
        "app",
        &agent,
        "127.0.0.1:51234",
    );
    let outcome = Outcome::allowed();
    let statement = PGBENCH[0].1;
    let fingerprint: std::sync::Arc<str> = "0b7d3e41a9c2".into();
    let e = StatementEvent {
        session_id: "5f0c6b1e-1d3a-4c2b-9e8f-0a1b2c3d4e5f",
        target: "app",
        subject: &agent.sub,
        groups: &agent.groups,
        prompt: Some("fix the failing invoice job"),
        kind: "query",
        statement,
        fingerprints: vec![&fingerprint],
        outcome: &outcome,
        rule_ids: Vec::new(),
        monitored: Vec::new(),
        message: None,
        judge_us: 1,
    };
    let mut group = c.benchmark_group("event");
    group.bench_function("statement", |b| {
        b.iter(|| black_box(recorder.statement_event(black_box(&e), &stamp, false)))
    });
    let parsed = recorder
        .statement_event(&e, &stamp, false)
        .expect("a store is configured");
    group.bench_function("execution", |b| {
        b.iter(|| black_box(parsed.execution(black_box(String::from("[\"48213\"]")))))
    });
    group.finish();
}

criterion_group!(benches, engine, results, event);
criterion_main!(benches);
