//! Auditors' read-only SQL: `portcullis audit sql`.
//!
//! Two independent guards. First ours: the text must parse (DuckDB dialect) as exactly one
//! query, a `SELECT` or `WITH ... SELECT`, whose relations are the audit tables (or its
//! own CTEs) and which calls no table function and no function that reads files or the
//! network ([`check_read_only`]). Then DuckDB's: the store is opened read-only, with
//! `enable_external_access = false` (no files, no network, no extensions) and
//! `lock_configuration = true` ([`super::Store::open_read_only`]), and the text is
//! prepared as a single statement.

use std::collections::HashSet;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};
use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Visit,
    Visitor,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use super::{Error, Store, schema};

/// Output of `audit sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns with a header, like psql.
    Table,
    /// A JSON array of objects, one per row, keys in column order.
    Json,
    /// RFC 4180 CSV with a header line.
    Csv,
}

/// Views of DuckDB's catalog an auditor may read to discover the schema.
const CATALOG: [&str; 2] = ["information_schema.tables", "information_schema.columns"];

/// Refuses anything but a single read-only query over the audit tables.
///
/// ```
/// use portcullis::audit::check_read_only;
/// assert!(check_read_only("SELECT decision, count(*) FROM events GROUP BY 1").is_ok());
/// assert!(check_read_only("COPY events TO '/tmp/x'").is_err());
/// assert!(check_read_only("SELECT * FROM read_csv('/etc/passwd')").is_err());
/// ```
pub fn check_read_only(sql: &str) -> Result<(), Error> {
    let statements =
        Parser::parse_sql(&DuckDbDialect {}, sql).map_err(|e| Error::Parse(e.to_string()))?;
    let statement = match statements.as_slice() {
        [] => return Err(Error::NotReadOnly("no query".into())),
        [one] => one,
        _ => {
            return Err(Error::NotReadOnly(format!(
                "{} statements; give exactly one query",
                statements.len()
            )));
        }
    };
    if !matches!(statement, Statement::Query(_)) {
        let kind = statement.to_string();
        let kind = kind.split_whitespace().next().unwrap_or("").to_uppercase();
        return Err(Error::NotReadOnly(format!(
            "{kind} is not a query; only SELECT (and WITH ... SELECT) reads the audit store"
        )));
    }
    let mut guard = Guard {
        statements: 0,
        ctes: HashSet::new(),
    };
    match statement.visit(&mut guard) {
        ControlFlow::Break(reason) => Err(Error::NotReadOnly(reason)),
        ControlFlow::Continue(()) => Ok(()),
    }
}

struct Guard {
    statements: usize,
    ctes: HashSet<String>,
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            // DuckDB matches identifiers case-insensitively, quoted or not.
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            ObjectNamePart::Function(f) => f.to_string().to_lowercase(),
        })
        .collect()
}

impl Guard {
    fn relation(&self, name: &ObjectName) -> ControlFlow<String> {
        let parts = parts(name);
        let ok = match parts.as_slice() {
            [t] => schema::TABLES.contains(&t.as_str()) || self.ctes.contains(t),
            [s, t] if s == "main" => schema::TABLES.contains(&t.as_str()),
            _ => CATALOG.contains(&parts.join(".").as_str()),
        };
        if ok {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "{name} is not an audit table (sessions, events, approvals, ref_updates)"
            ))
        }
    }
}

