//! Detects WHERE clauses that hold for every row: constant comparisons (`1 = 1`,
//! `'a' = 'a'`, `2 > 1`, `1 + 1 = 2`), `TRUE`, `NOT FALSE`, `'t'::boolean`, a column
//! compared with itself (`id = id`), `OR` with a true arm, `x IS NULL OR x IS NOT NULL`,
//! `IS NOT NULL` on a literal or a primary-key-like column, `1 IN (1)`, `LIKE '%'`,
//! `EXISTS (SELECT 1)`. It folds constants; it does not read the schema, so it cannot know
//! that `id > 0` matches every row, and says only "always true" or "don't know".

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, SelectItem,
    SetExpr, UnaryOperator, Value, Visit, Visitor,
};

/// Whether `condition` (the WHERE of a write on `table`) is true for every row.
pub fn always_true(condition: &Expr, table: &str) -> bool {
    judge(condition, table, &[]).0
}

/// [`always_true`], and whether the answer read any literal or parameter value: if not,
/// every statement of the same shape (literals replaced) gets the same answer, which is
/// what lets [`super::Analyzer`] reuse facts across values.
///
/// `same_table` names every alias under which the statement sees the written table again
/// (its own alias, a self-join in `USING`/`FROM`): `users.id = u2.id` over those matches
/// every row with itself.
pub fn judge(condition: &Expr, table: &str, same_table: &[String]) -> (bool, bool) {
    let base = table.rsplit('.').next().unwrap_or(table).to_lowercase();
    let mut names: Vec<String> = vec![base];
    names.extend(same_table.iter().map(|n| n.to_lowercase()));
    let ctx = Context {
        table,
        names: RefCell::new(names),
        read_literal: Cell::new(false),
    };
    let verdict = match ctx.eval(condition) {
        Some(Const::Bool(b)) => b,
        Some(Const::Str(s)) => bool_text(&s) == Some(true),
        Some(_) => false,
        // Unknown, but if it names no column it is the same for every row: all or none.
        None => !names_a_column(condition),
    };
    (verdict, ctx.read_literal.get())
}

