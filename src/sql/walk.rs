//! Walks one parsed statement (sqlparser's visitor reaches every nested statement, query,
//! expression and relation) and records facts. Nested statements count wherever they sit:
//! data-modifying CTEs, `EXPLAIN ANALYZE`, `PREPARE ... AS`, `CREATE RULE` actions, and the
//! bodies of `LANGUAGE sql` functions (parsed in turn).

use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, CopySource, CopyTarget, CreateFunctionBody, Expr, FromTable, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, LimitClause, MergeAction, MergeClauseKind,
    ObjectName, OnConflictAction, OnInsert, Query, Reset, SelectItem, Set, Statement, TableFactor,
    TableObject, TableWithJoins, UpdateTableFromKind, Value, Visit, Visitor,
};

use super::bounds::Scope;
use super::ident::{base_name, ident, object_name};
use super::{SetFact, SqlFacts, Write, kind};

/// Nested function bodies parsed in turn; deeper nesting is left unread (and reviewed as DDL).
const MAX_BODY_DEPTH: usize = 4;

pub fn collect(stmt: &Statement, facts: &mut SqlFacts, body_depth: usize) {
    let mut walker = Walker {
        facts,
        depth: 0,
        planned_only: 0,
        explain_stack: Vec::new(),
        ctes: Vec::new(),
        with_stack: Vec::new(),
        table_functions: Vec::new(),
        relations: Vec::new(),
        body_depth,
        pinned_calls: Vec::new(),
    };
    let _ = stmt.visit(&mut walker);
    let Walker {
        facts, relations, ..
    } = walker;
    for r in relations {
        if !facts.tables_written.contains(&r) && !facts.tables_read.contains(&r) {
            facts.tables_read.push(r);
        }
    }
    if !facts.writes.is_empty() {
        facts.has_where = facts.writes.iter().all(|w| w.has_where);
        facts.where_always_true = facts.writes.iter().any(|w| w.where_always_true);
    }
}

struct Walker<'f> {
    facts: &'f mut SqlFacts,
    depth: usize,
    /// Inside `EXPLAIN` without `ANALYZE`: planned, not run, so writes do not count.
    planned_only: usize,
    explain_stack: Vec<bool>,
    ctes: Vec<String>,
    /// The queries with a `WITH` that enclose the node being visited (their CTEs are in
    /// scope), outermost first.
    with_stack: Vec<*const Query>,
    /// `FROM f(...)`: names visited as relations that are really functions.
    table_functions: Vec<*const ObjectName>,
    relations: Vec<String>,
    body_depth: usize,
    /// `set_config(name, ...)` calls whose setting the query pins (see [`pinned_setting`]).
    pinned_calls: Vec<(*const ObjectName, String)>,
}

fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

