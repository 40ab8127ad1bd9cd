//! Lineage: what each output column of a statement is made from, read from its AST.
//!
//! Output columns are followed through aliases, `*` and `t.*`, joins, subqueries in FROM
//! (LATERAL too), CTEs (recursive ones until nothing new is found), set operations (a
//! column derives from every branch), VALUES, scalar subqueries, and every expression,
//! function, operator and aggregate over a column. What a named relation's columns are
//! (a table's, or a view's as its own definition makes them) comes from a [`Relations`],
//! so this module knows no catalog and no protocol.
//!
//! Anything it cannot follow makes the whole answer `None`: the caller then treats the
//! statement's results as coming from every column of the tables it names.
//!
//! ```
//! use portcullis::sql::lineage::{self, Lineage, Relations, Rows};
//! struct One;
//! impl Relations for One {
//!     fn columns(&self, name: &str) -> Option<Vec<(String, Lineage)>> {
//!         (name == "\"users\"").then(|| {
//!             ["id", "password"]
//!                 .iter()
//!                 .map(|c| (c.to_string(), Lineage::of(format!("public.users.{c}"))))
//!                 .collect()
//!         })
//!     }
//! }
//! let stmt = &portcullis::sql::parse("SELECT id, length(p) FROM (SELECT password p, id FROM users) s").unwrap()[0];
//! let Rows::Some(out) = lineage::statement(stmt, &One) else { panic!() };
//! assert!(!out[0].lineage.derived);
//! assert!(out[1].lineage.derived);
//! assert!(out[1].lineage.sources.contains("public.users.password"));
//! ```

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind,
    SetExpr, Statement, TableAlias, TableFactor, TableWithJoins, Visit, Visitor,
};

use super::ident::{base_name, ident};

/// Stands, in a column's sources, for every column of the database: what a planner
/// statistics view's sample values may come from.
pub const EVERYWHERE: &str = "*";

/// Where an output column's values come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Every `schema.table.column` it is made from (or [`EVERYWHERE`]).
    pub sources: BTreeSet<String>,
    /// Not a plain copy of one source.
    pub derived: bool,
    /// Made through something that cannot be looked into (a whole-row reference).
    pub opaque: bool,
}

impl Lineage {
    /// A plain copy of one source.
    pub fn of(source: impl Into<String>) -> Lineage {
        Lineage {
            sources: BTreeSet::from([source.into()]),
            ..Lineage::default()
        }
    }

    fn absorb(&mut self, other: &Lineage) {
        self.sources.extend(other.sources.iter().cloned());
        self.derived |= other.derived;
        self.opaque |= other.opaque;
    }
}

/// One output column: the name PostgreSQL gives it when that can be told, and its
/// lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: Option<String>,
    pub lineage: Lineage,
}

/// What a statement returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    /// No rows (DDL, SET, DML without RETURNING).
    None,
    /// Rows with these columns.
    Some(Vec<Output>),
    /// Rows, or perhaps rows, whose making it cannot follow (FETCH, EXECUTE, CALL, or
    /// a construct it does not know).
    Unknown,
}

/// The columns of a relation a statement names, in order, as [`relation_key`] spells its
/// name; `None` when there is no such relation.
pub trait Relations {
    fn columns(&self, name: &str) -> Option<Vec<(String, Lineage)>>;

    /// Whether a function of this name (without schema) may read tables itself (one
    /// written in SQL or a procedural language): its result may then come from any
    /// column of the database.
    fn reads_tables(&self, _function: &str) -> bool {
        false
    }
}

/// A relation's name with every part quoted (`"public"."Users"`), so the catalog
/// resolves it exactly as PostgreSQL would.
pub fn relation_key(name: &ObjectName) -> String {
    let mut out = String::new();
    for part in &name.0 {
        if !out.is_empty() {
            out.push('.');
        }
        let text = match part {
            ObjectNamePart::Identifier(i) => ident(i),
            ObjectNamePart::Function(f) => f.to_string(),
        };
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    }
    out
}

/// Every relation `stmt` names, as [`relation_key`] spells them (CTE names included:
/// the catalog answers that they are not relations).
pub fn relations_named(stmt: &Statement) -> Vec<String> {
    let mut names = Vec::new();
    let _ = sqlparser::ast::visit_relations(stmt, |n| {
        let key = relation_key(n);
        // More than `schema.table` is not a name the catalog can be asked about.
        if n.0.len() <= 2 && !names.contains(&key) {
            names.push(key);
        }
        ControlFlow::<()>::Continue(())
    });
    names
}

