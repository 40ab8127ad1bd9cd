//! SQL: query text → statements → facts. Knows no wire protocol and no rules.
//!
//! Every statement of a query string is tokenized, split, fingerprinted and parsed with
//! sqlparser's PostgreSQL dialect; facts come from the AST ([`walk`]). A statement sqlparser
//! cannot read is classified by its leading keywords ([`kind::classify_words`]) and, when
//! those do not settle it, is `unknown`: the `sql.unparsed` rule then fails closed.
//!
//! ```
//! let a = portcullis::sql::analyze("WITH d AS (DELETE FROM users RETURNING *) SELECT 1");
//! let s = &a.statements[0];
//! assert_eq!(s.kind, "select");
//! assert!(s.kinds.contains(&"delete"));
//! assert!(!s.has_where);
//! ```

mod bounds;
mod fallback;
mod fingerprint;
mod fold;
mod ident;
pub mod kind;
pub mod lineage;
mod maintenance;
mod postgres;
#[doc(hidden)]
pub mod quick;
mod reads;
mod shared;
mod split;
mod walk;

use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::policy::Memo;
use crate::policy::value::{List, Record, Records, Value};

pub use bounds::always_true;
pub use reads::{Named, Reads, search_path_set};
pub use shared::SharedShapes;

/// The facts of one statement: what `sql` rules see as `stmt.*`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SqlFacts {
    /// The top-level statement's kind (`select`, `delete`, `explain`, ...).
    pub kind: &'static str,
    /// Every statement kind anywhere inside (CTEs, EXPLAIN ANALYZE, PREPARE, rule actions,
    /// SQL function bodies), the top-level one first.
    pub kinds: Vec<&'static str>,
    pub is_ddl: bool,
    pub is_dml: bool,
    pub drop_kind: Option<String>,
    pub tables_read: Vec<String>,
    pub tables_written: Vec<String>,
    /// Every UPDATE/DELETE/MERGE has a WHERE (true when there are none).
    pub has_where: bool,
    /// Some UPDATE/DELETE/MERGE has a WHERE that holds for every row.
    pub where_always_true: bool,
    pub writes: Vec<Write>,
    pub functions: Vec<String>,
    pub copy_program: bool,
    pub copy_file: bool,
    pub limit: Option<i64>,
    pub statement_count: i64,
    /// 1-based position of this statement in its query string.
    pub index: i64,
    pub text: String,
    /// Shared with the shape cache's copy and the audit event (a cache hit copies
    /// pointers, not text).
    pub fingerprint: std::sync::Arc<str>,
    pub normalized: std::sync::Arc<str>,
    pub parsed: bool,
    pub parse_error: Option<String>,
    pub settings: Vec<String>,
    pub sets: Vec<SetFact>,
    pub temporary: bool,
    pub concurrently: bool,
    pub explain_analyze: bool,
    /// The lock mode a `LOCK` statement takes (`access exclusive` without `IN ... MODE`).
    pub lock_mode: Option<String>,
    /// `VACUUM FULL` (rewrites the table under an exclusive lock).
    pub vacuum_full: bool,
    /// What the upstream's planner said of a write (UPDATE, DELETE, MERGE): `ok`,
    /// `failed` (it could not be asked, or refused the statement), `unseen` (its table is
    /// not visible to the gateway's own connection: a temporary or uncommitted table);
    /// empty (read and shown as `none`) for reads and where nobody asked (offline
    /// `check`).
    #[serde(serialize_with = "estimate_word")]
    pub estimate: &'static str,
    /// The rows the planner expects the write to touch (the largest of its writes').
    pub estimated_rows: Option<i64>,
    /// The planner's size of the written table.
    pub table_rows: Option<i64>,
    /// `estimated_rows` as a percentage of `table_rows` (0 to 100).
    pub estimated_percent: Option<i64>,
    /// Where PostgreSQL's own grammar reads the query string differently from the
    /// gateway (see [`postgres`]): `sql.parser-differential` denies the statement.
    pub disagreement: Option<String>,
    /// sqlparser could not read the statement and its facts come from PostgreSQL's
    /// parse tree instead.
    pub read_by_postgres: bool,
    /// Some fact was read from a literal or parameter value, so statements of the same
    /// shape may differ: not reusable by [`Analyzer`].
    #[serde(skip)]
    pub literal_dependent: bool,
}