impl Walker<'_> {
    fn written(&mut self, name: &ObjectName) {
        push_unique(&mut self.facts.tables_written, object_name(name));
    }

    /// Records an UPDATE, DELETE, MERGE or upsert of `table` and whether `condition`
    /// bounds it to some of the table's rows.
    fn write(&mut self, kind: &'static str, table: String, has_where: bool, unbounded: bool) {
        push_unique(&mut self.facts.tables_written, table.clone());
        self.facts.writes.push(Write {
            kind,
            table,
            has_where,
            where_always_true: unbounded,
        });
    }

    /// An UPDATE or DELETE of `target` with `others` in its FROM/USING.
    fn filtered_write(
        &mut self,
        kind: &'static str,
        target: &TableFactor,
        others: &[&TableFactor],
        selection: Option<&Expr>,
    ) {
        if self.planned_only > 0 {
            return;
        }
        let table = table_factor_name(target);
        let ctes = self.ctes_in_scope();
        let scope = Scope::new(&table, factor_alias(target), others, &ctes);
        let unbounded = selection.is_some_and(|w| !scope.restricts(w));
        self.facts.literal_dependent |= scope.read_literal();
        self.write(kind, table, selection.is_some(), unbounded);
    }

    /// A MERGE changes the rows its `WHEN MATCHED` clauses reach through `ON` (and their
    /// own condition), and for `WHEN NOT MATCHED BY SOURCE` every row the source lacks:
    /// only that clause's own condition bounds those.
    fn merge(&mut self, m: &sqlparser::ast::Merge) {
        if self.planned_only > 0 {
            return;
        }
        let table = table_factor_name(&m.table);
        let ctes = self.ctes_in_scope();
        let scope = Scope::new(&table, factor_alias(&m.table), &[&m.source], &ctes);
        let mut changes = false;
        let mut unbounded = false;
        let mut on_restricts = None;
        for c in &m.clauses {
            if !matches!(
                c.action,
                MergeAction::Update(_) | MergeAction::Delete { .. }
            ) {
                continue;
            }
            changes = true;
            let own = c.predicate.as_ref().is_some_and(|p| scope.restricts(p));
            let bounded = match c.clause_kind {
                MergeClauseKind::NotMatchedBySource => own,
                _ => own || *on_restricts.get_or_insert_with(|| scope.restricts(&m.on)),
            };
            unbounded |= !bounded;
        }
        self.facts.literal_dependent |= scope.read_literal();
        if changes {
            self.write("merge", table, true, unbounded);
        }
    }

    /// `INSERT ... ON CONFLICT DO UPDATE` rewrites the existing rows its source collides
    /// with: every row when the source is the table itself, unless the DO UPDATE's own
    /// WHERE narrows them.
    fn upsert(&mut self, i: &sqlparser::ast::Insert, name: &ObjectName) {
        let Some(OnInsert::OnConflict(c)) = &i.on else {
            return;
        };
        let OnConflictAction::DoUpdate(update) = &c.action else {
            return;
        };
        if self.planned_only > 0 {
            return;
        }
        let table = object_name(name);
        let ctes = self.ctes_in_scope();
        let scope = Scope::new(&table, i.table_alias.as_ref().map(|a| &a.alias), &[], &ctes);
        let narrowed = update
            .selection
            .as_ref()
            .is_some_and(|w| scope.restricts(w));
        let whole = i.source.as_ref().is_some_and(|q| scope.copies_target(q));
        self.facts.literal_dependent |= scope.read_literal();
        self.write("upsert", table, true, whole && !narrowed);
    }

    fn ctes_in_scope(&self) -> Vec<&Query> {
        self.with_stack
            .iter()
            // SAFETY: each pointer is to a query enclosing the node being visited; the
            // statement is borrowed immutably for the whole walk, so it is alive and
            // unchanged while its descendants are visited.
            .map(|q| unsafe { &**q })
            .collect()
    }

    fn set(&mut self, name: String, value: Option<String>) {
        // PostgreSQL reads setting names without regard to case, quoted or not
        // (`SET "STANDARD_CONFORMING_STRINGS"` is `standard_conforming_strings`).
        let name = name.to_ascii_lowercase();
        self.facts.literal_dependent = true;
        push_unique(&mut self.facts.settings, name.clone());
        let raw_value = value;
        let value = raw_value.as_deref().map(|v| v.trim().to_lowercase());
        self.facts.sets.push(SetFact {
            name,
            value,
            raw_value,
        });
    }

    fn statement(&mut self, stmt: &Statement) {
        let (kind, is_ddl) = kind::classify(stmt);
        if self.depth == 1 {
            self.facts.kind = kind;
        }
        if self.planned_only == 0 {
            if !self.facts.kinds.contains(&kind) {
                self.facts.kinds.push(kind);
            }
            self.facts.is_ddl |= is_ddl;
            self.facts.is_dml |=
                matches!(kind, "insert" | "update" | "delete" | "merge" | "truncate");
        }
        match stmt {
            Statement::Update(u) => {
                let table = table_factor_name(&u.table.relation);
                // By its last name part, in any case: `app.pg_catalog.pg_settings` too.
                if table
                    .rsplit('.')
                    .next()
                    .unwrap_or(&table)
                    .eq_ignore_ascii_case("pg_settings")
                {
                    self.settings_update(u);
                }
                let mut others = joined(std::slice::from_ref(&u.table));
                others.retain(|f| !std::ptr::eq(*f, &u.table.relation));
                if let Some(UpdateTableFromKind::BeforeSet(f) | UpdateTableFromKind::AfterSet(f)) =
                    &u.from
                {
                    others.extend(joined(f));
                }
                self.filtered_write("update", &u.table.relation, &others, u.selection.as_ref());
            }
            Statement::Delete(d) => {
                let tables = match &d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                let using = d.using.as_deref().map(joined).unwrap_or_default();
                for t in tables {
                    let mut others = using.clone();
                    others.extend(t.joins.iter().map(|j| &j.relation));
                    self.filtered_write("delete", &t.relation, &others, d.selection.as_ref());
                }
            }
            Statement::Merge(m) => self.merge(m),
            Statement::Insert(i) => {
                if let TableObject::TableName(name) = &i.table {
                    self.written(name);
                    self.upsert(i, name);
                }
            }
            Statement::Truncate(t) => {
                for target in &t.table_names {
                    self.written(&target.name);
                }
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                match target {
                    CopyTarget::File { .. } => self.facts.copy_file = true,
                    CopyTarget::Program { .. } => self.facts.copy_program = true,
                    CopyTarget::Stdin | CopyTarget::Stdout => {}
                }
                if let CopySource::Table { table_name, .. } = source {
                    if *to {
                        push_unique(&mut self.relations, object_name(table_name));
                    } else {
                        self.written(table_name);
                        self.facts.is_dml = true;
                    }
                }
            }
            Statement::Drop {
                object_type, names, ..
            } => {
                self.facts.drop_kind =
                    Some(object_type.to_string().to_lowercase().replace(' ', "_"));
                for n in names {
                    self.written(n);
                }
            }
            Statement::DropFunction(_) | Statement::DropProcedure { .. } => {
                self.facts.drop_kind = Some("function".into());
            }
            Statement::DropTrigger(_) => self.facts.drop_kind = Some("trigger".into()),
            Statement::DropPolicy(_) => self.facts.drop_kind = Some("policy".into()),
            Statement::DropRule(_) => self.facts.drop_kind = Some("rule".into()),
            Statement::DropExtension(_) => self.facts.drop_kind = Some("extension".into()),
            Statement::DropDomain(_) => self.facts.drop_kind = Some("domain".into()),
            Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_) => {
                self.facts.drop_kind = Some("operator".into());
            }
            Statement::AlterTable(a) => {
                self.written(&a.name);
                for op in &a.operations {
                    if matches!(op, AlterTableOperation::DropColumn { .. }) {
                        self.facts.drop_kind = Some("column".into());
                    }
                }
            }
            Statement::CreateTable(c) => {
                self.facts.temporary |= c.temporary;
                self.written(&c.name);
            }
            Statement::CreateIndex(c) => {
                self.facts.concurrently |= c.concurrently;
                self.written(&c.table_name);
            }
            Statement::CreateFunction(f) => {
                self.function_body(f.language.as_ref().map(ident), f.function_body.as_ref())
            }
            Statement::Explain {
                analyze, options, ..
            } => {
                let analyze = *analyze
                    || options.iter().flatten().any(|o| {
                        (o.name.value.eq_ignore_ascii_case("analyze")
                            || o.name.value.eq_ignore_ascii_case("analyse"))
                            && !o.arg.as_ref().is_some_and(|a| {
                                matches!(
                                    a.to_string().to_lowercase().as_str(),
                                    "false" | "off" | "0" | "no"
                                )
                            })
                    });
                self.facts.explain_analyze |= analyze;
                self.facts.literal_dependent |= options.is_some();
                if !analyze {
                    self.planned_only += 1;
                }
                self.explain_stack.push(!analyze);
            }
            Statement::Set(s) => self.set_statement(s),
            Statement::Reset(r) => match &r.reset {
                Reset::ALL => self.set("all".into(), Some("default".into())),
                Reset::SessionAuthorization => {
                    self.set("session_authorization".into(), Some("default".into()))
                }
                Reset::ConfigurationParameter(name) => {
                    self.set(object_name(name), Some("default".into()))
                }
            },
            Statement::Query(q) if self.depth == 1 => {
                self.facts.limit = limit(q);
                // A constant LIMIT is a value rules may compare; `LIMIT $1` is not.
                self.facts.literal_dependent |= self.facts.limit.is_some();
            }
            _ => {}
        }
    }

    /// `UPDATE pg_settings SET setting = 'v' WHERE name = 'n'` is `set_config('n', 'v')`.
    fn settings_update(&mut self, u: &sqlparser::ast::Update) {
        let name = match &u.selection {
            Some(Expr::BinaryOp {
                left,
                op: sqlparser::ast::BinaryOperator::Eq,
                right,
            }) => match (left.as_ref(), string_literal(right)) {
                (Expr::Identifier(i), Some(n)) if i.value.eq_ignore_ascii_case("name") => {
                    Some(n.to_lowercase())
                }
                _ => None,
            },
            _ => None,
        };
        let value = u
            .assignments
            .iter()
            .find(|a| {
                a.target
                    .to_string()
                    .trim_matches('"')
                    .eq_ignore_ascii_case("setting")
            })
            .and_then(|a| setting_value(&a.value));
        self.set(name.unwrap_or_else(|| "*".into()), value);
    }

    fn set_statement(&mut self, s: &Set) {
        match s {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let value = values.first().and_then(setting_value);
                self.set(object_name(variable), value);
            }
            Set::ParenthesizedAssignments { variables, values } => {
                for (i, v) in variables.iter().enumerate() {
                    self.set(object_name(v), values.get(i).and_then(setting_value));
                }
            }
            Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    self.set(object_name(&a.name), setting_value(&a.value));
                }
            }
            Set::SetRole { role_name, .. } => {
                let value = role_name.as_ref().map_or("none".to_string(), ident);
                self.set("role".into(), Some(value));
            }
            Set::SetSessionAuthorization(p) => {
                let value = match &p.kind {
                    sqlparser::ast::SetSessionAuthorizationParamKind::Default => {
                        "default".to_string()
                    }
                    sqlparser::ast::SetSessionAuthorizationParamKind::User(u) => ident(u),
                };
                self.set("session_authorization".into(), Some(value));
            }
            Set::SetNames { charset_name, .. } => {
                self.set(
                    "client_encoding".into(),
                    Some(charset_name.value.to_lowercase()),
                );
            }
            Set::SetNamesDefault {} => self.set("client_encoding".into(), Some("default".into())),
            Set::SetTimeZone { value, .. } => self.set("timezone".into(), setting_value(value)),
            Set::SetTransaction { .. } => self.set("transaction".into(), None),
            Set::SetSessionParam(_) => self.set("session_param".into(), None),
        }
    }

    /// A `LANGUAGE sql` body given as a string is SQL like any other: parse it and merge
    /// its facts. Other languages are opaque (the statement is DDL and reviewed anyway).
    fn function_body(&mut self, language: Option<String>, body: Option<&CreateFunctionBody>) {
        let is_sql = language.as_deref().is_none_or(|l| l == "sql");
        let text = match body {
            Some(CreateFunctionBody::AsBeforeOptions { body, .. })
            | Some(CreateFunctionBody::AsAfterOptions(body)) => string_literal(body),
            _ => None,
        };
        // The body is a literal: another body in the same shape can hold anything.
        self.facts.literal_dependent = true;
        let (Some(text), true) = (text, is_sql) else {
            return;
        };
        if self.body_depth >= MAX_BODY_DEPTH {
            push_unique_str(&mut self.facts.kinds, kind::UNKNOWN);
            return;
        }
        for inner in super::analyze_nested(&text, self.body_depth + 1).statements {
            self.facts.absorb(inner);
        }
    }

    fn function_call(&mut self, name: &ObjectName, args: Option<&FunctionArguments>) {
        let name_ptr = name as *const ObjectName;
        let base = base_name(name);
        if base == "set_config" {
            // set_config(setting_name, new_value, is_local) is SET by another spelling;
            // its arguments by position or by name.
            let mut name = None;
            let mut value = None;
            if let Some(FunctionArguments::List(list)) = args {
                for (i, a) in list.args.iter().enumerate() {
                    let (slot, e) = match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (i, e),
                        FunctionArg::Named {
                            name: n,
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        }
                        | FunctionArg::ExprNamed {
                            name: Expr::Identifier(n),
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        } => match ident(n).as_str() {
                            "setting_name" => (0, e),
                            "new_value" => (1, e),
                            _ => continue,
                        },
                        _ => continue,
                    };
                    let literal = string_literal(e).map(|s| s.to_lowercase());
                    match slot {
                        0 if is_name_column(e) => {
                            name = self
                                .pinned_calls
                                .iter()
                                .find(|(p, _)| std::ptr::eq(*p, name_ptr))
                                .map(|(_, n)| n.clone());
                        }
                        0 => name = literal,
                        1 => value = literal,
                        _ => {}
                    }
                }
            }
            self.set(name.unwrap_or_else(|| "*".into()), value);
        }
        push_unique(&mut self.facts.functions, base);
    }
}

