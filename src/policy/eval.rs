//! Evaluates compiled conditions against facts. Nothing here allocates unless a rule
//! uses `any`/`all` (one small stack of bound values per evaluation).

use super::rule::{Compare, Expr, Operand, PathBase};
use super::value::{List, Record, Value};

/// The facts a rule sees: named roots (`stmt`, `agent`, `target`, ...).
pub struct Env<'a> {
    pub roots: &'a [(&'a str, &'a dyn Record)],
}

impl Record for Env<'_> {
    fn get(&self, field: &str) -> Value<'_> {
        self.roots
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(Value::Null, |(_, r)| Value::Record(*r))
    }
}

pub fn test<'a>(expr: &'a Expr, env: &'a dyn Record, vars: &mut Vec<Value<'a>>) -> bool {
    match expr {
        Expr::Or(parts) => parts.iter().any(|p| test(p, env, vars)),
        Expr::And(parts) => parts.iter().all(|p| test(p, env, vars)),
        Expr::Not(inner) => !test(inner, env, vars),
        Expr::Test(operand) => value(operand, env, vars).truthy(),
        Expr::Compare(left, op, right) => {
            let l = value(left, env, vars);
            match op {
                Compare::Matches(set) => any_str(l, |s| set.is_match(s)),
                Compare::Glob(set) => any_str(l, |s| set.is_match(s)),
                _ => compare(l, op, value(right, env, vars)),
            }
        }
        Expr::Quantified {
            all,
            slot,
            list,
            body,
        } => {
            let Value::List(items) = value(list, env, vars) else {
                // Quantifying over a missing list: nothing exists, so `all` holds vacuously.
                return *all;
            };
            let mut result = *all;
            for item in items.iter() {
                vars.truncate(*slot);
                vars.push(item);
                if test(body, env, vars) != *all {
                    result = !*all;
                    break;
                }
            }
            vars.truncate(*slot);
            result
        }
    }
}

fn value<'a>(operand: &'a Operand, env: &'a dyn Record, vars: &mut Vec<Value<'a>>) -> Value<'a> {
    match operand {
        Operand::Literal(l) => l.as_value(),
        Operand::Nested(e) => Value::Bool(test(e, env, vars)),
        Operand::Len(inner) => match value(inner, env, vars) {
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            _ => Value::Null,
        },
        Operand::Path(path) => {
            let mut current = match &path.base {
                PathBase::Root(name) => env.get(name),
                PathBase::Var(slot) => vars.get(*slot).copied().unwrap_or(Value::Null),
            };
            for field in &path.fields {
                current = match current {
                    Value::Record(r) => r.get(field),
                    _ => return Value::Null,
                };
            }
            current
        }
    }
}

fn any_str(v: Value<'_>, pred: impl Fn(&str) -> bool) -> bool {
    match v {
        Value::Str(s) => pred(s),
        Value::List(l) => l
            .iter()
            .any(|item| matches!(item, Value::Str(s) if pred(s))),
        _ => false,
    }
}

fn contains(list: List<'_>, needle: &Value<'_>) -> bool {
    list.iter().any(|item| item.equals(needle))
}

fn compare(l: Value<'_>, op: &Compare, r: Value<'_>) -> bool {
    match op {
        Compare::Eq => l.equals(&r),
        Compare::Ne => !l.equals(&r),
        Compare::Lt | Compare::Le | Compare::Gt | Compare::Ge => {
            let (Value::Int(a), Value::Int(b)) = (l, r) else {
                return false;
            };
            match op {
                Compare::Lt => a < b,
                Compare::Le => a <= b,
                Compare::Gt => a > b,
                _ => a >= b,
            }
        }
        Compare::In => member(&l, r),
        // Null (an unknown value) is never in a list, so `not in` holds for it: fail closed.
        Compare::NotIn => !member(&l, r),
        Compare::Intersects => match (l, r) {
            (Value::List(a), Value::List(b)) => a.iter().any(|x| contains(b, &x)),
            (Value::List(a), x) | (x, Value::List(a)) => contains(a, &x),
            (a, b) => a.equals(&b),
        },
        Compare::Contains => match (l, r) {
            (Value::List(a), x) => contains(a, &x),
            (Value::Str(a), Value::Str(b)) => a.contains(b),
            _ => false,
        },
        Compare::Matches(_) | Compare::Glob(_) => unreachable!("patterns are matched in test()"),
    }
}

fn member(needle: &Value<'_>, haystack: Value<'_>) -> bool {
    match (needle, haystack) {
        (_, Value::List(list)) => contains(list, needle),
        (Value::Str(n), Value::Str(h)) => h.contains(n),
        _ => false,
    }
}