/// One UPDATE, DELETE or MERGE found in a statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Write {
    pub kind: &'static str,
    pub table: String,
    pub has_where: bool,
    pub where_always_true: bool,
}

/// One setting changed by SET, RESET or `set_config()`. `value` is lower-cased; `default`
/// for RESET / DEFAULT; `None` when it is not a constant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetFact {
    pub name: String,
    pub value: Option<String>,
    /// The value as written (case kept), for settings the gateway itself reads
    /// (`portcullis.prompt`).
    #[serde(skip)]
    pub raw_value: Option<String>,
}

/// How deep sqlparser may nest (its default is 50; PostgreSQL itself takes far deeper
/// expressions, and sqlparser grows its stack as needed).
const RECURSION_LIMIT: usize = 256;
/// Statements longer than this are not inspected (and so not forwarded).
const MAX_TOKENS: usize = 100_000;
const TOO_LONG: &str = "statement too long to inspect";
/// Stack for PostgreSQL's reading per token (whitespace included) of the longest
/// statement: prost's decoder takes about 16 KiB per nesting level optimized and 35 KiB
/// unoptimized, and one token can open a level.
const PG_STACK_PER_TOKEN: usize = if cfg!(debug_assertions) {
    40 << 10
} else {
    20 << 10
};
/// Beyond this the statement is refused rather than read on a bigger stack (about
/// 50,000 tokens optimized).
const MAX_PG_STACK: usize = 1 << 30;
/// Statements up to this many tokens are analyzed on the caller's stack.
const SMALL_STATEMENT_TOKENS: usize = 400;
/// Stack reserved per token for bigger statements (virtual memory, committed as used).
const STACK_PER_TOKEN: usize = 4096;

/// The statements of one query string.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Analysis {
    pub statements: Vec<SqlFacts>,
}

impl Analysis {
    /// The tables its statements read or write, each once: what the values of its
    /// results may come from. EXPLAIN's rows are a plan, not data, so its tables are
    /// left out.
    pub fn tables_touched(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for s in self.statements.iter().filter(|s| s.kind != "explain") {
            for t in s.tables_read.iter().chain(&s.tables_written) {
                if !tables.contains(t) {
                    tables.push(t.clone());
                }
            }
        }
        tables
    }
}

/// How many `$n` parameter references `sql` holds (0 when it cannot be tokenized).
pub fn parameter_count(sql: &str) -> usize {
    sqlparser::tokenizer::Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map(|tokens| {
            tokens
                .iter()
                .filter(|t| matches!(t, Token::Placeholder(p) if p.starts_with('$')))
                .count()
        })
        .unwrap_or(0)
}

/// Longest statement text [`parse`] reads: deeper ASTs are not walked on a task's stack.
const MAX_PARSE_BYTES: usize = 16 << 10;

/// The statements of `sql` as ASTs, for readers that need more than the facts (result
/// lineage); `None` when it is too long or does not parse.
pub fn parse(sql: &str) -> Option<Vec<sqlparser::ast::Statement>> {
    if sql.len() > MAX_PARSE_BYTES {
        return None;
    }
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(64)
        .try_with_sql(sql)
        .ok()?
        .parse_statements()
        .ok()
}

/// Reads a query string: one [`SqlFacts`] per non-empty statement.
pub fn analyze(sql: &str) -> Analysis {
    analyze_nested(sql, 0)
}

pub(crate) fn analyze_nested(sql: &str, body_depth: usize) -> Analysis {
    analyze_with(sql, body_depth, None, true)
}