fn push_unique_str(list: &mut Vec<&'static str>, value: &'static str) {
    if !list.contains(&value) {
        list.push(value);
    }
}

impl Visitor for Walker<'_> {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        self.depth += 1;
        self.statement(stmt);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        self.depth -= 1;
        if matches!(stmt, Statement::Explain { .. }) && self.explain_stack.pop() == Some(true) {
            self.planned_only -= 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                push_unique(&mut self.ctes, ident(&cte.alias.name));
            }
            self.with_stack.push(query as *const Query);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if query.with.is_some() {
            self.with_stack.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<()> {
        if let Some(pinned) = pinned_setting(select) {
            for item in &select.projection {
                let (SelectItem::UnnamedExpr(Expr::Function(f))
                | SelectItem::ExprWithAlias {
                    expr: Expr::Function(f),
                    ..
                }) = item
                else {
                    continue;
                };
                if base_name(&f.name) == "set_config" {
                    self.pinned_calls
                        .push((&f.name as *const ObjectName, pinned.clone()));
                }
            }
        }
        // `SELECT ... INTO t` creates a table.
        if let Some(into) = &select.into {
            if self.planned_only == 0 && !self.facts.kinds.contains(&"create_table") {
                self.facts.kinds.push("create_table");
            }
            self.facts.is_ddl = true;
            self.facts.temporary |= into.temporary;
            for target in &into.targets {
                let name = match target {
                    Expr::Identifier(i) => ident(i),
                    Expr::CompoundIdentifier(parts) => {
                        parts.iter().map(ident).collect::<Vec<_>>().join(".")
                    }
                    other => other.to_string(),
                };
                push_unique(&mut self.facts.tables_written, name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(args),
                ..
            } => {
                self.table_functions.push(name as *const ObjectName);
                let list = FunctionArguments::List(sqlparser::ast::FunctionArgumentList {
                    duplicate_treatment: None,
                    args: args.args.clone(),
                    clauses: Vec::new(),
                });
                self.function_call(name, Some(&list));
            }
            TableFactor::Function { name, .. } => {
                self.table_functions.push(name as *const ObjectName);
                self.function_call(name, None);
            }
            // sqlparser reads `unnest(...)` in FROM as syntax of its own; to PostgreSQL
            // it is a call like any other.
            TableFactor::UNNEST { .. } => push_unique(&mut self.facts.functions, "unnest".into()),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if let Some(i) = self
            .table_functions
            .iter()
            .position(|p| std::ptr::eq(*p, relation))
        {
            self.table_functions.swap_remove(i);
            return ControlFlow::Continue(());
        }
        let name = object_name(relation);
        if relation.0.len() == 1 && self.ctes.contains(&name) {
            return ControlFlow::Continue(());
        }
        push_unique(&mut self.relations, name);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function_call(&f.name, Some(&f.args)),
            // `(x).f` is PostgreSQL's functional notation for `f(x)` when `x` has no
            // field `f`: `(pid).pg_terminate_backend` calls it. Each name selected from
            // an expression counts as a call.
            Expr::CompoundFieldAccess { access_chain, .. } => {
                for a in access_chain {
                    if let sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i)) = a {
                        push_unique(&mut self.facts.functions, ident(i));
                    }
                }
            }
            // sqlparser reads `substring(x, 1, 2)` and `substr(...)` as syntax of its own;
            // to PostgreSQL they are calls (the `FROM ... FOR` form is syntax to both).
            Expr::Substring {
                special: true,
                shorthand,
                ..
            } => {
                let name = if *shorthand { "substr" } else { "substring" };
                push_unique(&mut self.facts.functions, name.into());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Every relation of a FROM list, joined ones included.
fn joined(from: &[TableWithJoins]) -> Vec<&TableFactor> {
    from.iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .collect()
}

fn factor_alias(f: &TableFactor) -> Option<&Ident> {
    match f {
        TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => {
            alias.as_ref().map(|a| &a.name)
        }
        _ => None,
    }
}

fn table_factor_name(t: &TableFactor) -> String {
    match t {
        TableFactor::Table { name, .. } => object_name(name),
        other => other.to_string(),
    }
}

fn string_literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::NationalStringLiteral(s)
            | Value::UnicodeStringLiteral(s) => Some(s.clone()),
            Value::DollarQuotedString(d) => Some(d.value.clone()),
            _ => None,
        },
        Expr::Nested(inner) => string_literal(inner),
        // `'role'::text`: a cast does not change the text.
        Expr::Cast { expr, .. } => string_literal(expr),
        _ => None,
    }
}

