//! One client connection from start to end: [`startup`](super::startup), then
//! [`login`](super::login), then the two relays ([`relay_up`](super::relay_up) and
//! [`relay_down`](super::relay_down)) side by side. The session's state asks the gateway
//! seam what each request means and hands its events to the recorder.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::Error;
use super::markers::Markers;
use super::shapes::{Shapes, Tables};
use super::startup::{self, Failed, Opening};
use super::stream::{ClientStream, UpstreamStream};
use super::{Gateway, upstream};
use crate::audit::Decision;
use crate::gateway::Analyzer;
use crate::gateway::mask::{Masker, Plan};
use crate::gateway::record::{
    Pending, Protocol, SessionEvent, SessionState, Stamp, StatementEvent, parameters_json,
};
use crate::gateway::refusal;
use crate::gateway::{judge_session_analysis, must_be_durable};
use crate::identity::Identity;
use crate::policy::rule::Action;
use crate::policy::value::{Agent, Target};

/// The custom setting that carries the agent's current prompt.
pub const PROMPT_SETTING: &str = "portcullis.prompt";

/// The upstream connection and the bytes it sent after login.
pub type Upstream = (UpstreamStream, BytesMut);

/// What both relays keep track of: refusals and waiting reads at their place in the
/// stream, and which description applies to the rows coming back.
#[derive(Default)]
pub struct Tracks {
    pub markers: Markers<Pending>,
    pub shapes: Shapes<Plan>,
}

pub type Shared = Arc<Mutex<Tracks>>;

pub fn lock(m: &Shared) -> std::sync::MutexGuard<'_, Tracks> {
    m.lock()
        .expect("marker lock is never poisoned: nothing panics while holding it")
}

/// A client beyond the listener's `max_connections`: answered, before its start-up is
/// read, with PostgreSQL's own "too many connections" error, then closed.
pub async fn turn_away(mut tcp: TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let error = super::messages::error_response(
        super::messages::Severity::Fatal,
        "53300",
        &refusal::too_many_connections(max),
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tcp.write_all(&error)).await;
}

pub async fn run(gw: Arc<Gateway>, tcp: TcpStream, peer: SocketAddr) {
    let id = format!("{:016x}", rand::random::<u64>());
    let _ = tcp.set_nodelay(true);
    if let Err(e) = serve(&gw, tcp, peer, &id).await {
        tracing::info!(session = %id, client = %peer, error = %e, "session ended with an error");
    }
}

async fn serve(gw: &Gateway, tcp: TcpStream, peer: SocketAddr, id: &str) -> Result<(), Error> {
    let mut buf = BytesMut::with_capacity(1024);
    // Logging in is bounded in time and in how many may do it at once (see `Startups`);
    // a connection that runs out of either is closed without a word: it has not said
    // who it is, and stalled connections are what a flood is made of.
    let mut starting = gw.startups.enter();
    let logged_in = tokio::select! {
        r = log_in(gw, tcp, &mut buf, peer, id) => r?,
        _ = tokio::time::sleep(gw.target.startup_timeout) => {
            return Err(Error::Protocol(format!(
                "the start-up did not finish within {:?} (startup_timeout)",
                gw.target.startup_timeout
            )));
        }
        _ = &mut starting.pushed_out => {
            return Err(Error::Protocol(
                "pushed out by a newer connection while still logging in (max_startups)".into(),
            ));
        }
    };
    drop(starting);
    let Some((client, mut state, upstream)) = logged_in else {
        return Ok(());
    };
    let key = state.client_key;
    let result = relay(gw, client, upstream, buf, &mut state).await;
    gw.cancel.remove(key);
    record_session(
        gw,
        id,
        peer,
        Some(&state),
        SessionState::Ended,
        result.as_ref().err(),
    )
    .await
    .unwrap_or_else(|e| unrecorded(id, &e));
    result
}

