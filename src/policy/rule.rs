//! Rules as the engine holds them: parsed, checked and compiled (regexes and globs built
//! once at load time, variables resolved to slots).

use std::time::Duration;

use super::value::Literal;

/// What a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Sql,
    Git,
    Mask,
}

impl Subject {
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Sql => "sql",
            Subject::Git => "git",
            Subject::Mask => "mask",
        }
    }
}

/// The verdict on one request. Ordered: the strictest wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Review,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(word: &str) -> Option<Decision> {
        match word {
            "allow" => Some(Decision::Allow),
            "review" => Some(Decision::Review),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// How a masked column is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskStrategy {
    Redact,
    Null,
    Hash,
    Partial,
    Email,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    Deny {
        message: String,
    },
    Review {
        message: String,
        /// The approver group; `None` leaves it to the approvals configuration.
        by: Option<String>,
        #[serde(skip)]
        timeout: Option<Duration>,
    },
    Allow,
    Log,
    Mask {
        strategy: MaskStrategy,
    },
}

impl Action {
    /// The decision this action asks for; logging and masking let the request through.
    pub fn decision(&self) -> Decision {
        match self {
            Action::Deny { .. } => Decision::Deny,
            Action::Review { .. } => Decision::Review,
            Action::Allow | Action::Log | Action::Mask { .. } => Decision::Allow,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            Action::Deny { message } | Action::Review { message, .. } => Some(message),
            _ => None,
        }
    }

    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Deny { .. } => "deny",
            Action::Review { .. } => "review",
            Action::Allow => "allow",
            Action::Log => "log",
            Action::Mask { .. } => "mask",
        }
    }
}

/// Where a rule came from, for error messages and `rules show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// A test case written under a rule: this input must get this decision.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleTest {
    pub expect: Decision,
    pub input: String,
    pub sub: Option<String>,
    pub groups: Option<Vec<String>>,
    pub target: Option<String>,
    pub line: usize,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub subject: Subject,
    /// Records "would <action>" without enforcing it.
    pub monitor: bool,
    pub when: Expr,
    pub unless: Option<Expr>,
    pub action: Action,
    pub tests: Vec<RuleTest>,
    pub origin: Origin,
    /// The rule's source text, for `rules show`.
    pub source: String,
}

/// A condition.
#[derive(Debug)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    /// A lone operand, true when its value is truthy.
    Test(Operand),
    Compare(Operand, Compare, Operand),
    Quantified {
        all: bool,
        /// The slot the bound variable lives in while the body runs.
        slot: usize,
        list: Operand,
        body: Box<Expr>,
    },
}

#[derive(Debug)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Intersects,
    Contains,
    /// Regex match, compiled from the right-hand literal(s).
    Matches(regex::RegexSet),
    /// Glob match (`*` stays within one `/` segment, `**` crosses them).
    Glob(globset::GlobSet),
}

#[derive(Debug)]
pub enum Operand {
    Literal(Literal),
    Path(Path),
    Len(Box<Operand>),
    Nested(Box<Expr>),
}

#[derive(Debug)]
pub struct Path {
    pub base: PathBase,
    pub fields: Vec<Box<str>>,
    /// The path as written, for messages.
    pub text: String,
}

#[derive(Debug)]
pub enum PathBase {
    /// `stmt`, `agent`, `target`, `ref`, `push`, ...
    Root(Box<str>),
    /// A variable bound by `any`/`all`.
    Var(usize),
}