/// The setting a `SELECT ... FROM pg_settings WHERE name = 'n'` pins: only rows with that
/// name reach its target list, so a `set_config(name, ...)` there sets `n` (pg_dump asks
/// this way). Not for a `set_config` in the WHERE, which may run before the filter.
fn pinned_setting(select: &sqlparser::ast::Select) -> Option<String> {
    let [from] = &select.from[..] else {
        return None;
    };
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return None;
    };
    let table = object_name(name);
    if !from.joins.is_empty() || !matches!(table.as_str(), "pg_settings" | "pg_catalog.pg_settings")
    {
        return None;
    }
    pinned_by(select.selection.as_ref()?)
}

/// `name = 'n'`, alone or as one conjunct of an AND.
fn pinned_by(e: &Expr) -> Option<String> {
    use sqlparser::ast::BinaryOperator as Op;
    match e {
        Expr::Nested(inner) => pinned_by(inner),
        Expr::BinaryOp {
            left,
            op: Op::And,
            right,
        } => pinned_by(left).or_else(|| pinned_by(right)),
        Expr::BinaryOp {
            left,
            op: Op::Eq,
            right,
        } => match (is_name_column(left), is_name_column(right)) {
            (true, false) => string_literal(right),
            (false, true) => string_literal(left),
            _ => None,
        }
        .map(|n| n.to_lowercase()),
        _ => None,
    }
}

/// The `name` column of `pg_settings` (`name`, `s.name`).
fn is_name_column(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => ident(i) == "name",
        Expr::CompoundIdentifier(parts) => parts.len() == 2 && ident(&parts[1]) == "name",
        _ => false,
    }
}

/// A SET value as PostgreSQL would read it: lower-cased, unquoted; `None` when it is not a
/// constant (an expression the gateway cannot evaluate).
fn setting_value(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => string_literal(e),
        },
        _ => None,
    }
}

fn limit(q: &Query) -> Option<i64> {
    match q.limit_clause.as_ref()? {
        LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            ..
        }
        | LimitClause::OffsetCommaLimit {
            limit: Expr::Value(v),
            ..
        } => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}