/// [`analyze`] without PostgreSQL's second reading: what sqlparser alone makes of `sql`.
/// For measuring the second reader (`benches/parser.rs`); the gateway never judges this.
#[doc(hidden)]
pub fn analyze_sqlparser_only(sql: &str) -> Analysis {
    analyze_with(sql, 0, None, false)
}

/// Reads query strings like [`analyze`], reusing the facts of statements whose shape
/// (the fingerprint's normalized text) it has seen, when none of those facts came from a
/// literal value. Parsing is most of the cost of judging a statement; an application
/// sends the same few shapes with different values.
///
/// # Performance
/// A single statement whose [`quick`] key it has seen costs one pass over the text, a
/// lookup and one clone of the cached facts; any other hit costs tokenizing and
/// fingerprinting the text too. Memory is bounded: at `capacity` shapes both maps are
/// emptied and refilled.
pub struct Analyzer {
    shapes: foldhash::HashMap<String, SqlFacts>,
    /// A [`quick`] key to the shape its texts have (one statement each), and what the
    /// session's rules made of that shape ([`Analyzer::remember`]).
    quick: foldhash::HashMap<String, (String, Option<Memo>)>,
    capacity: usize,
    /// The buffer [`quick`] keys are made in, kept between statements; after a quick
    /// hit it still holds that hit's key.
    key: String,
    /// Whether the last [`Analyzer::analyze`] was a quick hit, and its memo if any.
    last_hit: Option<Option<Memo>>,
    /// Quick keys other analyzers have read, asked when this one's own maps miss.
    shared: Option<Arc<SharedShapes>>,
}

impl Analyzer {
    pub fn new(capacity: usize) -> Analyzer {
        Analyzer {
            shapes: foldhash::HashMap::default(),
            quick: foldhash::HashMap::default(),
            capacity,
            key: String::new(),
            last_hit: None,
            shared: None,
        }
    }

    /// A session's analyzer: its own maps, then what the process's other sessions read
    /// ([`SharedShapes::process`]).
    pub fn for_session() -> Analyzer {
        Analyzer::sharing(SharedShapes::process())
    }

    /// An analyzer that shares quick keys through `shared`.
    pub fn sharing(shared: Arc<SharedShapes>) -> Analyzer {
        Analyzer {
            shared: Some(shared),
            ..Analyzer::default()
        }
    }

    /// As [`Analyzer::analyze`] but never by the [`quick`] key: the tokenizer's path
    /// alone, for testing the key against it.
    #[doc(hidden)]
    pub fn analyze_tokenized(&mut self, sql: &str) -> Analysis {
        analyze_with(sql, 0, Some(self), true)
    }

    pub fn analyze(&mut self, sql: &str) -> Analysis {
        self.last_hit = None;
        if !lexically_plain(sql) {
            return analyze_with(sql, 0, Some(self), true);
        }
        let mut key = std::mem::take(&mut self.key);
        let Some(range) = quick::scan_into(sql, None, &mut key) else {
            self.key = key;
            return analyze_with(sql, 0, Some(self), true);
        };
        if let Some((hit, memo)) = self
            .quick
            .get(&key)
            .and_then(|(s, memo)| Some((self.shapes.get(s)?, *memo)))
        {
            let analysis = one_hit(hit, &sql[range]);
            self.key = key;
            self.last_hit = Some(memo);
            return analysis;
        }
        if let Some((shape, facts)) = self.shared.as_ref().and_then(|s| s.get(&key)) {
            let analysis = one_hit(&facts, &sql[range]);
            self.key.clone_from(&key);
            self.learn(key, shape, facts);
            self.last_hit = Some(None);
            return analysis;
        }
        let (analysis, shapes) = analyze_reading(sql, 0, Some(self), true);
        if let ([facts], [Some(shape)]) = (&analysis.statements[..], &shapes[..])
            && facts.disagreement.is_none()
            && let Some(cached) = self.shapes.get(shape)
        {
            if let Some(shared) = &self.shared {
                shared.insert(&key, shape, cached);
            }
            self.quick.insert(key, (shape.clone(), None));
        } else {
            self.key = key;
        }
        analysis
    }

