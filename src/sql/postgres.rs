//! PostgreSQL's own grammar (libpg_query, through the `pg_query` crate) as a second reader.
//!
//! Where two parsers read one string differently, an attacker can write SQL that means one
//! thing to the gateway and another to the server. So every query string with a statement
//! whose shape is not cached is read by both; they must agree on where statements begin and
//! end, on each statement's kind, and on the statements and function calls nested inside,
//! or the statement carries a [`SqlFacts::disagreement`] (`sql.parser-differential` denies
//! it). A string PostgreSQL's grammar rejects is never forwarded. A statement sqlparser
//! cannot read but PostgreSQL can is classified from PostgreSQL's parse tree.
//!
//! The tree is walked through its serde form, which covers every node type (the crate's
//! own node iterator skips some), so a statement nested anywhere is seen.

use pg_query::protobuf::{self, ObjectType};
use serde_json::{Map, Value};

use super::{SetFact, SqlFacts, Write, kind};

/// Statement kinds whose presence anywhere inside must be seen by both readers: what the
/// default pack's rules turn on.
const WATCHED: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "truncate",
    "copy",
    "drop",
    "do",
    "call",
    "grant",
    "revoke",
    "create_role",
    "alter_role",
    "alter_system",
];

/// Functions sqlparser reads as syntax of its own (so its walker names no function) while
/// PostgreSQL's grammar makes them plain calls.
/// `similar_to_escape` and `like_escape` are what the grammar makes of `SIMILAR TO` and of
/// `LIKE ... ESCAPE`.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "ceil",
    "ceiling",
    "floor",
    "similar_to_escape",
    "like_escape",
];

/// What PostgreSQL's grammar read in one statement.
#[derive(Debug, Default)]
pub struct Reading {
    /// Byte range of the statement in the query string, as PostgreSQL delimits it (it may
    /// include the whitespace and comments before the first token).
    start: usize,
    end: usize,
    /// The top-level kind in the gateway's vocabulary; `None` for statements both readers
    /// may name differently (the gateway's `other`).
    kind: Option<&'static str>,
    facts: SqlFacts,
}

/// Reads `sql` with PostgreSQL's grammar: one [`Reading`] per statement, or PostgreSQL's
/// error message.
pub fn read(sql: &str) -> Result<Vec<Reading>, String> {
    let tree = pg_query::parse(sql).map_err(|e| match e {
        pg_query::Error::Parse(m) => m,
        other => other.to_string(),
    })?;
    let mut readings = Vec::with_capacity(tree.protobuf.stmts.len());
    for raw in &tree.protobuf.stmts {
        let start = usize::try_from(raw.stmt_location).unwrap_or(0);
        let end = match usize::try_from(raw.stmt_len) {
            Ok(0) | Err(_) => sql.len(),
            Ok(len) => (start + len).min(sql.len()),
        };
        let Some(node) = raw.stmt.as_ref() else {
            continue;
        };
        let value = serde_json::to_value(node).map_err(|e| e.to_string())?;
        let mut walk = Walk::default();
        walk.node(&value, Scope::default());
        let kind = walk.top;
        let mut facts = walk.facts;
        facts.kind = kind.unwrap_or("other");
        if facts.kinds.first() != Some(&facts.kind) {
            facts.kinds.retain(|k| *k != facts.kind);
            facts.kinds.insert(0, facts.kind);
        }
        readings.push(Reading {
            start,
            end,
            kind,
            facts,
        });
    }
    Ok(readings)
}

