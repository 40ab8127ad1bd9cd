//! Facts → rules → one outcome per request, and every sentence a refusal says.

use std::time::Instant;

use super::refusal;
use crate::audit;
use crate::git::inspect::facts::{PushFacts, RefFacts};
use crate::policy::rule::Subject;
use crate::policy::value::{Agent, Target};
use crate::policy::{Decision, RuleSet, Verdict};
use crate::sql::{Analysis, Analyzer, SqlFacts};

/// What a judged request comes to: what is recorded, and what the client is told when it
/// is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The audit store's word for it.
    pub decision: audit::Decision,
    /// The sentence a refused request gets (`portcullis: denied by <rule>: <message>`);
    /// `None` when the request goes upstream.
    pub refusal: Option<String>,
    /// A rule asked for a person's approval (refused until approvals exist).
    pub review: bool,
}

impl Outcome {
    /// What `verdict` means for the request it judged. Until approvals exist a review
    /// holds nothing: the request is refused, saying which rule wants an approval.
    pub fn of(verdict: &Verdict<'_>) -> Outcome {
        let refusal = match verdict.decision {
            Decision::Allow => None,
            Decision::Deny => verdict.reason().map(|why| refusal::denied(&why)),
            Decision::Review => {
                Some(refusal::review(verdict.deciding().next().map(|rule| {
                    (rule.id.as_str(), rule.action.message().unwrap_or("review"))
                })))
            }
        };
        Outcome::refusing(refusal, verdict.decision == Decision::Review)
    }

    /// Refused (and recorded as denied) with `refusal`, or allowed when there is none.
    pub fn refusing(refusal: Option<String>, review: bool) -> Outcome {
        Outcome {
            decision: if refusal.is_some() {
                audit::Decision::Denied
            } else {
                audit::Decision::Allowed
            },
            refusal,
            review,
        }
    }

    /// Allowed.
    pub fn allowed() -> Outcome {
        Outcome::refusing(None, false)
    }

    /// Refused with `sentence` (one of [`refusal`]'s), with no rule deciding: the
    /// gateway could not judge or carry out the request.
    pub fn failed(sentence: String) -> Outcome {
        Outcome {
            decision: audit::Decision::Error,
            refusal: Some(sentence),
            review: false,
        }
    }

    /// Refused by the gateway itself (a request it does not serve), not by a rule.
    pub fn refused(sentence: String) -> Outcome {
        Outcome::refusing(Some(sentence), false)
    }

    /// The word `/metrics` and the event log count it by.
    pub fn label(&self) -> &'static str {
        if self.review {
            "review"
        } else {
            self.decision.as_str()
        }
    }
}

/// A judged query string (every statement of it).
pub struct QueryJudgement<'r> {
    pub analysis: Analysis,
    pub verdict: Verdict<'r>,
    pub outcome: Outcome,
    /// Its event must be committed before it goes upstream (see [`must_be_durable`]).
    pub durable: bool,
    /// Microseconds spent reading and judging it.
    pub judge_us: u64,
}

/// Reads `text` (with the session's fact cache) and judges every statement in it.
pub fn judge_query<'r>(
    rules: &'r RuleSet,
    analyzer: &mut Analyzer,
    text: &str,
    agent: &Agent,
    target: &Target,
) -> QueryJudgement<'r> {
    let started = Instant::now();
    let analysis = analyzer.analyze(text);
    judge_analysis(rules, analysis, agent, target, started)
}

/// Judges a query string already read (and, for writes, estimated by the upstream's
/// planner); `started` is when its reading began.
pub fn judge_analysis<'r>(
    rules: &'r RuleSet,
    analysis: Analysis,
    agent: &Agent,
    target: &Target,
    started: Instant,
) -> QueryJudgement<'r> {
    let verdict = judge_statements(rules, &analysis, agent, target);
    judged(analysis, verdict, started)
}

/// As [`judge_analysis`], for a query the session's `analyzer` has just read: when it
/// read it by its quick key (one statement of a shape it has seen), the rules that read
/// only shape facts are not judged again but taken from what the analyzer remembers of
/// the shape, and what they made of it is remembered the first time.
pub fn judge_session_analysis<'r>(
    rules: &'r RuleSet,
    analyzer: &mut Analyzer,
    analysis: Analysis,
    agent: &Agent,
    target: &Target,
    started: Instant,
) -> QueryJudgement<'r> {
    let (Some(memo), [stmt]) = (analyzer.quick_hit(), &analysis.statements[..]) else {
        return judge_analysis(rules, analysis, agent, target, started);
    };
    let (verdict, kept) = rules.judge_shape(
        &[("stmt", stmt), ("agent", agent), ("target", target)],
        memo,
    );
    if memo != Some(kept) {
        analyzer.remember(kept);
    }
    judged(analysis, verdict, started)
}

fn judged(analysis: Analysis, verdict: Verdict<'_>, started: Instant) -> QueryJudgement<'_> {
    let judge_us = started.elapsed().as_micros() as u64;
    let outcome = Outcome::of(&verdict);
    let durable = outcome.refusal.is_none() && analysis.statements.iter().any(must_be_durable);
    QueryJudgement {
        analysis,
        verdict,
        outcome,
        durable,
        judge_us,
    }
}

/// The verdict on an analysed query string: the strictest of its statements', so one
/// denied statement denies the whole string.
pub fn judge_statements<'r>(
    rules: &'r RuleSet,
    analysis: &Analysis,
    agent: &Agent,
    target: &Target,
) -> Verdict<'r> {
    let mut verdict = Verdict::default();
    for stmt in &analysis.statements {
        verdict.merge(judge_statement(rules, stmt, agent, target));
    }
    verdict
}