    /// Takes a quick key another analyzer read into this one's maps.
    fn learn(&mut self, key: String, shape: String, facts: SqlFacts) {
        self.make_room();
        self.shapes.insert(shape.clone(), facts);
        self.quick.insert(key, (shape, None));
    }

    /// What the session's rules remembered of the shape the last [`Analyzer::analyze`]
    /// read by its quick key: `None` when it was not such a hit (then nothing may be
    /// remembered for it), `Some(None)` when nothing is remembered yet.
    pub fn quick_hit(&self) -> Option<Option<Memo>> {
        self.last_hit
    }

    /// Keeps `memo` with the quick key the last [`Analyzer::analyze`] hit; nothing when
    /// it was not a quick hit.
    pub fn remember(&mut self, memo: Memo) {
        if self.last_hit.is_some()
            && let Some((_, kept)) = self.quick.get_mut(&self.key)
        {
            *kept = Some(memo);
            self.last_hit = Some(Some(memo));
        }
    }

    /// Empties both maps when the shapes reach `capacity`, before one more goes in.
    fn make_room(&mut self) {
        if self.shapes.len() >= self.capacity {
            self.shapes.clear();
            self.quick.clear();
        }
    }

    pub fn cached_shapes(&self) -> usize {
        self.shapes.len()
    }

    /// How many [`quick`] keys it knows.
    pub fn quick_keys(&self) -> usize {
        self.quick.len()
    }
}

/// A cached single statement's facts, with its own text.
fn one_hit(cached: &SqlFacts, text: &str) -> Analysis {
    let mut facts = cached.clone();
    facts.text = text.to_string();
    facts.statement_count = 1;
    facts.index = 1;
    Analysis {
        statements: vec![facts],
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(4096)
    }
}

/// Where a statement's facts came from.
enum Reading {
    /// The shape cache, under this shape.
    Cached(String),
    /// Read now; the shape to cache them under, when they may be (`None`: they depend
    /// on a literal).
    Read(Option<String>),
}

fn analyze_with(
    sql: &str,
    body_depth: usize,
    cache: Option<&mut Analyzer>,
    second_reader: bool,
) -> Analysis {
    analyze_reading(sql, body_depth, cache, second_reader).0
}