/// Compares PostgreSQL's reading of `sql` with the gateway's `statements` (whose text
/// spans are `bounds`), recording any disagreement on the statements, and classifies from
/// PostgreSQL's tree the statements sqlparser could not read.
pub fn second_opinion(sql: &str, bounds: &[(usize, usize)], statements: &mut [SqlFacts]) {
    let readings = match read(sql) {
        Ok(r) => r,
        Err(message) => {
            // Which statements PostgreSQL rejects: those sqlparser read are denied; those
            // neither reads are `unknown`, for `sql.unparsed` to judge.
            let one = statements.len() == 1;
            for s in statements.iter_mut() {
                if !one && read(&s.text).is_ok() {
                    continue;
                }
                if s.parsed {
                    s.disagreement = Some(format!("PostgreSQL's grammar rejects it: {message}"));
                } else {
                    // Its leading words named a kind, but PostgreSQL cannot read it:
                    // nothing the rules could judge it by can be trusted.
                    s.kind = kind::UNKNOWN;
                    if !s.kinds.contains(&kind::UNKNOWN) {
                        s.kinds.insert(0, kind::UNKNOWN);
                    }
                }
            }
            return;
        }
    };
    let aligned = readings.len() == bounds.len()
        && readings
            .iter()
            .zip(bounds)
            .all(|(r, &(start, end))| r.start <= start && end <= r.end);
    if !aligned {
        let why = format!(
            "PostgreSQL splits the query into {} statement(s) where the gateway reads {}",
            readings.len(),
            bounds.len()
        );
        for s in statements.iter_mut() {
            s.disagreement = Some(why.clone());
        }
        return;
    }
    for (ours, theirs) in statements.iter_mut().zip(readings) {
        if ours.parsed {
            ours.disagreement = disagreement(ours, &theirs);
        } else if ours.parse_error.is_some() {
            adopt(ours, theirs);
        }
    }
}

/// Where the two readings of one statement differ in what the rules turn on.
fn disagreement(ours: &SqlFacts, theirs: &Reading) -> Option<String> {
    if let Some(k) = theirs.kind
        && !same_kind(ours.kind, k)
    {
        return Some(format!(
            "PostgreSQL reads a {k} statement where the gateway reads {}",
            ours.kind
        ));
    }
    if let Some(k) = theirs
        .facts
        .kinds
        .iter()
        .find(|k| WATCHED.contains(k) && !ours.kinds.contains(k))
    {
        return Some(format!(
            "PostgreSQL reads a {k} inside the statement that the gateway does not see"
        ));
    }
    let known = |f: &str| {
        SYNTAX_FUNCTIONS.contains(&f)
            || ours
                .functions
                .iter()
                .any(|o| base(o).eq_ignore_ascii_case(f))
    };
    if let Some(f) = theirs.facts.functions.iter().find(|f| !known(base(f))) {
        return Some(format!(
            "PostgreSQL reads a call of {f} that the gateway does not see"
        ));
    }
    None
}

