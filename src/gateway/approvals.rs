//! Just-in-time approvals (SPEC "Approvals"), for both protocols: a request a rule sends
//! to review is held here until a person in the rule's group decides, or until it
//! expires. The protocols ask ([`Broker::ask`]), wait up to the hold ([`Broker::wait`])
//! and turn the answer into bytes; approvers decide through [`Broker::decide`] (the HTTP
//! API, the CLI and the web page all end there).
//!
//! A request still undecided when its hold ends stays pending until its timeout; once
//! approved, the identical request (same subject, target and statement with its
//! parameters, or the same ref updates) is admitted once, on any session. Every step is
//! an event in the audit chain and a row of `approvals`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::record::{Protocol, Recorder, Unrecorded};
use crate::audit::{self, Decision};
use crate::config;
use crate::identity::Identity;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Expired => "expired",
        }
    }

    pub fn parse(word: &str) -> Option<State> {
        [
            State::Pending,
            State::Approved,
            State::Rejected,
            State::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == word)
    }
}

/// What an approver sees of a request.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub state: State,
    pub protocol: &'static str,
    pub target: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub prompt: Option<String>,
    pub session_id: String,
    /// The statement, or a push's one-line summary.
    pub statement: String,
    /// A push's ref updates with their facts (empty for SQL).
    pub refs: Vec<serde_json::Value>,
    /// The rule that asked for review, and what it says.
    pub rule: String,
    pub message: String,
    /// The group whose members decide.
    pub group: String,
    /// What the session ran before it (most recent last).
    pub earlier: Vec<String>,
    /// The planner's estimate of the rows a write touches, when it could be asked.
    pub estimate: Option<String>,
    /// Microseconds since the Unix epoch.
    pub requested_us: i64,
    pub deadline_us: i64,
    pub decided_us: Option<i64>,
    pub approver: Option<String>,
    pub reason: Option<String>,
    /// An approved request has been run (held, or sent again); it is not admitted twice.
    pub used: bool,
    pub link: String,
}

/// A request to hold, as a protocol describes it.
pub struct Ask {
    pub protocol: Protocol,
    pub target: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub prompt: Option<String>,
    pub session_id: String,
    pub statement: String,
    pub refs: Vec<serde_json::Value>,
    /// What makes two requests identical besides subject and target: the statement and
    /// its parameters, or the ref updates.
    pub identity: Vec<String>,
    pub rule: String,
    pub message: String,
    /// The rule's `by` group.
    pub by: Option<String>,
    /// The rule's `timeout`.
    pub timeout: Option<Duration>,
    pub earlier: Vec<String>,
    pub estimate: Option<String>,
    /// The request's shape (statement fingerprints, ref names): what "approve similar"
    /// matches.
    pub shape: String,
}

/// Longest "approve similar" an approver may grant.
pub const MAX_SIMILAR: Duration = Duration::from_secs(8 * 3600);

/// An approver's "approve similar": requests of the same shape by the same agent on the
/// same target pass without waiting until `until_us`.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub from: String,
    pub approver: String,
    pub subject: String,
    pub target: String,
    pub protocol: &'static str,
    pub shape: String,
    pub until_us: i64,
}

/// What [`Broker::ask`] says.
pub enum Asked {
    /// An identical request was approved and not used yet: this one goes ahead, once.
    Admitted { id: String, approver: String },
    /// Held: the client is told `id` and `link`, then waits.
    Held {
        id: String,
        link: String,
        changes: watch::Receiver<State>,
    },
}

/// How a held request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Approved {
        approver: String,
    },
    Rejected {
        approver: String,
        reason: Option<String>,
    },
    Expired,
    /// Still pending when the hold ended.
    Pending,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("no approval request {0}")]
    NotFound(String),
    #[error("approval request {0} is already {1}")]
    Decided(String, &'static str),
    #[error("{0} made this request and cannot decide it")]
    OwnRequest(String),
    #[error("{who} is not in the {group} group, which decides this request")]
    NotInGroup { who: String, group: String },
    #[error("{0}")]
    Unrecorded(String),
    #[error("approve similar is granted for at most {} h", MAX_SIMILAR.as_secs() / 3600)]
    TooLong,
}