/// Start-up, TLS and login, both sides: the client ready to relay, or `None` for a
/// CancelRequest (served here).
async fn log_in(
    gw: &Gateway,
    tcp: TcpStream,
    buf: &mut BytesMut,
    peer: SocketAddr,
    id: &str,
) -> Result<Option<(ClientStream, State, Upstream)>, Error> {
    let opening = startup::open(tcp, buf, gw.tls.as_ref(), gw.target.tls_required).await;
    let (mut client, params) = match opening {
        Ok(Opening::Session(client, params)) => (client, params),
        Ok(Opening::Cancel(body)) => return cancel(gw, &body).await.map(|()| None),
        Err(Failed {
            error,
            client,
            recorded,
        }) => {
            if recorded {
                record_session(gw, id, peer, None, SessionState::Refused, Some(&error))
                    .await
                    .unwrap_or_else(|e| unrecorded(id, &e));
            }
            if let Some(mut client) = client {
                startup::send_fatal(&mut client, &error).await;
            }
            return Err(error);
        }
    };
    match super::login::login(gw, &mut client, buf, &params, peer, id).await {
        Ok((state, upstream)) => Ok(Some((client, state, upstream))),
        Err(e) => {
            record_session(gw, id, peer, None, SessionState::Refused, Some(&e))
                .await
                .unwrap_or_else(|e| unrecorded(id, &e));
            startup::send_fatal(&mut client, &e).await;
            Err(e)
        }
    }
}

fn unrecorded(id: &str, e: &dyn std::fmt::Display) {
    tracing::error!(session = %id, error = %e, "session event not recorded");
}

/// Records a session's start, end, or refusal before it could start (no `session`).
pub async fn record_session(
    gw: &Gateway,
    id: &str,
    peer: SocketAddr,
    session: Option<&State>,
    state: SessionState,
    error: Option<&Error>,
) -> Result<(), crate::gateway::record::Unrecorded> {
    let e = SessionEvent {
        session_id: id,
        target: &gw.target.name,
        client_addr: peer.to_string(),
        subject: session.map(|s| s.agent.sub.as_str()),
        protocol: Protocol::Postgres,
        state,
        reason: error.map(|e| e.to_string()),
        started_us: session.map_or(0, |s| s.started_us),
    };
    let groups = session.map_or(&[][..], |s| &s.agent.groups);
    gw.recorder.session(&e, groups).await
}

async fn cancel(gw: &Gateway, body: &[u8]) -> Result<(), Error> {
    if body.len() < 8 {
        return Err(Error::Protocol("short CancelRequest".into()));
    }
    let pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let secret = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    // Unknown keys are ignored silently, as PostgreSQL does.
    if let Some(k) = gw.cancel.lookup(pid, secret) {
        upstream::cancel(&k.host, k.port, k.pid, k.secret).await?;
    }
    Ok(())
}

/// Sets what the planner answered about `s`.
fn estimated(s: &mut crate::sql::SqlFacts, answer: Result<(i64, i64), super::catalog::NoEstimate>) {
    match answer {
        Ok((rows, table)) => s.estimated(rows, table),
        Err(super::catalog::NoEstimate::Unseen) => s.estimate = "unseen",
        Err(super::catalog::NoEstimate::Failed) => s.estimate = "failed",
    }
}

/// Whether a statement's text has `$n` parameters (its values come with a Bind, so the
/// planner cannot be asked about it from the text alone). A text without a `$` has none
/// and is not tokenized again: most writes sent by the simple protocol carry their
/// values inline.
fn has_parameters(text: &str) -> bool {
    text.contains('$') && crate::sql::parameter_count(text) > 0
}

/// Statements a session keeps to show an approver what came before a held one.
const HISTORY: usize = 10;

/// What the session does with a judged request.
pub enum Judged {
    Go,
    Refuse(String),
    /// A rule asked for approval and approvals are served: the caller holds it.
    Review(Box<Review>),
}