/// The name (without schema) of every function `stmt` calls.
pub fn functions_named(stmt: &Statement) -> Vec<String> {
    struct Calls(Vec<String>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = e {
                self.add(&f.name);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
            match t {
                TableFactor::Table {
                    name,
                    args: Some(_),
                    ..
                }
                | TableFactor::Function { name, .. } => self.add(name),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    impl Calls {
        fn add(&mut self, name: &ObjectName) {
            let n = base_name(name);
            if !self.0.contains(&n) {
                self.0.push(n);
            }
        }
    }
    let mut calls = Calls(Vec::new());
    let _ = stmt.visit(&mut calls);
    calls.0
}

/// What `stmt` returns and where each of its columns comes from.
pub fn statement(stmt: &Statement, relations: &dyn Relations) -> Rows {
    use Statement as S;
    let mut e = Engine {
        relations,
        ctes: Vec::new(),
        frames: Vec::new(),
        depth: 0,
    };
    let traced = match stmt {
        S::Query(q) => e.query(q),
        S::Insert(i) => match &i.returning {
            None => return Rows::None,
            Some(items) => {
                let sqlparser::ast::TableObject::TableName(name) = &i.table else {
                    return Rows::Unknown;
                };
                let alias = i.table_alias.as_ref().map(|a| ident(&a.alias));
                // A returned column carries what the source wrote into it; with
                // ON CONFLICT DO UPDATE, any of the source's values.
                let written = match &i.source {
                    None => Written::ByName(Vec::new()),
                    Some(source) => {
                        let Some(out) = e.query(source) else {
                            return Rows::Unknown;
                        };
                        let lineages: Vec<Lineage> = out.into_iter().map(|o| o.lineage).collect();
                        if i.on.is_some()
                            || (!i.columns.is_empty() && i.columns.len() != lineages.len())
                        {
                            let mut all = Lineage::default();
                            lineages.iter().for_each(|l| all.absorb(l));
                            Written::All(all)
                        } else if i.columns.is_empty() {
                            Written::ByPosition(lineages)
                        } else {
                            Written::ByName(i.columns.iter().map(base_name).zip(lineages).collect())
                        }
                    }
                };
                e.returning(name, alias, &[], written, items)
            }
        },
        S::Update(u) => match &u.returning {
            None => return Rows::None,
            Some(items) => {
                let TableFactor::Table { name, alias, .. } = &u.table.relation else {
                    return Rows::Unknown;
                };
                let extra: Vec<TableWithJoins> = match &u.from {
                    Some(sqlparser::ast::UpdateTableFromKind::AfterSet(f))
                    | Some(sqlparser::ast::UpdateTableFromKind::BeforeSet(f)) => f.clone(),
                    None => Vec::new(),
                };
                e.frames.push(Vec::new());
                let ok = e.target(name, alias.as_ref().map(|a| ident(&a.name)), &extra);
                let written = ok.and_then(|_| {
                    let mut w = Vec::new();
                    for a in &u.assignments {
                        let value = e.expr(&a.value)?;
                        match &a.target {
                            sqlparser::ast::AssignmentTarget::ColumnName(n) => {
                                w.push((base_name(n), value))
                            }
                            sqlparser::ast::AssignmentTarget::Tuple(names) => {
                                w.extend(names.iter().map(|n| (base_name(n), value.clone())))
                            }
                        }
                    }
                    Some(Written::ByName(w))
                });
                e.frames.pop();
                match written {
                    Some(w) => e.returning(
                        name,
                        alias.as_ref().map(|a| ident(&a.name)),
                        &extra,
                        w,
                        items,
                    ),
                    None => return Rows::Unknown,
                }
            }
        },
        S::Delete(d) => match &d.returning {
            None => return Rows::None,
            Some(items) => {
                let tables = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(t)
                    | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
                };
                let [first] = &tables[..] else {
                    return Rows::Unknown;
                };
                let TableFactor::Table { name, alias, .. } = &first.relation else {
                    return Rows::Unknown;
                };
                let using = d.using.clone().unwrap_or_default();
                e.returning(
                    name,
                    alias.as_ref().map(|a| ident(&a.name)),
                    &using,
                    Written::ByName(Vec::new()),
                    items,
                )
            }
        },
        // A plan, a setting's value, a transaction's state: no table data.
        S::Explain { .. } | S::ExplainTable { .. } | S::ShowVariable { .. } => Some(vec![Output {
            name: None,
            lineage: Lineage::default(),
        }]),
        S::Fetch { .. } | S::Execute { .. } | S::Call(_) => return Rows::Unknown,
        _ => return Rows::None,
    };
    match traced {
        Some(out) => Rows::Some(out),
        None => Rows::Unknown,
    }
}

/// What a write put into its target's columns.
enum Written {
    ByName(Vec<(String, Lineage)>),
    /// INSERT without a column list: the table's columns in order.
    ByPosition(Vec<Lineage>),
    /// Any of it, into every column.
    All(Lineage),
}

/// A relation visible in a FROM clause.
#[derive(Debug, Clone)]
struct Rel {
    /// Its alias, or its own name without schema.
    name: String,
    /// Its name as written with its schema (`public.users`), for three-part references.
    qualified: Option<String>,
    /// Its columns, when known.
    columns: Option<Vec<(String, Lineage)>>,
    /// What every column comes from when the columns are not known (a table function).
    unknown: Lineage,
}

impl Rel {
    fn whole(&self) -> Lineage {
        let mut l = self.unknown.clone();
        for (_, c) in self.columns.iter().flatten() {
            l.absorb(c);
        }
        l.derived = true;
        l.opaque = true;
        l
    }

    fn column(&self, name: &str) -> Option<Lineage> {
        match &self.columns {
            Some(cols) => cols.iter().find(|(n, _)| n == name).map(|(_, l)| l.clone()),
            None => Some(self.unknown.clone()),
        }
    }
}

/// Deepest nesting of views and subqueries followed.
const MAX_DEPTH: usize = 64;
/// Rounds a recursive CTE is followed before its sources stop growing.
const MAX_ROUNDS: usize = 8;

struct Engine<'r> {
    relations: &'r dyn Relations,
    /// CTEs in scope, innermost last.
    ctes: Vec<(String, Vec<Output>)>,
    /// FROM scopes, innermost last; a subquery sees those around it.
    frames: Vec<Vec<Rel>>,
    depth: usize,
}

impl Engine<'_> {
    fn query(&mut self, q: &Query) -> Option<Vec<Output>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let ctes = self.ctes.len();
        let out = self.query_body(q);
        self.ctes.truncate(ctes);
        self.depth -= 1;
        out
    }

    fn query_body(&mut self, q: &Query) -> Option<Vec<Output>> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = ident(&cte.alias.name);
                let out = if with.recursive {
                    self.recursive(&name, &cte.query, &cte.alias)?
                } else {
                    rename(self.query(&cte.query)?, &cte.alias)
                };
                self.ctes.push((name, out));
            }
        }
        self.set_expr(&q.body)
    }

    /// A recursive CTE: its first branch, then the whole body again with what was found
    /// so far bound to its name, until no new source appears.
    fn recursive(&mut self, name: &str, q: &Query, alias: &TableAlias) -> Option<Vec<Output>> {
        let seed = match q.body.as_ref() {
            SetExpr::SetOperation { left, .. } => self.set_expr(left)?,
            _ => return Some(rename(self.query(q)?, alias)),
        };
        let mut known = rename(seed, alias);
        for _ in 0..MAX_ROUNDS {
            self.ctes.push((name.to_string(), known.clone()));
            let next = self.query(q);
            self.ctes.pop();
            let mut next = rename(next?, alias);
            if next.len() != known.len() {
                return None;
            }
            for (n, k) in next.iter_mut().zip(&known) {
                n.lineage.absorb(&k.lineage);
            }
            if next == known {
                return Some(known);
            }
            known = next;
        }
        None
    }

    fn set_expr(&mut self, body: &SetExpr) -> Option<Vec<Output>> {
        match body {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                let mut l = self.set_expr(left)?;
                let r = self.set_expr(right)?;
                if l.len() != r.len() {
                    return None;
                }
                for (a, b) in l.iter_mut().zip(&r) {
                    a.lineage.absorb(&b.lineage);
                    if a.lineage.sources.len() > 1 {
                        a.lineage.derived = true;
                    }
                }
                Some(l)
            }
            SetExpr::Values(v) => {
                let width = v.rows.first()?.content.len();
                let mut out: Vec<Output> = (1..=width)
                    .map(|i| Output {
                        name: Some(format!("column{i}")),
                        lineage: Lineage::default(),
                    })
                    .collect();
                for row in &v.rows {
                    if row.content.len() != width {
                        return None;
                    }
                    for (o, e) in out.iter_mut().zip(&row.content) {
                        o.lineage.absorb(&self.expr(e)?);
                    }
                }
                Some(out)
            }
            SetExpr::Table(t) => {
                let name = t.table_name.as_ref()?;
                let mut parts: Vec<ObjectNamePart> = Vec::new();
                if let Some(s) = &t.schema_name {
                    parts.push(ObjectNamePart::Identifier(s.clone()));
                }
                parts.push(ObjectNamePart::Identifier(name.clone()));
                let rel = self.named(&ObjectName(parts), None)?;
                Some(outputs(rel.columns?))
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                match statement(s, self.relations) {
                    Rows::Some(out) => Some(out),
                    _ => None,
                }
            }
        }
    }

    fn select(&mut self, s: &Select) -> Option<Vec<Output>> {
        self.frames.push(Vec::new());
        let out = self.select_in_frame(s);
        self.frames.pop();
        out
    }

    fn select_in_frame(&mut self, s: &Select) -> Option<Vec<Output>> {
        // `*` over a USING or NATURAL join merges columns in an order not modelled here.
        let mut merged = false;
        for t in &s.from {
            merged |= self.from(t)?;
        }
        self.projection(&s.projection, merged)
    }

    fn projection(&mut self, items: &[SelectItem], merged: bool) -> Option<Vec<Output>> {
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => out.push(Output {
                    name: expr_name(e),
                    lineage: self.expr(e)?,
                }),
                SelectItem::ExprWithAlias { expr, alias } => out.push(Output {
                    name: Some(ident(alias)),
                    lineage: self.expr(expr)?,
                }),
                SelectItem::Wildcard(_) => {
                    if merged {
                        return None;
                    }
                    for rel in self.frames.last()? {
                        out.extend(outputs(rel.columns.clone()?));
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let rel = self.find_rel(n)?;
                    out.extend(outputs(rel.columns?));
                }
                _ => return None,
            }
        }
        Some(out)
    }

    /// Adds a FROM item's relations to the innermost frame; `true` when it joins with
    /// USING or NATURAL.
    fn from(&mut self, t: &TableWithJoins) -> Option<bool> {
        self.factor(&t.relation)?;
        let mut merged = false;
        for j in &t.joins {
            self.factor(&j.relation)?;
            merged |= matches!(
                constraint(&j.join_operator),
                Some(
                    JoinConstraint::Using(_)
                        | JoinConstraint::UsingAlias(..)
                        | JoinConstraint::Natural
                )
            );
        }
        Some(merged)
    }

    fn factor(&mut self, f: &TableFactor) -> Option<()> {
        let rel = match f {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let mut rel = self.named(name, alias.as_ref().map(|a| ident(&a.name)))?;
                if let (Some(a), Some(cols)) = (alias, rel.columns.as_mut()) {
                    rename_columns(cols, a)?;
                }
                rel
            }
            TableFactor::Table {
                name,
                alias,
                args: Some(args),
                ..
            } => self.function_rel(name, &args.args, alias.as_ref())?,
            TableFactor::Function {
                name, args, alias, ..
            } => self.function_rel(name, args, alias.as_ref())?,
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let out = self.query(subquery)?;
                let out = match alias {
                    Some(a) => rename(out, a),
                    None => out,
                };
                Rel {
                    name: alias.as_ref().map(|a| ident(&a.name)).unwrap_or_default(),
                    qualified: None,
                    columns: Some(
                        out.into_iter()
                            .map(|o| (o.name.unwrap_or_else(|| "?column?".into()), o.lineage))
                            .collect(),
                    ),
                    unknown: Lineage::default(),
                }
            }
            TableFactor::UNNEST {
                alias, array_exprs, ..
            } => {
                let mut l = Lineage::default();
                for e in array_exprs {
                    l.absorb(&self.expr(e)?);
                }
                l.derived = true;
                opaque_rel(alias.as_ref(), "unnest", l)
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => {
                self.from(table_with_joins)?;
                return Some(());
            }
            _ => return None,
        };
        self.frames.last_mut()?.push(rel);
        Some(())
    }

    /// A set-returning function in FROM: its columns are not known, and each carries
    /// what its arguments do.
    fn function_rel(
        &mut self,
        name: &ObjectName,
        args: &[FunctionArg],
        alias: Option<&TableAlias>,
    ) -> Option<Rel> {
        let mut l = Lineage::default();
        for a in args {
            l.absorb(&self.function_arg(a)?);
        }
        l.derived = true;
        if self.relations.reads_tables(&base_name(name)) {
            l.sources.insert(EVERYWHERE.into());
            l.opaque = true;
        }
        Some(opaque_rel(alias, &base_name(name), l))
    }

    /// A relation named in FROM: a CTE in scope, else the catalog's.
    fn named(&mut self, name: &ObjectName, alias: Option<String>) -> Option<Rel> {
        let own = base_name(name);
        if name.0.len() == 1
            && let Some((_, out)) = self.ctes.iter().rev().find(|(n, _)| *n == own)
        {
            return Some(Rel {
                name: alias.unwrap_or(own),
                qualified: None,
                columns: Some(
                    out.iter()
                        .map(|o| {
                            (
                                o.name.clone().unwrap_or_else(|| "?column?".into()),
                                o.lineage.clone(),
                            )
                        })
                        .collect(),
                ),
                unknown: Lineage::default(),
            });
        }
        let columns = self.relations.columns(&relation_key(name))?;
        Some(Rel {
            name: alias.unwrap_or(own),
            qualified: (name.0.len() > 1).then(|| super::ident::object_name(name)),
            columns: Some(columns),
            unknown: Lineage::default(),
        })
    }

    /// The relation a qualified reference (`t` or `schema.t`) names, innermost first.
    fn find_rel(&self, n: &ObjectName) -> Option<Rel> {
        let text = super::ident::object_name(n);
        let single = n.0.len() == 1;
        self.frames.iter().rev().find_map(|frame| {
            frame
                .iter()
                .find(|r| {
                    if single {
                        r.name == text
                    } else {
                        r.qualified.as_deref() == Some(text.as_str())
                    }
                })
                .cloned()
        })
    }

    /// An unqualified column: every relation of the innermost frame that has it (more
    /// than one would be ambiguous to PostgreSQL unless merged by USING), else outer
    /// frames; else a whole-row reference to a relation of that name.
    fn column(&self, name: &str) -> Option<Lineage> {
        for frame in self.frames.iter().rev() {
            let mut found: Option<Lineage> = None;
            for rel in frame {
                if let Some(cols) = &rel.columns
                    && let Some((_, l)) = cols.iter().find(|(n, _)| n == name)
                {
                    found.get_or_insert_with(Lineage::default).absorb(l);
                }
            }
            // A table function's columns are not known: the name may be one of them.
            for rel in frame.iter().filter(|r| r.columns.is_none()) {
                found
                    .get_or_insert_with(Lineage::default)
                    .absorb(&rel.unknown);
            }
            if found.is_some() {
                return found;
            }
        }
        for frame in self.frames.iter().rev() {
            if let Some(rel) = frame.iter().find(|r| r.name == name) {
                return Some(rel.whole());
            }
        }
        None
    }

    fn qualified(&self, parts: &[Ident]) -> Option<Lineage> {
        let (column, rel) = parts.split_last()?;
        let rel = ObjectName(
            rel.iter()
                .map(|i| ObjectNamePart::Identifier(i.clone()))
                .collect(),
        );
        match self.find_rel(&rel) {
            Some(r) => r.column(&ident(column)),
            // `t.col.field` or `schema.t` as a whole row: not followed.
            None => None,
        }
    }

    fn function_arg(&mut self, a: &FunctionArg) -> Option<Lineage> {
        let arg = match a {
            FunctionArg::Unnamed(a) => a,
            FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => arg,
        };
        match arg {
            FunctionArgExpr::Expr(e) => self.expr(e),
            FunctionArgExpr::QualifiedWildcard(n) => Some(self.find_rel(n)?.whole()),
            _ => {
                let mut l = Lineage::default();
                for rel in self.frames.last()? {
                    l.absorb(&rel.whole());
                }
                Some(l)
            }
        }
    }

    /// Where an expression's value comes from: every column it reads, anywhere in it.
    fn expr(&mut self, e: &Expr) -> Option<Lineage> {
        let plain = matches!(strip(e), Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        let mut refs = Refs {
            engine: self,
            lineage: Lineage::default(),
            queries: 0,
            counting: None,
            handled: Vec::new(),
        };
        if e.visit(&mut refs).is_break() {
            return None;
        }
        let mut l = refs.lineage;
        l.derived |= !plain;
        Some(l)
    }

    /// The output of a DML statement's RETURNING: its target's columns, each also
    /// carrying what was written into it, and those of its FROM/USING tables.
    fn returning(
        &mut self,
        name: &ObjectName,
        alias: Option<String>,
        from: &[TableWithJoins],
        written: Written,
        items: &[SelectItem],
    ) -> Option<Vec<Output>> {
        self.frames.push(Vec::new());
        let out = self.target(name, alias, from).and_then(|merged| {
            let target = self.frames.last_mut()?.first_mut()?;
            for (i, (n, c)) in target.columns.iter_mut().flatten().enumerate() {
                let w = match &written {
                    Written::ByName(w) => w.iter().find(|(name, _)| name == n).map(|(_, l)| l),
                    Written::ByPosition(w) => w.get(i),
                    Written::All(l) => Some(l),
                };
                // A literal written carries nothing; a column copied in keeps its shape.
                if let Some(w) = w.filter(|w| !w.sources.is_empty()) {
                    c.absorb(w);
                }
            }
            self.projection(items, merged)
        });
        self.frames.pop();
        out
    }

    fn target(
        &mut self,
        name: &ObjectName,
        alias: Option<String>,
        from: &[TableWithJoins],
    ) -> Option<bool> {
        let rel = self.named(name, alias)?;
        self.frames.last_mut()?.push(rel);
        let mut merged = false;
        for t in from {
            merged |= self.from(t)?;
        }
        Some(merged)
    }
}

