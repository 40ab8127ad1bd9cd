//! Policy: the rule language, rule packs and decisions.
//!
//! Knows no sockets, bytes or storage: protocol code hands it facts through
//! [`value::Record`] and gets a [`Verdict`] back. The strictest decision wins
//! (deny > review > allow); `monitor` rules are reported but never enforced.
//!
//! ```
//! use portcullis::policy::{RuleSet, Decision, Subject};
//! use portcullis::policy::value::{Agent, Target};
//!
//! let rules = RuleSet::builtin().expect("the built-in packs parse");
//! let facts = portcullis::sql::analyze("DELETE FROM users");
//! let roots: [(&str, &dyn portcullis::policy::value::Record); 3] = [
//!     ("stmt", &facts.statements[0]),
//!     ("agent", &Agent::default()),
//!     ("target", &Target::default()),
//! ];
//! let verdict = rules.judge(Subject::Sql, &roots);
//! assert_eq!(verdict.decision, Decision::Deny);
//! assert_eq!(verdict.rule_ids().next(), Some("sql.unbounded-write"));
//! ```

mod error;
pub mod eval;
pub mod parse;
pub mod rule;
pub mod schema;
pub mod value;

use std::path::{Path, PathBuf};

pub use error::{Error, Location};
pub use rule::{Action, Decision, Rule, RuleTest, Subject};

use eval::Env;
use value::Record;

/// The default packs shipped in the binary: the same files as `rules/` in the source tree.
pub const BUILTIN_PACKS: &[(&str, &str)] = &[
    ("rules/sql.rules", include_str!("../../rules/sql.rules")),
    ("rules/git.rules", include_str!("../../rules/git.rules")),
    ("rules/mask.rules", include_str!("../../rules/mask.rules")),
];

/// The rule id whose action follows `server.unparsed`.
pub const UNPARSED_RULE: &str = "sql.unparsed";

/// The rules in force.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    pub fn builtin() -> Result<RuleSet, Error> {
        let mut set = RuleSet::default();
        for (name, text) in BUILTIN_PACKS {
            set.add_text(name, text)?;
        }
        Ok(set)
    }

    /// Loads rule files; a directory contributes its `*.rules` files in name order.
    pub fn load(paths: &[PathBuf]) -> Result<RuleSet, Error> {
        let mut set = RuleSet::default();
        for path in paths {
            for file in rule_files(path)? {
                let text = std::fs::read_to_string(&file).map_err(|source| Error::Io {
                    path: file.display().to_string(),
                    source,
                })?;
                set.add_text(&file.display().to_string(), &text)?;
            }
        }
        Ok(set)
    }

    /// Parses `text` and adds its rules; rule ids must be unique across the set.
    pub fn add_text(&mut self, file: &str, text: &str) -> Result<(), Error> {
        for rule in parse::parse_rules(file, text)? {
            if let Some(first) = self.rules.iter().find(|r| r.id == rule.id) {
                return Err(Error::Duplicate {
                    id: rule.id.clone(),
                    first: Location {
                        file: first.origin.file.clone(),
                        line: first.origin.line,
                        column: 1,
                    },
                    second: Location {
                        file: rule.origin.file.clone(),
                        line: rule.origin.line,
                        column: 1,
                    },
                });
            }
            self.rules.push(rule);
        }
        Ok(())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether no rule judges `subject` (masking then looks at no row).
    pub fn is_empty_for(&self, subject: Subject) -> bool {
        !self.rules.iter().any(|r| r.subject == subject)
    }

    /// Turns a rule's `deny` into `review` or back, keeping its message: how
    /// `server.unparsed` reaches `sql.unparsed`. Returns false when no such rule exists.
    pub fn set_decision(&mut self, id: &str, decision: Decision) -> bool {
        let Some(rule) = self.rules.iter_mut().find(|r| r.id == id) else {
            return false;
        };
        let message = rule.action.message().unwrap_or_default().to_string();
        rule.action = match decision {
            Decision::Deny => Action::Deny { message },
            Decision::Review => Action::Review {
                message,
                by: None,
                timeout: None,
            },
            Decision::Allow => Action::Allow,
        };
        true
    }

    /// Judges facts of one subject. `roots` names the fact records (`stmt`, `agent`, ...).
    pub fn judge<'r>(&'r self, subject: Subject, roots: &[(&str, &dyn Record)]) -> Verdict<'r> {
        let env = Env { roots };
        let mut verdict = Verdict::default();
        let mut vars = Vec::new();
        for rule in self.rules.iter().filter(|r| r.subject == subject) {
            let hit = eval::test(&rule.when, &env, &mut vars)
                && !rule
                    .unless
                    .as_ref()
                    .is_some_and(|u| eval::test(u, &env, &mut vars));
            if hit {
                verdict.add(rule);
            }
        }
        verdict
    }
}

fn rule_files(path: &Path) -> Result<Vec<PathBuf>, Error> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(io)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.extension().is_some_and(|e| e == "rules") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// A rule that matched, and whether it only monitors.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'r> {
    pub rule: &'r Rule,
}

impl Matched<'_> {
    pub fn monitor(&self) -> bool {
        self.rule.monitor
    }
}

/// The outcome of judging one request (or, merged, a whole query).
#[derive(Debug, Clone)]
pub struct Verdict<'r> {
    pub decision: Decision,
    pub matched: Vec<Matched<'r>>,
}

impl Default for Verdict<'_> {
    fn default() -> Self {
        Verdict {
            decision: Decision::Allow,
            matched: Vec::new(),
        }
    }
}

impl<'r> Verdict<'r> {
    fn add(&mut self, rule: &'r Rule) {
        if !rule.monitor {
            self.decision = self.decision.max(rule.action.decision());
        }
        self.matched.push(Matched { rule });
    }

    /// Folds another statement's verdict into this one (multi-statement queries).
    pub fn merge(&mut self, other: Verdict<'r>) {
        self.decision = self.decision.max(other.decision);
        for m in other.matched {
            if !self.matched.iter().any(|x| std::ptr::eq(x.rule, m.rule)) {
                self.matched.push(m);
            }
        }
    }

    /// The enforced rules whose action is the final decision (for deny: the deny rules).
    pub fn deciding(&self) -> impl Iterator<Item = &'r Rule> + '_ {
        self.matched
            .iter()
            .filter(move |m| !m.monitor() && m.rule.action.decision() == self.decision)
            .map(|m| m.rule)
    }

    pub fn rule_ids(&self) -> impl Iterator<Item = &'r str> + '_ {
        self.deciding().map(|r| r.id.as_str())
    }

    /// Monitor-mode rules that matched: what would have happened.
    pub fn monitored(&self) -> impl Iterator<Item = &'r Rule> + '_ {
        self.matched.iter().filter(|m| m.monitor()).map(|m| m.rule)
    }

    /// The client-facing reason: `denied by <id>: <message>` for the first deciding rule.
    pub fn reason(&self) -> Option<String> {
        let rule = self.deciding().next()?;
        let message = rule.action.message()?;
        let verb = match self.decision {
            Decision::Deny => "denied",
            Decision::Review => "held for review",
            Decision::Allow => return None,
        };
        Some(format!("{verb} by {}: {message}", rule.id))
    }
}
