//! The second reader measured on PostgreSQL's own regression SQL: how much of what
//! PostgreSQL's grammar accepts the gateway understands, how much of what it rejects the
//! gateway refuses, and what the second reading costs per cold statement.
//!
//! Run: `bash benches/parser.sh` (fetches the SQL from Debian's source package), or
//! `PG_REGRESS_SQL=<dir of *.sql> cargo bench --bench parser`.
//!
//! Statements are split as psql splits them: at semicolons outside quotes, comments and
//! parentheses, at `\g`-style meta-commands; other meta-commands and COPY data are
//! skipped, and statements that use psql variables (`:name`, `:'name'`) are left out,
//! since psql rewrites them before PostgreSQL sees them. PostgreSQL's grammar (libpg_query)
//! is the judge of validity: it is the server's parser, short of the server's later checks.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis::sql::{Analysis, analyze, analyze_sqlparser_only};

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we use.
    let dir = std::env::var_os("PG_REGRESS_SQL").map(PathBuf::from);
    let Some(dir) = dir.filter(|d| d.is_dir()) else {
        eprintln!(
            "parser: set PG_REGRESS_SQL to PostgreSQL's src/test/regress/sql (see benches/parser.sh)"
        );
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read PG_REGRESS_SQL")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut statements = Vec::new();
    let mut interpolated = 0usize;
    for f in &files {
        let text =
            String::from_utf8_lossy(&std::fs::read(f).expect("read a .sql file")).into_owned();
        for s in psql_split(&text) {
            if s.uses_variables {
                interpolated += 1;
            } else {
                statements.push((
                    f.file_name().unwrap().to_string_lossy().into_owned(),
                    s.text,
                ));
            }
        }
    }
    let understood = |a: &Analysis| {
        a.statements
            .iter()
            .all(|s| s.kind != "unknown" && s.disagreement.is_none())
    };
    let (mut valid, mut invalid) = (0usize, 0usize);
    let (mut alone_understood, mut alone_accepts_invalid) = (0usize, 0usize);
    let (mut both_understood, mut both_refuse_invalid) = (0usize, 0usize);
    let mut refused_valid = Vec::new();
    let mut accepted_invalid = Vec::new();
    for (file, sql) in &statements {
        let pg_valid = pg_query::parse(sql).is_ok();
        let alone = analyze_sqlparser_only(sql);
        let both = analyze(sql);
        if pg_valid {
            valid += 1;
            alone_understood += usize::from(alone.statements.iter().all(|s| s.parsed));
            if understood(&both) {
                both_understood += 1;
            } else {
                let why = both
                    .statements
                    .iter()
                    .find_map(|s| s.disagreement.clone().or(s.parse_error.clone()))
                    .unwrap_or_default();
                refused_valid.push((file.clone(), sql.clone(), why));
            }
        } else {
            invalid += 1;
            if alone.statements.iter().all(|s| s.parsed) {
                alone_accepts_invalid += 1;
                accepted_invalid.push((file.clone(), sql.clone(), String::new()));
            }
            both_refuse_invalid += usize::from(!understood(&both));
        }
    }
    let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
    println!(
        "PostgreSQL regression SQL: {} files in {}",
        files.len(),
        dir.display()
    );
    println!(
        "statements: {} ({valid} valid, {invalid} rejected by PostgreSQL's grammar); {interpolated} left out (psql variables)",
        statements.len()
    );
    println!(
        "sqlparser alone:        parses {alone_understood} of {valid} valid ({:.2}%), accepts {alone_accepts_invalid} of {invalid} invalid",
        pct(alone_understood, valid)
    );
    println!(
        "with the second reader: understands {both_understood} of {valid} valid ({:.2}%), refuses {both_refuse_invalid} of {invalid} invalid ({:.2}%)",
        pct(both_understood, valid),
        pct(both_refuse_invalid, invalid)
    );
    // The statements behind the figures, one per line, for reading.
    for (var, list) in [
        ("PARSER_REFUSED_OUT", &refused_valid),
        ("PARSER_ACCEPTED_OUT", &accepted_invalid),
    ] {
        if let Some(path) = std::env::var_os(var) {
            let lines: Vec<String> = list
                .iter()
                .map(|(f, s, why)| format!("{f}\t{why}\t{}", s.replace(['\n', '\t'], " ")))
                .collect();
            std::fs::write(path, lines.join("\n")).expect("write the list");
        }
    }
    // Cost per cold statement: each statement analyzed from scratch (no shape cache),
    // with and without the second reading, several rounds, best round kept.
    let all: Vec<&str> = statements.iter().map(|(_, s)| s.as_str()).collect();
    let short: Vec<&str> = all.iter().copied().filter(|s| s.len() <= 120).collect();
    for (what, set) in [
        ("cold statement, mean over all", &all),
        ("cold statement of at most 120 bytes", &short),
    ] {
        let alone = mean_us(set, analyze_sqlparser_only);
        let both = mean_us(set, analyze);
        println!(
            "{what} ({}): {alone:.1} µs sqlparser alone, {both:.1} µs with the second reader (+{:.1} µs)",
            set.len(),
            both - alone
        );
    }
}