/// [`analyze_with`], and for each statement the shape its facts are cached under (`None`
/// when they are not).
fn analyze_reading(
    sql: &str,
    body_depth: usize,
    mut cache: Option<&mut Analyzer>,
    second_reader: bool,
) -> (Analysis, Vec<Option<String>>) {
    let pieces = match split::split(sql) {
        Ok(p) => p,
        Err(e) => {
            // The text cannot even be tokenized (an unterminated quote or comment):
            // nothing about it can be trusted.
            let facts = SqlFacts {
                kind: kind::UNKNOWN,
                kinds: vec![kind::UNKNOWN],
                statement_count: 1,
                index: 1,
                text: sql.trim().to_string(),
                parse_error: Some(e),
                has_where: true,
                ..SqlFacts::default()
            };
            return (
                Analysis {
                    statements: vec![facts],
                },
                vec![None],
            );
        }
    };
    let count = pieces.len() as i64;
    let bounds: Vec<(usize, usize)> = pieces.iter().map(|p| (p.start, p.end)).collect();
    let deepest = pieces.iter().map(|p| p.tokens.len()).max().unwrap_or(0);
    let mut statements = Vec::with_capacity(pieces.len());
    let mut readings: Vec<Reading> = Vec::with_capacity(pieces.len());
    let warm = cache.as_deref().filter(|_| lexically_plain(sql));
    for (i, piece) in pieces.into_iter().enumerate() {
        let text = &sql[piece.start..piece.end];
        let (mut facts, reading) = statement(piece.tokens, text, body_depth, warm);
        facts.statement_count = count;
        facts.index = i as i64 + 1;
        statements.push(facts);
        readings.push(reading);
    }
    let too_long = statements.iter().any(|s| {
        s.kind == kind::UNKNOWN
            && s.parse_error
                .as_deref()
                .is_some_and(|e| e.starts_with(TOO_LONG))
    });
    if second_reader && !too_long && readings.iter().any(|r| matches!(r, Reading::Read(_))) {
        // PostgreSQL's tree is decoded and walked recursively, one level per nesting
        // level, and a statement nests at most one level per token (`- - - 1`).
        let need = deepest * PG_STACK_PER_TOKEN;
        if need > MAX_PG_STACK {
            for s in statements.iter_mut().filter(|s| s.parsed) {
                s.disagreement = Some(format!(
                    "too long for PostgreSQL's grammar to be asked ({deepest} tokens)"
                ));
            }
        } else {
            stacker::maybe_grow(need + (64 << 10), need + (1 << 20), || {
                postgres::second_opinion(sql, &bounds, &mut statements)
            });
        }
    }
    let mut shapes = Vec::with_capacity(readings.len());
    for (facts, reading) in statements.iter().zip(readings) {
        let shape = match reading {
            Reading::Cached(shape) => Some(shape),
            Reading::Read(Some(shape)) if facts.disagreement.is_none() => {
                if let Some(cache) = cache.as_deref_mut() {
                    cache.make_room();
                    // Every hit puts its own text in: the cached copy keeps none, so a
                    // hit does not copy a text only to drop it.
                    let cached = SqlFacts {
                        text: String::new(),
                        ..facts.clone()
                    };
                    cache.shapes.insert(shape.clone(), cached);
                }
                Some(shape)
            }
            Reading::Read(_) => None,
        };
        shapes.push(shape);
    }
    (Analysis { statements }, shapes)
}

/// Whether the facts cached for a statement's shape may serve a query string without
/// PostgreSQL's reading: its literals and comments hold nothing on which two lexers have
/// been known to differ (backslashes, carriage returns, form feeds, NUL bytes, dollar
/// quotes, nested comments, Unicode spaces). A literal that splits differently for PostgreSQL would
/// otherwise ride on facts judged for an innocent one of the same shape.
fn lexically_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut comments = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            // NUL: PostgreSQL refuses a text holding one, sqlparser reads past it (the
            // `sql_facts` fuzz target found a NUL riding on an innocent shape's facts).
            b'\\' | b'\r' | 0x0b | 0x0c | 0 => return false,
            b'$' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => return false,
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                comments += 1;
                if comments > 1 {
                    return false;
                }
            }
            _ => {}
        }
    }
    text.is_ascii() || !text.chars().any(|c| !c.is_ascii() && c.is_whitespace())
}

