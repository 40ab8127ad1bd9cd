//! Whether a write's condition restricts the rows of the table it writes.
//!
//! A WHERE (or a MERGE's ON, or an upsert's source) bounds a write only when it narrows
//! the *target table's own rows*. The question is asked the other way round from a list of
//! tautologies, so that a form nobody listed fails closed:
//!
//! * `a AND b` restricts when either side does; `a OR b` only when every side does and the
//!   sides do not cover every value together (`x = 1 OR x <> 1`, `5 < x OR x <= 5`,
//!   `x IS NULL OR x IS NOT NULL`, `a OR NOT a`, ranges whose union is the whole line).
//! * A predicate restricts only when it reads a column of the target. A condition on
//!   another relation's column (`OR now() IS NOT NULL`, `OR $2`, `EXISTS (SELECT 1 FROM
//!   pg_class)`, `v.x = 1` over a `USING (VALUES ...)`) holds for all rows or none.
//! * Comparing the target's columns with themselves restricts nothing: `"id" = id`,
//!   `id COLLATE "C" = id`, `id + 0 = id`, and the same column through a self-join, a
//!   subquery or a CTE over the target (`USING t t2 WHERE t.id = t2.id`).
//! * `IN (SELECT id FROM t)`, `= ANY(ARRAY(SELECT id FROM t))` and any set operation with
//!   such a branch cover every row.
//!
//! An unqualified column counts as the target's only when nothing else in scope could own
//! it: with another table in `FROM`/`USING`, PostgreSQL may resolve it there.

use std::ops::ControlFlow;
use std::rc::Rc;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArguments, Ident, InTarget, ObjectName, Query, SelectItem,
    SetExpr, SetOperator, TableFactor, TableWithJoins, UnaryOperator, Visit, VisitMut, Visitor,
    VisitorMut,
};

use super::fold::{Const, Fold, VOLATILE_FUNCTIONS, as_bool, compare, strip};
use super::ident::{base_name, ident, object_name};

/// Whether `condition`, the WHERE of a write on `table` with nothing else in scope, holds
/// for every row (does not restrict it).
pub fn always_true(condition: &Expr, table: &str) -> bool {
    let scope = Scope::new(table, None, &[], &[]);
    !scope.restricts(condition)
}

/// How a name in scope relates to the written table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The written table's own rows.
    Target,
    /// Another view of every row of the written table (a self-join, a subquery or CTE
    /// that selects it unfiltered): equal to the target's, row for row.
    Mirror,
    /// Anything else.
    Other,
}

struct Entry {
    name: String,
    role: Role,
    /// Column names known to belong to this relation (a `VALUES` or subquery alias).
    columns: Option<Vec<String>>,
}

/// The relations a condition can name, and what they are to the written table.
pub struct Scope<'q> {
    /// The written table as named (schema-qualified where written so).
    table: String,
    /// Its last name part.
    base: String,
    entries: Vec<Entry>,
    /// An unqualified column belongs to the target (nothing else in scope could own it).
    unqualified_target: bool,
    /// Visible CTE definitions, innermost last.
    ctes: &'q [&'q Query],
    /// How many subqueries and CTEs deep this scope sits (bounded: CTEs can recurse).
    depth: usize,
    /// Shared by every scope of one judgement, so a literal read anywhere is noticed.
    fold: Rc<Fold>,
}

/// Deeper than this, a relation is taken to hold every row of the target (fail closed).
const MAX_DEPTH: usize = 16;