/// A request a rule sent to review.
pub struct Review {
    pub rule: String,
    pub message: String,
    /// The rule's approver group and timeout.
    pub by: Option<String>,
    pub timeout: Option<std::time::Duration>,
    /// Its event, recorded with the final decision.
    event: Option<Pending>,
    /// It can change data or schema.
    writes: bool,
    /// One INSERT, UPDATE, DELETE or MERGE: the planner can estimate what it touches.
    pub estimable: bool,
    /// Its statements' shapes (fingerprints), for "approve similar".
    pub shape: String,
}

/// What a session knows about itself while it judges.
pub struct State {
    pub id: String,
    pub agent: Agent,
    pub target: Target,
    pub prompt: Option<String>,
    pub analyzer: Analyzer,
    pub client_key: (u32, u32),
    /// When the token the session logged in with expires (seconds since the epoch).
    pub expires_at: u64,
    /// When the session started (µs since the epoch), as its `sessions` row says.
    pub started_us: i64,
    /// Judged statements' events not yet handed to the audit store, with the
    /// ReadyForQuery that ends their results (0: none to wait for).
    pending: Vec<(Pending, u64)>,
    /// The ReadyForQuery the statement being judged will complete at.
    pub ends_at: u64,
    /// The tables the statement judged last reads or writes.
    pub tables: Tables,
    /// The session's cursors and SQL-level prepared statements, for what FETCH and
    /// EXECUTE return.
    named: crate::sql::Named,
    /// The `search_path` the session set (start-up options or SET), if any.
    pub search_path: Option<String>,
    /// The last statements that went ahead, oldest first.
    pub history: std::collections::VecDeque<String>,
    /// Prepared statements a rule sent to review, by name, with their text: parsing one
    /// runs nothing, so it goes upstream; each execution (Bind) waits for approval.
    held_statements: std::collections::HashMap<String, (Review, String)>,
    /// Prepared writes with `$n` parameters, by name, with their text and parameter
    /// types: the planner is asked about each execution, with its values.
    bound_writes: std::collections::HashMap<String, (String, Vec<u8>)>,
    /// The query string judged last has a write the planner can only be asked about
    /// once its parameters are bound.
    pub needs_bound_estimate: bool,
    /// Prepared statements that went upstream, by name: each run (Bind) is recorded as an
    /// event of its own, with its bound values.
    prepared: std::collections::HashMap<String, Prepared>,
    /// The allowed Parse judged last: its event and tables, until it is named.
    parsed: Option<(Pending, Vec<String>)>,
    /// The session's mask rules (set when its relays start).
    pub masker: Option<Arc<Masker>>,
    /// What each of its events repeats, shared.
    stamp: Stamp,
}

/// What a run of a prepared statement is recorded from.
struct Prepared {
    /// The Parse's event, copied for each run.
    event: Pending,
    /// `column:rule` when the statement touches a column masked for the agent: its
    /// runs' values are withheld from the record.
    masked_by: Option<String>,
}

impl State {
    pub fn new(id: &str, peer: SocketAddr, identity: &Identity, target: &str) -> State {
        let agent = identity.agent();
        let peer = peer.to_string();
        State {
            stamp: Stamp::new(id, target, &agent, &peer),
            id: id.to_string(),
            agent,
            expires_at: identity.expires_at,
            started_us: 0,
            target: Target {
                name: target.to_string(),
            },
            prompt: None,
            analyzer: Analyzer::for_session(),
            client_key: (0, 0),
            pending: Vec::new(),
            ends_at: 0,
            tables: Tables::default(),
            named: crate::sql::Named::default(),
            search_path: None,
            history: Default::default(),
            held_statements: Default::default(),
            bound_writes: Default::default(),
            needs_bound_estimate: false,
            prepared: Default::default(),
            parsed: None,
            masker: None,
        }
    }