fn statement(
    mut tokens: Vec<sqlparser::tokenizer::TokenWithSpan>,
    text: &str,
    body_depth: usize,
    cache: Option<&Analyzer>,
) -> (SqlFacts, Reading) {
    let (normalized, fingerprint, shape) = fingerprint::fingerprint(&tokens);
    if let Some(hit) = cache.and_then(|c| c.shapes.get(&shape)) {
        let mut facts = hit.clone();
        facts.text = text.to_string();
        return (facts, Reading::Cached(shape));
    }
    // sqlparser has no `WHERE CURRENT OF cursor` (a positioned UPDATE/DELETE: one row).
    // Read the statement without it, then record that the write is bounded.
    let current_of = strip_current_of(&mut tokens);
    let mut facts = SqlFacts {
        text: text.to_string(),
        normalized: normalized.into(),
        fingerprint: fingerprint.into(),
        has_where: true,
        ..SqlFacts::default()
    };
    let significant = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .count();
    if significant > MAX_TOKENS {
        facts.parse_error = Some(format!(
            "{TOO_LONG} ({significant} tokens, at most {MAX_TOKENS})"
        ));
        facts.kind = kind::UNKNOWN;
        facts.kinds = vec![kind::UNKNOWN];
        return (facts, Reading::Read(None));
    }
    let read = move || {
        let mut cacheable = false;
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect)
            .with_recursion_limit(RECURSION_LIMIT)
            .with_tokens_with_locations(tokens);
        let parsed = parser
            .parse_statement()
            .and_then(|stmt| match parser.peek_token().token {
                Token::EOF => Ok(stmt),
                other => Err(sqlparser::parser::ParserError::ParserError(format!(
                    "unexpected {other} after the statement"
                ))),
            });
        match parsed {
            Ok(stmt)
                if current_of
                    && !matches!(
                        stmt,
                        sqlparser::ast::Statement::Update(_) | sqlparser::ast::Statement::Delete(_)
                    ) =>
            {
                facts.parse_error = Some("WHERE CURRENT OF outside UPDATE or DELETE".into());
                fallback::words_only(&mut facts, text, body_depth);
                maintenance::collect(&mut facts, text);
            }
            Ok(stmt) => {
                facts.parsed = true;
                walk::collect(&stmt, &mut facts, body_depth);
                maintenance::collect(&mut facts, text);
                if current_of {
                    for w in &mut facts.writes {
                        w.has_where = true;
                        w.where_always_true = false;
                    }
                    facts.has_where = true;
                    facts.where_always_true = false;
                }
                cacheable = !facts.literal_dependent;
            }
            Err(e) => {
                facts.parse_error = Some(e.to_string());
                fallback::words_only(&mut facts, text, body_depth);
                maintenance::collect(&mut facts, text);
            }
        }
        (facts, Reading::Read(cacheable.then_some(shape)))
    };
    // Long flat expressions (`a AND b AND ...`) become deep trees that every walker after
    // the parser recurses through; give big statements a stack to match. Small ones (all
    // of OLTP) run on the caller's stack.
    if significant > SMALL_STATEMENT_TOKENS {
        stacker::grow(significant * STACK_PER_TOKEN, read)
    } else {
        read()
    }
}

/// Removes a trailing `WHERE CURRENT OF <cursor>` (a WHERE without one is left alone).
fn strip_current_of(tokens: &mut Vec<sqlparser::tokenizer::TokenWithSpan>) -> bool {
    use sqlparser::keywords::Keyword;
    let significant: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .map(|(i, _)| i)
        .collect();
    let [.., w, c, o, name] = significant[..] else {
        return false;
    };
    let kw = |i: usize, k: Keyword| matches!(&tokens[i].token, Token::Word(x) if x.quote_style.is_none() && x.keyword == k);
    let is_where = kw(w, Keyword::WHERE) && kw(c, Keyword::CURRENT) && kw(o, Keyword::OF);
    if !is_where || !matches!(tokens[name].token, Token::Word(_)) {
        return false;
    }
    tokens.truncate(w);
    true
}

impl SqlFacts {
    /// Merges the facts of a statement nested in this one (a SQL function body).
    pub(crate) fn absorb(&mut self, inner: SqlFacts) {
        for k in inner.kinds {
            if !self.kinds.contains(&k) {
                self.kinds.push(k);
            }
        }
        self.is_ddl |= inner.is_ddl;
        self.is_dml |= inner.is_dml;
        self.drop_kind = self.drop_kind.take().or(inner.drop_kind);
        self.copy_program |= inner.copy_program;
        self.copy_file |= inner.copy_file;
        for (mine, theirs) in [
            (&mut self.tables_read, inner.tables_read),
            (&mut self.tables_written, inner.tables_written),
            (&mut self.functions, inner.functions),
            (&mut self.settings, inner.settings),
        ] {
            for v in theirs {
                if !mine.contains(&v) {
                    mine.push(v);
                }
            }
        }
        self.writes.extend(inner.writes);
        self.sets.extend(inner.sets);
        if !self.writes.is_empty() {
            self.has_where = self.writes.iter().all(|w| w.has_where);
            self.where_always_true = self.writes.iter().any(|w| w.where_always_true);
        }
    }
}

