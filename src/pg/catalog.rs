//! What the upstream's catalog says about result columns: the `schema.table.column` a
//! RowDescription's table OID and attribute number name, and a type OID's name. Asked on
//! a connection of the gateway's own, and cached per listener; the cache is dropped after
//! DDL and every [`MAX_AGE`], so a renamed or replaced table is read again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::Error;
use super::frame::split_frame;
use super::messages;
use super::rows::{self, Field};
use super::stream::UpstreamStream;
use super::upstream;
use crate::config::PostgresTarget;
use crate::gateway::mask::{Column, Masker};
use crate::sql::Reads;
use crate::sql::lineage::{self, Lineage};
use std::sync::Arc;

/// How long a cached answer is trusted.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Largest catalog reply read.
const MAX_REPLY: usize = 16 << 20;

/// Built-in types by OID (`pg_type.dat`), so common results need no lookup.
const BUILTIN_TYPES: &[(u32, &str)] = &[
    (16, "bool"),
    (17, "bytea"),
    (18, "char"),
    (19, "name"),
    (20, "int8"),
    (21, "int2"),
    (23, "int4"),
    (25, "text"),
    (26, "oid"),
    (114, "json"),
    (142, "xml"),
    (700, "float4"),
    (701, "float8"),
    (705, "unknown"),
    (1042, "bpchar"),
    (1043, "varchar"),
    (1082, "date"),
    (1083, "time"),
    (1114, "timestamp"),
    (1184, "timestamptz"),
    (1186, "interval"),
    (1700, "numeric"),
    (2950, "uuid"),
    (3802, "jsonb"),
];

#[derive(Default)]
struct Cache {
    sources: HashMap<(u32, i16), String>,
    types: HashMap<u32, String>,
    /// A table as a statement names it → its columns as `schema.table.column` (empty
    /// when the name does not resolve).
    tables: HashMap<String, Vec<String>>,
    /// A view (or materialized view) → every base column its definition references,
    /// through other views too.
    views: HashMap<u32, Vec<String>>,
    /// Relations seen that are not views.
    not_views: std::collections::HashSet<u32>,
    /// Relations by [`lineage::relation_key`] (`None`: no such relation).
    relations: HashMap<String, Option<Arc<Relation>>>,
    /// Function names → whether some function of that name outside the system schemas
    /// is written in SQL or a procedural language (and so may read tables).
    functions: HashMap<String, bool>,
    /// Every column of every user table, for what may come from anywhere.
    everything: Option<Arc<Vec<String>>>,
    since: Option<Instant>,
}

/// A relation as the lineage of a statement over it needs it.
#[derive(Debug)]
struct Relation {
    /// `schema.name`, quoted where needed.
    qualified: String,
    /// Its columns: name, name quoted where needed, and whether the type is scalar.
    columns: Vec<(String, String, bool)>,
    /// A view's definition (not for the system catalog's own views).
    definition: Option<String>,
}

/// Relations whose values are samples of other tables' columns (planner statistics):
/// their non-scalar columns may come from any column of the database.
const STATISTICS: &[&str] = &[
    "pg_catalog.pg_statistic",
    "pg_catalog.pg_stats",
    "pg_catalog.pg_stats_ext",
    "pg_catalog.pg_stats_ext_exprs",
    "pg_catalog.pg_statistic_ext_data",
];