/// Whether a column is referenced anywhere in `e` (subqueries included, where a name may
/// be the subquery's own column: the safe side, since that only keeps a clause "bounded").
fn names_a_column(e: &Expr) -> bool {
    struct Finder;
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(i)
                    if i.quote_style.is_some()
                        || !ROW_INDEPENDENT_NAMES.contains(&i.value.to_lowercase().as_str()) =>
                {
                    ControlFlow::Break(())
                }
                Expr::CompoundIdentifier(_) | Expr::CompoundFieldAccess { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    e.visit(&mut Finder).is_break()
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

#[derive(Debug, Clone, PartialEq)]
enum Const {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

struct Context<'a> {
    table: &'a str,
    /// Qualifiers that denote the written table (its name and aliases of it).
    names: RefCell<Vec<String>>,
    read_literal: Cell<bool>,
}

impl Context<'_> {
    fn eval(&self, e: &Expr) -> Option<Const> {
        match e {
            Expr::Value(v) => {
                self.read_literal.set(true);
                literal(&v.value)
            }
            Expr::TypedString(t) => {
                self.read_literal.set(true);
                let c = literal(&t.value.value)?;
                let ty = t.data_type.to_string().to_lowercase();
                if ty == "boolean" || ty == "bool" {
                    Some(Const::Bool(as_bool(&c)?))
                } else {
                    Some(c)
                }
            }
            Expr::Nested(inner) => self.eval(inner),
            Expr::UnaryOp { op, expr } => match (op, self.eval(expr)?) {
                (UnaryOperator::Not, c) => Some(Const::Bool(!as_bool(&c)?)),
                (UnaryOperator::Minus, c) => Some(Const::Num(-as_num(&c)?)),
                (UnaryOperator::Plus, c) => Some(Const::Num(as_num(&c)?)),
                _ => None,
            },
            Expr::BinaryOp { left, op, right } => self.binary(left, op, right),
            Expr::IsNull(x) => match self.eval(x) {
                Some(c) => Some(Const::Bool(c == Const::Null)),
                None if self.primary_key_like(x) => Some(Const::Bool(false)),
                None => None,
            },
            Expr::IsNotNull(x) => match self.eval(x) {
                Some(c) => Some(Const::Bool(c != Const::Null)),
                None if self.primary_key_like(x) => Some(Const::Bool(true)),
                None => None,
            },
            Expr::IsTrue(x) => Some(Const::Bool(self.eval(x).as_ref().and_then(as_bool)?)),
            Expr::IsNotFalse(x) => Some(Const::Bool(self.eval(x).as_ref().and_then(as_bool)?)),
            Expr::IsFalse(x) | Expr::IsNotTrue(x) => {
                Some(Const::Bool(!self.eval(x).as_ref().and_then(as_bool)?))
            }
            Expr::IsNotDistinctFrom(a, b) if same_column(a, b) => Some(Const::Bool(true)),
            Expr::IsDistinctFrom(a, b) if same_column(a, b) => Some(Const::Bool(false)),
            Expr::IsNotDistinctFrom(a, b) | Expr::IsDistinctFrom(a, b) => {
                let equal = self.eval(a)? == self.eval(b)?;
                Some(Const::Bool(
                    equal == matches!(e, Expr::IsNotDistinctFrom(..)),
                ))
            }
            Expr::In {
                expr,
                target: InTarget::Subquery(q),
                negated,
                ..
            } => self.whole_table(expr, q).then_some(Const::Bool(!negated)),
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => match strip(right) {
                Expr::Subquery(q) => self.whole_table(left, q).then_some(Const::Bool(true)),
                _ => None,
            },
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                let hit = if list.iter().any(|item| same_column(expr, item)) {
                    true
                } else {
                    let needle = self.eval(expr)?;
                    let mut hit = false;
                    for item in list {
                        if let Some(c) = self.eval(item) {
                            hit |= compare(&needle, &c) == Some(std::cmp::Ordering::Equal);
                        }
                    }
                    hit
                };
                // A miss among values we could not all fold proves nothing.
                if !hit && list.iter().any(|i| self.eval(i).is_none()) {
                    return None;
                }
                Some(Const::Bool(hit != *negated))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (v, lo, hi) = (self.eval(expr)?, self.eval(low)?, self.eval(high)?);
                let inside = compare(&v, &lo)?.is_ge() && compare(&v, &hi)?.is_le();
                Some(Const::Bool(inside != *negated))
            }
            Expr::Like {
                negated,
                expr,
                pattern,
                ..
            }
            | Expr::ILike {
                negated,
                expr,
                pattern,
                ..
            } => {
                let Const::Str(p) = self.eval(pattern)? else {
                    return None;
                };
                if !p.is_empty() && p.chars().all(|c| c == '%') {
                    return Some(Const::Bool(!negated));
                }
                let Const::Str(v) = self.eval(expr)? else {
                    return None;
                };
                let (v, p) = match e {
                    Expr::ILike { .. } => (v.to_lowercase(), p.to_lowercase()),
                    _ => (v, p),
                };
                Some(Const::Bool(like(&v, &p) != *negated))
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let otherwise = || match else_result {
                    Some(e) => self.eval(e),
                    None => Some(Const::Null),
                };
                if operand.is_none() {
                    for (i, when) in conditions.iter().enumerate() {
                        match self.eval(&when.condition).as_ref().and_then(as_bool) {
                            Some(true) => return self.eval(&when.result),
                            Some(false) => continue,
                            // Unknown from here on: constant only if every remaining
                            // branch gives the same constant.
                            None => {
                                let first = otherwise()?;
                                return conditions[i..]
                                    .iter()
                                    .all(|w| self.eval(&w.result).as_ref() == Some(&first))
                                    .then_some(first);
                            }
                        }
                    }
                    return otherwise();
                }
                let first = otherwise()?;
                conditions
                    .iter()
                    .all(|w| self.eval(&w.result).as_ref() == Some(&first))
                    .then_some(first)
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                let c = self.eval(expr)?;
                let ty = data_type.to_string().to_lowercase();
                if ty == "boolean" || ty == "bool" {
                    Some(Const::Bool(as_bool(&c)?))
                } else if [
                    "int", "integer", "bigint", "smallint", "numeric", "decimal", "real", "double",
                    "float",
                ]
                .iter()
                .any(|t| ty.starts_with(t))
                {
                    Some(Const::Num(as_num(&c)?))
                } else {
                    Some(c)
                }
            }
            Expr::Exists { subquery, negated } => {
                let SetExpr::Select(select) = subquery.body.as_ref() else {
                    return None;
                };
                if select.having.is_some() || subquery.limit_clause.is_some() {
                    return None;
                }
                // No FROM: one row. FROM the table being written: a row exists whenever
                // there is anything to write, and a filter that matches each row with
                // itself (`u2.id = users.id`) keeps it.
                if select.from.is_empty() {
                    let holds = match &select.selection {
                        None => true,
                        Some(w) => self.eval(w).as_ref().and_then(as_bool)?,
                    };
                    return Some(Const::Bool(holds != *negated));
                }
                let alias = self.self_alias(&select.from)?;
                let added = alias.is_some();
                if let Some(a) = alias {
                    self.names.borrow_mut().push(a);
                }
                let holds = match &select.selection {
                    None => Some(true),
                    Some(w) => self.eval(w).as_ref().and_then(as_bool),
                };
                if added {
                    self.names.borrow_mut().pop();
                }
                holds.filter(|h| *h).map(|_| Const::Bool(!negated))
            }
            Expr::Subquery(q) => {
                // `(SELECT true)`: one row, one constant column.
                let SetExpr::Select(select) = q.body.as_ref() else {
                    return None;
                };
                if !select.from.is_empty()
                    || select.selection.is_some()
                    || select.projection.len() != 1
                {
                    return None;
                }
                match &select.projection[0] {
                    SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                        self.eval(x)
                    }
                    _ => None,
                }
            }
            Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("coalesce") => {
                let FunctionArguments::List(args) = &f.args else {
                    return None;
                };
                for arg in &args.args {
                    let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = arg else {
                        return None;
                    };
                    match self.eval(x)? {
                        Const::Null => continue,
                        c => return Some(c),
                    }
                }
                Some(Const::Null)
            }
            _ => None,
        }
    }

    fn binary(&self, left: &Expr, op: &BinaryOperator, right: &Expr) -> Option<Const> {
        use BinaryOperator as B;
        match op {
            B::And => {
                let (l, r) = (
                    self.eval(left).and_then(|c| as_bool(&c)),
                    self.eval(right).and_then(|c| as_bool(&c)),
                );
                match (l, r) {
                    (Some(false), _) | (_, Some(false)) => Some(Const::Bool(false)),
                    (Some(true), Some(true)) => Some(Const::Bool(true)),
                    _ => None,
                }
            }
            B::Or => {
                if self.complementary(left, right) {
                    return Some(Const::Bool(true));
                }
                let (l, r) = (
                    self.eval(left).and_then(|c| as_bool(&c)),
                    self.eval(right).and_then(|c| as_bool(&c)),
                );
                match (l, r) {
                    (Some(true), _) | (_, Some(true)) => Some(Const::Bool(true)),
                    (Some(false), Some(false)) => Some(Const::Bool(false)),
                    _ => None,
                }
            }
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                let ordering = if self.same(left, right) {
                    std::cmp::Ordering::Equal
                } else {
                    compare(&self.eval(left)?, &self.eval(right)?)?
                };
                Some(Const::Bool(match op {
                    B::Eq => ordering.is_eq(),
                    B::NotEq => ordering.is_ne(),
                    B::Lt => ordering.is_lt(),
                    B::LtEq => ordering.is_le(),
                    B::Gt => ordering.is_gt(),
                    _ => ordering.is_ge(),
                }))
            }
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
                let (a, b) = (as_num(&self.eval(left)?)?, as_num(&self.eval(right)?)?);
                let n = match op {
                    B::Plus => a + b,
                    B::Minus => a - b,
                    B::Multiply => a * b,
                    B::Divide if b != 0.0 => a / b,
                    B::Modulo if b != 0.0 => a % b,
                    _ => return None,
                };
                Some(Const::Num(n))
            }
            B::StringConcat => match (self.eval(left)?, self.eval(right)?) {
                (Const::Str(a), Const::Str(b)) => Some(Const::Str(a + &b)),
                _ => None,
            },
            _ => None,
        }
    }

    /// [`same_column`], or one column of the written table seen under two of its names
    /// (`id` and `users.id`, `users.id` and `u2.id` for a self-join alias `u2`).
    fn same(&self, a: &Expr, b: &Expr) -> bool {
        if same_column(a, b) || same_expression(a, b) {
            return true;
        }
        let names = self.names.borrow();
        let of_table = |parts: &[sqlparser::ast::Ident]| match parts {
            [.., t, c] if names.contains(&t.value.to_lowercase()) => Some(c.value.to_lowercase()),
            _ => None,
        };
        match (column_of(a), column_of(b)) {
            (Expr::Identifier(x), Expr::CompoundIdentifier(p))
            | (Expr::CompoundIdentifier(p), Expr::Identifier(x)) => {
                of_table(p).is_some_and(|c| c == x.value.to_lowercase())
            }
            (Expr::CompoundIdentifier(p), Expr::CompoundIdentifier(q)) => {
                of_table(p).is_some_and(|c| Some(c) == of_table(q))
            }
            _ => false,
        }
    }

    /// For a subquery `FROM` of exactly the written table: `Some(alias)` (the alias it is
    /// given, if any). `None` when the subquery reads anything else.
    fn self_alias(&self, from: &[sqlparser::ast::TableWithJoins]) -> Option<Option<String>> {
        let [only] = from else { return None };
        if !only.joins.is_empty() {
            return None;
        }
        let sqlparser::ast::TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = &only.relation
        else {
            return None;
        };
        (super::ident::object_name(name) == self.table)
            .then(|| alias.as_ref().map(|a| a.name.value.to_lowercase()))
    }

    /// `id IN (SELECT id FROM <the same table>)` with nothing narrowing the subquery.
    fn whole_table(&self, column: &Expr, q: &sqlparser::ast::Query) -> bool {
        let SetExpr::Select(select) = q.body.as_ref() else {
            return false;
        };
        let filtered = select
            .selection
            .as_ref()
            .is_some_and(|w| self.eval(w).as_ref().and_then(as_bool) != Some(true));
        if filtered
            || q.limit_clause.is_some()
            || select.from.len() != 1
            || !select.from[0].joins.is_empty()
        {
            return false;
        }
        let sqlparser::ast::TableFactor::Table { name, .. } = &select.from[0].relation else {
            return false;
        };
        let same_table = super::ident::object_name(name) == self.table;
        let same_column = match select.projection.as_slice() {
            [SelectItem::UnnamedExpr(x)] => same_column(x, column) || same_last_part(x, column),
            _ => false,
        };
        same_table && same_column
    }

    /// Two arms that together cover every value: `x IS NULL OR x IS NOT NULL`,
    /// `x = c OR x <> c`, `x >= a OR x < b` with the ranges meeting (either order).
    fn complementary(&self, a: &Expr, b: &Expr) -> bool {
        match (strip(a), strip(b)) {
            (Expr::IsNull(x), Expr::IsNotNull(y)) | (Expr::IsNotNull(x), Expr::IsNull(y)) => {
                same_column(x, y)
            }
            (
                Expr::BinaryOp {
                    left: l1,
                    op: o1,
                    right: r1,
                },
                Expr::BinaryOp {
                    left: l2,
                    op: o2,
                    right: r2,
                },
            ) if self.same(l1, l2) => {
                self.ranges_cover(o1, r1, o2, r2) || self.ranges_cover(o2, r2, o1, r1)
            }
            _ => false,
        }
    }

    /// Whether `x <op1> a OR x <op2> b` holds for every non-NULL `x`.
    fn ranges_cover(&self, op1: &BinaryOperator, a: &Expr, op2: &BinaryOperator, b: &Expr) -> bool {
        use BinaryOperator as B;
        if matches!((op1, op2), (B::Eq, B::NotEq)) {
            return a == b
                || self.eval(a).is_some_and(|x| {
                    self.eval(b)
                        .is_some_and(|y| compare(&x, &y).is_some_and(|o| o.is_eq()))
                });
        }
        // op1 bounds from below (x > a, x >= a), op2 from above (x < b, x <= b).
        if !matches!(op1, B::Gt | B::GtEq) || !matches!(op2, B::Lt | B::LtEq) {
            return false;
        }
        let (Some(lo), Some(hi)) = (self.eval(a), self.eval(b)) else {
            return false;
        };
        match compare(&hi, &lo) {
            Some(std::cmp::Ordering::Greater) => true,
            // Meeting at one point: covered unless both ends leave it out.
            Some(std::cmp::Ordering::Equal) => !(matches!(op1, B::Gt) && matches!(op2, B::Lt)),
            _ => false,
        }
    }

    /// Columns that are never NULL in practice: `id`, `pk`, `uuid`, `<table>_id`, and
    /// PostgreSQL's system columns.
    fn primary_key_like(&self, e: &Expr) -> bool {
        let name = match strip(e) {
            Expr::Identifier(i) => &i.value,
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(i) => &i.value,
                None => return false,
            },
            _ => return false,
        };
        let name = name.to_lowercase();
        let table = self
            .table
            .rsplit('.')
            .next()
            .unwrap_or(self.table)
            .to_lowercase();
        let singular = table.strip_suffix('s').unwrap_or(&table);
        matches!(
            name.as_str(),
            "id" | "pk" | "uuid" | "ctid" | "oid" | "xmin" | "xmax"
        ) || name == format!("{table}_id")
            || name == format!("{singular}_id")
    }
}