fn base(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

/// Kinds both readers may name differently for one statement.
fn same_kind(ours: &str, theirs: &str) -> bool {
    ours == theirs
        || matches!(
            (ours, theirs),
            // sqlparser reads `ROLLBACK PREPARED` and the like by their first word.
            ("rollback", "rollback_prepared")
                | ("commit", "commit_prepared")
                | ("prepare", "prepare_transaction")
                // `CREATE TABLE ... AS` and `SELECT ... INTO`.
                | ("select", "create_table")
                | ("create_table", "create_view")
        )
}

/// Takes PostgreSQL's facts for a statement sqlparser could not read, keeping the text,
/// fingerprint and position the gateway computed.
fn adopt(ours: &mut SqlFacts, theirs: Reading) {
    let mut facts = theirs.facts;
    let mut fallback = std::mem::take(ours);
    facts.text = std::mem::take(&mut fallback.text);
    facts.fingerprint = std::mem::take(&mut fallback.fingerprint);
    facts.normalized = std::mem::take(&mut fallback.normalized);
    facts.parse_error = fallback.parse_error.take();
    facts.statement_count = fallback.statement_count;
    facts.index = fallback.index;
    facts.read_by_postgres = true;
    // Statements in this form differ in what their literals say (routine bodies, settings).
    facts.literal_dependent = true;
    // What the gateway's own reading by words found stays (a `LANGUAGE sql` body read as
    // SQL, lock modes, settings): the union is the stricter reading. Its kind by words is
    // PostgreSQL's now.
    fallback
        .kinds
        .retain(|k| *k != kind::UNKNOWN && *k != fallback.kind);
    if fallback.kind == kind::UNKNOWN {
        // Writes guessed from words: PostgreSQL's tree says which there are.
        fallback.writes.clear();
    }
    let (lock_mode, vacuum_full, concurrently) = (
        fallback.lock_mode.take(),
        fallback.vacuum_full,
        fallback.concurrently,
    );
    let sets = std::mem::take(&mut fallback.sets);
    let settings = std::mem::take(&mut fallback.settings);
    facts.absorb(fallback);
    facts.lock_mode = facts.lock_mode.take().or(lock_mode);
    facts.vacuum_full |= vacuum_full;
    facts.concurrently |= concurrently;
    if facts.sets.is_empty() {
        facts.sets = sets;
        facts.settings = settings;
    }
    *ours = facts;
}

/// Where a node sits: whether its statement kinds count (EXPLAIN without ANALYZE only
/// plans its statement).
#[derive(Clone, Copy, Default)]
struct Scope {
    planned_only: bool,
}

#[derive(Default)]
struct Walk {
    top: Option<&'static str>,
    depth: usize,
    facts: SqlFacts,
}

impl Walk {
    /// Visits a serialized value: a `Node` is `{"node": {"TypeName": {...}}}`, a typed
    /// message field is its fields.
    fn node(&mut self, value: &Value, scope: Scope) {
        match value {
            Value::Object(map) => {
                if map.len() == 1 {
                    let (name, inner) = map.iter().next().expect("one entry");
                    if name.starts_with(|c: char| c.is_ascii_uppercase())
                        && let Value::Object(fields) = inner
                    {
                        self.typed(name, fields, scope);
                        return;
                    }
                }
                if map.contains_key("relname") && map.contains_key("schemaname") {
                    self.relation(map, false);
                }
                for v in map.values() {
                    self.node(v, scope);
                }
            }
            Value::Array(items) => {
                for v in items {
                    self.node(v, scope);
                }
            }
            _ => {}
        }
    }

    fn typed(&mut self, name: &str, fields: &Map<String, Value>, mut scope: Scope) {
        let kind = statement_kind(name, fields);
        if let Some(k) = kind {
            self.depth += 1;
            if self.depth == 1 {
                self.top = Some(k).filter(|k| *k != "other");
            }
            if !scope.planned_only {
                if !self.facts.kinds.contains(&k) {
                    self.facts.kinds.push(k);
                }
                self.facts.is_ddl |= is_ddl(k);
                self.facts.is_dml |=
                    matches!(k, "insert" | "update" | "delete" | "merge" | "truncate");
            }
        }
        match name {
            "FuncCall" => self.function(fields),
            "UpdateStmt" | "DeleteStmt" | "MergeStmt" if !scope.planned_only => {
                self.write(name, fields)
            }
            "InsertStmt" | "TruncateStmt" => self.written_relations(fields),
            "CopyStmt" => self.copy(fields),
            "DropStmt" => {
                let object = int(fields, "remove_type")
                    .and_then(|t| ObjectType::try_from(t).ok())
                    .map(object_word);
                self.facts.drop_kind = object;
                self.facts.concurrently |= boolean(fields, "concurrent");
            }
            "AlterTableCmd"
                if int(fields, "subtype")
                    == Some(protobuf::AlterTableType::AtDropColumn as i32) =>
            {
                self.facts.drop_kind = Some("column".into());
            }
            "VariableSetStmt" => self.set(fields),
            "ExplainStmt" => {
                let analyze = options(fields).any(|(n, v)| n == "analyze" && v != Some(false));
                self.facts.explain_analyze |= analyze;
                scope.planned_only |= !analyze;
            }
            "VacuumStmt" => {
                self.facts.vacuum_full |=
                    options(fields).any(|(n, v)| n == "full" && v != Some(false));
            }
            "IndexStmt" => self.facts.concurrently |= boolean(fields, "concurrent"),
            "LockStmt" => self.facts.lock_mode = int(fields, "mode").map(lock_word),
            // Not `CREATE TEMP TABLE ... AS`: what it copies in is not judged as a read.
            "CreateStmt" | "ViewStmt" | "CreateSeqStmt" => {
                let persistence = fields
                    .get("relation")
                    .or_else(|| fields.get("view"))
                    .or_else(|| fields.get("sequence"))
                    .and_then(|r| r.get("relpersistence"))
                    .and_then(Value::as_str);
                self.facts.temporary |= persistence == Some("t");
            }
            "RangeVar" => self.relation(fields, false),
            _ => {}
        }
        for v in fields.values() {
            self.node(v, scope);
        }
        if kind.is_some() {
            self.depth -= 1;
        }
    }

    fn relation(&mut self, fields: &Map<String, Value>, written: bool) {
        let Some(name) = relation_name(fields) else {
            return;
        };
        let list = if written {
            &mut self.facts.tables_written
        } else {
            &mut self.facts.tables_read
        };
        if !list.contains(&name) {
            list.push(name);
        }
    }

    fn written_relations(&mut self, fields: &Map<String, Value>) {
        if let Some(Value::Object(r)) = fields.get("relation") {
            self.relation(r, true);
        }
        if let Some(Value::Array(items)) = fields.get("relations") {
            for item in items {
                if let Some(Value::Object(r)) = item.get("node").and_then(|n| n.get("RangeVar")) {
                    self.relation(r, true);
                }
            }
        }
    }

    /// An UPDATE, DELETE or MERGE: its table and whether its condition can bound it. A
    /// condition that names no column is constant, so it holds for every row or none.
    fn write(&mut self, name: &str, fields: &Map<String, Value>) {
        let Some(table) = fields
            .get("relation")
            .and_then(Value::as_object)
            .and_then(relation_name)
        else {
            return;
        };
        let condition = if name == "MergeStmt" {
            fields.get("join_condition")
        } else {
            fields.get("where_clause")
        };
        let has_where = condition.is_some_and(|c| !c.is_null());
        let where_always_true = has_where && condition.is_some_and(|c| !names_a_column(c));
        let kind = match name {
            "UpdateStmt" => "update",
            "DeleteStmt" => "delete",
            _ => "merge",
        };
        if !self.facts.tables_written.contains(&table) {
            self.facts.tables_written.push(table.clone());
        }
        self.facts.writes.push(Write {
            kind,
            table,
            has_where,
            where_always_true,
        });
        self.facts.has_where = self.facts.writes.iter().all(|w| w.has_where);
        self.facts.where_always_true = self.facts.writes.iter().any(|w| w.where_always_true);
    }

    fn copy(&mut self, fields: &Map<String, Value>) {
        self.facts.copy_program |= boolean(fields, "is_program");
        let file = fields
            .get("filename")
            .and_then(Value::as_str)
            .is_some_and(|f| !f.is_empty());
        self.facts.copy_file |= file && !boolean(fields, "is_program");
        if boolean(fields, "is_from") {
            self.written_relations(fields);
        }
    }

    fn function(&mut self, fields: &Map<String, Value>) {
        // `x AT TIME ZONE y`, `SUBSTRING(x FROM 1)` and the like: calls PostgreSQL's
        // grammar writes for syntax of the standard, not ones the statement names.
        if int(fields, "funcformat") == Some(protobuf::CoercionForm::CoerceSqlSyntax as i32) {
            return;
        }
        let name = names(fields.get("funcname")).join(".");
        if !name.is_empty() && !self.facts.functions.contains(&name) {
            self.facts.functions.push(name);
        }
    }

    fn set(&mut self, fields: &Map<String, Value>) {
        let name = fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let kind = int(fields, "kind").and_then(|k| protobuf::VariableSetKind::try_from(k).ok());
        let raw_value = match kind {
            Some(protobuf::VariableSetKind::VarSetValue) => {
                let values: Vec<String> = match fields.get("args") {
                    Some(Value::Array(args)) => args.iter().filter_map(constant).collect(),
                    _ => Vec::new(),
                };
                (!values.is_empty()).then(|| values.join(", "))
            }
            _ => Some("default".to_string()),
        };
        if name.is_empty() {
            return;
        }
        if !self.facts.settings.contains(&name) {
            self.facts.settings.push(name.clone());
        }
        self.facts.sets.push(SetFact {
            name,
            value: raw_value.as_deref().map(|v| v.trim().to_lowercase()),
            raw_value,
        });
    }
}

/// The gateway's kind for a statement node, `None` for nodes that are not statements.
fn statement_kind(name: &str, fields: &Map<String, Value>) -> Option<&'static str> {
    let object = || int(fields, "objtype").and_then(|t| ObjectType::try_from(t).ok());
    Some(match name {
        "SelectStmt" => "select",
        "InsertStmt" => "insert",
        "UpdateStmt" => "update",
        "DeleteStmt" => "delete",
        "MergeStmt" => "merge",
        "TruncateStmt" => "truncate",
        "CopyStmt" => "copy",
        "CreateStmt" => "create_table",
        "CreateTableAsStmt" if object() == Some(ObjectType::ObjectMatview) => "create_view",
        "CreateTableAsStmt" => "create_table",
        "AlterTableStmt" if object() == Some(ObjectType::ObjectTable) => "alter_table",
        "DropStmt"
        | "DropRoleStmt"
        | "DropdbStmt"
        | "DropOwnedStmt"
        | "DropTableSpaceStmt"
        | "DropSubscriptionStmt"
        | "DropUserMappingStmt" => "drop",
        "GrantStmt" | "GrantRoleStmt" if boolean(fields, "is_grant") => "grant",
        "GrantStmt" | "GrantRoleStmt" => "revoke",
        "CreateRoleStmt" => "create_role",
        "AlterRoleStmt" | "AlterRoleSetStmt" => "alter_role",
        "AlterDefaultPrivilegesStmt" => "alter_default_privileges",
        "AlterSystemStmt" => "alter_system",
        "VariableSetStmt" => {
            match int(fields, "kind").and_then(|k| protobuf::VariableSetKind::try_from(k).ok()) {
                Some(
                    protobuf::VariableSetKind::VarReset | protobuf::VariableSetKind::VarResetAll,
                ) => "reset",
                _ => "set",
            }
        }
        "VariableShowStmt" => "show",
        "ConstraintsSetStmt" => "set_constraints",
        "TransactionStmt" => {
            use protobuf::TransactionStmtKind as T;
            match int(fields, "kind").and_then(|k| T::try_from(k).ok()) {
                Some(T::TransStmtBegin | T::TransStmtStart) => "begin",
                Some(T::TransStmtCommit) => "commit",
                Some(T::TransStmtRollback | T::TransStmtRollbackTo) => "rollback",
                Some(T::TransStmtSavepoint) => "savepoint",
                Some(T::TransStmtRelease) => "release",
                Some(T::TransStmtPrepare) => "prepare_transaction",
                Some(T::TransStmtCommitPrepared) => "commit_prepared",
                Some(T::TransStmtRollbackPrepared) => "rollback_prepared",
                _ => "other",
            }
        }
        "DoStmt" => "do",
        "CallStmt" => "call",
        "PrepareStmt" => "prepare",
        "ExecuteStmt" => "execute",
        "DeallocateStmt" => "deallocate",
        "ExplainStmt" => "explain",
        "VacuumStmt" if boolean(fields, "is_vacuumcmd") => "vacuum",
        "VacuumStmt" => "analyze",
        "ListenStmt" => "listen",
        "UnlistenStmt" => "unlisten",
        "NotifyStmt" => "notify",
        "DiscardStmt" => "discard",
        "DeclareCursorStmt" => "declare",
        "FetchStmt" => "fetch",
        "ClosePortalStmt" => "close",
        "LockStmt" => "lock",
        "RefreshMatViewStmt" => "refresh",
        "LoadStmt" => "load",
        "IndexStmt" => "create_index",
        "ViewStmt" => "create_view",
        "CreateFunctionStmt" => "create_function",
        "CreateSchemaStmt" => "create_schema",
        "CreatedbStmt" => "create_database",
        "CreateExtensionStmt" => "create_extension",
        "CreateSeqStmt" => "create_sequence",
        "CompositeTypeStmt" | "CreateEnumStmt" | "CreateRangeStmt" | "CreateDomainStmt" => {
            "create_type"
        }
        "CreateTrigStmt" => "create_trigger",
        "CreatePolicyStmt" => "create_policy",
        "RuleStmt" => "create_rule",
        "CommentStmt" => "comment",
        "ReindexStmt" => "reindex",
        "ClusterStmt" => "cluster",
        "CheckPointStmt" => "checkpoint",
        "ReassignOwnedStmt" => "reassign_owned",
        // Any other statement: DDL of some object (ALTER DOMAIN, CREATE SERVER, ...).
        n if n.ends_with("Stmt") && n != "RawStmt" => "other",
        _ => return None,
    })
}