/// Whether `source` (`schema.table.column`) is a sample-value column of a statistics
/// relation.
fn is_statistics(source: &str) -> bool {
    STATISTICS.iter().any(|s| {
        source
            .strip_prefix(s)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A relation's name as cached: names resolve by the search_path they were read with.
fn keyed(search_path: Option<&str>, name: &str) -> String {
    match search_path {
        None => name.to_string(),
        Some(path) => format!("{path}\0{name}"),
    }
}

/// `sql` run with the session's `search_path`, and the catalog connection's own path
/// back after it (on an error the connection is dropped anyway).
fn with_search_path(search_path: Option<&str>, sql: &str) -> String {
    match search_path {
        None => sql.to_string(),
        Some(path) => format!("{}; {sql}; RESET search_path", set_search_path(path, false)),
    }
}

/// Sets `path` as the search_path (for the transaction when `local`) without echoing
/// it: `set_config` answers with the value it set, which is the agent's text, and the
/// questions that follow are read by the shape of their rows.
fn set_search_path(path: &str, local: bool) -> String {
    format!(
        "SELECT pg_catalog.set_config('search_path', {}, {local}) IS NULL",
        literal(path)
    )
}

/// Rows counted, at most, to size a table that has no statistics.
const COUNTED: i64 = 100_000;

/// How long the planner may take to estimate a write.
const ESTIMATE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a write has no estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoEstimate {
    Unseen,
    Failed,
}

/// Why the planner gave no estimate: the written table is not visible here, or anything
/// else.
fn no_estimate(e: Error) -> NoEstimate {
    match e {
        Error::Upstream(m) if m.contains("does not exist") && m.contains("relation") => {
            NoEstimate::Unseen
        }
        _ => NoEstimate::Failed,
    }
}

/// The parts of an `EXPLAIN (FORMAT JSON)` plan the blast radius reads; the rest of
/// each node (VERBOSE's output lists, costs) is skipped unread rather than built.
#[derive(serde::Deserialize)]
struct Explained {
    #[serde(rename = "Plan")]
    plan: PlanNode,
}

#[derive(serde::Deserialize)]
struct PlanNode {
    #[serde(rename = "Node Type", default)]
    node_type: String,
    #[serde(rename = "Schema")]
    schema: Option<String>,
    #[serde(rename = "Relation Name")]
    relation: Option<String>,
    #[serde(rename = "Plan Rows")]
    rows: Option<f64>,
    #[serde(rename = "Operation")]
    operation: Option<String>,
    #[serde(rename = "Plans", default)]
    plans: Vec<PlanNode>,
}

/// The top node of the plan among an EXPLAIN's rows: the one-column row that reads as
/// a plan (others come with it: the search_path's `set_config`, the tables' sizes).
fn plan_of(rows: &[Vec<String>]) -> Option<PlanNode> {
    rows.iter()
        .filter_map(|r| match r.as_slice() {
            [v] => Some(v),
            _ => None,
        })
        .find_map(|v| {
            serde_json::from_str::<Vec<Explained>>(v)
                .ok()?
                .into_iter()
                .next()
        })
        .map(|e| e.plan)
}

/// `; SELECT schema, table, size` of the tables in `written` (names as the facts give
/// them) that have statistics, for the plan's round trip: `to_regclass` resolves each
/// by the session's search_path, and a name that does not resolve, or a table never
/// analysed (whose size is counted), is simply not in the answer and is asked after
/// the plan, by the plan's own names. Names of more than two parts (another
/// database's) are left to that second question too, as `to_regclass` would raise.
fn sizes_by_name(written: &[String]) -> String {
    let mut names: Vec<String> = written
        .iter()
        .filter_map(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return None;
            }
            let name: Vec<String> = parts.iter().map(|p| quote_ident(p)).collect();
            Some(format!(
                "pg_catalog.to_regclass({})",
                literal(&name.join("."))
            ))
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return String::new();
    }
    // No join with pg_namespace: planning it cost more than the round trip it saves.
    // The schema comes as `regnamespace` prints it, quoted where needed.
    format!(
        "; SELECT c.relnamespace::pg_catalog.regnamespace, c.relname, c.reltuples::int8 \
         FROM pg_catalog.pg_class c WHERE c.reltuples >= 0 AND c.oid IN ({})",
        names.join(", ")
    )
}

/// One identifier as PostgreSQL prints it (`public`, `"Sales"`, `"a""b"`), unquoted.
fn unquoted(name: &str) -> std::borrow::Cow<'_, str> {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\"").into(),
        None => name.into(),
    }
}

/// Every ModifyTable node of a plan (a CTE's too): schema, table, and the rows it is
/// fed (the estimate of the scan or join under it).
fn modify_tables(node: PlanNode, out: &mut Vec<(String, String, i64)>) {
    if node.node_type == "ModifyTable"
        && let (Some(schema), Some(table)) = (node.schema, node.relation)
    {
        let rows = node.plans.first().and_then(|p| p.rows).unwrap_or(0.0) as i64;
        out.push((schema, table, rows));
    }
    for child in node.plans {
        modify_tables(child, out);
    }
}

/// A text as an SQL string literal (`'it''s'`): catalog questions carry names from the
/// agent's SQL this way (standard_conforming_strings is on, or the session would not be
/// served).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An identifier quoted for SQL (`"a""b"`).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Views followed inside views, at most.
const MAX_VIEW_DEPTH: usize = 16;

/// The cached relations, as [`lineage::Relations`]: a view's columns come from its
/// definition, read by the same lineage code.
struct Known<'c> {
    relations: &'c HashMap<String, Option<Arc<Relation>>>,
    search_path: Option<&'c str>,
    functions: &'c HashMap<String, bool>,
    depth: std::cell::Cell<usize>,
}

impl lineage::Relations for Known<'_> {
    fn reads_tables(&self, function: &str) -> bool {
        // A function the catalog was not asked about counts as one that may.
        self.functions.get(function).copied().unwrap_or(true)
    }

    fn columns(&self, name: &str) -> Option<Vec<(String, Lineage)>> {
        let rel = self
            .relations
            .get(&keyed(self.search_path, name))?
            .as_ref()?;
        let own = |quoted: &str| format!("{}.{quoted}", rel.qualified);
        let statistics = STATISTICS.contains(&rel.qualified.as_str());
        let traced: Option<Vec<Lineage>> = match &rel.definition {
            Some(def) => {
                if self.depth.get() >= MAX_VIEW_DEPTH {
                    return None;
                }
                self.depth.set(self.depth.get() + 1);
                let out = crate::sql::parse(def)
                    .and_then(|mut v| v.pop())
                    .map(|stmt| lineage::statement(&stmt, self));
                self.depth.set(self.depth.get() - 1);
                match out? {
                    lineage::Rows::Some(out) if out.len() == rel.columns.len() => {
                        Some(out.into_iter().map(|o| o.lineage).collect())
                    }
                    _ => return None,
                }
            }
            None => None,
        };
        Some(
            rel.columns
                .iter()
                .enumerate()
                .map(|(i, (name, quoted, scalar))| {
                    let mut l = Lineage::of(own(quoted));
                    if let Some(t) = &traced {
                        l.sources.extend(t[i].sources.iter().cloned());
                        l.derived = t[i].derived;
                        l.opaque = t[i].opaque;
                    }
                    if statistics && !scalar {
                        l.sources.insert(lineage::EVERYWHERE.into());
                        l.opaque = true;
                    }
                    (name.clone(), l)
                })
                .collect(),
        )
    }
}