/// Collects the columns an expression reads. Subqueries are followed by the engine as
/// they are met (with their own scope), and what is inside them is skipped here.
struct Refs<'a, 'r> {
    engine: &'a mut Engine<'r>,
    lineage: Lineage,
    /// Inside this many subqueries.
    queries: usize,
    /// Inside `count(...)`: the count of values says only how many are not NULL.
    counting: Option<*const Expr>,
    /// The subqueries followed (or known to be predicates) so far.
    handled: Vec<*const Query>,
}

impl Visitor for Refs<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        // A subquery met some other way has not been followed: give up rather than
        // miss what it returns.
        if self.queries == 0
            && self.counting.is_none()
            && !self.handled.contains(&(q as *const Query))
        {
            return ControlFlow::Break(());
        }
        self.queries += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.queries -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.queries > 0 || self.counting.is_some() {
            return ControlFlow::Continue(());
        }
        let found = match e {
            Expr::Identifier(i) => self.engine.column(&ident(i)),
            Expr::CompoundIdentifier(parts) => self.engine.qualified(parts),
            // `x IN (SELECT ...)` is a predicate: what it says is a boolean.
            Expr::In {
                target: sqlparser::ast::InTarget::Subquery(q),
                ..
            } => {
                self.handled.push(&**q as *const Query);
                Some(Lineage::default())
            }
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => {
                self.handled.push(&**q as *const Query);
                self.engine.frames.push(Vec::new());
                let out = self.engine.query(q);
                self.engine.frames.pop();
                out.map(|out| {
                    let mut l = Lineage {
                        derived: true,
                        ..Lineage::default()
                    };
                    for o in &out {
                        l.absorb(&o.lineage);
                    }
                    l
                })
            }
            Expr::Function(f) => {
                if base_name(&f.name) == "count" && f.name.0.len() == 1 {
                    self.counting = Some(e as *const Expr);
                    return ControlFlow::Continue(());
                }
                let mut l = Lineage {
                    derived: true,
                    ..Lineage::default()
                };
                if self.engine.relations.reads_tables(&base_name(&f.name)) {
                    l.sources.insert(EVERYWHERE.into());
                    l.opaque = true;
                }
                // Arguments that are expressions are visited as children; `t.*` and
                // `*` are not expressions, so they are read here.
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let arg = match a {
                            FunctionArg::Unnamed(a) => a,
                            FunctionArg::Named { arg, .. } | FunctionArg::ExprNamed { arg, .. } => {
                                arg
                            }
                        };
                        if !matches!(arg, FunctionArgExpr::Expr(_)) {
                            match self.engine.function_arg(a) {
                                Some(w) => l.absorb(&w),
                                None => return ControlFlow::Break(()),
                            }
                        }
                    }
                }
                if let FunctionArguments::Subquery(q) = &f.args {
                    self.handled.push(&**q as *const Query);
                    match self.engine.query(q) {
                        Some(out) => out.iter().for_each(|o| l.absorb(&o.lineage)),
                        None => return ControlFlow::Break(()),
                    }
                }
                Some(l)
            }
            _ => Some(Lineage::default()),
        };
        match found {
            Some(l) => {
                self.lineage.absorb(&l);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(()),
        }
    }

    fn post_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.counting == Some(e as *const Expr) {
            self.counting = None;
        }
        ControlFlow::Continue(())
    }
}