/// Kinds that change the schema (as [`kind::classify`] counts them).
fn is_ddl(kind: &str) -> bool {
    matches!(
        kind,
        "create_table"
            | "alter_table"
            | "drop"
            | "create_index"
            | "create_view"
            | "create_function"
            | "create_schema"
            | "create_database"
            | "create_extension"
            | "create_sequence"
            | "create_type"
            | "create_trigger"
            | "create_policy"
            | "create_rule"
            | "comment"
            | "other"
    )
}

/// `OBJECT_MATVIEW` → `materialized_view`, as the gateway names dropped objects.
fn object_word(t: ObjectType) -> String {
    match t {
        ObjectType::ObjectMatview => "materialized_view".into(),
        ObjectType::ObjectForeignTable => "foreign_table".into(),
        ObjectType::ObjectAggregate | ObjectType::ObjectProcedure | ObjectType::ObjectRoutine => {
            "function".into()
        }
        other => other
            .as_str_name()
            .trim_start_matches("OBJECT_")
            .to_ascii_lowercase(),
    }
}

fn lock_word(mode: i32) -> String {
    match mode {
        1 => "access share",
        2 => "row share",
        3 => "row exclusive",
        4 => "share update exclusive",
        5 => "share",
        6 => "share row exclusive",
        7 => "exclusive",
        _ => "access exclusive",
    }
    .to_string()
}