/// The catalog cache of one listener, and its connections.
#[derive(Default)]
pub struct Catalog {
    cache: Mutex<Cache>,
    /// Bumped whenever the cache is dropped, so plans built from it are dropped too.
    generation: std::sync::atomic::AtomicU64,
    /// The gateway's own connections to the upstream, opened when first needed: the
    /// first serves while it is free; another opens only when every open one is busy
    /// (sessions writing at once each ask the planner), up to [`CONNECTIONS`].
    conns: [tokio::sync::Mutex<Option<Conn>>; CONNECTIONS],
    /// Where a question waits when every connection is busy, in turn.
    next: std::sync::atomic::AtomicUsize,
}

type Conn = (UpstreamStream, BytesMut);

/// Catalog connections per target, at most.
const CONNECTIONS: usize = 4;

/// A described column's source (`None` for an expression), type name, and, when it
/// comes from a view, the base columns the view references.
pub type Described = (Option<String>, String, Option<Vec<String>>);

impl Catalog {
    /// Drops what is cached (after DDL).
    pub fn forget(&self) {
        *self.lock() = Cache::default();
        self.bump();
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Changes whenever what the catalog said may have changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .expect("the catalog cache lock is never poisoned")
    }

    /// The source and type of each field, asking the upstream for what is not cached.
    pub async fn describe(
        &self,
        target: &PostgresTarget,
        fields: &[Field],
    ) -> Result<Vec<Described>, Error> {
        let (missing_sources, missing_types) = {
            let mut cache = self.lock();
            if cache.since.is_some_and(|t| t.elapsed() > MAX_AGE) {
                *cache = Cache::default();
                self.bump();
            }
            let sources: Vec<(u32, i16)> = fields
                .iter()
                .filter(|f| f.table_oid != 0 && f.column > 0)
                .map(|f| (f.table_oid, f.column))
                .filter(|k| !cache.sources.contains_key(k))
                .collect();
            let types: Vec<u32> = fields
                .iter()
                .map(|f| f.type_oid)
                .filter(|t| builtin(*t).is_none() && !cache.types.contains_key(t))
                .collect();
            (sources, types)
        };
        if !missing_sources.is_empty() || !missing_types.is_empty() {
            self.fetch(target, &missing_sources, &missing_types).await?;
        }
        let views: Vec<u32> = {
            let cache = self.lock();
            let mut v: Vec<u32> = fields
                .iter()
                .map(|f| f.table_oid)
                .filter(|t| *t != 0 && !cache.views.contains_key(t) && !cache.not_views.contains(t))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if !views.is_empty() {
            self.fetch_views(target, &views).await?;
        }
        let cache = self.lock();
        Ok(fields
            .iter()
            .map(|f| {
                let source = cache.sources.get(&(f.table_oid, f.column)).cloned();
                let type_name = builtin(f.type_oid)
                    .map(str::to_string)
                    .or_else(|| cache.types.get(&f.type_oid).cloned())
                    .unwrap_or_else(|| "unknown".into());
                (source, type_name, cache.views.get(&f.table_oid).cloned())
            })
            .collect())
    }

    /// Which of `oids` are views, and the base columns each references (transitively:
    /// a view over a view reaches the tables).
    async fn fetch_views(&self, target: &PostgresTarget, oids: &[u32]) -> Result<(), Error> {
        let list: Vec<String> = oids.iter().map(u32::to_string).collect();
        let list = list.join(",");
        let sql = format!(
            "WITH RECURSIVE deps(view, rel, col) AS ( \
               SELECT r.ev_class, d.refobjid, d.refobjsubid \
               FROM pg_catalog.pg_rewrite r \
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass \
                 AND d.objid = r.oid \
               WHERE r.ev_class::int8 IN ({list}) AND d.refobjid <> r.ev_class \
                 AND d.refobjsubid > 0 \
             UNION \
               SELECT deps.view, d.refobjid, d.refobjsubid \
               FROM deps JOIN pg_catalog.pg_rewrite r ON r.ev_class = deps.rel \
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass \
                 AND d.objid = r.oid \
               WHERE d.refobjid <> r.ev_class AND d.refobjsubid > 0) \
             SELECT 'v', deps.view::int8::text, '0', quote_ident(n.nspname) || '.' || \
               quote_ident(c.relname) || '.' || quote_ident(a.attname) \
             FROM deps JOIN pg_catalog.pg_class c ON c.oid = deps.rel \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = deps.rel AND a.attnum = deps.col \
             UNION ALL \
             SELECT 'k', c.oid::int8::text, '0', c.relkind::text FROM pg_catalog.pg_class c \
             WHERE c.oid::int8 IN ({list})"
        );
        let rows = self.query(target, &sql).await?;
        let mut cache = self.lock();
        for row in rows {
            let [kind, oid, _, value] = &row[..] else {
                continue;
            };
            let Ok(oid) = oid.parse::<u32>() else {
                continue;
            };
            match kind.as_str() {
                "v" => cache.views.entry(oid).or_default().push(value.clone()),
                _ if value == "v" || value == "m" => {
                    cache.views.entry(oid).or_default();
                }
                _ => {
                    cache.not_views.insert(oid);
                }
            }
        }
        Ok(())
    }

    /// The `column.*` facts of described result columns, from the wire (a plain
    /// column's table and number) and from the lineage of the statements in `reads`.
    /// When that lineage cannot be followed, an expression counts as coming from every
    /// column of the tables the statements name, so it is masked as the strictest of
    /// them.
    pub async fn columns(
        &self,
        target: &PostgresTarget,
        fields: Vec<Field>,
        reads: &Reads,
    ) -> Result<Vec<Column>, Error> {
        let described = self.describe(target, &fields).await?;
        // A column the wire gives no origin for: an expression, or a table the catalog
        // cannot see (another session's temporary table).
        let unresolved = |f: &Field, source: &Option<String>| f.table_oid == 0 || source.is_none();
        let needs_lineage = reads.writes
            || fields.iter().zip(&described).any(|(f, (source, _, view))| {
                unresolved(f, source)
                    || view.is_some()
                    || source.as_deref().is_some_and(is_statistics)
            });
        let (traced, reads_anything) = if needs_lineage {
            self.trace(target, reads, &fields).await?
        } else {
            (None, false)
        };
        // Lineage not followed: such a column counts as coming from every column of the
        // statement's tables, and from anywhere when it calls a function that may read
        // tables itself.
        let fallback = if traced.is_none()
            && (reads.writes
                || fields
                    .iter()
                    .zip(&described)
                    .any(|(f, (s, _, _))| unresolved(f, s)))
        {
            let mut all = self
                .table_columns(target, &reads.tables, reads.search_path.as_deref())
                .await?;
            if reads_anything {
                all.push(lineage::EVERYWHERE.into());
            }
            all
        } else {
            Vec::new()
        };
        let mut columns = Vec::with_capacity(fields.len());
        for (i, (f, (source, type_name, view))) in fields.into_iter().zip(described).enumerate() {
            let untraced = reads.writes || unresolved(&f, &source);
            let mut column = Column {
                derived: f.table_oid == 0,
                name: f.name,
                type_name,
                ..Column::default()
            };
            let statistics = source.as_deref().is_some_and(is_statistics)
                && !Masker::is_scalar(&column.type_name);
            match traced.as_ref().map(|t| &t[i]) {
                Some(l) => {
                    column.sources = source.into_iter().collect();
                    for s in &l.sources {
                        if !column.sources.contains(s) {
                            column.sources.push(s.clone());
                        }
                    }
                    column.derived |= l.derived;
                    column.opaque = l.opaque;
                }
                // Lineage not followed: a view column counts as coming from every base
                // column its view references.
                None => match view.filter(|_| !Masker::is_scalar(&column.type_name)) {
                    Some(base) => {
                        column.sources = source.into_iter().chain(base).collect();
                        column.opaque = true;
                    }
                    None if untraced && !fallback.is_empty() => {
                        column.sources = fallback.clone();
                        column.opaque = true;
                    }
                    None => column.sources = source.into_iter().collect(),
                },
            }
            if statistics {
                column.sources.push(lineage::EVERYWHERE.into());
                column.opaque = true;
            }
            if column.sources.iter().any(|s| s == lineage::EVERYWHERE) {
                let all = self.everything(target).await?;
                column.sources.retain(|s| s != lineage::EVERYWHERE);
                column.sources.extend(all.iter().cloned());
            }
            columns.push(column);
        }
        Ok(columns)
    }

    /// The lineage of each described column, from the one statement of `reads` whose
    /// output matches the description (several that match are merged; `None` when it
    /// cannot be told), and whether the statements call a function that may read
    /// tables itself.
    async fn trace(
        &self,
        target: &PostgresTarget,
        reads: &Reads,
        fields: &[Field],
    ) -> Result<(Option<Vec<Lineage>>, bool), Error> {
        if reads.untraced || reads.statements.is_empty() {
            return Ok((None, false));
        }
        let mut statements = Vec::new();
        for text in &reads.statements {
            match crate::sql::parse(text) {
                Some(mut s) if s.len() == 1 => statements.push(s.pop().expect("one")),
                _ => return Ok((None, false)),
            }
        }
        let mut names: Vec<String> = Vec::new();
        let mut calls: Vec<String> = Vec::new();
        for s in &statements {
            for n in lineage::relations_named(s) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            calls.extend(lineage::functions_named(s));
        }
        let path = reads.search_path.as_deref();
        calls.extend(self.relations(target, names, path).await?);
        self.functions(target, calls.clone()).await?;
        let cache = self.lock();
        let known = Known {
            relations: &cache.relations,
            search_path: path,
            functions: &cache.functions,
            depth: std::cell::Cell::new(0),
        };
        let reads_anything = calls
            .iter()
            .any(|c| lineage::Relations::reads_tables(&known, c));
        let mut matched: Option<Vec<Lineage>> = None;
        for s in &statements {
            let out = match lineage::statement(s, &known) {
                lineage::Rows::Some(out) => out,
                lineage::Rows::None => continue,
                lineage::Rows::Unknown => return Ok((None, reads_anything)),
            };
            let fits = out.len() == fields.len()
                && out
                    .iter()
                    .zip(fields)
                    .all(|(o, f)| o.name.as_ref().is_none_or(|n| *n == f.name));
            if !fits {
                continue;
            }
            match &mut matched {
                None => matched = Some(out.into_iter().map(|o| o.lineage).collect()),
                Some(m) => {
                    for (a, o) in m.iter_mut().zip(out) {
                        a.sources.extend(o.lineage.sources);
                        a.derived |= o.lineage.derived;
                        a.opaque |= o.lineage.opaque;
                    }
                }
            }
        }
        Ok((matched, reads_anything))
    }

    /// Asks the catalog about the relations `names` that are not cached, and about the
    /// relations their view definitions name in turn; returns the functions those
    /// definitions call.
    async fn relations(
        &self,
        target: &PostgresTarget,
        mut names: Vec<String>,
        search_path: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        let mut calls = Vec::new();
        for round in 0..=MAX_VIEW_DEPTH {
            // Definitions cached earlier call functions too.
            if round == 0 {
                let cache = self.lock();
                for n in &names {
                    if let Some(Some(rel)) = cache.relations.get(&keyed(search_path, n))
                        && let Some(def) = &rel.definition
                        && let Some(stmt) = crate::sql::parse(def).and_then(|mut v| v.pop())
                    {
                        calls.extend(lineage::functions_named(&stmt));
                    }
                }
            }
            let missing: Vec<String> = {
                let cache = self.lock();
                names
                    .into_iter()
                    .filter(|n| !cache.relations.contains_key(&keyed(search_path, n)))
                    .collect()
            };
            if missing.is_empty() {
                break;
            }
            let list: Vec<String> = missing.iter().map(|n| literal(n)).collect();
            let list = list.join(",");
            let sql = format!(
                "SELECT t.name, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                 a.attname::text, quote_ident(a.attname), ty.typname::text \
                 FROM unnest(ARRAY[{list}]::text[]) WITH ORDINALITY AS t(name, i) \
                 JOIN pg_catalog.pg_class c ON c.oid = to_regclass(t.name) \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                 JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid \
                 WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY t.i, a.attnum; \
                 SELECT t.name, pg_catalog.pg_get_viewdef(c.oid) \
                 FROM unnest(ARRAY[{list}]::text[]) AS t(name) \
                 JOIN pg_catalog.pg_class c ON c.oid = to_regclass(t.name) \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('v', 'm') AND n.nspname <> 'pg_catalog'"
            );
            let rows = self
                .query(target, &with_search_path(search_path, &sql))
                .await?;
            let mut found: HashMap<String, Relation> = HashMap::new();
            names = Vec::new();
            for row in rows {
                match &row[..] {
                    [name, qualified, column, quoted, type_name] => {
                        let rel = found.entry(name.clone()).or_insert_with(|| Relation {
                            qualified: qualified.clone(),
                            columns: Vec::new(),
                            definition: None,
                        });
                        rel.columns.push((
                            column.clone(),
                            quoted.clone(),
                            Masker::is_scalar(type_name),
                        ));
                    }
                    [name, definition] => {
                        if let Some(stmt) = crate::sql::parse(definition).and_then(|mut v| v.pop())
                        {
                            names.extend(lineage::relations_named(&stmt));
                            calls.extend(lineage::functions_named(&stmt));
                        }
                        if let Some(rel) = found.get_mut(name) {
                            rel.definition = Some(definition.clone());
                        }
                    }
                    _ => {}
                }
            }
            let mut cache = self.lock();
            cache.since.get_or_insert_with(Instant::now);
            for name in missing {
                let rel = found.remove(&name).map(Arc::new);
                cache.relations.insert(keyed(search_path, &name), rel);
            }
        }
        Ok(calls)
    }

    /// Whether the statements of `reads` call a function that may read tables itself
    /// (one that cannot be parsed counts as calling one).
    pub async fn calls_readers(
        &self,
        target: &PostgresTarget,
        reads: &Reads,
    ) -> Result<bool, Error> {
        let mut calls = Vec::new();
        for text in &reads.statements {
            match crate::sql::parse(text) {
                Some(stmts) => stmts
                    .iter()
                    .for_each(|s| calls.extend(lineage::functions_named(s))),
                None => return Ok(true),
            }
        }
        if reads.untraced {
            return Ok(true);
        }
        self.functions(target, calls.clone()).await?;
        let cache = self.lock();
        Ok(calls
            .iter()
            .any(|c| cache.functions.get(c).copied().unwrap_or(true)))
    }

    /// The planner's estimate of the rows the write `sql` (one statement) touches, for an
    /// approver: `EXPLAIN` without ANALYZE, in a read-only transaction that is rolled
    /// back, with the session's `search_path`. `None` when it cannot be had.
    pub async fn estimate(
        &self,
        target: &PostgresTarget,
        sql: &str,
        search_path: Option<&str>,
    ) -> Option<String> {
        let explain = with_search_path(search_path, &format!("EXPLAIN (FORMAT JSON) {sql}"));
        let rows = self
            .query(target, &format!("BEGIN READ ONLY; {explain}; ROLLBACK"))
            .await
            .ok()?;
        let mut top = plan_of(&rows)?;
        // A write's top node returns nothing; what it writes comes from below.
        let operation = top.operation.take();
        let node = if top.node_type == "ModifyTable" {
            top.plans.into_iter().next()?
        } else {
            top
        };
        Some(format!(
            "about {} row(s) ({} {})",
            node.rows? as u64,
            operation.as_deref().unwrap_or("write").to_lowercase(),
            match (node.node_type.as_str(), node.relation.as_deref()) {
                ("", _) => String::new(),
                (n, Some(r)) => format!("via {n} on {r}"),
                (n, None) => format!("via {n}"),
            }
        ))
    }

    /// The planner's opinion of the write `sql` (one statement): the rows its largest
    /// write touches and the planner's size of that table. `EXPLAIN` without ANALYZE, in
    /// a read-only transaction with a tight statement timeout that is rolled back, with
    /// the session's `search_path`. `Err(Unseen)` when its table is not visible here
    /// (another session's temporary or uncommitted table), `Err(Failed)` when the
    /// planner could not be asked or refused the statement.
    ///
    /// `written` are the tables the statement names as written: their sizes are asked in
    /// the same round trip as the plan (see [`sizes_by_name`]).
    pub async fn blast_radius(
        &self,
        target: &PostgresTarget,
        sql: &str,
        search_path: Option<&str>,
        written: &[String],
    ) -> Result<(i64, i64), NoEstimate> {
        let explain = with_search_path(
            search_path,
            &format!(
                "EXPLAIN (FORMAT JSON, VERBOSE) {sql}{}",
                sizes_by_name(written)
            ),
        );
        let rows = self
            .read_only(target, &explain)
            .await
            .map_err(no_estimate)?;
        self.weigh(target, &rows).await
    }

    /// As [`Catalog::blast_radius`] for a statement with `$n` parameters, with the values
    /// a Bind gives them: the EXPLAIN goes by the extended protocol with the client's
    /// parameter types (`types`, from its Parse) and values (`parameters`, from its Bind),
    /// so the planner estimates with the values that will run.
    pub async fn blast_radius_bound(
        &self,
        target: &PostgresTarget,
        sql: &str,
        types: &[u8],
        parameters: &[u8],
        search_path: Option<&str>,
        written: &[String],
    ) -> Result<(i64, i64), NoEstimate> {
        let prelude = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{}ms'{}{}",
            ESTIMATE_TIMEOUT.as_millis(),
            search_path
                .map(|p| format!("; {}", set_search_path(p, true)))
                .unwrap_or_default(),
            sizes_by_name(written)
        );
        let mut request = BytesMut::new();
        request.extend_from_slice(&messages::parse_typed(
            &format!("EXPLAIN (FORMAT JSON, VERBOSE) {sql}"),
            types,
        ));
        request.extend_from_slice(&messages::bind_raw(parameters));
        request.extend_from_slice(&messages::execute_and_sync());
        let rows = self
            .query_extended(target, &prelude, &request, "ROLLBACK")
            .await
            .map_err(no_estimate)?;
        self.weigh(target, &rows).await
    }