impl<'q> Scope<'q> {
    /// The scope of a write on `table` (seen as `alias`, if given) with `others` in its
    /// `FROM`/`USING` (or a MERGE's source).
    pub fn new(
        table: &str,
        alias: Option<&Ident>,
        others: &[&TableFactor],
        ctes: &'q [&'q Query],
    ) -> Scope<'q> {
        let base = table.rsplit('.').next().unwrap_or(table).to_string();
        let mut scope = Scope {
            table: table.to_string(),
            base: base.clone(),
            entries: Vec::new(),
            unqualified_target: true,
            ctes,
            depth: 0,
            fold: Rc::default(),
        };
        match alias {
            Some(a) => scope.entries.push(Entry {
                name: ident(a),
                role: Role::Target,
                columns: None,
            }),
            None => {
                for name in [table.to_string(), base] {
                    scope.entries.push(Entry {
                        name,
                        role: Role::Target,
                        columns: None,
                    });
                }
            }
        }
        for f in others {
            scope.add_factor(f);
        }
        scope
    }

    /// Whether any literal or parameter value was read to reach the answers so far.
    pub fn read_literal(&self) -> bool {
        self.fold.read_literal.get()
    }

    fn add_factor(&mut self, f: &TableFactor) {
        match f {
            TableFactor::Table { name, alias, .. } => {
                let role = if self.holds_target(f) {
                    Role::Mirror
                } else {
                    Role::Other
                };
                // A real table's columns are unknown: an unqualified name may be its.
                if role != Role::Mirror {
                    self.unqualified_target = false;
                }
                let names = match alias {
                    Some(a) => vec![ident(&a.name)],
                    None => vec![object_name(name), base_name(name)],
                };
                for name in names {
                    self.entries.push(Entry {
                        name,
                        role,
                        columns: None,
                    });
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let role = if self.holds_target(f) {
                    Role::Mirror
                } else {
                    Role::Other
                };
                let columns = match alias {
                    Some(a) if !a.columns.is_empty() => {
                        Some(a.columns.iter().map(|c| ident(&c.name)).collect())
                    }
                    _ => output_names(subquery),
                };
                // Unknown columns: an unqualified name may be this relation's.
                if columns.is_none() {
                    self.unqualified_target = false;
                }
                if let Some(a) = alias {
                    self.entries.push(Entry {
                        name: ident(&a.name),
                        role,
                        columns,
                    });
                } else if columns.is_some() {
                    self.entries.push(Entry {
                        name: String::new(),
                        role,
                        columns,
                    });
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.add_joined(table_with_joins),
            _ => self.unqualified_target = false,
        }
    }

    fn add_joined(&mut self, t: &TableWithJoins) {
        self.add_factor(&t.relation);
        for j in &t.joins {
            self.add_factor(&j.relation);
        }
    }

    /// A scope for a subquery of this one: its own relations added, unqualified names
    /// left to them (PostgreSQL resolves a name in the innermost relation that has it).
    fn nested(&self, from: &[TableWithJoins]) -> Scope<'q> {
        let mut inner = Scope {
            table: self.table.clone(),
            base: self.base.clone(),
            entries: self
                .entries
                .iter()
                .map(|e| Entry {
                    name: e.name.clone(),
                    role: e.role,
                    columns: e.columns.clone(),
                })
                .collect(),
            unqualified_target: self.unqualified_target && from.is_empty(),
            ctes: self.ctes,
            depth: self.depth + 1,
            fold: Rc::clone(&self.fold),
        };
        // Inner names shadow outer ones: insert them first.
        let outer = std::mem::take(&mut inner.entries);
        for t in from {
            inner.add_joined(t);
        }
        inner.entries.extend(outer);
        inner
    }

    fn cte(&self, name: &ObjectName) -> Option<&'q Query> {
        if name.0.len() != 1 {
            return None;
        }
        let wanted = object_name(name);
        self.ctes.iter().rev().find_map(|q| {
            q.with.as_ref().and_then(|w| {
                w.cte_tables
                    .iter()
                    .find(|c| ident(&c.alias.name) == wanted)
                    .map(|c| c.query.as_ref())
            })
        })
    }

    /// Whether `e`, as a condition, narrows the target's rows.
    pub fn restricts(&self, e: &Expr) -> bool {
        let mut e = e.clone();
        let _ = VisitMut::visit(&mut e, &mut Canon);
        self.narrows(&e)
    }

    fn narrows(&self, e: &Expr) -> bool {
        if let Some(c) = self.fold.eval(e) {
            // Never true (false or NULL) matches nothing: a bound, if an odd one.
            return as_bool(&c) != Some(true);
        }
        match strip(e) {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => self.narrows(left) || self.narrows(right),
            Expr::BinaryOp {
                op: BinaryOperator::Or,
                ..
            } => {
                let mut arms = Vec::new();
                disjuncts(strip(e), &mut arms);
                let arms: Vec<Expr> = arms.into_iter().map(|a| self.canonical(a)).collect();
                arms.iter().all(|a| self.narrows(a)) && !self.cover(&arms)
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => match negate(&self.canonical(expr)) {
                Negated::Pushed(n) => self.narrows(&n),
                Negated::Wrapped(_) => self.leaf(strip(e)),
            },
            other => self.leaf(other),
        }
    }

    /// One predicate (no AND/OR at the top).
    fn leaf(&self, e: &Expr) -> bool {
        use BinaryOperator as B;
        match e {
            Expr::BinaryOp {
                left,
                op: B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq,
                right,
            } => self.compares(left, right),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => self.compares(a, b),
            Expr::IsNotNull(x) if self.key_like(x) => false,
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                if *negated {
                    return self.reads_target(expr) || list.iter().any(|i| self.reads_target(i));
                }
                !list.iter().any(|i| self.same_rows(expr, i))
                    && list.iter().any(|i| self.compares(expr, i))
            }
            Expr::In {
                expr,
                target: InTarget::Subquery(q),
                negated,
                ..
            } => self.member_of(expr, q, *negated),
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            } => match subquery_of(right) {
                Some(q) => self.member_of(left, q, *compare_op != B::Eq),
                // `= ANY(<array built from every row of the table>)`.
                None if *compare_op == B::Eq && self.refs(right).whole => false,
                None => self.compares(left, right),
            },
            Expr::AllOp { left, right, .. } => match subquery_of(right) {
                Some(q) => self.reads_target(left) || self.correlated(q),
                None => self.compares(left, right),
            },
            Expr::Between {
                expr, low, high, ..
            } => self.compares(expr, low) || self.compares(expr, high),
            Expr::Exists { subquery, .. } => self.correlated(subquery),
            other => self.reads_target(other),
        }
    }

    /// A comparison of `a` with `b` restricts when it reads the target on one side and
    /// is not the target's columns compared with themselves.
    fn compares(&self, a: &Expr, b: &Expr) -> bool {
        let (ra, rb) = (self.refs(peel(a)), self.refs(peel(b)));
        if !ra.target && !rb.target {
            // Perhaps through a correlated subquery: `(SELECT ... WHERE o.id = t.id) = 1`.
            return ra.correlated || rb.correlated;
        }
        !self.same_rows_refs(&ra, &rb)
    }

    fn same_rows(&self, a: &Expr, b: &Expr) -> bool {
        self.same_rows_refs(&self.refs(peel(a)), &self.refs(peel(b)))
    }

    /// The two sides are functions of the target row alone, through the same columns
    /// (or one side reads the target and the other only a mirror of it).
    fn same_rows_refs(&self, a: &Refs, b: &Refs) -> bool {
        if a.outside || b.outside || a.columns.is_empty() || b.columns.is_empty() {
            return false;
        }
        fn names(r: &Refs) -> Vec<&str> {
            let mut n: Vec<&str> = r.columns.iter().map(|(c, _)| c.as_str()).collect();
            n.sort_unstable();
            n.dedup();
            n
        }
        let only = |r: &Refs, role: Role| r.columns.iter().all(|(_, x)| *x == role);
        names(a) == names(b)
            || (only(a, Role::Target) && only(b, Role::Mirror))
            || (only(a, Role::Mirror) && only(b, Role::Target))
    }

    /// `x [NOT] IN (subquery)`, `x = ANY (subquery)`.
    fn member_of(&self, x: &Expr, q: &Query, negated: bool) -> bool {
        if !self.reads_target(x) {
            return self.correlated(q);
        }
        if negated {
            return true;
        }
        !self.yields_column(q, x)
    }

    /// Whether a subquery's filter narrows the target (it is correlated with it).
    fn correlated(&self, q: &Query) -> bool {
        self.depth < MAX_DEPTH && self.correlated_body(&q.body)
    }

    fn correlated_body(&self, body: &SetExpr) -> bool {
        match body {
            SetExpr::Select(s) => {
                let inner = self.nested(&s.from);
                s.selection.as_ref().is_some_and(|w| inner.restricts(w))
            }
            SetExpr::Query(q) => self.correlated(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.correlated_body(left) && self.correlated_body(right)
            }
            _ => false,
        }
    }

    /// Whether `q` returns the target column `x` for every row of the target (`SELECT id
    /// FROM t`, unfiltered; a `UNION` with such a branch; a FROM-less `SELECT id`).
    fn yields_column(&self, q: &Query, x: &Expr) -> bool {
        let Some(column) = self.target_column(x) else {
            return false;
        };
        !self.limited(q) && self.inside(q, |scope| scope.body_yields(&q.body, &column, self))
    }

    /// Runs `f` with the scope of query `q`'s body: no relations yet, `q`'s CTEs visible.
    fn inside<R>(&self, q: &Query, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let ctes: Vec<&Query> = self.ctes.iter().copied().chain([q]).collect();
        let scope = Scope {
            table: self.table.clone(),
            base: self.base.clone(),
            entries: Vec::new(),
            unqualified_target: true,
            ctes: &ctes,
            depth: self.depth + 1,
            fold: Rc::clone(&self.fold),
        };
        f(&scope)
    }

    fn body_yields(&self, body: &SetExpr, column: &str, outer: &Scope<'_>) -> bool {
        match body {
            SetExpr::Query(q) => !self.limited(q) && self.body_yields(&q.body, column, outer),
            SetExpr::SetOperation {
                left, op, right, ..
            } => match op {
                SetOperator::Union => {
                    self.body_yields(left, column, outer) || self.body_yields(right, column, outer)
                }
                SetOperator::Intersect => {
                    self.body_yields(left, column, outer) && self.body_yields(right, column, outer)
                }
                _ => false,
            },
            SetExpr::Select(s) => {
                let [item] = s.projection.as_slice() else {
                    return false;
                };
                let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
                else {
                    return false;
                };
                if s.from.is_empty() {
                    // `IN (SELECT id)`: the outer row's own column.
                    return outer.target_column(e).as_deref() == Some(column)
                        && s.selection.is_none();
                }
                let Some(inner) = self.copy_scope(&s.from, outer) else {
                    return false;
                };
                // The column itself or any expression of it alone (`id + 0`, `unnest(
                // array_agg(id))`): near enough every value of it. HAVING is not taken as a
                // filter (`HAVING count(*) > 0` keeps every group).
                let r = inner.refs(peel(e));
                let only_column = !r.outside
                    && !r.columns.is_empty()
                    && r.columns.iter().all(|(c, _)| c == column);
                only_column && !s.selection.as_ref().is_some_and(|w| inner.restricts(w))
            }
            _ => false,
        }
    }

    /// For a `FROM` that is exactly one relation holding the target's rows: a scope where
    /// that relation is the target and the outer target a mirror (a correlated
    /// `t2.id = t.id` matches each row with itself).
    fn copy_scope(&self, from: &[TableWithJoins], outer: &Scope<'_>) -> Option<Scope<'q>> {
        let [only] = from else { return None };
        if !only.joins.is_empty() || !self.holds_target(&only.relation) {
            return None;
        }
        let mut inner = self.scope_of(&only.relation, self.depth + 1);
        for e in &outer.entries {
            if e.role == Role::Target || e.role == Role::Mirror {
                inner.entries.push(Entry {
                    name: e.name.clone(),
                    role: Role::Mirror,
                    columns: e.columns.clone(),
                });
            }
        }
        Some(inner)
    }

    /// Whether relation `f` holds every row of the target: the table itself (by its last
    /// name part), or a CTE or subquery that copies it.
    fn holds_target(&self, f: &TableFactor) -> bool {
        match f {
            TableFactor::Table {
                name, args: None, ..
            } => match self.cte(name) {
                Some(q) => self.copies_target(q),
                None => base_name(name) == self.base,
            },
            TableFactor::Derived { subquery, .. } => self.copies_target(subquery),
            _ => false,
        }
    }

    /// A scope in which relation `f` (known to hold the target's rows) is the target,
    /// under its alias or its name.
    fn scope_of(&self, f: &TableFactor, depth: usize) -> Scope<'q> {
        let alias = match f {
            TableFactor::Table { alias, .. } | TableFactor::Derived { alias, .. } => {
                alias.as_ref().map(|a| &a.name)
            }
            _ => None,
        };
        let mut inner = Scope::new(&self.table, alias, &[], self.ctes);
        inner.fold = Rc::clone(&self.fold);
        inner.depth = depth;
        if let (None, TableFactor::Table { name, .. }) = (alias, f) {
            inner.entries.push(Entry {
                name: object_name(name),
                role: Role::Target,
                columns: None,
            });
        }
        inner
    }

    /// Whether a query returns every row of the target (some branch selects from it, or
    /// from a copy of it, with no filter that narrows it).
    pub fn copies_target(&self, q: &Query) -> bool {
        if self.depth >= MAX_DEPTH {
            return true;
        }
        !self.limited(q) && self.inside(q, |scope| scope.body_copies(&q.body))
    }

    fn body_copies(&self, body: &SetExpr) -> bool {
        match body {
            SetExpr::Query(q) => self.copies_target(q),
            SetExpr::SetOperation {
                left, op, right, ..
            } => match op {
                SetOperator::Union => self.body_copies(left) || self.body_copies(right),
                SetOperator::Intersect => self.body_copies(left) && self.body_copies(right),
                _ => self.body_copies(left),
            },
            SetExpr::Select(s) => {
                // Any relation of the FROM (joined or not) that holds the target's rows,
                // unless the filter narrows it.
                let factors: Vec<&TableFactor> = s
                    .from
                    .iter()
                    .flat_map(|t| {
                        std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                    })
                    .collect();
                factors.iter().any(|f| {
                    if !self.holds_target(f) {
                        return false;
                    }
                    let mut inner = self.scope_of(f, self.depth);
                    for g in factors.iter().filter(|g| !std::ptr::eq(**g, *f)) {
                        inner.add_factor(g);
                    }
                    !s.selection.as_ref().is_some_and(|w| inner.restricts(w))
                })
            }
            _ => false,
        }
    }

    /// Whether a query returns at most some rows: `LIMIT n` or `FETCH FIRST n` (a batch is
    /// a bound), but not `LIMIT ALL`, `LIMIT NULL` or an OFFSET alone.
    fn limited(&self, q: &Query) -> bool {
        use sqlparser::ast::LimitClause;
        let by_limit = match &q.limit_clause {
            Some(LimitClause::LimitOffset { limit: Some(l), .. }) => {
                !matches!(self.fold.eval(l), Some(Const::Null))
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => true,
            _ => false,
        };
        by_limit || q.fetch.is_some()
    }

    /// The target column `e` names (through parentheses, COLLATE, casts), if any.
    fn target_column(&self, e: &Expr) -> Option<String> {
        match peel(e) {
            Expr::Identifier(i) if self.unqualified(i) == Role::Target => Some(ident(i)),
            Expr::CompoundIdentifier(parts) => match self.qualifier(parts) {
                Some(Role::Target) => parts.last().map(ident),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whose an unqualified column is: a relation's that lists it, else the target's when
    /// nothing else could own it.
    fn unqualified(&self, i: &Ident) -> Role {
        let name = ident(i);
        match self
            .entries
            .iter()
            .find(|e| e.columns.as_ref().is_some_and(|c| c.contains(&name)))
        {
            Some(e) => e.role,
            None if self.unqualified_target => Role::Target,
            None => Role::Other,
        }
    }

    fn qualifier(&self, parts: &[Ident]) -> Option<Role> {
        let [.., q, _] = parts else { return None };
        let q = ident(q);
        self.entries.iter().find(|e| e.name == q).map(|e| e.role)
    }

    /// Whether `e` reads a column of the target itself.
    fn reads_target(&self, e: &Expr) -> bool {
        let r = self.refs(e);
        r.target || r.correlated
    }

    /// Columns `e` reads outside subqueries, and whether it depends on anything but the
    /// target's row (another relation, a parameter, a subquery, a volatile function).
    fn refs(&self, e: &Expr) -> Refs {
        let mut r = Refs::default();
        let mut finder = RefFinder {
            scope: self,
            refs: &mut r,
            depth: 0,
        };
        let _ = e.visit(&mut finder);
        r
    }

    /// Columns that are never NULL in practice: `id`, `pk`, `uuid`, `<table>_id`, and
    /// PostgreSQL's system columns.
    fn key_like(&self, e: &Expr) -> bool {
        let Some(name) = self.target_column(e) else {
            return false;
        };
        let table = self.base.to_lowercase();
        let singular = table.strip_suffix('s').unwrap_or(&table);
        matches!(
            name.as_str(),
            "id" | "pk" | "uuid" | "ctid" | "oid" | "xmin" | "xmax"
        ) || name == format!("{table}_id")
            || name == format!("{singular}_id")
    }

    /// An arm as compared with others (already through [`Canon`]): negations pushed in,
    /// a comparison with the target's side on the left.
    fn canonical(&self, e: &Expr) -> Expr {
        match strip(e) {
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => match negate(expr) {
                Negated::Pushed(n) => self.canonical(&n),
                Negated::Wrapped(n) => n,
            },
            other => self.flip(other.clone()),
        }
    }

    fn flip(&self, e: Expr) -> Expr {
        use BinaryOperator as B;
        match e {
            Expr::BinaryOp { left, op, right }
                if matches!(op, B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq)
                    && !self.refs(&left).target
                    && self.refs(&right).target =>
            {
                let op = match op {
                    B::Lt => B::Gt,
                    B::LtEq => B::GtEq,
                    B::Gt => B::Lt,
                    B::GtEq => B::LtEq,
                    other => other,
                };
                Expr::BinaryOp {
                    left: right,
                    op,
                    right: left,
                }
            }
            other => other,
        }
    }

    /// Whether some arms of an OR together hold for every row: an arm and its negation,
    /// or comparisons of one column with constants whose ranges cover the whole line.
    fn cover(&self, arms: &[Expr]) -> bool {
        // Arms are compared with their literals: another statement of the same shape
        // may answer differently.
        self.fold.read_literal.set(true);
        for (i, a) in arms.iter().enumerate() {
            let not_a = match negate(a) {
                Negated::Pushed(n) => self.canonical(&n),
                Negated::Wrapped(n) => n,
            };
            if arms[i + 1..].contains(&not_a) {
                return true;
            }
        }
        // Ranges per column.
        let mut by_column: Vec<(String, Vec<Range>)> = Vec::new();
        for a in arms {
            if let Some((column, ranges)) = self.ranges(a) {
                match by_column.iter_mut().find(|(c, _)| *c == column) {
                    Some((_, rs)) => rs.extend(ranges),
                    None => by_column.push((column, ranges)),
                }
            }
        }
        by_column.into_iter().any(|(_, rs)| covers_line(rs))
    }

    /// `column op constant` as ranges of the column's values it keeps.
    fn ranges(&self, e: &Expr) -> Option<(String, Vec<Range>)> {
        use BinaryOperator as B;
        let column_key = |x: &Expr| {
            let r = self.refs(x);
            (r.target && !r.outside).then(|| x.to_string())
        };
        let constant = |x: &Expr| self.fold.eval(x).filter(|c| *c != Const::Null);
        match e {
            Expr::BinaryOp { left, op, right } => {
                let c = constant(right)?;
                let key = column_key(left)?;
                let below = |inc| Range {
                    lo: None,
                    hi: Some((c.clone(), inc)),
                };
                let above = |inc| Range {
                    lo: Some((c.clone(), inc)),
                    hi: None,
                };
                let ranges = match op {
                    B::Eq => vec![Range::point(&c)],
                    B::NotEq => vec![below(false), above(false)],
                    B::Lt => vec![below(false)],
                    B::LtEq => vec![below(true)],
                    B::Gt => vec![above(false)],
                    B::GtEq => vec![above(true)],
                    _ => return None,
                };
                Some((key, ranges))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (lo, hi, key) = (constant(low)?, constant(high)?, column_key(expr)?);
                let ranges = if *negated {
                    vec![
                        Range {
                            lo: None,
                            hi: Some((lo, false)),
                        },
                        Range {
                            lo: Some((hi, false)),
                            hi: None,
                        },
                    ]
                } else {
                    vec![Range {
                        lo: Some((lo, true)),
                        hi: Some((hi, true)),
                    }]
                };
                Some((key, ranges))
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                let key = column_key(expr)?;
                let mut points: Vec<Const> =
                    list.iter().map(constant).collect::<Option<Vec<_>>>()?;
                if !*negated {
                    return Some((key, points.iter().map(Range::point).collect()));
                }
                // Everything but the points: the gaps between them.
                points.sort_by(|a, b| compare(a, b).unwrap_or(std::cmp::Ordering::Equal));
                let mut ranges = Vec::new();
                let mut lo: Option<(Const, bool)> = None;
                for p in points {
                    ranges.push(Range {
                        lo: lo.take(),
                        hi: Some((p.clone(), false)),
                    });
                    lo = Some((p, false));
                }
                ranges.push(Range { lo, hi: None });
                Some((key, ranges))
            }
            _ => None,
        }
    }
}

/// A range of values: `None` is unbounded; the flag says whether the end is included.
#[derive(Debug, Clone)]
struct Range {
    lo: Option<(Const, bool)>,
    hi: Option<(Const, bool)>,
}

impl Range {
    fn point(c: &Const) -> Range {
        Range {
            lo: Some((c.clone(), true)),
            hi: Some((c.clone(), true)),
        }
    }
}

/// Whether the union of `ranges` is every value (values of one kind: all numbers or all
/// strings; mixed kinds are not compared and so never cover).
fn covers_line(mut ranges: Vec<Range>) -> bool {
    use std::cmp::Ordering;
    let cmp_lo = |a: &Option<(Const, bool)>, b: &Option<(Const, bool)>| match (a, b) {
        (None, None) => Some(Ordering::Equal),
        (None, _) => Some(Ordering::Less),
        (_, None) => Some(Ordering::Greater),
        (Some((x, xi)), Some((y, yi))) => compare(x, y).map(|o| o.then_with(|| yi.cmp(xi))),
    };
    let mut failed = false;
    ranges.sort_by(|a, b| {
        cmp_lo(&a.lo, &b.lo).unwrap_or_else(|| {
            failed = true;
            Ordering::Equal
        })
    });
    if failed || ranges.first().is_none_or(|r| r.lo.is_some()) {
        return false;
    }
    // How far the union reaches from -inf, and whether it includes that end.
    let mut reach: Option<(Const, bool)> = match &ranges[0].hi {
        None => return true,
        Some(h) => Some(h.clone()),
    };
    for r in &ranges[1..] {
        let Some((end, end_inc)) = reach.clone() else {
            return true;
        };
        let joins = match &r.lo {
            None => true,
            Some((start, start_inc)) => match compare(start, &end) {
                Some(Ordering::Less) => true,
                Some(Ordering::Equal) => end_inc || *start_inc,
                Some(Ordering::Greater) => false,
                None => return false,
            },
        };
        if !joins {
            return false;
        }
        reach = match &r.hi {
            None => None,
            Some((h, h_inc)) => match compare(h, &end) {
                Some(Ordering::Greater) => Some((h.clone(), *h_inc)),
                Some(Ordering::Equal) => Some((end, end_inc || *h_inc)),
                Some(Ordering::Less) => Some((end, end_inc)),
                None => return false,
            },
        };
    }
    reach.is_none()
}

fn disjuncts<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match strip(e) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            disjuncts(left, out);
            disjuncts(right, out);
        }
        other => out.push(other),
    }
}