fn relation_name(fields: &Map<String, Value>) -> Option<String> {
    let relname = fields.get("relname")?.as_str()?;
    let schema = fields
        .get("schemaname")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some(if schema.is_empty() {
        relname.to_string()
    } else {
        format!("{schema}.{relname}")
    })
}

/// The strings of a name list (`[{"node": {"String": {"sval": "pg_catalog"}}}, ...]`).
fn names(list: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| i.get("node")?.get("String")?.get("sval")?.as_str())
        .map(str::to_string)
        .collect()
}

/// A constant's text (`A_Const` with a string, integer, float or boolean).
fn constant(node: &Value) -> Option<String> {
    let c = node.get("node")?.get("AConst")?;
    if let Some(s) = c
        .get("sval")
        .and_then(|v| v.get("sval"))
        .and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    if let Some(i) = c
        .get("ival")
        .and_then(|v| v.get("ival"))
        .and_then(Value::as_i64)
    {
        return Some(i.to_string());
    }
    if let Some(f) = c
        .get("fval")
        .and_then(|v| v.get("fval"))
        .and_then(Value::as_str)
    {
        return Some(f.to_string());
    }
    c.get("boolval")
        .and_then(|v| v.get("boolval"))
        .and_then(Value::as_bool)
        .map(|b| if b { "on" } else { "off" }.to_string())
}

