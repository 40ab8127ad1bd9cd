//! What happened, as one clean record per statement, push, session or refusal. Each is
//! logged with `tracing` as JSON (target `portcullis::event`) and, through a [`Recorder`],
//! written to the DuckDB audit store.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::Outcome;
pub use crate::audit::Protocol;
use crate::audit::{self, AuditHandle, Decision, Ticket};
use crate::mask::detectors::redact;

fn label<S: serde::Serializer>(outcome: &&Outcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(outcome.label())
}

/// What every event of one session repeats, made once per session and shared by its
/// events (an event copies pointers, not text). The prompt is redacted once per value.
#[derive(Debug)]
pub struct Stamp {
    session_id: Arc<str>,
    target: Arc<str>,
    subject: Arc<str>,
    groups: Arc<[String]>,
    client_addr: Arc<str>,
    /// The last prompt seen, and it as recorded (secrets replaced).
    prompt: Mutex<Option<(String, Arc<str>)>>,
}

impl Stamp {
    pub fn new(
        session_id: &str,
        target: &str,
        agent: &crate::policy::value::Agent,
        client_addr: &str,
    ) -> Stamp {
        Stamp {
            session_id: session_id.into(),
            target: target.into(),
            subject: agent.sub.as_str().into(),
            groups: agent.groups.as_slice().into(),
            client_addr: client_addr.into(),
            prompt: Mutex::new(None),
        }
    }

    /// `prompt` as the store keeps it: redacted, and shared while it does not change.
    fn prompt(&self, prompt: Option<&str>) -> Option<Arc<str>> {
        let prompt = prompt?;
        let mut last = self.prompt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((text, recorded)) = &*last
            && text == prompt
        {
            return Some(recorded.clone());
        }
        let recorded: Arc<str> = redact(prompt).into();
        *last = Some((prompt.to_string(), recorded.clone()));
        Some(recorded)
    }
}

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
    pub fingerprints: Vec<&'a std::sync::Arc<str>>,
    /// Logged as `decision`: `allowed`, `denied`, `review` (refused until approvals exist).
    #[serde(rename = "decision", serialize_with = "label")]
    pub outcome: &'a Outcome,
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
    #[serde(serialize_with = "protocol_word")]
    pub protocol: Protocol,
    #[serde(serialize_with = "state_word")]
    pub state: SessionState,
    pub reason: Option<String>,
    /// When the session started (µs since the epoch): its row's `started_at`, which its
    /// end finds the row by.
    #[serde(skip)]
    pub started_us: i64,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Started,
    /// Refused before it could start (bad token, TLS required, garbage, ...).
    Refused,
    Ended,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Started => "started",
            SessionState::Refused => "refused",
            SessionState::Ended => "ended",
        }
    }
}