enum Negated {
    /// The negation written as a predicate of its own (`x <> 1` for `NOT x = 1`).
    Pushed(Expr),
    /// Only `NOT (...)` says it.
    Wrapped(Expr),
}

/// `NOT e`, pushed inward where SQL has a spelling for it (De Morgan for AND/OR).
fn negate(e: &Expr) -> Negated {
    use BinaryOperator as B;
    let boxed = |x: &Expr| Box::new(x.clone());
    let not = |x: &Expr| match negate(x) {
        Negated::Pushed(n) | Negated::Wrapped(n) => n,
    };
    Negated::Pushed(match strip(e) {
        Expr::BinaryOp { left, op, right } => {
            let op = match op {
                B::Eq => B::NotEq,
                B::NotEq => B::Eq,
                B::Lt => B::GtEq,
                B::LtEq => B::Gt,
                B::Gt => B::LtEq,
                B::GtEq => B::Lt,
                B::And | B::Or => {
                    return Negated::Pushed(Expr::BinaryOp {
                        left: Box::new(not(left)),
                        op: if *op == B::And { B::Or } else { B::And },
                        right: Box::new(not(right)),
                    });
                }
                _ => return wrapped(e),
            };
            Expr::BinaryOp {
                left: left.clone(),
                op,
                right: right.clone(),
            }
        }
        Expr::IsNull(x) => Expr::IsNotNull(boxed(x)),
        Expr::IsNotNull(x) => Expr::IsNull(boxed(x)),
        Expr::IsTrue(x) => Expr::IsNotTrue(boxed(x)),
        Expr::IsNotTrue(x) => Expr::IsTrue(boxed(x)),
        Expr::IsFalse(x) => Expr::IsNotFalse(boxed(x)),
        Expr::IsNotFalse(x) => Expr::IsFalse(boxed(x)),
        Expr::IsDistinctFrom(a, b) => Expr::IsNotDistinctFrom(a.clone(), b.clone()),
        Expr::IsNotDistinctFrom(a, b) => Expr::IsDistinctFrom(a.clone(), b.clone()),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => strip(expr).clone(),
        Expr::In {
            expr,
            target,
            negated,
            global,
        } => Expr::In {
            expr: expr.clone(),
            target: target.clone(),
            negated: !negated,
            global: *global,
        },
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => Expr::Between {
            expr: expr.clone(),
            negated: !negated,
            low: low.clone(),
            high: high.clone(),
        },
        Expr::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => Expr::Like {
            negated: !negated,
            any: *any,
            expr: expr.clone(),
            pattern: pattern.clone(),
            escape_char: escape_char.clone(),
        },
        Expr::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => Expr::ILike {
            negated: !negated,
            any: *any,
            expr: expr.clone(),
            pattern: pattern.clone(),
            escape_char: escape_char.clone(),
        },
        Expr::Exists { subquery, negated } => Expr::Exists {
            subquery: subquery.clone(),
            negated: !negated,
        },
        _ => return wrapped(e),
    })
}