    /// The rows and table size of the write whose `EXPLAIN (FORMAT JSON, VERBOSE)` rows
    /// these are.
    async fn weigh(
        &self,
        target: &PostgresTarget,
        rows: &[Vec<String>],
    ) -> Result<(i64, i64), NoEstimate> {
        let plan = plan_of(rows).ok_or(NoEstimate::Failed)?;
        let mut writes = Vec::new();
        modify_tables(plan, &mut writes);
        if writes.is_empty() {
            return Err(NoEstimate::Failed);
        }
        // Each written table's size: its statistics when it has been analysed or
        // vacuumed; else counted up to a bound (the planner would guess ten pages for a
        // small table it knows nothing about, which would make every table look big).
        // Sizes that came with the plan are the statistics of the tables the plan
        // writes, matched by the plan's own schema and name; the rest are asked now.
        let known: Vec<(std::borrow::Cow<'_, str>, &str, i64)> = rows
            .iter()
            .filter_map(|r| match r.as_slice() {
                [schema, table, size] => {
                    Some((unquoted(schema), table.as_str(), size.parse().ok()?))
                }
                _ => None,
            })
            .collect();
        let mut sizes: Vec<Option<i64>> = writes
            .iter()
            .map(|(schema, table, _)| {
                known
                    .iter()
                    .find(|k| *k.0 == **schema && k.1 == table)
                    .map(|k| k.2)
            })
            .collect();
        let asked: Vec<String> = writes
            .iter()
            .zip(&sizes)
            .filter(|(_, size)| size.is_none())
            .map(|((schema, table, _), _)| {
                let name = format!("{}.{}", quote_ident(schema), quote_ident(table));
                format!(
                    "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::int8 \
                     ELSE (SELECT count(*) FROM (SELECT 1 FROM {name} LIMIT {COUNTED}) x) END \
                     FROM pg_catalog.pg_class c WHERE c.oid = {}::regclass",
                    literal(&name)
                )
            })
            .collect();
        if !asked.is_empty() {
            let rows = self
                .read_only(target, &asked.join("; "))
                .await
                .map_err(|_| NoEstimate::Failed)?;
            let mut answers = rows
                .iter()
                .filter_map(|r| r.first())
                .filter_map(|v| v.parse::<i64>().ok());
            for size in sizes.iter_mut().filter(|s| s.is_none()) {
                *size = answers.next();
            }
            if answers.next().is_some() {
                return Err(NoEstimate::Failed);
            }
        }
        let sizes: Vec<i64> = sizes
            .into_iter()
            .collect::<Option<_>>()
            .ok_or(NoEstimate::Failed)?;
        // The write that reaches the largest share of its table speaks for the statement.
        writes
            .iter()
            .zip(sizes)
            .map(|((_, _, rows), table)| (*rows, table))
            .max_by_key(|(rows, table)| rows.saturating_mul(1000) / (*table).max(1))
            .ok_or(NoEstimate::Failed)
    }

    /// Asks which of the functions `names` may read tables, for those not cached.
    async fn functions(&self, target: &PostgresTarget, names: Vec<String>) -> Result<(), Error> {
        let mut missing: Vec<String> = {
            let cache = self.lock();
            names
                .into_iter()
                .filter(|n| !cache.functions.contains_key(n))
                .collect()
        };
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = missing.iter().map(|n| literal(n)).collect();
        let sql = format!(
            "SELECT t.name, EXISTS (SELECT 1 FROM pg_catalog.pg_proc p \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
               WHERE p.proname = t.name AND l.lanname NOT IN ('c', 'internal') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema'))::text \
             FROM unnest(ARRAY[{}]::text[]) AS t(name)",
            list.join(",")
        );
        let rows = self.query(target, &sql).await?;
        let mut cache = self.lock();
        cache.since.get_or_insert_with(Instant::now);
        for row in rows {
            if let [name, reads] = &row[..] {
                cache.functions.insert(name.clone(), reads == "true");
            }
        }
        Ok(())
    }

    /// Every column of every table outside the system schemas, as
    /// `schema.table.column`.
    async fn everything(&self, target: &PostgresTarget) -> Result<Arc<Vec<String>>, Error> {
        if let Some(all) = self.lock().everything.clone() {
            return Ok(all);
        }
        let rows = self
            .query(
                target,
                "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || \
                 quote_ident(a.attname) FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'm', 'f') AND a.attnum > 0 \
                 AND NOT a.attisdropped AND n.nspname <> 'information_schema' \
                 AND n.nspname NOT LIKE 'pg\\_%'",
            )
            .await?;
        let all = Arc::new(
            rows.into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect(),
        );
        let mut cache = self.lock();
        cache.since.get_or_insert_with(Instant::now);
        cache.everything = Some(Arc::clone(&all));
        Ok(all)
    }

    /// Every column of the tables `names` (as statements name them, resolved with the
    /// session's `search_path`), as `schema.table.column`.
    pub async fn table_columns(
        &self,
        target: &PostgresTarget,
        names: &[String],
        search_path: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        // More than `schema.table` is not a name to_regclass takes (nor PostgreSQL).
        let names: Vec<&String> = names.iter().filter(|n| n.split('.').count() <= 2).collect();
        let missing: Vec<&String> = {
            let cache = self.lock();
            names
                .iter()
                .copied()
                .filter(|n| !cache.tables.contains_key(&keyed(search_path, n)))
                .collect()
        };
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|n| literal(n)).collect();
            let sql = format!(
                "SELECT t.name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' \
                 || quote_ident(a.attname) \
                 FROM unnest(ARRAY[{}]::text[]) AS t(name) \
                 JOIN pg_catalog.pg_class c ON c.oid = to_regclass(t.name) \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                 WHERE a.attnum > 0 AND NOT a.attisdropped",
                list.join(",")
            );
            let rows = self
                .query(target, &with_search_path(search_path, &sql))
                .await?;
            let mut cache = self.lock();
            cache.since.get_or_insert_with(Instant::now);
            for name in missing {
                cache.tables.entry(keyed(search_path, name)).or_default();
            }
            for row in rows {
                if let [name, column] = &row[..] {
                    cache
                        .tables
                        .entry(keyed(search_path, name))
                        .or_default()
                        .push(column.clone());
                }
            }
        }
        let cache = self.lock();
        Ok(names
            .iter()
            .flat_map(|n| {
                cache
                    .tables
                    .get(&keyed(search_path, n))
                    .into_iter()
                    .flatten()
                    .cloned()
            })
            .collect())
    }

    async fn fetch(
        &self,
        target: &PostgresTarget,
        sources: &[(u32, i16)],
        types: &[u32],
    ) -> Result<(), Error> {
        let mut sql = String::new();
        if !sources.is_empty() {
            let pairs: Vec<String> = sources.iter().map(|(t, c)| format!("({t},{c})")).collect();
            sql.push_str(&format!(
                "SELECT 's', a.attrelid::int8::text, a.attnum::text, \
                 quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || \
                 quote_ident(a.attname) \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE (a.attrelid::int8, a.attnum::int8) IN ({})",
                pairs.join(",")
            ));
        }
        if !types.is_empty() {
            if !sql.is_empty() {
                sql.push_str(" UNION ALL ");
            }
            let oids: Vec<String> = types.iter().map(u32::to_string).collect();
            sql.push_str(&format!(
                "SELECT 't', oid::int8::text, '0', typname::text FROM pg_catalog.pg_type \
                 WHERE oid::int8 IN ({})",
                oids.join(",")
            ));
        }
        let rows = self.query(target, &sql).await?;
        let mut cache = self.lock();
        cache.since.get_or_insert_with(Instant::now);
        for row in rows {
            let [kind, oid, num, name] = &row[..] else {
                continue;
            };
            let (Ok(oid), Ok(num)) = (oid.parse::<u32>(), num.parse::<i16>()) else {
                continue;
            };
            if kind == "s" {
                cache.sources.insert((oid, num), name.clone());
            } else {
                cache.types.insert(oid, name.clone());
            }
        }
        Ok(())
    }

    /// Runs `prelude` (simple protocol), then the extended-protocol `request` (up to its
    /// Sync), then `epilogue`, on the catalog connection; the request's rows, then the
    /// prelude's. A failure drops the connection.
    async fn query_extended(
        &self,
        target: &PostgresTarget,
        prelude: &str,
        request: &[u8],
        epilogue: &str,
    ) -> Result<Vec<Vec<String>>, Error> {
        let mut conn = self.connected(target).await?;
        let (stream, buf) = conn.as_mut().expect("connected above");
        let result = async {
            let mut before = ask(stream, buf, prelude).await?;
            let rows = exchange(stream, buf, request)
                .await
                .map_err(|e| Error::Upstream(format!("catalog: {e}")));
            // The transaction ends whatever the request did.
            ask(stream, buf, epilogue).await?;
            rows.map(|a| {
                let mut rows = a.rows;
                rows.append(&mut before);
                rows
            })
        }
        .await;
        if result.is_err() {
            *conn = None;
        }
        result
    }

    /// `sql` inside a read-only transaction with the estimate's statement timeout, rolled
    /// back.
    async fn read_only(
        &self,
        target: &PostgresTarget,
        sql: &str,
    ) -> Result<Vec<Vec<String>>, Error> {
        let sql = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{}ms'; {sql}; ROLLBACK",
            ESTIMATE_TIMEOUT.as_millis()
        );
        self.query(target, &sql).await
    }

    /// A catalog connection to ask on, logging in first if it has none: a free open
    /// one, else a free slot (a new login), else the next in turn once it is free.
    async fn connected(
        &self,
        target: &PostgresTarget,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>, Error> {
        let mut unopened = None;
        for slot in &self.conns {
            if let Ok(conn) = slot.try_lock() {
                if conn.is_some() {
                    return Ok(conn);
                }
                unopened.get_or_insert(conn);
            }
        }
        let mut conn = match unopened {
            Some(conn) => conn,
            None => {
                let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.conns[turn % CONNECTIONS].lock().await
            }
        };
        if conn.is_none() {
            let session = upstream::connect(
                &target.upstream,
                target.upstream_password.as_deref(),
                &[("application_name".into(), "portcullis-catalog".into())],
            )
            .await?;
            *conn = Some((session.stream, session.leftover));
        }
        Ok(conn)
    }

    /// Runs `sql` on the catalog connection (logging in first if there is none), as text
    /// rows. A failure drops the connection; the next question logs in again.
    async fn query(&self, target: &PostgresTarget, sql: &str) -> Result<Vec<Vec<String>>, Error> {
        let mut conn = self.connected(target).await?;
        let (stream, buf) = conn.as_mut().expect("connected above");
        let result = ask(stream, buf, sql).await;
        if result.is_err() {
            *conn = None;
        }
        result
    }
}