fn protocol_word<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn state_word<S: serde::Serializer>(state: &SessionState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

/// A judged statement's store event, not yet handed to the store: allowed reads may wait
/// for their results (rows, a sample, the server's error) before they are submitted.
#[derive(Debug)]
pub struct Pending(audit::Event);

impl Pending {
    /// The same event for another run of the same statement: a new id and time.
    pub fn again(&self) -> Pending {
        // The shared fields (session, statement, ...) are pointers: the copy is cheap.
        let mut ev = self.0.clone();
        ev.event_id = audit::record::new_id();
        ev.ts_us = audit::record::now_us();
        Pending(ev)
    }

    /// The event of one run of the prepared statement this is the Parse event of: a new
    /// id and time, kind `execute`, and the values it was bound with (see
    /// [`parameters_json`]).
    pub fn execution(&self, parameters: String) -> Pending {
        let mut ev = self.again();
        ev.0.kind = audit::record::kind::EXECUTE.into();
        ev.0.parameters = Some(parameters);
        ev.0.duration_us = None;
        ev
    }

    /// Sets the values this run was bound with (a held run's or a refused one's).
    pub fn with_parameters(mut self, parameters: String) -> Pending {
        self.0.parameters = Some(parameters);
        self
    }

    /// The final decision on a held request: what happened and what the client was told.
    /// `runs` marks one that goes upstream (its event is then committed first when it
    /// can write).
    pub fn decided(&mut self, decision: Decision, message: Option<String>, runs_a_write: bool) {
        self.0.decision = decision;
        self.0.message = message;
        self.0.must_be_durable = runs_a_write;
    }

    /// Whether it may wait for its results: an allowed read whose event need not be
    /// committed before it runs.
    pub fn may_wait_for_results(&self) -> bool {
        !self.0.must_be_durable && self.0.decision == Decision::Allowed
    }

    /// Adds what the server answered: rows returned or affected, a sample (of the values
    /// as the agent saw them), its error, and the columns masked (`column:rule`).
    pub fn complete(
        &mut self,
        rows: Option<i64>,
        sample: Option<String>,
        error: Option<String>,
        masked: Vec<String>,
    ) {
        self.0.rows = rows;
        self.0.result = sample;
        self.0.error = error;
        self.0.masked_columns = masked;
    }
}

/// An execution's bound values as the `parameters` column keeps them: a JSON array with
/// text values as strings (secrets a detector finds replaced, as in prompts), binary ones
/// as `\\x` hex, NULL as null. `masked_by` (`column:rule`) is set when the statement
/// touches a column a mask rule hides from the agent: every value is then withheld,
/// since which parameter goes to which column is not known.
pub fn parameters_json(values: &[Option<(bool, &[u8])>], masked_by: Option<&str>) -> String {
    let values: Vec<serde_json::Value> = values
        .iter()
        .map(|v| match (v, masked_by) {
            (None, _) => serde_json::Value::Null,
            (Some(_), Some(by)) => format!("[masked:{by}]").into(),
            // Binary values are kept as hex, unless a detector finds a secret in them
            // read as text (a text or bytea value sent in binary is its bytes).
            (Some((true, bytes)), None) => match redact(&String::from_utf8_lossy(bytes)) {
                std::borrow::Cow::Borrowed(_) => format!("\\x{}", audit::chain::hex(bytes)).into(),
                std::borrow::Cow::Owned(found) => found.into(),
            },
            (Some((false, bytes)), None) => {
                redact(&String::from_utf8_lossy(bytes)).into_owned().into()
            }
        })
        .collect();
    serde_json::Value::Array(values).to_string()
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
    /// Logged as `decision`: `allowed`, `denied`, `review` (refused until approvals
    /// exist), `error`.
    #[serde(rename = "decision", serialize_with = "label")]
    pub outcome: &'a Outcome,
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
    // Free text an agent wrote is kept without the secrets it may hold.
    let options: Vec<String> = e.options.iter().map(|o| redact(o).into_owned()).collect();
    let prompt = e.prompt.map(redact);
    let e = PushEvent {
        options: &options,
        prompt: prompt.as_deref(),
        ..e.clone()
    };
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(&e).unwrap_or_default(), "push");
}

/// Statement text logged, at most: the store keeps the rest.
const LOGGED_STATEMENT_BYTES: usize = 4096;

/// `text` cut to `LOGGED_STATEMENT_BYTES` (at a character boundary), saying so.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= LOGGED_STATEMENT_BYTES {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = LOGGED_STATEMENT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}... [{} bytes in all; the audit store has the full text]",
        &text[..end],
        text.len()
    ))
}

pub fn record_statement(e: &StatementEvent<'_>) {
    // A prompt that holds a secret is logged without it, and a long statement as its
    // beginning (rebuilt only then).
    let prompt = e.prompt.map(redact);
    let statement = bounded(e.statement);
    if matches!(prompt, Some(std::borrow::Cow::Owned(_)))
        || matches!(statement, std::borrow::Cow::Owned(_))
    {
        let e = StatementEvent {
            prompt: prompt.as_deref(),
            statement: &statement,
            ..e.clone()
        };
        tracing::info!(target: "portcullis::event", event = %serde_json::to_string(&e).unwrap_or_default(), "statement");
        return;
    }
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(e).unwrap_or_default(), "statement");
}

pub fn record_session(e: &SessionEvent<'_>) {
    tracing::info!(target: "portcullis::event", event = %serde_json::to_string(e).unwrap_or_default(), "session");
}