fn wrapped(e: &Expr) -> Negated {
    Negated::Wrapped(Expr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(strip(e).clone()),
    })
}

/// Through parentheses, COLLATE, casts and unary plus: the expression a column sits in.
fn peel(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) | Expr::Collate { expr: x, .. } | Expr::Cast { expr: x, .. } => peel(x),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => peel(expr),
        Expr::Subquery(q) => match q.body.as_ref() {
            // `(SELECT id)`: the outer row's column.
            SetExpr::Select(s)
                if s.from.is_empty() && s.selection.is_none() && s.projection.len() == 1 =>
            {
                match &s.projection[0] {
                    SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                        peel(x)
                    }
                    _ => e,
                }
            }
            _ => e,
        },
        other => other,
    }
}

/// `(SELECT ...)` or `ARRAY(SELECT ...)` on the right of `ANY`/`ALL`.
fn subquery_of(e: &Expr) -> Option<&Query> {
    match strip(e) {
        Expr::Subquery(q) => Some(q),
        Expr::Function(f) if base_name(&f.name) == "array" => match &f.args {
            FunctionArguments::Subquery(q) => Some(q),
            _ => None,
        },
        _ => None,
    }
}

/// Output column names of a query, when every one is known.
fn output_names(q: &Query) -> Option<Vec<String>> {
    match q.body.as_ref() {
        SetExpr::Select(s) => s
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(ident(i)),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => p.last().map(ident),
                _ => None,
            })
            .collect(),
        SetExpr::Values(v) => Some(
            (1..=v.rows.first().map_or(0, |r| r.len()))
                .map(|i| format!("column{i}"))
                .collect(),
        ),
        _ => None,
    }
}