/// The verdict on one statement.
pub fn judge_statement<'r>(
    rules: &'r RuleSet,
    stmt: &SqlFacts,
    agent: &Agent,
    target: &Target,
) -> Verdict<'r> {
    rules.judge(
        Subject::Sql,
        &[("stmt", stmt), ("agent", agent), ("target", target)],
    )
}

/// Whether a statement can change data or schema: its event is then committed before it
/// runs. Reads (`COPY ... TO STDOUT` too), SET/SHOW, plain EXPLAIN and transaction
/// control cannot.
pub fn must_be_durable(f: &SqlFacts) -> bool {
    const READ_ONLY: &[&str] = &[
        "select", "show", "explain", "set", "begin", "commit", "rollback",
    ];
    // COPY ... TO STDOUT reads; into a table, or through a file or program, it does not.
    let reads_only = |k: &str| {
        READ_ONLY.contains(&k)
            || (k == "copy" && f.tables_written.is_empty() && !f.copy_file && !f.copy_program)
    };
    !f.writes.is_empty()
        || f.is_ddl
        || f.explain_analyze
        || f.kinds.iter().any(|k| !reads_only(k))
        || !reads_only(f.kind)
}

/// A judged push: one verdict per ref update, and what they come to together (a push is
/// all-or-nothing: the strictest ref decides).
pub struct PushJudgement<'r> {
    pub verdicts: Vec<Verdict<'r>>,
    pub decision: Decision,
    pub outcome: Outcome,
    /// The rules that decided, over every ref, each once.
    pub deciding: Vec<&'r str>,
    /// Monitor-mode rules that matched, each once.
    pub monitored: Vec<&'r str>,
    /// Per ref, in order: its refusal and the findings the client is shown with it
    /// (path, commit, line, detector; never the secret), when it is refused.
    pub reasons: Vec<Option<(String, Vec<String>)>>,
}

/// Judges every ref update of a push.
pub fn judge_refs<'r>(
    rules: &'r RuleSet,
    facts: &[(RefFacts, PushFacts)],
    agent: &Agent,
    target: &Target,
) -> PushJudgement<'r> {
    let verdicts: Vec<Verdict<'r>> = facts
        .iter()
        .map(|(r, p)| {
            rules.judge(
                Subject::Git,
                &[
                    ("ref", r),
                    ("push", p),
                    ("agent", agent),
                    ("target", target),
                ],
            )
        })
        .collect();
    let decision = verdicts
        .iter()
        .map(|v| v.decision)
        .max()
        .unwrap_or(Decision::Allow);
    let reasons = facts
        .iter()
        .zip(&verdicts)
        .map(|((_, p), v)| {
            Outcome::of(v)
                .refusal
                .map(|why| (why, p.describe_findings()))
        })
        .collect::<Vec<_>>();
    // A push is refused when any ref is, and reads as its first refused ref.
    let outcome = Outcome::refusing(
        reasons.iter().flatten().next().map(|(why, _)| why.clone()),
        decision == Decision::Review,
    );
    PushJudgement {
        deciding: dedup(verdicts.iter().flat_map(|v| v.rule_ids())),
        monitored: dedup(
            verdicts
                .iter()
                .flat_map(|v| v.monitored().map(|r| r.id.as_str())),
        ),
        verdicts,
        decision,
        outcome,
        reasons,
    }
}

fn dedup<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
rule team.canary on sql {
  when stmt.text contains "canary"
  deny "no canaries"
}
rule team.orders on sql {
  when "orders" in stmt.tables_read
  deny "orders are not read here"
}
"#;

    #[test]
    fn a_session_takes_a_seen_shape_from_memory_and_reads_its_text_each_time() {
        let mut rules = RuleSet::default();
        rules.add_text("team.rules", RULES).expect("rules parse");
        let (agent, target) = (Agent::default(), Target::default());
        let mut analyzer = Analyzer::new(16);
        let mut judge = |sql: &str| {
            let analysis = analyzer.analyze(sql);
            let judged = judge_session_analysis(
                &rules,
                &mut analyzer,
                analysis,
                &agent,
                &target,
                Instant::now(),
            );
            (judged.verdict.decision, analyzer.quick_hit())
        };
        // Read, then met again by its quick key: remembered from then on.
        assert_eq!(
            judge("SELECT * FROM notes WHERE body = 'first'"),
            (Decision::Allow, None)
        );
        let (decision, hit) = judge("SELECT * FROM notes WHERE body = 'second'");
        assert_eq!(
            (decision, hit.map(|m| m.is_some())),
            (Decision::Allow, Some(true))
        );
        let (decision, hit) = judge("SELECT * FROM notes WHERE body = 'a canary'");
        assert_eq!(
            (decision, hit.map(|m| m.is_some())),
            (Decision::Deny, Some(true))
        );
        assert_eq!(
            judge("SELECT * FROM notes WHERE body = 'third'").0,
            Decision::Allow
        );
        for id in 1..=3 {
            let sql = format!("SELECT * FROM orders WHERE id = {id}");
            assert_eq!(judge(&sql).0, Decision::Deny, "{sql}");
        }
        // Two statements are never taken from memory.
        let (decision, hit) = judge("SELECT 1; SELECT * FROM orders WHERE id = 1");
        assert_eq!((decision, hit), (Decision::Deny, None));
    }
}
