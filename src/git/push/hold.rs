//! A push a rule sent to review: the response streams from a task of its own. The client
//! sees progress lines at once (`remote: portcullis: held for approval ...`) and again
//! every few seconds while it waits; approved within the hold, the push is applied
//! exactly as judged (the repository stays locked meanwhile, so nothing moves under
//! it); rejected, expired or still pending at the end of the hold, every ref is refused
//! with the reason. An identical push (same ref updates) sent again after an approval is
//! admitted once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::apply;
use super::log::Log;
use super::report;
use crate::audit::Decision;
use crate::gateway::approvals::{Answer, Ask, Asked, Broker};
use crate::gateway::record::{Protocol, Recorder};
use crate::gateway::{Outcome, refusal};
use crate::git::http::Repo;
use crate::git::inspect::facts::{PushFacts, RefFacts};
use crate::git::wire::report as wire;
use crate::git::wire::request::Request;
use crate::policy::value::Agent;

/// How often a waiting client is told it still waits.
const EVERY: Duration = Duration::from_secs(5);

/// Everything a held push needs after the handler has returned.
pub struct Held {
    pub broker: Arc<Broker>,
    pub recorder: Recorder,
    pub repo: Arc<Repo>,
    pub peer: String,
    pub session: String,
    pub agent: Agent,
    pub prompt: Option<String>,
    pub started: Instant,
    pub deciding: Vec<String>,
    pub monitored: Vec<String>,
    pub rule: String,
    pub message: String,
    pub by: Option<String>,
    pub timeout: Option<Duration>,
    pub upstream_caps: Vec<String>,
    pub pack: Option<PathBuf>,
    /// Kept until the push is answered: the spooled body, and the repository's lock.
    pub spool: tempfile::TempDir,
    pub guard: tokio::sync::OwnedMutexGuard<()>,
}

type Chunk = Result<Bytes, std::io::Error>;

/// The streaming answer to a held push.
pub fn start(held: Held, request: Request, facts: Vec<(RefFacts, PushFacts)>) -> Body {
    let (tx, rx) = mpsc::channel::<Chunk>(16);
    tokio::spawn(async move {
        if let Err(e) = run(held, &request, &facts, &tx).await {
            let _ = tx.send(Err(std::io::Error::other(e))).await;
        }
    });
    Body::from_stream(tokio_stream_of(rx))
}

fn tokio_stream_of(
    mut rx: mpsc::Receiver<Chunk>,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn run(
    held: Held,
    request: &Request,
    facts: &[(RefFacts, PushFacts)],
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let mut log = Log {
        recorder: &held.recorder,
        peer: &held.peer,
        session: held.session.clone(),
        repo: &held.repo.target.name,
        agent: &held.agent,
        prompt: held.prompt.as_deref(),
        request,
        facts,
        started: held.started,
        approved: None,
    };
    let progress = |text: String| {
        let packet = wire::progress_packet(request, &format!("{text}\n"));
        async move {
            if !packet.is_empty() {
                let _ = tx.send(Ok(Bytes::from(packet))).await;
            }
        }
    };
    let identity = request
        .commands
        .iter()
        .map(|c| format!("{} {} {}", c.old, c.new, c.name))
        .collect();
    let refs = facts
        .iter()
        .map(|(r, p)| {
            serde_json::json!({
                "ref": r.name, "old": r.old, "new": r.new, "kind": r.kind, "forced": r.force,
                "commits": p.commits.len(), "files": p.files.len(),
                "findings": p.describe_findings(),
            })
        })
        .collect();
    let summary = request
        .commands
        .iter()
        .map(|c| {
            format!(
                "{} {}..{}",
                c.name,
                short(&c.old.to_string()),
                short(&c.new.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let ask = Ask {
        protocol: Protocol::Git,
        target: held.repo.target.name.clone(),
        subject: held.agent.sub.clone(),
        groups: held.agent.groups.clone(),
        prompt: held.prompt.clone(),
        session_id: held.session.clone(),
        statement: format!("git push {summary}"),
        refs,
        identity,
        rule: held.rule.clone(),
        message: held.message.clone(),
        by: held.by.clone(),
        timeout: held.timeout,
        earlier: Vec::new(),
        estimate: None,
        shape: {
            let mut names: Vec<&str> = request.commands.iter().map(|c| c.name.as_str()).collect();
            names.sort_unstable();
            names.join(" ")
        },
    };
    let deciding: Vec<&str> = held.deciding.iter().map(String::as_str).collect();
    let monitored: Vec<&str> = held.monitored.iter().map(String::as_str).collect();
    let refuse = |decision: Decision, sentence: String| Outcome {
        decision,
        refusal: Some(sentence),
        review: true,
    };
    let (id, answer) = match held.broker.ask(ask).await {
        Err(e) => {
            let sentence = refusal::approval_unavailable(&e);
            log.refused(
                &refuse(Decision::Error, sentence.clone()),
                &deciding,
                &monitored,
                None,
            )
            .await;
            return finish(tx, report::refuse_all(request, Ok(()), &sentence)).await;
        }
        Ok(Asked::Admitted { id, approver }) => (id, Answer::Approved { approver }),
        Ok(Asked::Held { id, link, changes }) => {
            let group = held.broker.get(&id).map(|r| r.group).unwrap_or_default();
            let hold = held.broker.hold();
            progress(refusal::held(
                &id,
                &held.rule,
                &held.message,
                &group,
                &link,
                hold.as_secs(),
            ))
            .await;
            let waited = Instant::now();
            let answer = loop {
                let left = hold.saturating_sub(waited.elapsed());
                let answer = held
                    .broker
                    .wait(&id, changes.clone(), left.min(EVERY))
                    .await;
                if answer != Answer::Pending || left <= EVERY {
                    break answer;
                }
                progress(refusal::still_held(&id, waited.elapsed().as_secs())).await;
            };
            if answer == Answer::Pending {
                let sentence = refusal::pending(&id, &link, "the same push");
                log.refused(
                    &refuse(Decision::Denied, sentence.clone()),
                    &deciding,
                    &monitored,
                    None,
                )
                .await;
                return finish(tx, report::refuse_all(request, Ok(()), &sentence)).await;
            }
            (id, answer)
        }
    };
    let (decision, sentence) = match answer {
        Answer::Approved { approver } => {
            progress(refusal::approved(&id, &approver)).await;
            log.approved = Some(format!("approved by {approver} (approval {id})"));
            let rules = (deciding.as_slice(), monitored.as_slice());
            let body = apply::apply(
                &held.repo,
                request,
                &held.upstream_caps,
                &log,
                rules,
                held.pack.as_deref(),
                held.spool,
                held.guard,
            )
            .await;
            return finish(tx, body).await;
        }
        Answer::Rejected { approver, reason } => (
            Decision::Rejected,
            refusal::rejected(&id, &approver, reason.as_deref()),
        ),
        Answer::Expired | Answer::Pending => (Decision::Expired, refusal::expired(&id)),
    };
    log.refused(
        &refuse(decision, sentence.clone()),
        &deciding,
        &monitored,
        None,
    )
    .await;
    finish(tx, report::refuse_all(request, Ok(()), &sentence)).await
}

/// Streams `body` (the push's report) to the client.
async fn finish(
    tx: &mpsc::Sender<Chunk>,
    body: Result<Body, crate::git::Error>,
) -> Result<(), String> {
    let body = body.map_err(|e| e.to_string())?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other);
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    Ok(())
}

fn short(oid: &str) -> &str {
    &oid[..oid.len().min(10)]
}