/// The relation of a table function or UNNEST: named by its alias (a bare alias names
/// its one column too), its columns those the alias lists, each made from `l`.
fn opaque_rel(alias: Option<&TableAlias>, function: &str, l: Lineage) -> Rel {
    let name = alias
        .map(|a| ident(&a.name))
        .unwrap_or_else(|| function.to_string());
    let columns = alias.filter(|a| !a.columns.is_empty()).map(|a| {
        a.columns
            .iter()
            .map(|c| (ident(&c.name), l.clone()))
            .collect()
    });
    Rel {
        name,
        qualified: None,
        columns,
        unknown: l,
    }
}

/// The join's ON / USING / NATURAL, when it has one.
fn constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::CrossJoin(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::StraightJoin(c) => Some(c),
        J::AsOf { constraint, .. } => Some(constraint),
        _ => None,
    }
}

fn outputs(columns: Vec<(String, Lineage)>) -> Vec<Output> {
    columns
        .into_iter()
        .map(|(n, lineage)| Output {
            name: Some(n),
            lineage,
        })
        .collect()
}

/// Outputs renamed by an alias's column list (`AS t(a, b)`); extra names are ignored
/// by nothing: PostgreSQL refuses more names than columns, and so does this.
fn rename(mut out: Vec<Output>, alias: &TableAlias) -> Vec<Output> {
    for (o, c) in out.iter_mut().zip(&alias.columns) {
        o.name = Some(ident(&c.name));
    }
    out
}