/// SQL's parameterless functions that look like names.
const ROW_INDEPENDENT_NAMES: &[&str] = &[
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_catalog",
    "current_schema",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

#[derive(Default)]
struct Refs {
    /// Columns read, by name, with the role of the relation they belong to (target or
    /// mirror only).
    columns: Vec<(String, Role)>,
    /// Some column of the target itself is read.
    target: bool,
    /// Depends on something besides the target's row.
    outside: bool,
    /// Some subquery in it is correlated with the target.
    correlated: bool,
    /// Some subquery in it reads every row of the target.
    whole: bool,
}

struct RefFinder<'s, 'q, 'r> {
    scope: &'s Scope<'q>,
    refs: &'r mut Refs,
    depth: usize,
}

impl Visitor for RefFinder<'_, '_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            self.refs.outside = true;
            self.refs.correlated |= self.scope.correlated(q);
            self.refs.whole |= self.scope.copies_target(q);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        let column = match e {
            Expr::Identifier(i) => {
                if i.quote_style.is_none()
                    && ROW_INDEPENDENT_NAMES.contains(&i.value.to_lowercase().as_str())
                {
                    return ControlFlow::Continue(());
                }
                Some((ident(i), self.scope.unqualified(i)))
            }
            Expr::CompoundIdentifier(parts) => {
                let role = self.scope.qualifier(parts).unwrap_or(Role::Other);
                parts.last().map(|c| (ident(c), role))
            }
            Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) => {
                self.refs.outside = true;
                None
            }
            Expr::Function(f) if VOLATILE_FUNCTIONS.contains(&base_name(&f.name).as_str()) => {
                self.refs.outside = true;
                None
            }
            _ => None,
        };
        if let Some((name, role)) = column {
            match role {
                Role::Other => self.refs.outside = true,
                Role::Target => {
                    self.refs.target = true;
                    self.refs.columns.push((name, role));
                }
                Role::Mirror => self.refs.columns.push((name, role)),
            }
        }
        ControlFlow::Continue(())
    }
}

