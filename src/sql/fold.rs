//! Constant folding for conditions: `1 = 1`, `'a' = 'a'`, `2 > 1`, `1 + 1 = 2`, `TRUE`,
//! `NOT FALSE`, `'t'::boolean`, `1 IN (1)`, `LIKE '%'`, `CASE` with equal branches,
//! `COALESCE`, `EXISTS (SELECT 1)`. It knows no columns: an expression that depends on a
//! row folds to `None`, and [`super::bounds`] decides what a column-dependent condition
//! restricts.

use std::cell::Cell;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, SelectItem,
    SetExpr, UnaryOperator, Value,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Const {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
}

/// Folds constant expressions, noting whether any literal or parameter value was read (a
/// statement whose facts depend on one cannot share cached facts with its shape).
#[derive(Default)]
pub struct Fold {
    pub read_literal: Cell<bool>,
}

impl Fold {
    pub fn eval(&self, e: &Expr) -> Option<Const> {
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
            Expr::IsNull(x) => Some(Const::Bool(self.eval(x)? == Const::Null)),
            Expr::IsNotNull(x) => Some(Const::Bool(self.eval(x)? != Const::Null)),
            Expr::IsTrue(x) => Some(Const::Bool(self.eval(x).as_ref().and_then(as_bool)?)),
            Expr::IsNotFalse(x) => Some(Const::Bool(self.eval(x).as_ref().and_then(as_bool)?)),
            Expr::IsFalse(x) | Expr::IsNotTrue(x) => {
                Some(Const::Bool(!self.eval(x).as_ref().and_then(as_bool)?))
            }
            Expr::IsNotDistinctFrom(a, b) | Expr::IsDistinctFrom(a, b) => {
                let equal = self.eval(a)? == self.eval(b)?;
                Some(Const::Bool(
                    equal == matches!(e, Expr::IsNotDistinctFrom(..)),
                ))
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated,
                ..
            } => {
                let needle = self.eval(expr)?;
                let mut hit = false;
                for item in list {
                    if let Some(c) = self.eval(item) {
                        hit |= compare(&needle, &c) == Some(std::cmp::Ordering::Equal);
                    }
                }
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
                // No FROM: one row, kept or not by a constant filter.
                if !select.from.is_empty() {
                    return None;
                }
                let holds = match &select.selection {
                    None => true,
                    Some(w) => self.eval(w).as_ref().and_then(as_bool)?,
                };
                Some(Const::Bool(holds != *negated))
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
                let ordering = compare(&self.eval(left)?, &self.eval(right)?)?;
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
}

/// Functions whose two calls in one row may return different values.
pub const VOLATILE_FUNCTIONS: &[&str] = &[
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

pub fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip(inner),
        other => other,
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
pub fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1" => Some(true),
        "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "of" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub fn as_bool(c: &Const) -> Option<bool> {
    match c {
        Const::Bool(b) => Some(*b),
        Const::Str(s) => bool_text(s),
        _ => None,
    }
}

pub fn as_num(c: &Const) -> Option<f64> {
    match c {
        Const::Num(n) => Some(*n),
        Const::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub fn compare(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
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
