//! Typed fact values, looked up by path.
//!
//! Facts are produced by the protocol side (`sql`, later `git` and `mask`) as ordinary Rust
//! structs; the engine only sees them through [`Record`], so one evaluator serves every
//! subject. Lookups borrow: judging a statement allocates nothing for the facts it reads.

use std::fmt;

/// A value a condition can compare.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    List(List<'a>),
    Record(&'a dyn Record),
}

/// A borrowed list of values, in whichever shape the producer stores it.
#[derive(Clone, Copy)]
pub enum List<'a> {
    Strs(&'a [String]),
    StaticStrs(&'a [&'static str]),
    Literals(&'a [Literal]),
    Records(&'a dyn Records),
}

/// A named-field view of a fact struct (`stmt`, `agent`, a commit, ...).
pub trait Record {
    /// The value of `field`, or [`Value::Null`] when this record has no such field.
    fn get(&self, field: &str) -> Value<'_>;
}

/// A list of records (`stmt.writes`, `push.commits`, ...).
pub trait Records {
    fn len(&self) -> usize;
    fn at(&self, index: usize) -> &dyn Record;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Record> Records for Vec<T> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn at(&self, index: usize) -> &dyn Record {
        &self[index]
    }
}

/// An owned constant written in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Literal>),
}

impl Literal {
    pub fn as_value(&self) -> Value<'_> {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Int(i) => Value::Int(*i),
            Literal::Str(s) => Value::Str(s),
            Literal::List(items) => Value::List(List::Literals(items)),
        }
    }
}

impl<'a> List<'a> {
    pub fn len(&self) -> usize {
        match self {
            List::Strs(s) => s.len(),
            List::StaticStrs(s) => s.len(),
            List::Literals(s) => s.len(),
            List::Records(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, index: usize) -> Value<'a> {
        match *self {
            List::Strs(s) => Value::Str(&s[index]),
            List::StaticStrs(s) => Value::Str(s[index]),
            List::Literals(s) => s[index].as_value(),
            List::Records(r) => Value::Record(r.at(index)),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl Value<'_> {
    /// Equality across the scalar types; lists and records never compare equal.
    pub fn equals(&self, other: &Value<'_>) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            _ => false,
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Record(_) => true,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Record(_) => "record",
        }
    }

    /// Converts to JSON for `--json` output and audit rows; `fields` names a record's
    /// fields, since records do not list their own keys.
    pub fn to_json(&self, fields: &dyn Fn(&dyn Record) -> serde_json::Value) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Str(s) => (*s).into(),
            Value::List(l) => l.iter().map(|v| v.to_json(fields)).collect(),
            Value::Record(r) => fields(*r),
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Record(_) => f.write_str("{..}"),
        }
    }
}

/// The identity a request runs as, visible to rules as `agent.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub sub: String,
    pub groups: Vec<String>,
    /// The optional `agent` claim (which tool or model acts for `sub`).
    pub name: Option<String>,
}

impl Record for Agent {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "sub" => Value::Str(&self.sub),
            "groups" => Value::List(List::Strs(&self.groups)),
            "name" => self.name.as_deref().map_or(Value::Null, Value::Str),
            _ => Value::Null,
        }
    }
}

/// The system a request is aimed at, visible to rules as `target.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    pub name: String,
}

impl Record for Target {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "name" => Value::Str(&self.name),
            _ => Value::Null,
        }
    }
}