/// Mean time per statement of `f` over `set`, in µs: the best of five rounds.
fn mean_us(set: &[&str], f: fn(&str) -> Analysis) -> f64 {
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            for sql in set {
                black_box(f(sql));
            }
            start.elapsed()
        })
        .min()
        .unwrap_or(Duration::ZERO);
    best.as_secs_f64() * 1e6 / set.len().max(1) as f64
}

struct Split {
    text: String,
    uses_variables: bool,
}

/// Splits a psql script into the statements psql would send.
fn psql_split(script: &str) -> Vec<Split> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut vars = false;
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let mut depth = 0usize;
    let mut at_line_start = true;
    let mut copy_data = false;
    let flush = |buf: &mut String, vars: &mut bool, out: &mut Vec<Split>| {
        let text = buf.trim();
        if !text.is_empty() && !is_only_comments(text) {
            out.push(Split {
                text: text.to_string(),
                uses_variables: *vars,
            });
        }
        buf.clear();
        *vars = false;
    };
    while i < chars.len() {
        let c = chars[i];
        if copy_data {
            // COPY ... FROM stdin: data lines up to `\.`.
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            let line: String = chars[i..end].iter().collect();
            i = end + 1;
            if line.trim_end() == "\\." {
                copy_data = false;
            }
            continue;
        }
        match c {
            '\'' => {
                let escapes = i > 0
                    && matches!(chars[i - 1], 'E' | 'e')
                    && (i < 2 || !chars[i - 2].is_alphanumeric());
                let mut j = i + 1;
                while j < chars.len() {
                    if escapes && chars[j] == '\\' {
                        j += 2;
                        continue;
                    }
                    if chars[j] == '\'' {
                        if chars.get(j + 1) == Some(&'\'') {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                buf.extend(&chars[i..(j + 1).min(chars.len())]);
                i = j + 1;
            }
            '"' => {
                let j = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '"')
                    .map_or(chars.len(), |p| i + 1 + p);
                buf.extend(&chars[i..(j + 1).min(chars.len())]);
                i = j + 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                buf.extend(&chars[i..end]);
                i = end;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let mut nest = 0usize;
                let mut j = i;
                while j < chars.len() {
                    if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                        nest += 1;
                        j += 2;
                    } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                        nest -= 1;
                        j += 2;
                        if nest == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                buf.extend(&chars[i..j.min(chars.len())]);
                i = j;
            }
            '$' if dollar_tag(&chars, i).is_some()
                && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')) =>
            {
                let tag = dollar_tag(&chars, i).unwrap();
                let body_start = i + tag.len();
                let mut j = body_start;
                let mut end = chars.len();
                while j + tag.len() <= chars.len() {
                    if chars[j..j + tag.len()] == tag[..] {
                        end = j + tag.len();
                        break;
                    }
                    j += 1;
                }
                buf.extend(&chars[i..end]);
                i = end;
            }
            '(' => {
                depth += 1;
                buf.push(c);
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                buf.push(c);
                i += 1;
            }
            ';' if depth == 0 => {
                buf.push(';');
                let copy_from_stdin = is_copy_from_stdin(&buf);
                flush(&mut buf, &mut vars, &mut out);
                copy_data = copy_from_stdin;
                i += 1;
                if copy_data {
                    // The data starts on the next line.
                    i = chars[i..]
                        .iter()
                        .position(|&c| c == '\n')
                        .map_or(chars.len(), |p| i + p + 1);
                }
            }
            ':' if chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphabetic() || matches!(n, '\'' | '"' | '{' | '_'))
                && !(i > 0 && chars[i - 1] == ':') =>
            {
                vars = true;
                buf.push(c);
                i += 1;
            }
            '\\' => {
                // A meta-command runs to the end of the line; `\g` and its kin send the
                // buffer.
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let command: String = chars[i + 1..end]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '+')
                    .collect();
                if matches!(
                    command.as_str(),
                    "g" | "gset" | "gx" | "gexec" | "gdesc" | "crosstabview" | "watch" | "bind"
                ) {
                    let bind = command == "bind";
                    vars |= bind;
                    flush(&mut buf, &mut vars, &mut out);
                } else if at_line_start && buf.trim().is_empty() {
                    buf.clear();
                }
                i = end;
            }
            _ => {
                buf.push(c);
                i += 1;
            }
        }
        at_line_start = c == '\n';
    }
    flush(&mut buf, &mut vars, &mut out);
    out
}

fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        if j == i + 1 && chars[j].is_ascii_digit() {
            return None;
        }
        j += 1;
    }
    (chars.get(j) == Some(&'$')).then(|| chars[i..=j].to_vec())
}

fn is_copy_from_stdin(statement: &str) -> bool {
    let lower = strip_comments(statement).to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    words.first() == Some(&"copy")
        && words
            .windows(2)
            .any(|w| w[0] == "from" && w[1].trim_end_matches(';') == "stdin")
}

fn is_only_comments(text: &str) -> bool {
    strip_comments(text)
        .trim()
        .trim_matches(';')
        .trim()
        .is_empty()
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}
