//! Mask rules over result columns (SPEC "Masking"): what each output column is (its
//! `column.*` facts), which rule masks it and how, and what a value's content gives away.
//!
//! A plan is made once per result description: a column that a rule masks by what it is
//! (its name, type, sources) is masked whole in every row; every other text column is
//! read by the content detectors, and each finding is masked in place by the rule that
//! names its detector. Protocol code hands over the description and the raw values; it
//! gets back the values to send. Whatever the strategy, a value stays valid for its
//! column's type and format: a column that is not text is sent as NULL when masked.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use crate::mask::detectors::Scanner;
use crate::mask::pii;
use crate::mask::strategy::{self, HashKey};
use crate::policy::RuleSet;
use crate::policy::rule::{Action, MaskStrategy, Subject};
use crate::policy::value::{Agent, List, Record, Target, Value};

/// What an output column is, as mask rules see it (`column.*`).
#[derive(Debug, Clone, Default)]
pub struct Column {
    pub name: String,
    /// The PostgreSQL type name (`text`, `int4`, `jsonb`, ...).
    pub type_name: String,
    /// Every `schema.table.column` it derives from.
    pub sources: Vec<String>,
    /// Not a plain copy of its source (an expression, a function, an aggregate).
    pub derived: bool,
    /// Its lineage could not be followed.
    pub opaque: bool,
    /// The content detectors that fired on the value being judged (empty for the plan).
    pub detectors: Vec<&'static str>,
}

impl Record for Column {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "name" => Value::Str(&self.name),
            "type" => Value::Str(&self.type_name),
            "sources" => Value::List(List::Strs(&self.sources)),
            "derived" => Value::Bool(self.derived),
            "opaque" => Value::Bool(self.opaque),
            "detectors" => Value::List(List::StaticStrs(&self.detectors)),
            _ => Value::Null,
        }
    }
}

/// How a type's values can be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text is a valid value, in text and binary format alike.
    Text,
    /// JSON text: a whole-value mask becomes a JSON string.
    Json,
    /// As JSON, with a version byte first in binary format.
    Jsonb,
    /// Anything else (numbers, booleans, dates, bytea, arrays): masked means NULL.
    Other,
}

fn kind(type_name: &str) -> Kind {
    match type_name {
        "text" | "varchar" | "bpchar" | "name" | "citext" | "unknown" | "char" => Kind::Text,
        "json" => Kind::Json,
        "jsonb" => Kind::Jsonb,
        _ => Kind::Other,
    }
}

/// A mask rule's verdict on a column: its strategy and the rule's id.
pub type Masking = (MaskStrategy, Arc<str>);

/// A column masked in a row (`usize::MAX` for the whole row), by the rule named:
/// shared, so a masked row allocates no label.
pub type MaskedBy = (usize, Arc<str>);

/// One output column's plan.
#[derive(Debug)]
pub struct ColumnPlan {
    pub column: Column,
    kind: Kind,
    /// Masked whole, in every row.
    pub whole: Option<Masking>,
}

impl ColumnPlan {
    /// Whether a masked value of it is sent as NULL (its type is not text or JSON).
    pub fn masked_as_null(&self) -> bool {
        self.kind == Kind::Other
    }

    /// Whether its values are read by the content detectors (a text column no rule
    /// masks whole).
    pub fn read_for_content(&self) -> bool {
        self.whole.is_none() && self.kind != Kind::Other
    }
}

/// What to do with the columns of one result description.
#[derive(Debug)]
pub struct Plan {
    pub columns: Vec<ColumnPlan>,
    /// Whether any column is masked or read for content (a plan that does neither lets
    /// rows through untouched, without looking at them).
    active: bool,
    /// Per (column, detector), what the rules say: found once, reused for every row.
    content: Mutex<Vec<(usize, &'static str, Option<Masking>)>>,
}

impl Masker {
    /// Whether values of `type_name` are numbers, booleans or times: types that cannot
    /// carry a masked column's text through an expression (`bytea`, arrays, records and
    /// JSON can, and so can every text type).
    pub fn is_scalar(type_name: &str) -> bool {
        matches!(
            type_name,
            "bool"
                | "int2"
                | "int4"
                | "int8"
                | "float4"
                | "float8"
                | "numeric"
                | "oid"
                | "date"
                | "time"
                | "timetz"
                | "timestamp"
                | "timestamptz"
                | "interval"
        )
    }
}

impl Plan {
    /// Whether any row of this result needs looking at.
    pub fn active(&self) -> bool {
        self.active
    }

