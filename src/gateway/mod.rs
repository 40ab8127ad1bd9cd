//! The seam between the protocols and the decisions, one for both.
//!
//! `pg` and `git` turn bytes into requests (a query string, the ref updates of a push) and
//! ask here what a request's facts mean: one [`Outcome`] per request, carrying the
//! refusal sentence the client reads and what must be durable before anything goes
//! upstream. They turn the outcome back into bytes; they never name a rule id or decide
//! what a decision means. `check` and the corpus runners judge through the same
//! functions, so what a DBA tests is what the gateway does.
//!
//! ```
//! use portcullis::gateway::judge_query;
//! use portcullis::policy::RuleSet;
//! use portcullis::policy::value::{Agent, Target};
//! use portcullis::sql::Analyzer;
//!
//! let rules = RuleSet::builtin().unwrap();
//! let agent = Agent { sub: "a".into(), groups: vec![], name: None };
//! let target = Target { name: "app".into() };
//! let judged = judge_query(&rules, &mut Analyzer::default(), "DELETE FROM users", &agent, &target);
//! assert_eq!(
//!     judged.outcome.refusal.as_deref(),
//!     Some("portcullis: denied by sql.unbounded-write: a DELETE, UPDATE, MERGE or upsert that \
//!           is not bounded to some rows of its table (no WHERE, or one that holds for every row)")
//! );
//! ```

pub mod approvals;
mod judge;
pub mod mask;
pub mod metrics;
pub mod record;
pub mod refusal;
pub mod webhook;

/// The rules a protocol holds only to hand back to [`judge_query`] and [`judge_refs`].
pub use crate::policy::RuleSet;
/// A session's cache of statement facts, handed to [`judge_query`] with each query.
pub use crate::sql::Analyzer;

pub use judge::{
    Outcome, PushJudgement, QueryJudgement, judge_analysis, judge_query, judge_refs,
    judge_session_analysis, judge_statement, judge_statements, must_be_durable,
};
