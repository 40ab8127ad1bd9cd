//! What happened, as one clean record per statement or refusal: the audit store (a later
//! issue) persists these; until then they are logged with `tracing` as JSON.

use serde::Serialize;

/// One judged statement (simple query, Parse, or a start-up parameter).
#[derive(Debug, Clone, Serialize)]
pub struct StatementEvent<'a> {
    pub session_id: &'a str,
    pub target: &'a str,
    pub subject: &'a str,
    pub groups: &'a [String],
    pub prompt: Option<&'a str>,
    /// `query`, `parse`, `function_call`, `startup`.
    pub kind: &'static str,
    pub statement: &'a str,
    pub fingerprints: Vec<&'a str>,
    /// `allowed`, `denied` (review counts as denied until approvals exist).
    pub decision: &'static str,
    pub rule_ids: Vec<&'a str>,
    pub monitored: Vec<&'a str>,
    pub message: Option<String>,
    pub judge_us: u64,
}

/// A session that started, or was refused before it could.
#[derive(Debug, Clone, Serialize)]
pub struct SessionEvent<'a> {
    pub session_id: &'a str,
    pub target: &'a str,
    pub client_addr: String,
    pub subject: Option<&'a str>,
    /// `started`, `refused`, `ended`.
    pub state: &'static str,
    pub reason: Option<String>,
}

/// One judged push.
#[derive(Debug, Clone, Serialize)]
pub struct PushEvent<'a> {
    pub session_id: &'a str,
    pub target: &'a str,
    pub subject: &'a str,
    pub groups: &'a [String],
    pub prompt: Option<&'a str>,
    pub refs: Vec<RefEvent<'a>>,
    pub options: &'a [String],
    /// `allowed`, `denied`, `review` (refused until approvals exist), `error`.
    pub decision: &'static str,
    pub rule_ids: Vec<&'a str>,
    pub monitored: Vec<&'a str>,
    pub message: Option<String>,
    pub duration_us: u64,
}

/// One ref update of a push (`None` where the push failed before it was inspected).
#[derive(Debug, Clone, Serialize)]
pub struct RefEvent<'a> {
    pub name: &'a str,
    pub old: String,
    pub new: String,
    pub kind: &'static str,
    pub forced: Option<bool>,
    pub commits: Option<usize>,
}

pub fn record_push(e: &PushEvent<'_>) {
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(e).unwrap_or_default(), "push");
}

pub fn record_statement(e: &StatementEvent<'_>) {
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(e).unwrap_or_default(), "statement");
}

pub fn record_session(e: &SessionEvent<'_>) {
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(e).unwrap_or_default(), "session");
}