fn rename_columns(cols: &mut [(String, Lineage)], alias: &TableAlias) -> Option<()> {
    if alias.columns.len() > cols.len() {
        return None;
    }
    for (c, a) in cols.iter_mut().zip(&alias.columns) {
        c.0 = ident(&a.name);
    }
    Some(())
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        _ => e,
    }
}

/// The name PostgreSQL gives an output column made by `e`, where it is sure to match:
/// a column's own name, or a function's.
fn expr_name(e: &Expr) -> Option<String> {
    match strip(e) {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Function(f) => Some(base_name(&f.name)),
        Expr::Cast { expr, .. } => match strip(expr) {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => expr_name(expr),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `customers(id, name, email, password)` and `orders(id, customer, note)`.
    struct Shop;

    impl Relations for Shop {
        fn columns(&self, name: &str) -> Option<Vec<(String, Lineage)>> {
            let (table, cols): (&str, &[&str]) = match name {
                "\"customers\"" | "\"public\".\"customers\"" => {
                    ("customers", &["id", "name", "email", "password"])
                }
                "\"orders\"" => ("orders", &["id", "customer", "note"]),
                _ => return None,
            };
            Some(
                cols.iter()
                    .map(|c| (c.to_string(), Lineage::of(format!("public.{table}.{c}"))))
                    .collect(),
            )
        }
    }

    fn trace(sql: &str) -> Vec<Output> {
        let stmt = &crate::sql::parse(sql).expect("parses")[0];
        match statement(stmt, &Shop) {
            Rows::Some(out) => out,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn sources(o: &Output) -> Vec<&str> {
        o.lineage.sources.iter().map(String::as_str).collect()
    }

    #[test]
    fn aliases_ctes_subqueries_and_stars_keep_the_source() {
        for sql in [
            "SELECT password AS p FROM customers",
            "WITH c AS (SELECT * FROM customers) SELECT password AS p FROM c",
            "SELECT p FROM (SELECT password p FROM customers) s",
            "SELECT s.p FROM (SELECT c.password AS p FROM public.customers c) AS s",
            "WITH c(a, b, x, p) AS (TABLE customers) SELECT p FROM c",
            "SELECT t.* FROM (SELECT password FROM customers) t",
        ] {
            let out = trace(sql);
            assert_eq!(sources(&out[0]), ["public.customers.password"], "{sql}");
            assert!(!out[0].lineage.derived, "{sql}");
        }
        let out = trace("SELECT * FROM customers c JOIN orders o ON o.customer = c.id");
        assert_eq!(out.len(), 7);
        assert_eq!(out[6].name.as_deref(), Some("note"));
    }

    #[test]
    fn expressions_unions_and_subqueries_derive_from_every_column_they_read() {
        for sql in [
            "SELECT length(password) FROM customers",
            "SELECT ascii(substr(password, 1, 1)) FROM customers",
            "SELECT name FROM customers UNION ALL SELECT password FROM customers",
            "SELECT (SELECT password FROM customers LIMIT 1)",
            "SELECT CASE WHEN id = 1 THEN name ELSE password END FROM customers",
            "SELECT coalesce(name, password) FROM customers",
            "SELECT x FROM customers c, LATERAL (SELECT c.password || '' AS x) t",
            "SELECT string_agg(password, ',') FROM customers",
            "SELECT v FROM customers, unnest(ARRAY[password]) AS u(v)",
            "SELECT column1 FROM (VALUES ('a'), ((SELECT password FROM customers LIMIT 1))) v",
            "WITH RECURSIVE r(n, s) AS (SELECT 1, ''::text UNION ALL \
             SELECT n + 1, s || (SELECT password FROM customers LIMIT 1) FROM r WHERE n < 3) \
             SELECT s FROM r",
        ] {
            let out = trace(sql);
            assert!(
                out[0].lineage.sources.contains("public.customers.password"),
                "{sql}: {:?}",
                out[0]
            );
            assert!(out[0].lineage.derived, "{sql}");
        }
    }

    #[test]
    fn whole_rows_are_opaque_and_carry_every_column() {
        for sql in [
            "SELECT row_to_json(c) FROM customers c",
            "SELECT to_jsonb(c.*) FROM customers c",
            "SELECT c::text FROM customers c",
        ] {
            let out = trace(sql);
            assert!(out[0].lineage.opaque, "{sql}");
            assert_eq!(out[0].lineage.sources.len(), 4, "{sql}");
        }
    }

    #[test]
    fn counts_and_unrelated_columns_carry_nothing_masked() {
        let out = trace("SELECT count(*), count(password), name, id + 1 FROM customers");
        assert!(out[0].lineage.sources.is_empty());
        assert!(out[1].lineage.sources.is_empty());
        assert_eq!(sources(&out[2]), ["public.customers.name"]);
        assert_eq!(out[3].name, None);
        assert_eq!(sources(&out[3]), ["public.customers.id"]);
    }

    #[test]
    fn returning_carries_what_was_written() {
        let out =
            trace("INSERT INTO orders (note) SELECT password FROM customers RETURNING id, note");
        assert!(out[1].lineage.sources.contains("public.customers.password"));
        let out = trace("UPDATE orders SET note = 'x' RETURNING note");
        assert_eq!(sources(&out[0]), ["public.orders.note"]);
        let out = trace("UPDATE customers SET id = id + 1 RETURNING email, id");
        assert!(
            !out[0].lineage.derived,
            "an email not written stays a plain copy"
        );
        assert!(out[1].lineage.derived);
        let out =
            trace("INSERT INTO orders VALUES (1, 2, (SELECT password FROM customers)) RETURNING *");
        assert!(out[0].lineage.sources.len() == 1 && out[2].lineage.sources.len() == 2);
    }

    #[test]
    fn what_cannot_be_followed_is_unknown() {
        for sql in [
            "SELECT * FROM customers JOIN orders USING (id)",
            "SELECT * FROM nowhere",
            "SELECT c.nothing FROM customers c",
            "FETCH ALL FROM c",
        ] {
            let stmt = &crate::sql::parse(sql).expect("parses")[0];
            assert_eq!(statement(stmt, &Shop), Rows::Unknown, "{sql}");
        }
        let stmt = &crate::sql::parse("CREATE TABLE t (a int)").expect("parses")[0];
        assert_eq!(statement(stmt, &Shop), Rows::None);
    }
}