/// Sends events to the audit store and counts them for `/metrics`. Cheap to share; one
/// per running gateway.
#[derive(Clone, Default)]
pub struct Recorder {
    audit: Option<AuditHandle>,
    metrics: std::sync::Arc<super::metrics::Metrics>,
    result_rows: usize,
}

/// Why the store cannot take an event; the gateway refuses the work it would record. Clients read only that; the store's own
/// words (a DuckDB error) go to the log when it is made.
#[derive(Debug, thiserror::Error)]
#[error("the audit store is unavailable; nothing is served unrecorded")]
pub struct Unrecorded(String);

impl Unrecorded {
    fn new(detail: String) -> Unrecorded {
        tracing::error!(detail = %detail, "the audit store is unavailable");
        Unrecorded(detail)
    }

    /// What the store said.
    pub fn detail(&self) -> &str {
        &self.0
    }
}

impl Recorder {
    pub fn new(audit: AuditHandle, result_rows: usize) -> Recorder {
        Recorder {
            audit: Some(audit),
            metrics: Default::default(),
            result_rows,
        }
    }

    /// Rows of each result kept with its event (`audit.result_rows`).
    pub fn result_rows(&self) -> usize {
        self.result_rows
    }

    /// Whether a read's event may wait for its results before it is queued: not when
    /// `durability = "all"` (every event is committed before its response).
    pub fn can_defer_reads(&self) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|a| a.durability() != audit::Durability::All)
    }

    /// Whether events go to a store (not only to the log).
    pub fn stores(&self) -> bool {
        self.audit.is_some()
    }

    pub fn metrics(&self) -> &super::metrics::Metrics {
        &self.metrics
    }

    /// The writer's counters, when there is a store.
    pub fn audit_stats(&self) -> Option<audit::WriterStats> {
        self.audit.as_ref().map(|a| a.stats())
    }

    /// A recorder that only logs (unit tests, `check` commands).
    pub fn log_only() -> Recorder {
        Recorder::default()
    }

    /// Runs an auditor's read-only query on the live store.
    pub async fn query(&self, sql: &str) -> Result<audit::QueryResult, audit::Error> {
        match &self.audit {
            Some(a) => a.query(sql).await,
            None => Err(audit::Error::Closed),
        }
    }

    /// Commits everything queued so far.
    pub async fn flush(&self) -> Result<(), Unrecorded> {
        match &self.audit {
            Some(a) => a.flush().await.map_err(|e| Unrecorded::new(e.to_string())),
            None => Ok(()),
        }
    }

    /// `Ok` while events can be recorded.
    pub fn check(&self) -> Result<(), Unrecorded> {
        match &self.audit {
            Some(a) => a.check().map_err(|e| Unrecorded::new(e.to_string())),
            None => Ok(()),
        }
    }

    /// Logs a judged statement and builds its store event (`None` without a store), for
    /// [`Recorder::submit`]. `writes` marks one that can change data or schema: with
    /// `durability = "writes"` its ticket waits for the commit.
    pub fn statement_event(
        &self,
        e: &StatementEvent<'_>,
        stamp: &Stamp,
        writes: bool,
    ) -> Option<Pending> {
        if tracing::enabled!(target: "portcullis::event", tracing::Level::INFO) {
            record_statement(e);
        }
        self.metrics
            .statement(e.outcome.label(), &e.rule_ids, e.judge_us);
        self.audit.as_ref()?;
        let mut ev = audit::Event::new(
            stamp.session_id.clone(),
            Protocol::Postgres,
            stamp.target.clone(),
            e.kind,
            e.outcome.decision,
        );
        ev.subject = Some(stamp.subject.clone());
        ev.groups = stamp.groups.clone();
        ev.client_addr = Some(stamp.client_addr.clone());
        ev.prompt = stamp.prompt(e.prompt);
        ev.statement = Some(e.statement.into());
        ev.fingerprint = match e.fingerprints[..] {
            [] => None,
            [one] => Some(one.clone()),
            _ => Some(
                e.fingerprints
                    .iter()
                    .map(|f| &***f)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into(),
            ),
        };
        ev.rule_ids = e.rule_ids.iter().map(|r| r.to_string()).collect();
        ev.monitored_rules = e.monitored.iter().map(|r| r.to_string()).collect();
        ev.message = e.message.clone();
        ev.duration_us = Some(e.judge_us as i64);
        ev.must_be_durable = writes && e.outcome.refusal.is_none();
        Some(Pending(ev))
    }

    /// Queues an event built by [`Recorder::statement_event`].
    pub async fn submit(&self, ev: Pending) -> Result<Ticket, Unrecorded> {
        match &self.audit {
            Some(audit) => audit
                .record(ev.0)
                .await
                .map_err(|e| Unrecorded::new(e.to_string())),
            None => Err(Unrecorded::new("no audit store".into())),
        }
    }

    /// Queues `ev` and waits until it is as durable as the durability setting asks.
    pub async fn submit_durably(&self, ev: Pending) -> Result<(), Unrecorded> {
        self.submit(ev)
            .await?
            .durable()
            .await
            .map_err(|e| Unrecorded::new(e.to_string()))
    }

    /// Records one step of an approval: an event (`kind`, by `actor` or else the
    /// requesting agent) and the request's `approvals` row pointing at `first_event` (the
    /// `requested` step's, this one's when `None`). Waits for the commit. Returns the
    /// event's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn approval(
        &self,
        r: &super::approvals::Request,
        protocol: Protocol,
        kind: &str,
        decision: Decision,
        actor: Option<&str>,
        message: String,
        first_event: Option<String>,
    ) -> Result<String, Unrecorded> {
        let Some(store) = &self.audit else {
            return Ok(String::new());
        };
        let unrecorded = |e: audit::Error| Unrecorded::new(e.to_string());
        let mut ev = audit::Event::new(
            r.session_id.as_str(),
            protocol,
            r.target.as_str(),
            kind.to_string(),
            decision,
        );
        ev.subject = Some(actor.unwrap_or(&r.subject).into());
        if actor.is_none() {
            ev.groups = r.groups.as_slice().into();
        }
        ev.prompt = r.prompt.as_deref().map(|p| redact(p).into());
        ev.statement = Some(r.statement.as_str().into());
        ev.rule_ids = vec![r.rule.clone()];
        ev.message = Some(message);
        ev.must_be_durable = true;
        let id = ev.event_id.clone();
        store
            .record(ev)
            .await
            .map_err(unrecorded)?
            .durable()
            .await
            .map_err(unrecorded)?;
        let row = audit::record::Approval {
            approval_id: r.id.clone(),
            event_id: first_event.unwrap_or_else(|| id.clone()),
            requested_us: r.requested_us,
            decided_us: r.decided_us,
            approver: r.approver.clone(),
            state: r.state.as_str().to_string(),
            reason: r.reason.clone(),
        };
        store
            .record(row)
            .await
            .map_err(unrecorded)?
            .durable()
            .await
            .map_err(unrecorded)?;
        Ok(id)
    }

    /// Records a session's start, end or refusal.
    pub async fn session(&self, e: &SessionEvent<'_>, groups: &[String]) -> Result<(), Unrecorded> {
        record_session(e);
        self.metrics.session(e.state.as_str());
        let protocol = e.protocol;
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let fail = |e: audit::Error| Unrecorded::new(e.to_string());
        let ticket = match e.state {
            SessionState::Started => audit
                .record(audit::SessionStart {
                    session_id: e.session_id.to_string(),
                    protocol,
                    target: e.target.to_string(),
                    subject: e.subject.map(str::to_string),
                    groups: groups.to_vec(),
                    client_addr: Some(e.client_addr.clone()),
                    started_us: e.started_us,
                })
                .await
                .map_err(fail)?,
            SessionState::Ended => audit
                .record(audit::SessionEnd {
                    session_id: e.session_id.to_string(),
                    started_us: Some(e.started_us),
                    ended_us: audit::record::now_us(),
                    reason: e.reason.clone(),
                })
                .await
                .map_err(fail)?,
            SessionState::Refused => {
                // A connection refused before it became a session is one event.
                let mut ev = audit::Event::new(
                    e.session_id,
                    protocol,
                    e.target,
                    audit::record::kind::REFUSAL,
                    Decision::Denied,
                );
                ev.subject = e.subject.map(Into::into);
                ev.client_addr = Some(e.client_addr.as_str().into());
                ev.message = e.reason.clone();
                audit.record(ev).await.map_err(fail)?
            }
        };
        // Immediate unless `durability = "all"`.
        ticket.durable().await.map_err(fail)
    }

    /// Records a judged push; an allowed push waits for its event's commit (unless
    /// `durability = "async"`) before the caller sends it upstream.
    pub async fn push(
        &self,
        e: &PushEvent<'_>,
        client_addr: Option<&str>,
    ) -> Result<(), Unrecorded> {
        record_push(e);
        self.metrics
            .push(e.outcome.label(), &e.rule_ids, e.duration_us);
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let mut ev = push_record(e, client_addr, e.outcome.decision);
        ev.must_be_durable = true;
        let ticket = audit
            .record(ev)
            .await
            .map_err(|e| Unrecorded::new(e.to_string()))?;
        ticket
            .durable()
            .await
            .map_err(|e| Unrecorded::new(e.to_string()))
    }
}