    /// The name of column `i` as the audit lists it (`(row)` for a whole row).
    pub fn column_name(&self, i: usize) -> &str {
        self.columns
            .get(i)
            .map(|c| c.column.name.as_str())
            .unwrap_or("(row)")
    }
}

/// Mask rules and what they need besides the columns: who is reading, from where, and
/// the key of the `hash` strategy. One per session.
pub struct Masker {
    pub rules: std::sync::Arc<RuleSet>,
    pub agent: Agent,
    pub target: Target,
    pub key: HashKey,
    scanner: &'static Scanner,
}

/// The masked values of one row (`None` when none changed), and the columns masked in
/// it, as `column:rule`, for the audit.
pub struct MaskedRow<'a> {
    pub values: Option<Vec<Option<Cow<'a, [u8]>>>>,
    pub masked: Vec<MaskedBy>,
}

impl Masker {
    pub fn new(
        rules: std::sync::Arc<RuleSet>,
        agent: Agent,
        target: Target,
        key: HashKey,
    ) -> Masker {
        Masker {
            rules,
            agent,
            target,
            key,
            scanner: Scanner::shared(),
        }
    }

    /// The plan for output columns described as `columns`.
    pub fn plan(&self, columns: Vec<Column>) -> Plan {
        let mut active = false;
        let columns = columns
            .into_iter()
            .map(|column| {
                let whole = self.judge(&column).map(|(strategy, rule)| {
                    // Partial and email keep a value's ends, which only hides something
                    // in a value of the shape they expect: `reverse(email)` through the
                    // email strategy would show most of the address.
                    match strategy {
                        MaskStrategy::Partial | MaskStrategy::Email if column.derived => {
                            (MaskStrategy::Redact, rule)
                        }
                        _ => (strategy, rule),
                    }
                });
                let kind = kind(&column.type_name);
                active |= whole.is_some() || kind != Kind::Other;
                ColumnPlan {
                    column,
                    kind,
                    whole,
                }
            })
            .collect();
        Plan {
            columns,
            active,
            content: Mutex::new(Vec::new()),
        }
    }