    /// Judges what this session's analyzer has just read (it remembers per shape what
    /// the rules made of it).
    fn judge_analysis<'g>(
        &mut self,
        gw: &'g Gateway,
        analysis: crate::sql::Analysis,
        started: std::time::Instant,
    ) -> crate::gateway::QueryJudgement<'g> {
        judge_session_analysis(
            &gw.rules,
            &mut self.analyzer,
            analysis,
            &self.agent,
            &self.target,
            started,
        )
    }

    /// Asks the gateway about one query string and records the answer. An allowed
    /// `SET portcullis.prompt` becomes the session's prompt. A request a rule sends to
    /// review is held by the caller when approvals are served (its event is recorded
    /// once decided, see [`State::decided`]); otherwise it is refused.
    pub async fn judge(&mut self, gw: &Gateway, kind: &'static str, text: &str) -> Judged {
        let started = std::time::Instant::now();
        let mut analysis = self.analyzer.analyze(text);
        // Writes are judged with the planner's opinion of how much they touch; reads
        // pay nothing.
        self.needs_bound_estimate = false;
        for s in analysis
            .statements
            .iter_mut()
            .filter(|s| s.wants_estimate())
        {
            if has_parameters(&s.text) {
                self.needs_bound_estimate = true;
                continue;
            }
            let answer = gw
                .catalog
                .blast_radius(
                    &gw.target,
                    &s.text,
                    self.search_path.as_deref(),
                    &s.tables_written,
                )
                .await;
            estimated(s, answer);
        }
        let judged = self.judge_analysis(gw, analysis, started);
        let e = self.event(kind, text, &judged);
        let review = (judged.outcome.review && gw.approvals.is_some())
            .then(|| judged.verdict.deciding().next())
            .flatten()
            .and_then(|rule| match &rule.action {
                Action::Review {
                    message,
                    by,
                    timeout,
                } => Some(Review {
                    rule: rule.id.clone(),
                    message: message.clone(),
                    by: by.clone(),
                    timeout: *timeout,
                    event: None,
                    writes: judged.analysis.statements.iter().any(must_be_durable),
                    estimable: matches!(
                        &judged.analysis.statements[..],
                        [one] if one.parsed
                            && matches!(one.kind, "insert" | "update" | "delete" | "merge")
                    ),
                    shape: judged
                        .analysis
                        .statements
                        .iter()
                        .map(|f| &*f.fingerprint)
                        .collect::<Vec<_>>()
                        .join(" "),
                }),
                _ => None,
            });
        let ev = gw.recorder.statement_event(&e, &self.stamp, judged.durable);
        let review = match (review, ev) {
            (Some(mut r), ev) => {
                if kind == "parse" {
                    self.parsed = ev.as_ref().map(|ev| (ev.again(), Vec::new()));
                }
                r.event = ev;
                Some(r)
            }
            (None, Some(ev)) => {
                if kind == "parse" && judged.outcome.refusal.is_none() {
                    self.parsed = Some((ev.again(), Vec::new()));
                }
                self.pending.push((ev, self.ends_at));
                None
            }
            (None, None) => None,
        };
        let mut reads = crate::sql::Reads::of(
            &judged.analysis,
            &mut self.named,
            judged.outcome.refusal.is_none(),
        );
        if judged.outcome.refusal.is_none() {
            for st in &judged.analysis.statements {
                for s in &st.sets {
                    if s.name == PROMPT_SETTING {
                        self.prompt = s.raw_value.clone();
                    }
                    // Unqualified names in results resolve by the session's path.
                    if s.name == "search_path" {
                        self.search_path = crate::sql::search_path_set(&st.text);
                    }
                }
            }
            reads.search_path = self.search_path.clone();
            if let Some((_, tables)) = &mut self.parsed {
                tables.clone_from(&reads.tables);
            }
            // What result columns come from may have changed.
            if judged.analysis.statements.iter().any(|s| s.is_ddl) {
                gw.catalog.forget();
            }
        }
        self.tables = Tables::new(reads);
        match (review, judged.outcome.refusal) {
            (Some(r), _) => Judged::Review(Box::new(r)),
            (None, Some(sentence)) => Judged::Refuse(sentence),
            (None, None) => {
                // The oldest entry's buffer takes the new text: no allocation once full.
                let mut entry = match self.history.len() {
                    HISTORY => self.history.pop_front().unwrap_or_default(),
                    _ => String::new(),
                };
                entry.clear();
                entry.push_str(text);
                self.history.push_back(entry);
                Judged::Go
            }
        }
    }

    // What the session knows of a prepared statement is only ever added to by a Parse,
    // never replaced: a Parse of a name that exists fails on the server and leaves the
    // old statement in place, so forgetting its hold there would let it run unreviewed.
    // Only a Close, or a Parse of the unnamed statement (which PostgreSQL always drops
    // first), forgets.

    /// Each run of prepared statement `name` waits for approval (`review` said so).
    pub fn hold_statement(&mut self, name: &str, review: Review, text: &str) {
        self.held_statements
            .entry(name.to_string())
            .or_insert_with(|| (review, text.to_string()));
    }

    /// The prepared statement `name` was closed, or is the unnamed one being replaced.
    pub fn forget_statement(&mut self, name: &str) {
        self.held_statements.remove(name);
        self.bound_writes.remove(name);
        self.prepared.remove(name);
    }

    /// Each run of prepared write `name` is judged with the planner's estimate for its
    /// bound values.
    pub fn estimate_each_run(&mut self, name: &str, text: &str, types: &[u8]) {
        self.bound_writes
            .entry(name.to_string())
            .or_insert_with(|| (text.to_string(), types.to_vec()));
    }

    /// The allowed Parse judged last went upstream as `name`: its runs are recorded. When
    /// mask rules hide a column of a table it touches from the agent, its runs' values
    /// are withheld (and when the columns cannot be looked up, too: fail closed).
    pub async fn name_statement(&mut self, gw: &Gateway, name: &str) {
        let Some((event, tables)) = self.parsed.take() else {
            return;
        };
        if self.prepared.contains_key(name) {
            return;
        }
        let Some(masker) = self.masker.clone() else {
            return;
        };
        let masked_by = if masker.has_rules() && !tables.is_empty() {
            match gw
                .catalog
                .table_columns(&gw.target, &tables, self.search_path.as_deref())
                .await
            {
                Ok(columns) => masker.masks_any(&columns),
                Err(_) => Some("its tables' columns could not be looked up".to_string()),
            }
        } else {
            None
        };
        self.prepared
            .insert(name.to_string(), Prepared { event, masked_by });
    }

    /// Records one run of prepared statement `name` with the values of its Bind
    /// (`section`: their format codes and values, as sent). A statement the session did
    /// not see prepared (SQL `PREPARE`, bound through the protocol) is recorded with its
    /// name, as a write to be safe.
    pub fn executed(&mut self, gw: &Gateway, name: &str, section: &[u8]) {
        if !gw.recorder.stores() {
            return;
        }
        let values = super::messages::parameter_values(section).unwrap_or_default();
        let ev = match self.prepared.get(name) {
            Some(p) => p
                .event
                .execution(parameters_json(&values, p.masked_by.as_deref())),
            None => {
                let outcome = crate::gateway::Outcome::refusing(None, false);
                let text = format!("EXECUTE {name} -- prepared by SQL, bound by the protocol");
                let e = StatementEvent {
                    session_id: &self.id,
                    target: &self.target.name,
                    subject: &self.agent.sub,
                    groups: &self.agent.groups,
                    prompt: self.prompt.as_deref(),
                    kind: crate::audit::record::kind::EXECUTE,
                    statement: &text,
                    fingerprints: Vec::new(),
                    outcome: &outcome,
                    rule_ids: Vec::new(),
                    monitored: Vec::new(),
                    message: None,
                    judge_us: 0,
                };
                match gw.recorder.statement_event(&e, &self.stamp, true) {
                    Some(ev) => ev.with_parameters(parameters_json(&values, None)),
                    None => return,
                }
            }
        };
        self.pending.push((ev, self.ends_at));
    }

    /// Judges one run of prepared write `statement` with the parameters of its Bind
    /// (`parameters`, as sent); `Some(sentence)` refuses it, and the refusal is recorded.
    /// `None` for statements that are not such writes.
    pub async fn judge_run(
        &mut self,
        gw: &Gateway,
        statement: &str,
        parameters: &[u8],
    ) -> Option<String> {
        if self.bound_writes.is_empty() {
            return None;
        }
        let (text, types) = self.bound_writes.get(statement)?.clone();
        let started = std::time::Instant::now();
        let mut analysis = self.analyzer.analyze(&text);
        for s in analysis
            .statements
            .iter_mut()
            .filter(|s| s.wants_estimate())
        {
            let answer = gw
                .catalog
                .blast_radius_bound(
                    &gw.target,
                    &s.text,
                    &types,
                    parameters,
                    self.search_path.as_deref(),
                    &s.tables_written,
                )
                .await;
            estimated(s, answer);
        }
        let judged = self.judge_analysis(gw, analysis, started);
        let sentence = judged.outcome.refusal.clone()?;
        // Refused runs are recorded here; the others by [`State::executed`].
        let e = self.event("bind", &text, &judged);
        if let Some(ev) = gw.recorder.statement_event(&e, &self.stamp, false) {
            let values = super::messages::parameter_values(parameters).unwrap_or_default();
            let masked_by = self
                .prepared
                .get(statement)
                .map_or(Some("unknown statement"), |p| p.masked_by.as_deref());
            let ev = ev.with_parameters(parameters_json(&values, masked_by));
            self.pending.push((ev, self.ends_at));
        }
        Some(sentence)
    }

    /// When prepared statement `name` waits for approval: the review of one run of it
    /// (with an event of its own, holding the values of its Bind, `section`) and its text.
    pub fn statement_review(&self, name: &str, section: &[u8]) -> Option<(Review, String)> {
        if self.held_statements.is_empty() {
            return None;
        }
        let (r, text) = self.held_statements.get(name)?;
        let parameters = || {
            let values = super::messages::parameter_values(section).unwrap_or_default();
            let masked_by = self.prepared.get(name).map(|p| p.masked_by.as_deref());
            // Not seen prepared: withheld, to be safe.
            parameters_json(&values, masked_by.unwrap_or(Some("unknown statement")))
        };
        let run = Review {
            rule: r.rule.clone(),
            message: r.message.clone(),
            by: r.by.clone(),
            timeout: r.timeout,
            event: r
                .event
                .as_ref()
                .map(|e| e.again().with_parameters(parameters())),
            writes: r.writes,
            // Its parameters are not in the text the planner would see.
            estimable: false,
            shape: r.shape.clone(),
        };
        Some((run, text.clone()))
    }

    /// The event of a judged query string.
    fn event<'a>(
        &'a self,
        kind: &'static str,
        text: &'a str,
        judged: &'a crate::gateway::QueryJudgement<'_>,
    ) -> StatementEvent<'a> {
        StatementEvent {
            session_id: &self.id,
            target: &self.target.name,
            subject: &self.agent.sub,
            groups: &self.agent.groups,
            prompt: self.prompt.as_deref(),
            kind,
            statement: text,
            fingerprints: judged
                .analysis
                .statements
                .iter()
                .map(|f| &f.fingerprint)
                .collect(),
            outcome: &judged.outcome,
            rule_ids: judged.verdict.rule_ids().collect(),
            monitored: judged.verdict.monitored().map(|r| r.id.as_str()).collect(),
            message: judged.outcome.refusal.clone(),
            judge_us: judged.judge_us,
        }
    }

    /// Records the final decision on a held request: `decision`, and the sentence the
    /// client was told (`None` when it ran).
    pub fn decided(&mut self, review: &mut Review, decision: Decision, message: Option<String>) {
        let runs = message.is_none();
        if let Some(mut ev) = review.event.take() {
            ev.decided(decision, message, runs && review.writes);
            self.pending.push((ev, self.ends_at));
        }
    }

    /// Hands the events judged since the last call to the audit store, waiting for those
    /// the durability setting says must be committed before their statements go
    /// upstream. With `reads`, allowed reads wait there for their results instead (when
    /// the durability setting lets a read's event wait that long).
    pub async fn flush_events(
        &mut self,
        gw: &Gateway,
        reads: Option<&Shared>,
    ) -> Result<(), Error> {
        let defer = reads.is_some() && gw.recorder.can_defer_reads();
        for (ev, ends_at) in self.pending.drain(..) {
            if defer
                && ends_at > 0
                && ev.may_wait_for_results()
                && let Some(shared) = reads
            {
                lock(shared).markers.defer(ev, ends_at);
                continue;
            }
            gw.recorder
                .submit_durably(ev)
                .await
                .map_err(|e| Error::Refused(refusal::unrecorded(&e)))?;
        }
        Ok(())
    }

    /// An error ending the session once its token has expired (with the clock leeway
    /// the login allowed).
    pub fn expired(&self) -> Result<(), Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Saturating: an issuer may sign an `exp` near u64::MAX ("never"), which an
        // addition would overflow (seen through the `jwt` fuzz target, issue 14).
        if now
            < self
                .expires_at
                .saturating_add(crate::identity::DEFAULT_LEEWAY_SECS)
        {
            return Ok(());
        }
        Err(Error::Auth(
            refusal::token_expired(now.saturating_sub(self.expires_at)),
            crate::identity::SQLSTATE_INVALID_AUTHORIZATION,
        ))
    }
}