struct Entry {
    request: Request,
    key: String,
    shape: String,
    changes: watch::Sender<State>,
    /// The event of the `requested` step (the `approvals` row points at it).
    event_id: String,
}

/// The approvals of one gateway process.
pub struct Broker {
    config: config::Approvals,
    link_base: String,
    recorder: Recorder,
    book: Mutex<HashMap<String, Entry>>,
    grants: Mutex<Vec<Grant>>,
    /// Bumped on every change, for pages that watch the list.
    generation: watch::Sender<u64>,
    webhook: Option<super::webhook::Webhook>,
}

impl Broker {
    /// `link_base` is the web page's address (`http://host:port`).
    pub fn new(config: config::Approvals, link_base: String, recorder: Recorder) -> Arc<Broker> {
        let webhook = config.webhook.as_ref().map(|url| {
            let secret = config
                .webhook_secret_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok());
            super::webhook::Webhook::start(url.clone(), secret)
        });
        Arc::new(Broker {
            link_base: config.link.clone().unwrap_or(link_base),
            config,
            recorder,
            book: Mutex::new(HashMap::new()),
            grants: Mutex::new(Vec::new()),
            generation: watch::channel(0).0,
            webhook,
        })
    }

    /// How long a client's request waits on the wire.
    pub fn hold(&self) -> Duration {
        self.config.hold
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.book
            .lock()
            .expect("the approvals lock is never poisoned")
    }

    /// A receiver that changes whenever any request does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn changed(&self, request: &Request, step: &str) {
        self.generation.send_modify(|g| *g += 1);
        if let Some(hook) = &self.webhook {
            hook.send(step, request);
        }
    }

    /// Holds `ask`, joins an identical pending request, or admits it when an identical
    /// request was approved and not used yet.
    pub async fn ask(self: &Arc<Self>, ask: Ask) -> Result<Asked, Unrecorded> {
        let key = key_of(&ask);
        let now = audit::record::now_us();
        {
            let mut book = self.lock();
            if let Some(e) = book.values_mut().find(|e| {
                e.key == key
                    && e.request.state == State::Approved
                    && !e.request.used
                    && e.request.deadline_us > now
            }) {
                e.request.used = true;
                return Ok(Asked::Admitted {
                    id: e.request.id.clone(),
                    approver: e.request.approver.clone().unwrap_or_default(),
                });
            }
            if let Some(e) = book
                .values()
                .find(|e| e.key == key && e.request.state == State::Pending)
            {
                return Ok(Asked::Held {
                    id: e.request.id.clone(),
                    link: e.request.link.clone(),
                    changes: e.changes.subscribe(),
                });
            }
        }
        let grant = self
            .grants
            .lock()
            .expect("the grants lock is never poisoned")
            .iter()
            .find(|g| {
                g.until_us > now
                    && g.subject == ask.subject
                    && g.target == ask.target
                    && g.protocol == ask.protocol.as_str()
                    && g.shape == ask.shape
            })
            .cloned();
        let timeout = ask.timeout.unwrap_or(self.config.timeout);
        let id = format!("{:012x}", rand::random::<u64>() >> 16);
        let link = format!("{}/approvals/{id}", self.link_base.trim_end_matches('/'));
        let request = Request {
            id: id.clone(),
            state: State::Pending,
            protocol: ask.protocol.as_str(),
            target: ask.target,
            subject: ask.subject,
            groups: ask.groups,
            prompt: ask.prompt,
            session_id: ask.session_id,
            statement: ask.statement,
            refs: ask.refs,
            rule: ask.rule,
            message: ask.message,
            group: ask.by.unwrap_or_else(|| self.config.group.clone()),
            earlier: ask.earlier,
            estimate: ask.estimate,
            requested_us: now,
            deadline_us: now + i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX / 2),
            decided_us: None,
            approver: None,
            reason: None,
            used: false,
            link: link.clone(),
        };
        if let Some(g) = grant {
            // Approved by the grant, recorded as such, and used by this request.
            let mut request = request;
            request.state = State::Approved;
            request.approver = Some(g.approver.clone());
            request.reason = Some(format!("approve similar, granted with approval {}", g.from));
            request.decided_us = Some(now);
            request.used = true;
            let event_id = self
                .record(&request, ask.protocol, "approved", Some(&g.approver))
                .await?;
            self.lock().insert(
                id.clone(),
                Entry {
                    request: request.clone(),
                    key,
                    shape: ask.shape,
                    changes: watch::channel(State::Approved).0,
                    event_id,
                },
            );
            self.changed(&request, "approved");
            return Ok(Asked::Admitted {
                id,
                approver: g.approver,
            });
        }
        let event_id = self
            .record(&request, ask.protocol, "requested", None)
            .await?;
        let (tx, rx) = watch::channel(State::Pending);
        self.lock().insert(
            id.clone(),
            Entry {
                request: request.clone(),
                key,
                shape: ask.shape,
                changes: tx,
                event_id,
            },
        );
        self.changed(&request, "requested");
        // The request expires at its deadline if nobody decided it.
        let broker = Arc::downgrade(self);
        let expiring = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(b) = broker.upgrade() {
                b.expire(&expiring).await;
            }
        });
        Ok(Asked::Held {
            id,
            link,
            changes: rx,
        })
    }

    /// Waits up to `hold` for the request `id` to be decided. An approval that arrives
    /// in time is used by this request.
    pub async fn wait(
        &self,
        id: &str,
        mut changes: watch::Receiver<State>,
        hold: Duration,
    ) -> Answer {
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            let state = *changes.borrow_and_update();
            if state != State::Pending {
                let mut book = self.lock();
                let Some(e) = book.get_mut(id) else {
                    return Answer::Expired;
                };
                return match state {
                    State::Approved if !e.request.used => {
                        e.request.used = true;
                        Answer::Approved {
                            approver: e.request.approver.clone().unwrap_or_default(),
                        }
                    }
                    // Another copy of the same request ran on the approval first.
                    State::Approved => Answer::Pending,
                    State::Rejected => Answer::Rejected {
                        approver: e.request.approver.clone().unwrap_or_default(),
                        reason: e.request.reason.clone(),
                    },
                    _ => Answer::Expired,
                };
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Answer::Expired,
                Err(_) => return Answer::Pending,
            }
        }
    }

    /// `who` approves or rejects request `id`; an approval with `similar_for` also lets
    /// requests of the same shape by the same agent on the same target pass for that long.
    pub async fn decide(
        &self,
        id: &str,
        who: &Identity,
        approve: bool,
        reason: Option<String>,
        similar_for: Option<Duration>,
    ) -> Result<Request, Refused> {
        if similar_for.is_some_and(|d| d > MAX_SIMILAR) {
            return Err(Refused::TooLong);
        }
        let (request, protocol, shape) = {
            let mut book = self.lock();
            let e = book
                .get_mut(id)
                .ok_or_else(|| Refused::NotFound(id.to_string()))?;
            let r = &mut e.request;
            if r.state != State::Pending {
                return Err(Refused::Decided(id.to_string(), r.state.as_str()));
            }
            if r.subject == who.sub {
                return Err(Refused::OwnRequest(who.sub.clone()));
            }
            if !who.groups.contains(&r.group) {
                return Err(Refused::NotInGroup {
                    who: who.sub.clone(),
                    group: r.group.clone(),
                });
            }
            r.state = if approve {
                State::Approved
            } else {
                State::Rejected
            };
            r.approver = Some(who.sub.clone());
            r.reason = reason.filter(|r| !r.trim().is_empty());
            r.decided_us = Some(audit::record::now_us());
            (r.clone(), protocol_of(r.protocol), e.shape.clone())
        };
        let step = request.state.as_str();
        if let Err(e) = self.record(&request, protocol, step, Some(&who.sub)).await {
            return Err(Refused::Unrecorded(e.to_string()));
        }
        if let (true, Some(d)) = (approve, similar_for) {
            let grant = Grant {
                from: request.id.clone(),
                approver: who.sub.clone(),
                subject: request.subject.clone(),
                target: request.target.clone(),
                protocol: request.protocol,
                shape,
                until_us: audit::record::now_us()
                    + i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2),
            };
            let mut noted = request.clone();
            noted.reason = Some(format!(
                "approve similar for {} s: the same shape by {} on {}",
                d.as_secs(),
                grant.subject,
                grant.target
            ));
            if let Err(e) = self
                .record(&noted, protocol, "granted", Some(&who.sub))
                .await
            {
                return Err(Refused::Unrecorded(e.to_string()));
            }
            self.grants
                .lock()
                .expect("the grants lock is never poisoned")
                .push(grant);
        }
        // Told only once recorded: nothing runs on an approval the audit lacks.
        if let Some(e) = self.lock().get(id) {
            let _ = e.changes.send(request.state);
        }
        self.changed(&request, step);
        Ok(request)
    }

    async fn expire(&self, id: &str) {
        let expired = {
            let mut book = self.lock();
            match book.get_mut(id) {
                Some(e) if e.request.state == State::Pending => {
                    e.request.state = State::Expired;
                    e.request.decided_us = Some(audit::record::now_us());
                    Some(e.request.clone())
                }
                _ => None,
            }
        };
        let Some(request) = expired else { return };
        let protocol = protocol_of(request.protocol);
        if let Err(e) = self.record(&request, protocol, "expired", None).await {
            tracing::error!(approval = %id, error = %e, "approval expiry not recorded");
        }
        if let Some(e) = self.lock().get(id) {
            let _ = e.changes.send(State::Expired);
        }
        self.changed(&request, "expired");
    }

    /// The requests in `state` (all without one), oldest first.
    pub fn list(&self, state: Option<State>) -> Vec<Request> {
        let mut out: Vec<Request> = self
            .lock()
            .values()
            .filter(|e| state.is_none_or(|s| e.request.state == s))
            .map(|e| e.request.clone())
            .collect();
        out.sort_by_key(|r| r.requested_us);
        out
    }

    pub fn get(&self, id: &str) -> Option<Request> {
        self.lock().get(id).map(|e| e.request.clone())
    }

    /// Records one step: an event in the chain and the request's `approvals` row.
    async fn record(
        &self,
        r: &Request,
        protocol: Protocol,
        step: &str,
        actor: Option<&str>,
    ) -> Result<String, Unrecorded> {
        let decision = match r.state {
            // The request did not go ahead (yet).
            State::Pending => Decision::Denied,
            State::Approved => Decision::Approved,
            State::Rejected => Decision::Rejected,
            State::Expired => Decision::Expired,
        };
        let message = match (step, actor) {
            ("requested", _) => format!(
                "approval {} requested by {} ({}), decided by the {} group",
                r.id, r.subject, r.rule, r.group
            ),
            (_, Some(who)) => match &r.reason {
                Some(reason) => format!("approval {} {step} by {who}: {reason}", r.id),
                None => format!("approval {} {step} by {who}", r.id),
            },
            _ => format!("approval {} {step}", r.id),
        };
        tracing::info!(
            target: "portcullis::event",
            approval = %r.id, step, subject = %r.subject, actor = actor.unwrap_or("-"),
            rule = %r.rule, "approval"
        );
        let event_id = self
            .recorder
            .approval(
                r,
                protocol,
                &format!("{}.{step}", audit::record::kind::APPROVAL),
                decision,
                actor,
                message,
                self.event_of(&r.id),
            )
            .await?;
        Ok(event_id)
    }

    fn event_of(&self, id: &str) -> Option<String> {
        self.lock().get(id).map(|e| e.event_id.clone())
    }
}

fn protocol_of(word: &str) -> Protocol {
    if word == Protocol::Git.as_str() {
        Protocol::Git
    } else {
        Protocol::Postgres
    }
}

/// What makes two requests the same request.
fn key_of(ask: &Ask) -> String {
    let mut h = Sha256::new();
    for part in [ask.protocol.as_str(), &ask.target, &ask.subject]
        .into_iter()
        .chain(ask.identity.iter().map(String::as_str))
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    crate::audit::chain::hex(&h.finalize())
}