/// Identifiers as PostgreSQL reads them (folded, so `"id"` and `ID` compare equal); no
/// parentheses or COLLATE; NULL-distinctness as IS [NOT] NULL.
struct Canon;

impl VisitorMut for Canon {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        // Folded names are written quoted so later reads keep them as they are; SQL's
        // parameterless functions (`current_user`) stay bare words.
        let fold = |i: &mut Ident| {
            if i.quote_style.is_some()
                || !ROW_INDEPENDENT_NAMES.contains(&i.value.to_lowercase().as_str())
            {
                i.value = ident(i);
                i.quote_style = Some('"');
            }
        };
        let distinct = matches!(e, Expr::IsDistinctFrom(..));
        match e {
            Expr::Identifier(i) => fold(i),
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(fold),
            Expr::Collate { expr, .. } | Expr::Nested(expr) => {
                *e = std::mem::replace(expr.as_mut(), Expr::value(sqlparser::ast::Value::Null));
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                let null = |x: &Expr| matches!(x, Expr::Value(v) if v.value == sqlparser::ast::Value::Null);
                let x = if null(b) {
                    Some(a.clone())
                } else if null(a) {
                    Some(b.clone())
                } else {
                    None
                };
                if let Some(x) = x {
                    *e = if distinct {
                        Expr::IsNotNull(x)
                    } else {
                        Expr::IsNull(x)
                    };
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::{SetExpr, Statement};
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::always_true;

    fn where_of(sql: &str) -> sqlparser::ast::Expr {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("test SQL parses");
        match &stmt[0] {
            Statement::Delete(d) => d.selection.clone().expect("has a WHERE"),
            Statement::Query(q) => match q.body.as_ref() {
                SetExpr::Select(s) => s.selection.clone().expect("has a WHERE"),
                _ => panic!("not a select"),
            },
            _ => panic!("unexpected statement"),
        }
    }

    fn unbounded(cond: &str) -> bool {
        always_true(
            &where_of(&format!("DELETE FROM users WHERE {cond}")),
            "users",
        )
    }

    #[test]
    fn or_arms_are_judged_on_their_own() {
        for c in [
            "id = 1 OR now() IS NOT NULL",
            "id = 1 OR random() >= 0",
            "id = 1 OR EXISTS (SELECT 1 FROM pg_class)",
            "id = 1 OR $2",
            "id = 1 OR NOT id = 1",
            "5 < id OR id <= 5",
            "id < 3 OR id = 3 OR id > 3",
            "id NOT IN (1, 2) OR id IN (1, 2)",
            "id BETWEEN 1 AND 10 OR id NOT BETWEEN 1 AND 10",
            "email IS NULL OR email IS NOT NULL",
            "active OR NOT active",
            "id = $1 OR id <> $1",
        ] {
            assert!(unbounded(c), "{c} should hold for every row");
        }
    }

    #[test]
    fn self_comparisons_in_disguise() {
        for c in [
            "\"id\" = id",
            "id COLLATE \"C\" = id",
            "id + 0 = id",
            "id IS NOT DISTINCT FROM id",
            "id IS DISTINCT FROM NULL",
            "users.id = id",
            "id IN (id, 3)",
            "id IN (SELECT id FROM users UNION SELECT 0)",
            "id = ANY(ARRAY(SELECT id FROM users))",
            "id = ANY(SELECT id FROM public.users)",
            "id IN (SELECT u.id FROM users u WHERE u.id = users.id)",
            "EXISTS (SELECT 1 FROM users u2 WHERE u2.id = users.id)",
            "id IN (SELECT id)",
            "id IN (SELECT id FROM users LIMIT ALL)",
            "id IN (SELECT id FROM users OFFSET 1)",
            "id IN (SELECT id FROM users GROUP BY id HAVING count(*) > 0)",
            "id IN (SELECT id + 0 FROM users)",
            "id IN (SELECT unnest(array_agg(id)) FROM users)",
            "id = ANY((SELECT array_agg(id) FROM users)::int[])",
            "id = 1 OR current_user = 'x'",
        ] {
            assert!(unbounded(c), "{c} should hold for every row");
        }
    }

    #[test]
    fn real_bounds_stay_bounds() {
        for c in [
            "id = 1",
            "id = $1",
            "id = 1 OR id = 2",
            "id < 3 OR id > 3",
            "email = 'a@b.c' OR name = 'x'",
            "id IN (SELECT user_id FROM banned)",
            "id IN (SELECT id FROM users WHERE created_at < now() - interval '1 year')",
            "EXISTS (SELECT 1 FROM orders o WHERE o.user_id = users.id)",
            "NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = users.id)",
            "price > cost",
            "id IS NULL",
            "email IS NOT NULL",
            "NOT (id = 1 OR id = 2)",
            "lower(email) = 'x'",
            "id IN (SELECT id FROM users ORDER BY created_at LIMIT 100)",
            "id = (SELECT max(id) FROM users)",
        ] {
            assert!(!unbounded(c), "{c} should restrict the rows");
        }
    }
}