/// The audit record of a push, as decided.
fn push_record(e: &PushEvent<'_>, client_addr: Option<&str>, decision: Decision) -> audit::Event {
    let mut ev = audit::Event::new(
        e.session_id,
        Protocol::Git,
        e.target,
        audit::record::kind::PUSH,
        decision,
    );
    ev.subject = Some(e.subject.into());
    ev.groups = e.groups.into();
    ev.client_addr = client_addr.map(Into::into);
    ev.prompt = e.prompt.map(|p| redact(p).into());
    ev.statement = Some(
        e.refs
            .iter()
            .map(|r| format!("{} {}..{}", r.name, short(&r.old), short(&r.new)))
            .collect::<Vec<_>>()
            .join(", ")
            .into(),
    );
    ev.rule_ids = e.rule_ids.iter().map(|r| r.to_string()).collect();
    ev.monitored_rules = e.monitored.iter().map(|r| r.to_string()).collect();
    ev.message = e.message.clone();
    ev.duration_us = Some(e.duration_us as i64);
    ev.refs = e
        .refs
        .iter()
        .map(|r| audit::RefUpdate {
            name: r.name.to_string(),
            old_oid: r.old.clone(),
            new_oid: r.new.clone(),
            kind: r.kind.to_string(),
            forced: r.forced.unwrap_or(false),
            commits: r.commits.map(|c| c as i64),
        })
        .collect();
    ev
}