fn builtin(oid: u32) -> Option<&'static str> {
    BUILTIN_TYPES
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| *n)
}

/// What the server answered a request, up to its ReadyForQuery.
#[derive(Default)]
pub struct Answer {
    /// The last RowDescription's fields.
    pub fields: Vec<Field>,
    /// Every DataRow, as text (NULL as empty).
    pub rows: Vec<Vec<String>>,
}

/// Sends `request` on a connection of the gateway's own and reads the answer up to
/// ReadyForQuery; a server error is returned as one.
pub async fn exchange(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    request: &[u8],
) -> Result<Answer, Error> {
    let up = |e: std::io::Error| Error::Upstream(e.to_string());
    stream.write_all(request).await.map_err(up)?;
    stream.flush().await.map_err(up)?;
    let mut answer = Answer::default();
    let mut error = None;
    loop {
        let Some(frame) = split_frame(buf, MAX_REPLY)? else {
            if stream.read_buf(buf).await.map_err(up)? == 0 {
                return Err(Error::Upstream("the upstream closed the connection".into()));
            }
            continue;
        };
        let malformed = || Error::Protocol("malformed reply from the server".into());
        match frame.tag {
            b'T' => answer.fields = rows::row_description(frame.body()).ok_or_else(malformed)?,
            b'D' => {
                let values = rows::data_row(frame.body()).ok_or_else(malformed)?;
                answer.rows.push(
                    values
                        .into_iter()
                        .map(|v| String::from_utf8_lossy(v.unwrap_or_default()).into_owned())
                        .collect(),
                );
            }
            b'E' => error = Some(messages::error_text(frame.body())),
            b'Z' => break,
            _ => {}
        }
    }
    match error {
        Some(text) => Err(Error::Upstream(text)),
        None => Ok(answer),
    }
}