fn opt_str(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Null, Value::Str)
}

impl Record for SqlFacts {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "kind" => Value::Str(self.kind),
            "kinds" => Value::List(List::StaticStrs(&self.kinds)),
            "is_ddl" => Value::Bool(self.is_ddl),
            "is_dml" => Value::Bool(self.is_dml),
            "drop_kind" => opt_str(&self.drop_kind),
            "tables_read" => Value::List(List::Strs(&self.tables_read)),
            "tables_written" => Value::List(List::Strs(&self.tables_written)),
            "has_where" => Value::Bool(self.has_where),
            "where_always_true" => Value::Bool(self.where_always_true),
            "writes" => Value::List(List::Records(&self.writes as &dyn Records)),
            "functions" => Value::List(List::Strs(&self.functions)),
            "copy_program" => Value::Bool(self.copy_program),
            "copy_file" => Value::Bool(self.copy_file),
            "limit" => self.limit.map_or(Value::Null, Value::Int),
            "statement_count" => Value::Int(self.statement_count),
            "index" => Value::Int(self.index),
            "text" => Value::Str(&self.text),
            "fingerprint" => Value::Str(&self.fingerprint),
            "normalized" => Value::Str(&self.normalized),
            "parsed" => Value::Bool(self.parsed),
            "settings" => Value::List(List::Strs(&self.settings)),
            "sets" => Value::List(List::Records(&self.sets as &dyn Records)),
            "temporary" => Value::Bool(self.temporary),
            "concurrently" => Value::Bool(self.concurrently),
            "explain_analyze" => Value::Bool(self.explain_analyze),
            "lock_mode" => opt_str(&self.lock_mode),
            "vacuum_full" => Value::Bool(self.vacuum_full),
            "estimate" => Value::Str(if self.estimate.is_empty() {
                "none"
            } else {
                self.estimate
            }),
            "estimated_rows" => self.estimated_rows.map_or(Value::Null, Value::Int),
            "table_rows" => self.table_rows.map_or(Value::Null, Value::Int),
            "estimated_percent" => self.estimated_percent.map_or(Value::Null, Value::Int),
            "disagreement" => opt_str(&self.disagreement),
            "read_by_postgres" => Value::Bool(self.read_by_postgres),
            _ => Value::Null,
        }
    }
}

fn estimate_word<S: serde::Serializer>(word: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if word.is_empty() { "none" } else { word })
}

impl SqlFacts {
    /// Whether the planner is asked about it: an UPDATE, DELETE or MERGE that runs.
    pub fn wants_estimate(&self) -> bool {
        (self.parsed || self.read_by_postgres)
            && self
                .writes
                .iter()
                .any(|w| matches!(w.kind, "update" | "delete" | "merge"))
    }

    /// Sets what the planner estimated: `rows` of `table` rows.
    pub fn estimated(&mut self, rows: i64, table: i64) {
        self.estimate = "ok";
        self.estimated_rows = Some(rows);
        self.table_rows = Some(table);
        self.estimated_percent = Some(if table <= 0 {
            100
        } else {
            (rows.saturating_mul(100) / table).clamp(0, 100)
        });
    }
}

impl Record for Write {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "kind" => Value::Str(self.kind),
            "table" => Value::Str(&self.table),
            "has_where" => Value::Bool(self.has_where),
            "where_always_true" => Value::Bool(self.where_always_true),
            _ => Value::Null,
        }
    }
}

impl Record for SetFact {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "name" => Value::Str(&self.name),
            "value" => opt_str(&self.value),
            _ => Value::Null,
        }
    }
}