/// Records, once a push's answer has come back, that the upstream refused what the
/// gateway allowed (a ref moved meanwhile, a hook said no): the push's own event says
/// `allowed`, as it had to be durable before anything went upstream.
pub struct UpstreamVerdict {
    audit: AuditHandle,
    event: audit::Event,
}

impl UpstreamVerdict {
    pub async fn refused(mut self, message: String) {
        self.event.message = Some(message);
        self.event.error = self.event.message.clone();
        self.event.refs.clear();
        match self.audit.record(self.event).await {
            Ok(ticket) => {
                if let Err(e) = ticket.durable().await {
                    tracing::error!(error = %e, "the upstream's refusal of a push was not recorded");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the upstream's refusal of a push was not recorded")
            }
        }
    }
}

impl Recorder {
    /// What [`UpstreamVerdict::refused`] records for this push, prepared while the push's
    /// details are at hand; `None` without an audit store.
    pub fn upstream_verdict(
        &self,
        e: &PushEvent<'_>,
        client_addr: Option<&str>,
    ) -> Option<UpstreamVerdict> {
        let audit = self.audit.clone()?;
        let mut event = push_record(e, client_addr, Decision::Error);
        event.kind = audit::record::kind::ERROR.into();
        event.rule_ids.clear();
        event.monitored_rules.clear();
        Some(UpstreamVerdict { audit, event })
    }
}

pub(crate) fn short(oid: &str) -> &str {
    &oid[..oid.len().min(10)]
}