    /// Whether any mask rule exists (none: nothing is ever masked).
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty_for(Subject::Mask)
    }

    /// A `column:rule` for the first of `sources` (`schema.table.column`) a rule masks
    /// whole, read as a plain copy of it.
    pub fn masks_any(&self, sources: &[String]) -> Option<String> {
        sources.iter().find_map(|s| {
            let name = s.rsplit('.').next().unwrap_or(s).trim_matches('"');
            let column = Column {
                name: name.to_string(),
                type_name: "text".into(),
                sources: vec![s.clone()],
                ..Column::default()
            };
            self.judge(&column).map(|(_, rule)| format!("{s}:{rule}"))
        })
    }

    /// What the mask rules say about `column`: the strictest strategy of the enforced
    /// mask rules that match, unless an `allow` rule matches too.
    fn judge(&self, column: &Column) -> Option<Masking> {
        if self.rules.is_empty_for(Subject::Mask) {
            return None;
        }
        let verdict = self.rules.judge(
            Subject::Mask,
            &[
                ("column", column),
                ("agent", &self.agent),
                ("target", &self.target),
            ],
        );
        let mut best: Option<Masking> = None;
        for m in verdict.matched.iter().filter(|m| !m.monitor()) {
            match &m.rule.action {
                Action::Allow => return None,
                Action::Mask { strategy }
                    if best
                        .as_ref()
                        .is_none_or(|(s, _)| strictness(*strategy) > strictness(*s)) =>
                {
                    best = Some((*strategy, Arc::from(m.rule.id.as_str())));
                }
                _ => {}
            }
        }
        best
    }

    /// The row's values as the agent may see them. `formats` are the columns' formats
    /// (0 text, 1 binary). A row whose column count does not match its plan has every
    /// value withheld (NULL): the gateway cannot tell which is which.
    pub fn row<'a>(
        &self,
        plan: &Plan,
        formats: &[i16],
        values: &[Option<&'a [u8]>],
    ) -> MaskedRow<'a> {
        let mut masked = Vec::new();
        if !plan.active {
            return MaskedRow {
                values: None,
                masked,
            };
        }
        if values.len() != plan.columns.len() {
            return MaskedRow {
                values: Some(vec![None; values.len()]),
                masked: vec![(usize::MAX, Arc::from("unplanned"))],
            };
        }
        let mut out: Option<Vec<Option<Cow<'a, [u8]>>>> = None;
        for (i, (cp, value)) in plan.columns.iter().zip(values).enumerate() {
            let Some(value) = value else { continue };
            let binary = is_binary(formats, i);
            let new = match &cp.whole {
                Some((strategy, rule)) => {
                    masked.push((i, rule.clone()));
                    Some(whole(cp.kind, binary, *strategy, value, &self.key))
                }
                None if cp.kind != Kind::Other => self.content(plan, i, value).map(|(v, rules)| {
                    for r in rules {
                        if !masked.iter().any(|(c, m)| *c == i && *m == r) {
                            masked.push((i, r));
                        }
                    }
                    Some(Cow::Owned(v))
                }),
                None => None,
            };
            if let Some(new) = new {
                let row = out
                    .get_or_insert_with(|| values.iter().map(|v| v.map(Cow::Borrowed)).collect());
                row[i] = new;
            }
        }
        MaskedRow {
            values: out,
            masked,
        }
    }

    /// `value` with every finding the rules mask replaced in place, and the rules that
    /// did; `None` when nothing changed.
    fn content(
        &self,
        plan: &Plan,
        column: usize,
        value: &[u8],
    ) -> Option<(Vec<u8>, Vec<Arc<str>>)> {
        let mut findings: Vec<(&'static str, std::ops::Range<usize>)> = self
            .scanner
            .scan(value)
            .into_iter()
            .map(|f| (f.detector, f.span))
            .collect();
        findings.extend(pii::find(value));
        if findings.is_empty() {
            return None;
        }
        findings.sort_by_key(|(_, s)| (s.start, std::cmp::Reverse(s.end)));
        let mut out = Vec::with_capacity(value.len());
        let mut rules = Vec::new();
        let mut at = 0;
        for (detector, span) in findings {
            if span.start < at {
                continue; // inside a finding already masked
            }
            let Some((strategy, rule)) = self.for_detector(plan, column, detector) else {
                continue;
            };
            out.extend_from_slice(&value[at..span.start]);
            let piece = &value[span.clone()];
            match strategy::apply(strategy, piece, &self.key) {
                Some(v) => out.extend_from_slice(&v),
                None => out.extend_from_slice(strategy::REDACTED.as_bytes()),
            }
            at = span.end;
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
        if rules.is_empty() {
            return None;
        }
        out.extend_from_slice(&value[at..]);
        Some((out, rules))
    }

    fn for_detector(&self, plan: &Plan, column: usize, detector: &'static str) -> Option<Masking> {
        let mut cache = plan
            .content
            .lock()
            .expect("the content cache lock is never poisoned");
        if let Some((_, _, m)) = cache
            .iter()
            .find(|(c, d, _)| *c == column && *d == detector)
        {
            return m.clone();
        }
        let mut facts = plan.columns[column].column.clone();
        facts.detectors = vec![detector];
        let m = self.judge(&facts);
        cache.push((column, detector, m.clone()));
        m
    }
}

/// Whether column `i` is sent in binary format, by Bind's rules for format codes.
fn is_binary(formats: &[i16], i: usize) -> bool {
    match formats {
        [] => false,
        [one] => *one == 1,
        many => many.get(i) == Some(&1),
    }
}

/// How strict a strategy is: the one that shows least wins.
fn strictness(s: MaskStrategy) -> u8 {
    match s {
        MaskStrategy::Null => 4,
        MaskStrategy::Redact => 3,
        MaskStrategy::Hash => 2,
        MaskStrategy::Partial => 1,
        MaskStrategy::Email => 0,
    }
}

/// A whole value masked, valid for its type and format (`None`: NULL).
fn whole<'a>(
    kind: Kind,
    binary: bool,
    strategy: MaskStrategy,
    value: &[u8],
    key: &HashKey,
) -> Option<Cow<'a, [u8]>> {
    let text = match kind {
        Kind::Other => return None,
        Kind::Jsonb if binary => value.get(1..).unwrap_or_default(),
        _ => value,
    };
    let masked = strategy::apply(strategy, text, key)?;
    Some(match kind {
        Kind::Text => masked,
        Kind::Json | Kind::Jsonb => Cow::Owned({
            let s = serde_json::to_string(&String::from_utf8_lossy(&masked)).unwrap_or_default();
            let mut v = Vec::with_capacity(s.len() + 1);
            if kind == Kind::Jsonb && binary {
                v.push(1);
            }
            v.extend_from_slice(s.as_bytes());
            v
        }),
        Kind::Other => unreachable!("returned above"),
    })
}