/// `(name, value)` of a statement's `options` list of `DefElem`s; value is `Some(false)`
/// only for an explicit false/off.
fn options(fields: &Map<String, Value>) -> impl Iterator<Item = (String, Option<bool>)> + '_ {
    let items = match fields.get("options") {
        Some(Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    items.iter().filter_map(|o| {
        let d = o.get("node")?.get("DefElem")?;
        let name = d.get("defname")?.as_str()?.to_ascii_lowercase();
        let value = d
            .get("arg")
            .and_then(|a| {
                constant(a).or_else(|| {
                    Some(
                        a.get("node")?
                            .get("String")?
                            .get("sval")?
                            .as_str()?
                            .to_string(),
                    )
                })
            })
            .map(|v| {
                !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "false" | "off" | "0" | "no"
                )
            });
        Some((name, value))
    })
}

/// Whether an expression refers to a column (or a parameter, or a subquery, whose value
/// the expression's truth may depend on row by row).
fn names_a_column(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            map.contains_key("ColumnRef")
                || map.contains_key("ParamRef")
                || map.contains_key("SubLink")
                || map.values().any(names_a_column)
        }
        Value::Array(items) => items.iter().any(names_a_column),
        _ => false,
    }
}

fn int(fields: &Map<String, Value>, name: &str) -> Option<i32> {
    fields
        .get(name)
        .and_then(Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
}

fn boolean(fields: &Map<String, Value>, name: &str) -> bool {
    fields.get(name).and_then(Value::as_bool).unwrap_or(false)
}