/// `users.id` and `id` name the same column of a one-table subquery.
fn same_last_part(a: &Expr, b: &Expr) -> bool {
    let last = |e: &Expr| match strip(e) {
        Expr::Identifier(i) => Some(i.value.to_lowercase()),
        Expr::CompoundIdentifier(p) => p.last().map(|i| i.value.to_lowercase()),
        _ => None,
    };
    last(a).is_some() && last(a) == last(b)
}

/// The same expression on both sides (`lower(email) = lower(email)`), unless it calls a
/// volatile function, which may differ between the two calls.
fn same_expression(a: &Expr, b: &Expr) -> bool {
    struct Volatile;
    impl Visitor for Volatile {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Function(f)
                    if VOLATILE_FUNCTIONS.contains(&super::ident::base_name(&f.name).as_str()) =>
                {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let (a, b) = (strip(a), strip(b));
    a == b && !a.visit(&mut Volatile).is_break()
}

/// Functions whose two calls in one row may return different values.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "nextval",
    "setval",
    "clock_timestamp",
    "timeofday",
    "pg_sleep",
];

/// A column reference, seen through parentheses and a FROM-less `(SELECT col)`.
fn column_of(e: &Expr) -> &Expr {
    match strip(e) {
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s)
                if s.from.is_empty() && s.selection.is_none() && s.projection.len() == 1 =>
            {
                match &s.projection[0] {
                    SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => {
                        column_of(x)
                    }
                    _ => strip(e),
                }
            }
            _ => strip(e),
        },
        other => other,
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
    }
}