/// Runs both relays until either side ends; a fatal error from the client side is sent
/// to the client by the server side, after what the server already sent.
async fn relay(
    gw: &Gateway,
    client: ClientStream,
    upstream: Upstream,
    cbuf: BytesMut,
    state: &mut State,
) -> Result<(), Error> {
    let (ustream, ubuf) = upstream;
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(ustream);
    let markers: Shared = Arc::default();
    let (fatal_tx, fatal_rx) = oneshot::channel::<Bytes>();
    let masker = Arc::new(Masker::new(
        gw.rules.clone(),
        state.agent.clone(),
        state.target.clone(),
        gw.mask_key.clone(),
    ));
    state.masker = Some(masker.clone());
    // Notices for the client (a held request's) go out between the server's frames.
    let (notice_tx, notice_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let down = super::relay_down::relay_down(
        gw,
        &masker,
        ur,
        cw,
        ubuf,
        markers.clone(),
        super::relay_down::FromClientSide {
            fatal: fatal_rx,
            notices: notice_rx,
        },
    );
    let up = super::relay_up::relay_up(gw, cr, uw, cbuf, markers.clone(), state, notice_tx);
    tokio::pin!(down);
    tokio::pin!(up);
    let result = tokio::select! {
        r = &mut up => {
            if let Err(e) = &r
                && let Some(resp) = e.response()
            {
                let _ = fatal_tx.send(resp);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut down).await;
            }
            r
        }
        r = &mut down => r,
    };
    // Reads that went upstream but whose results never completed are still recorded.
    let unfinished: Vec<Pending> = lock(&markers).markers.unfinished().collect();
    for ev in unfinished {
        if let Err(e) = gw.recorder.submit(ev).await {
            tracing::error!(error = %e, "read event not recorded");
        }
    }
    result
}