/// Scalar functions that reach outside the store: files, network, the environment.
fn reaches_outside(function: &str) -> bool {
    function.starts_with("read_")
        || function.starts_with("parquet_")
        || function.contains("http")
        || function.contains("s3")
        || matches!(
            function,
            "glob" | "query" | "query_table" | "sniff_csv" | "getenv" | "load_extension"
        )
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<String> {
        self.statements += 1;
        if self.statements > 1 {
            return ControlFlow::Break(format!(
                "a statement inside the query ({}) is not allowed",
                s.to_string().split_whitespace().next().unwrap_or("")
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<String> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        if !q.pipe_operators.is_empty() || q.for_clause.is_some() || !q.locks.is_empty() {
            return ControlFlow::Break("only plain queries are allowed".into());
        }
        match q.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                ControlFlow::Break("data-modifying statements are not allowed".into())
            }
            SetExpr::Table(t) => match &t.table_name {
                Some(name) => {
                    let mut parts = Vec::new();
                    if let Some(s) = &t.schema_name {
                        parts.push(ObjectNamePart::Identifier(s.clone()));
                    }
                    parts.push(ObjectNamePart::Identifier(name.clone()));
                    self.relation(&ObjectName(parts))
                }
                None => ControlFlow::Break("TABLE needs a table name".into()),
            },
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<String> {
        if s.into.is_some() {
            return ControlFlow::Break("SELECT INTO creates a table".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<String> {
        match t {
            TableFactor::Table { name, args, .. } => {
                if args.is_some() {
                    return ControlFlow::Break(format!(
                        "table function {name} is not allowed: only the audit tables can be read"
                    ));
                }
                self.relation(name)
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "{} is not allowed: only the audit tables can be read",
                other
                    .to_string()
                    .split('(')
                    .next()
                    .unwrap_or("this table source")
            )),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<String> {
        if let Expr::Function(f) = e {
            let name = parts(&f.name).join(".");
            let base = name.rsplit('.').next().unwrap_or("");
            if reaches_outside(base) {
                return ControlFlow::Break(format!(
                    "function {} reaches outside the audit store",
                    f.name
                ));
            }
        }
        ControlFlow::Continue(())
    }
}

/// A query's columns and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Checks `sql` and runs it on the store at `path`, opened read-only.
pub fn query(path: &Path, sql: &str) -> Result<QueryResult, Error> {
    check_read_only(sql)?;
    let store = Store::open_read_only(path)?;
    query_connection(store.connection(), sql)
}

/// Runs an already checked query on `conn`.
/// Runs `sql` inside a read-only transaction (rolled back), so that DuckDB itself refuses
/// a write that got past [`check_read_only`].
pub fn read_only(conn: &Connection, sql: &str) -> Result<QueryResult, Error> {
    // The crate's `prepare` runs every statement of a text but the last: text that
    // sqlparser reads as one statement and DuckDB as two would run its first outside
    // any check (a `COMMIT` ends the read-only transaction).
    let n = duckdb_statements(sql)?;
    if n != 1 {
        return Err(Error::NotReadOnly(format!(
            "DuckDB reads {n} statements here; give exactly one query"
        )));
    }
    conn.execute_batch("BEGIN TRANSACTION READ ONLY")
        .map_err(Error::query)?;
    let result = query_connection(conn, sql);
    let _ = conn.execute_batch("ROLLBACK");
    result
}

/// How many statements DuckDB's own parser reads in `sql`, asked of an empty in-memory
/// database (the crate does not expose DuckDB's statement splitter).
fn duckdb_statements(sql: &str) -> Result<usize, Error> {
    use duckdb::ffi;
    let text = std::ffi::CString::new(sql)
        .map_err(|_| Error::NotReadOnly("the query holds a NUL byte".into()))?;
    let unavailable = || Error::Query("DuckDB's parser could not be started".into());
    // SAFETY: every handle is created here, checked before use, and released on every
    // path; `text` outlives the call that reads it.
    unsafe {
        let mut db: ffi::duckdb_database = std::ptr::null_mut();
        if ffi::duckdb_open(std::ptr::null(), &mut db) != ffi::DuckDBSuccess {
            return Err(unavailable());
        }
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
            ffi::duckdb_close(&mut db);
            return Err(unavailable());
        }
        let mut extracted: ffi::duckdb_extracted_statements = std::ptr::null_mut();
        let n = ffi::duckdb_extract_statements(con, text.as_ptr(), &mut extracted);
        let result = if n == 0 {
            let why = ffi::duckdb_extract_statements_error(extracted);
            Err(Error::Parse(if why.is_null() {
                "DuckDB cannot read the query".into()
            } else {
                std::ffi::CStr::from_ptr(why).to_string_lossy().into_owned()
            }))
        } else {
            Ok(n as usize)
        };
        ffi::duckdb_destroy_extracted(&mut extracted);
        ffi::duckdb_disconnect(&mut con);
        ffi::duckdb_close(&mut db);
        result
    }
}

pub fn query_connection(conn: &Connection, sql: &str) -> Result<QueryResult, Error> {
    let mut stmt = conn.prepare(sql).map_err(Error::query)?;
    let mut rows = stmt.query([]).map_err(Error::query)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(Error::query)? {
        let n = row.as_ref().column_count();
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            values.push(row.get::<_, Value>(i).map_err(Error::query)?);
        }
        out.push(values);
    }
    let columns = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    Ok(QueryResult { columns, rows: out })
}

impl QueryResult {
    /// Writes the result in `format`.
    pub fn write(&self, format: Format, out: &mut dyn Write) -> io::Result<()> {
        match format {
            Format::Json => {
                let rows: Vec<serde_json::Value> = self
                    .rows
                    .iter()
                    .map(|row| {
                        serde_json::Value::Object(
                            self.columns
                                .iter()
                                .cloned()
                                .zip(row.iter().map(to_json))
                                .collect(),
                        )
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &rows)?;
                writeln!(out)
            }
            Format::Csv => {
                let line = |cells: Vec<String>| {
                    cells
                        .into_iter()
                        .map(|c| {
                            if c.contains([',', '"', '\n', '\r']) {
                                format!("\"{}\"", c.replace('"', "\"\""))
                            } else {
                                c
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                writeln!(out, "{}", line(self.columns.clone()))?;
                for row in &self.rows {
                    let cells = row
                        .iter()
                        .map(|v| match v {
                            Value::Null => String::new(),
                            v => to_text(v),
                        })
                        .collect();
                    writeln!(out, "{}", line(cells))?;
                }
                Ok(())
            }
            Format::Table => {
                let cells: Vec<Vec<String>> = self
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|v| to_text(v).replace('\n', "\\n"))
                            .collect()
                    })
                    .collect();
                let mut widths: Vec<usize> =
                    self.columns.iter().map(|c| c.chars().count()).collect();
                for row in &cells {
                    for (w, c) in widths.iter_mut().zip(row) {
                        *w = (*w).max(c.chars().count());
                    }
                }
                let pad = |s: &str, w: usize| {
                    format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())))
                };
                let header: Vec<String> = self
                    .columns
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| pad(c, *w))
                    .collect();
                writeln!(out, "{}", header.join(" | ").trim_end())?;
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                writeln!(out, "{}", rule.join("-+-"))?;
                for row in &cells {
                    let line: Vec<String> =
                        row.iter().zip(&widths).map(|(c, w)| pad(c, *w)).collect();
                    writeln!(out, "{}", line.join(" | ").trim_end())?;
                }
                let n = self.rows.len();
                writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })
            }
        }
    }
}

/// A value as JSON: numbers stay numbers, lists arrays, timestamps ISO 8601 text.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::TinyInt(i) => J::from(*i),
        Value::SmallInt(i) => J::from(*i),
        Value::Int(i) => J::from(*i),
        Value::BigInt(i) => J::from(*i),
        Value::UTinyInt(i) => J::from(*i),
        Value::USmallInt(i) => J::from(*i),
        Value::UInt(i) => J::from(*i),
        Value::UBigInt(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Value::Double(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::HugeInt(i) => i64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from),
        Value::UHugeInt(i) => u64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from),
        Value::List(items) | Value::Array(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Struct(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        Value::Union(inner) => to_json(inner),
        other => J::String(to_text(other)),
    }
}

/// A value as text, the way DuckDB prints it (timestamps in UTC).
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::TinyInt(i) => i.to_string(),
        Value::SmallInt(i) => i.to_string(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(i) => i.to_string(),
        Value::HugeInt(i) => i.to_string(),
        Value::UTinyInt(i) => i.to_string(),
        Value::USmallInt(i) => i.to_string(),
        Value::UInt(i) => i.to_string(),
        Value::UBigInt(i) => i.to_string(),
        Value::UHugeInt(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(f) => f.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Text(s) | Value::Enum(s) => s.clone(),
        Value::Blob(b) | Value::Geometry(b) => format!("\\x{}", super::chain::hex(b)),
        Value::Timestamp(unit, t) => timestamp(to_micros(*unit, *t)),
        Value::Date32(days) => {
            let (y, m, d) = civil(i64::from(*days));
            format!("{y:04}-{m:02}-{d:02}")
        }
        Value::Time64(unit, t) => {
            let us = to_micros(*unit, *t);
            let s = us / 1_000_000;
            format!(
                "{:02}:{:02}:{:02}.{:06}",
                s / 3600,
                s / 60 % 60,
                s % 60,
                us % 1_000_000
            )
        }
        Value::Interval {
            months,
            days,
            nanos,
        } => format!("{months} months {days} days {} us", nanos / 1000),
        Value::List(items) | Value::Array(items) => format!(
            "[{}]",
            items.iter().map(to_text).collect::<Vec<_>>().join(", ")
        ),
        Value::Struct(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("'{k}': {}", to_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Map(entries) => format!(
            "{{{}}}",
            entries
                .iter()
                .map(|(k, v)| format!("{}={}", to_text(k), to_text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Union(inner) => to_text(inner),
        other => format!("{other:?}"),
    }
}

fn to_micros(unit: TimeUnit, t: i64) -> i64 {
    match unit {
        TimeUnit::Second => t.saturating_mul(1_000_000),
        TimeUnit::Millisecond => t.saturating_mul(1000),
        TimeUnit::Microsecond => t,
        TimeUnit::Nanosecond => t / 1000,
    }
}

/// `2026-11-27 07:49:01.123456` (UTC) for microseconds since the Unix epoch.
pub fn timestamp(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000);
    let rest = us.rem_euclid(86_400_000_000);
    let (y, m, d) = civil(days);
    let s = rest / 1_000_000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rest % 1_000_000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm (eras of 400 years).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_in_utc() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000000");
        assert_eq!(
            timestamp(1_795_678_141_123_456),
            "2026-11-26 07:29:01.123456"
        );
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(timestamp(951_782_400_000_000), "2000-02-29 00:00:00.000000");
    }

    #[test]
    fn refusals_name_the_reason() {
        for (sql, why) in [
            ("COPY events TO '/tmp/x'", "not a query"),
            ("ATTACH '/tmp/x.db' AS x", "not a query"),
            ("INSTALL httpfs", "not a query"),
            ("LOAD httpfs", "not a query"),
            ("PRAGMA database_list", "not a query"),
            ("SET enable_external_access = true", "not a query"),
            ("CREATE TABLE t AS SELECT 1", "not a query"),
            ("UPDATE events SET statement = 'x'", "not a query"),
            ("SELECT 1; SELECT 2", "2 statements"),
            ("SELECT * FROM read_csv('/etc/passwd')", "table function"),
            (
                "SELECT * FROM events, read_parquet('x.parquet')",
                "table function",
            ),
            ("SELECT * FROM glob('/*')", "table function"),
            ("SELECT * FROM passwords", "not an audit table"),
            ("SELECT * FROM 'data.csv'", "not an audit table"),
            ("SELECT * FROM other.main.events", "not an audit table"),
            ("SELECT getenv('HOME')", "reaches outside"),
            (
                "SELECT * FROM events WHERE statement IN (SELECT * FROM read_text('/etc/passwd'))",
                "table function",
            ),
            (
                "WITH x AS (SELECT * FROM read_json('f')) SELECT * FROM x",
                "table function",
            ),
            ("SELECT * INTO t FROM events", "INTO"),
        ] {
            match check_read_only(sql) {
                Err(Error::NotReadOnly(reason)) | Err(Error::Parse(reason)) => {
                    assert!(reason.contains(why), "{sql}: {reason}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn ordinary_queries_pass() {
        for sql in [
            "SELECT * FROM events",
            "select decision, count(*) from EVENTS group by all order by 2 desc",
            "WITH d AS (SELECT * FROM events WHERE decision = 'denied') SELECT subject, count(*) FROM d GROUP BY 1",
            "SELECT e.statement, r.ref FROM events e JOIN ref_updates r USING (event_id)",
            "SELECT * FROM main.sessions",
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'events'",
            "SELECT list_contains(rule_ids, 'sql.ddl') FROM events",
            "SELECT unnest(rule_ids) AS rule, count(*) FROM events GROUP BY 1",
        ] {
            assert!(
                check_read_only(sql).is_ok(),
                "{sql}: {:?}",
                check_read_only(sql)
            );
        }
    }

    #[test]
    fn a_write_in_the_read_only_transaction_is_refused_by_duckdb() {
        let conn = Connection::open_in_memory().expect("in-memory DuckDB");
        conn.execute_batch("CREATE TABLE events (x int); INSERT INTO events VALUES (1)")
            .expect("setup");
        let reader = conn.try_clone().expect("second connection");
        assert!(super::read_only(&reader, "DELETE FROM events").is_err());
        // Two statements to DuckDB: the first would otherwise run before any check.
        assert!(super::read_only(&reader, "COMMIT; DELETE FROM events").is_err());
        assert_eq!(super::duckdb_statements("SELECT 1; SELECT 2").ok(), Some(2));
        let n = super::read_only(&reader, "SELECT count(*) FROM events").expect("reads");
        assert_eq!(n.rows.len(), 1);
        assert_eq!(
            format!("{:?}", n.rows[0][0]),
            format!("{:?}", duckdb::types::Value::BigInt(1))
        );
    }
}
