//! Secret scanning throughput (SPEC "Targets": ≥ 300 MB/s per core) over ~8 MB of
//! source-like text with a few secrets, and over 8 MB of random printable bytes.
//! Run: `cargo bench --bench detectors`. `detectors_build` times compiling the
//! detectors, which the process now does once (`Scanner::shared`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::mask::detectors::Scanner;

const SIZE: usize = 8 * 1024 * 1024;

/// Lines as found in Rust, Python, JSON, YAML and Markdown, including the keywords the
/// prefilter reacts to (`token`, `password`, `secret`) without a secret behind them.
const LINES: &[&str] = &[
    "fn parse_frame(buf: &mut BytesMut) -> Result<Option<Frame>, Error> {",
    "    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;",
    "    if buf.len() < len + 1 { return Ok(None); }",
    "    // The token is validated by the identity module before we get here.",
    "}",
    "def handler(event, context):",
    "    password = os.environ[\"DB_PASSWORD\"]",
    "    rows = cursor.execute(\"SELECT id, email FROM users WHERE id = %s\", (uid,))",
    "    return {\"statusCode\": 200, \"body\": json.dumps(rows)}",
    "{\"id\": 48213, \"name\": \"pgbench_accounts\", \"abalance\": -4052, \"tags\": [\"a\", \"b\"]},",
    "  secret_ref: ${VAULT_SECRET}",
    "  image: registry.example.com/portcullis:0.1.0",
    "Please enter your password to continue; the session token expires after an hour.",
    "import { useState, useEffect } from 'react';",
    "    const [items, setItems] = useState([]);",
    "commit 3f2a9c1d4e5b6a7980f1e2d3c4b5a69788f0e1d2",
    "    assert_eq!(decision.rule_ids(), vec![\"sql.destructive-ddl\"]);",
    "",
];

fn source_like() -> Vec<u8> {
    let secrets = [
        format!("aws_key = \"AKIA{}\"", "Q7".repeat(8)),
        format!("GITHUB = \"ghp_{}\"", "aB3dE6gH9".repeat(4)),
        format!("api_key: \"{}\"", "x9Kq2LmP7vR4tZ8wN3bY"),
    ];
    let mut out = Vec::with_capacity(SIZE + 256);
    let mut n = 0usize;
    while out.len() < SIZE {
        if n % 10_000 == 9_999 {
            out.extend_from_slice(secrets[n / 10_000 % secrets.len()].as_bytes());
        } else {
            out.extend_from_slice(LINES[n % LINES.len()].as_bytes());
        }
        out.push(b'\n');
        n += 1;
    }
    out
}

/// Printable ASCII and newlines from a fixed xorshift, so runs compare.
fn random_printable() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let r = (state % 96) as u8;
            if r == 95 { b'\n' } else { b' ' + r }
        })
        .collect()
}

fn detectors(c: &mut Criterion) {
    let scanner = Scanner::new();
    let mut group = c.benchmark_group("detectors");
    for (name, input) in [
        ("source_like", source_like()),
        ("random_printable", random_printable()),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| b.iter(|| scanner.scan(black_box(&input))));
    }
    group.finish();
    // What each session paid before it shared the process's scanner (issue #15).
    let mut group = c.benchmark_group("detectors_build");
    group.sample_size(20);
    group.bench_function("scanner", |b| b.iter(Scanner::new));
    group.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
