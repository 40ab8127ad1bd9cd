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
    since: Option<Instant>,
}

/// The catalog cache of one listener, and its connection.
#[derive(Default)]
pub struct Catalog {
    cache: Mutex<Cache>,
    /// Bumped whenever the cache is dropped, so plans built from it are dropped too.
    generation: std::sync::atomic::AtomicU64,
    conn: tokio::sync::Mutex<Option<(UpstreamStream, BytesMut)>>,
}

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

    /// The `column.*` facts of described result columns. `tables` are those the
    /// statement reads or writes: an expression that could carry text (not a number,
    /// boolean or time) counts as coming from every column of them, until the
    /// statement's own lineage is followed, so it is masked as the strictest of them.
    pub async fn columns(
        &self,
        target: &PostgresTarget,
        fields: Vec<Field>,
        tables: &[String],
    ) -> Result<Vec<Column>, Error> {
        let described = self.describe(target, &fields).await?;
        let opaque = |f: &Field, type_name: &str| {
            f.table_oid == 0 && !Masker::is_scalar(type_name) && !tables.is_empty()
        };
        let everything = if fields
            .iter()
            .zip(&described)
            .any(|(f, (_, t, _))| opaque(f, t))
        {
            self.table_columns(target, tables).await?
        } else {
            Vec::new()
        };
        Ok(fields
            .into_iter()
            .zip(described)
            .map(|(f, (source, type_name, view))| {
                // A view column is reported as the view's: its definition is not followed
                // column by column yet, so one that could carry text counts as coming
                // from every base column the view references.
                let through_view = view.filter(|_| !Masker::is_scalar(&type_name));
                let opaque = opaque(&f, &type_name) || through_view.is_some();
                let sources = match through_view {
                    Some(base) => source.into_iter().chain(base).collect(),
                    None if opaque => everything.clone(),
                    None => source.into_iter().collect(),
                };
                Column {
                    derived: f.table_oid == 0,
                    sources,
                    name: f.name,
                    type_name,
                    opaque,
                    detectors: Vec::new(),
                }
            })
            .collect())
    }

    /// Every column of the tables `names` (as statements name them, resolved with the
    /// catalog connection's search_path), as `schema.table.column`.
    pub async fn table_columns(
        &self,
        target: &PostgresTarget,
        names: &[String],
    ) -> Result<Vec<String>, Error> {
        let missing: Vec<&String> = {
            let cache = self.lock();
            names
                .iter()
                .filter(|n| !cache.tables.contains_key(*n))
                .collect()
        };
        if !missing.is_empty() {
            // Names come from the agent's SQL: passed as string literals, quotes doubled
            // (standard_conforming_strings is on, or the session would not be served).
            let list: Vec<String> = missing
                .iter()
                .map(|n| format!("'{}'", n.replace('\'', "''")))
                .collect();
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
            let rows = self.query(target, &sql).await?;
            let mut cache = self.lock();
            cache.since.get_or_insert_with(Instant::now);
            for name in missing {
                cache.tables.entry(name.clone()).or_default();
            }
            for row in rows {
                if let [name, column] = &row[..] {
                    cache
                        .tables
                        .entry(name.clone())
                        .or_default()
                        .push(column.clone());
                }
            }
        }
        let cache = self.lock();
        Ok(names
            .iter()
            .flat_map(|n| cache.tables.get(n).into_iter().flatten().cloned())
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

    /// Runs `sql` on the catalog connection (logging in first if there is none), as text
    /// rows. A failure drops the connection; the next question logs in again.
    async fn query(&self, target: &PostgresTarget, sql: &str) -> Result<Vec<Vec<String>>, Error> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            let session = upstream::connect(
                &target.upstream,
                target.upstream_password.as_deref(),
                &[("application_name".into(), "portcullis-catalog".into())],
            )
            .await?;
            *conn = Some((session.stream, session.leftover));
        }
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
