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
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Per rule: a `sql` rule whose conditions read only shape facts
    /// ([`schema::SQL_SHAPE_FACTS`]), `agent` and `target`.
    shape_only: Vec<bool>,
    /// Changes whenever the rules do, so that a [`Memo`] of other rules is not used.
    generation: u64,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            shape_only: Vec::new(),
            generation: next_generation(),
        }
    }
}

fn next_generation() -> u64 {
    static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Which of a rule set's shape-only `sql` rules ([`RuleSet`]) matched one statement
/// shape, for one session: what [`RuleSet::judge_shape`] needs to skip them the next time
/// the session sends that shape. Bit `i` is the `i`th such rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memo {
    generation: u64,
    hits: u64,
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
            let shape_only = rule.subject == Subject::Sql
                && schema::shape_only(&rule.when)
                && rule.unless.as_ref().is_none_or(schema::shape_only);
            self.shape_only.push(shape_only);
            self.rules.push(rule);
        }
        self.generation = next_generation();
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
        self.generation = next_generation();
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
            if hits(rule, &env, &mut vars) {
                verdict.add(rule);
            }
        }
        verdict
    }

    /// Judges one `sql` statement read by a session's shape cache, as [`RuleSet::judge`]
    /// does, with the results of the shape-only rules taken from `memo` when it was made
    /// by these rules. `memo` must come from the same session (`agent` and `target`) and
    /// the same shape; the rules that read anything else (the text, the planner's
    /// estimate) are judged every time. Returns the memo to keep for the shape.
    pub fn judge_shape<'r>(
        &'r self,
        roots: &[(&str, &dyn Record)],
        memo: Option<Memo>,
    ) -> (Verdict<'r>, Memo) {
        let known = memo.filter(|m| m.generation == self.generation);
        let env = Env { roots };
        let mut verdict = Verdict::default();
        let mut vars = Vec::new();
        let mut kept = Memo {
            generation: self.generation,
            hits: 0,
        };
        let mut bit = 0u32;
        for (rule, &shape_only) in self.rules.iter().zip(&self.shape_only) {
            if rule.subject != Subject::Sql {
                continue;
            }
            // Past 64 shape-only rules the rest are judged every time.
            let hit = if shape_only && bit < u64::BITS {
                let hit = match known {
                    Some(m) => m.hits >> bit & 1 == 1,
                    None => hits(rule, &env, &mut vars),
                };
                kept.hits |= u64::from(hit) << bit;
                bit += 1;
                hit
            } else {
                hits(rule, &env, &mut vars)
            };
            if hit {
                verdict.add(rule);
            }
        }
        (verdict, kept)
    }
}

/// Whether a rule's `when` holds and its `unless` does not.
fn hits<'a>(rule: &'a Rule, env: &'a Env<'_>, vars: &mut Vec<value::Value<'a>>) -> bool {
    eval::test(&rule.when, env, vars)
        && !rule
            .unless
            .as_ref()
            .is_some_and(|u| eval::test(u, env, vars))
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

#[cfg(test)]
mod tests {
    use super::*;
    use value::{Agent, Target};

    fn ids<'r>(v: &Verdict<'r>) -> Vec<&'r str> {
        v.matched.iter().map(|m| m.rule.id.as_str()).collect()
    }

    #[test]
    fn only_rules_that_read_shape_facts_are_remembered() {
        let rules = RuleSet::builtin().expect("built-in packs");
        let remembered: Vec<&str> = rules
            .rules
            .iter()
            .zip(&rules.shape_only)
            .filter(|(_, shape_only)| **shape_only)
            .map(|(r, _)| r.id.as_str())
            .collect();
        // The planner's estimate and the second reader's disagreement vary by statement.
        assert!(!remembered.contains(&"sql.blast-radius"), "{remembered:?}");
        assert!(
            !remembered.contains(&"sql.parser-differential"),
            "{remembered:?}"
        );
        for id in ["sql.destructive-ddl", "sql.unbounded-write", "sql.unparsed"] {
            assert!(remembered.contains(&id), "{id}: {remembered:?}");
        }
        assert!(remembered.iter().all(|id| id.starts_with("sql.")));
    }

    #[test]
    fn a_remembered_shape_gets_the_verdict_the_rules_give() {
        let rules = RuleSet::builtin().expect("built-in packs");
        let (agent, target) = (Agent::default(), Target::default());
        let inputs = rules
            .rules
            .iter()
            .filter(|r| r.subject == Subject::Sql)
            .flat_map(|r| &r.tests)
            .map(|t| t.input.as_str());
        let mut judged = 0;
        for input in inputs {
            for stmt in crate::sql::analyze(input).statements {
                let roots: [(&str, &dyn Record); 3] =
                    [("stmt", &stmt), ("agent", &agent), ("target", &target)];
                let plain = rules.judge(Subject::Sql, &roots);
                let (first, memo) = rules.judge_shape(&roots, None);
                let (again, kept) = rules.judge_shape(&roots, Some(memo));
                assert_eq!(kept, memo, "{input}");
                for v in [&first, &again] {
                    assert_eq!(v.decision, plain.decision, "{input}");
                    assert_eq!(ids(v), ids(&plain), "{input}");
                }
                judged += 1;
            }
        }
        assert!(judged > 100, "{judged}");
    }

    #[test]
    fn a_memo_decides_only_for_the_rules_that_made_it() {
        let rules = RuleSet::builtin().expect("built-in packs");
        let (agent, target) = (Agent::default(), Target::default());
        let drop = crate::sql::analyze("DROP TABLE users").statements.remove(0);
        let select = crate::sql::analyze("SELECT 1").statements.remove(0);
        let drop_roots: [(&str, &dyn Record); 3] =
            [("stmt", &drop), ("agent", &agent), ("target", &target)];
        let select_roots: [(&str, &dyn Record); 3] =
            [("stmt", &select), ("agent", &agent), ("target", &target)];
        let (_, memo) = rules.judge_shape(&drop_roots, None);
        // The caller keeps a memo per shape: handed another shape's, the same rules take it.
        let (v, _) = rules.judge_shape(&select_roots, Some(memo));
        assert_eq!(v.decision, Decision::Deny);
        // Rules loaded again (or changed) ignore it and judge.
        let reloaded = RuleSet::builtin().expect("built-in packs");
        let (v, _) = reloaded.judge_shape(&select_roots, Some(memo));
        assert_eq!(v.decision, Decision::Allow);
    }
}