/// The same plain column on both sides (`id = id`, `t.id = t.id`, `id = (SELECT id)`).
fn same_column(a: &Expr, b: &Expr) -> bool {
    match (column_of(a), column_of(b)) {
        (Expr::Identifier(x), Expr::Identifier(y)) => {
            x.value.eq_ignore_ascii_case(&y.value) && x.quote_style == y.quote_style
        }
        (Expr::CompoundIdentifier(x), Expr::CompoundIdentifier(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(p, q)| {
                    p.value.eq_ignore_ascii_case(&q.value) && p.quote_style == q.quote_style
                })
        }
        _ => false,
    }
}

fn literal(v: &Value) -> Option<Const> {
    match v {
        Value::Number(n, _) => n.replace('_', "").parse().ok().map(Const::Num),
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::UnicodeStringLiteral(s) => Some(Const::Str(s.clone())),
        Value::DollarQuotedString(d) => Some(Const::Str(d.value.clone())),
        Value::Boolean(b) => Some(Const::Bool(*b)),
        Value::Null => Some(Const::Null),
        _ => None,
    }
}

/// SQL LIKE on constants: `%` any run, `_` one character, `\\` escapes.
fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last `%`.
    let (mut vi, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '\\' && pi + 1 < p.len() && p[pi + 1] == v[vi] {
            vi += 1;
            pi += 2;
        } else if pi < p.len()
            && (p[pi] == '_' || (p[pi] == v[vi] && p[pi] != '%' && p[pi] != '\\'))
        {
            vi += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// PostgreSQL's spellings of a boolean in text.
fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1" => Some(true),
        "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "of" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn as_bool(c: &Const) -> Option<bool> {
    match c {
        Const::Bool(b) => Some(*b),
        Const::Str(s) => bool_text(s),
        _ => None,
    }
}

fn as_num(c: &Const) -> Option<f64> {
    match c {
        Const::Num(n) => Some(*n),
        Const::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Const::Null, _) | (_, Const::Null) => None,
        (Const::Str(x), Const::Str(y)) => Some(x.cmp(y)),
        (Const::Bool(x), y) | (y, Const::Bool(x)) if as_bool(y).is_some() => {
            let y = as_bool(y)?;
            // Keep the original operand order for the result.
            if matches!(a, Const::Bool(_)) {
                Some(x.cmp(&y))
            } else {
                Some(y.cmp(x))
            }
        }
        _ => as_num(a)?.partial_cmp(&as_num(b)?),
    }
}