async fn ask(
    stream: &mut UpstreamStream,
    buf: &mut BytesMut,
    sql: &str,
) -> Result<Vec<Vec<String>>, Error> {
    exchange(stream, buf, &messages::query(sql))
        .await
        .map(|a| a.rows)
        .map_err(|e| Error::Upstream(format!("catalog: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_identifier_is_read_back_unquoted() {
        assert_eq!(unquoted("public"), "public");
        assert_eq!(unquoted("\"Sales\""), "Sales");
        assert_eq!(unquoted("\"a\"\"b\""), "a\"b");
    }

    #[test]
    fn sizes_asked_with_the_plan_name_each_table_once_and_only_plain_names() {
        let sql = sizes_by_name(&[
            "big".into(),
            "Sales.orders".into(),
            "it's".into(),
            "big".into(),
            "otherdb.public.t".into(),
            ".x".into(),
        ]);
        assert!(sql.starts_with("; SELECT "), "{sql}");
        assert!(
            sql.ends_with(
                "c.oid IN (pg_catalog.to_regclass('\"Sales\".\"orders\"'), \
                 pg_catalog.to_regclass('\"big\"'), pg_catalog.to_regclass('\"it''s\"'))"
            ),
            "{sql}"
        );
        assert_eq!(sizes_by_name(&["a.b.c".into()]), "");
        assert_eq!(sizes_by_name(&[]), "");
    }
}
