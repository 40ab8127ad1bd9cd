//! One `git push`, from request body to verdict on the wire.
//!
//! The body is spooled to a private folder, its command list parsed, its pack indexed into
//! a quarantine beside the repository's read-only mirror, and every ref update judged.
//! Only when every ref is allowed does the unchanged pack (behind a re-encoded command
//! list) go to the upstream, whose own report is relayed. Otherwise the client gets a
//! `report-status` naming the ref and the rule, and the upstream sees nothing.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncSeekExt;

use super::facts::{PushFacts, RefFacts};
use super::history::{self, Hidden, InspectOptions, Update};
use super::http::Repo;
use super::intake::{self, Go};
use super::pack::Quarantine;
use super::receive::{self, Request};
use super::upstream::{self, ByteStream, Service};
use crate::config::{GitApply, GitUpstream};
use crate::gateway::record::{PushEvent, Recorder, RefEvent, Unrecorded};
use crate::policy::value::{Agent, Target};
use crate::policy::{Decision, RuleSet};

/// The command section (commands, capabilities, push options) must fit in this much of
/// the body; the pack after it may be as large as `max_push_bytes`.
pub(super) const MAX_COMMAND_SECTION: usize = 16 << 20;

pub struct PushRequest {
    /// The client's address, for the audit trail.
    pub peer: String,
    pub agent: Agent,
    /// `X-Portcullis-Prompt`; a `prompt=` push option takes precedence.
    pub prompt: Option<String>,
    pub body: ByteStream,
    pub gzip: bool,
}

/// A push that cannot be answered with a report: the client gets an HTTP error.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the push is larger than this repository accepts ({0} bytes)")]
    TooLarge(u64),
    #[error("malformed push request: {0}")]
    Malformed(String),
    #[error("the push request body ended early")]
    Truncated,
    #[error("the gateway could not store the push: {0}")]
    Io(#[from] std::io::Error),
    /// Refused, for a client that asked for no `report-status`.
    #[error("{0}")]
    Refused(String),
}

impl PushError {
    pub fn status(&self) -> StatusCode {
        match self {
            PushError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PushError::Malformed(_) | PushError::Truncated => StatusCode::BAD_REQUEST,
            PushError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PushError::Refused(_) => StatusCode::FORBIDDEN,
        }
    }
}

/// Judges one push and returns the response body for the client.
pub async fn receive(
    rules: &RuleSet,
    recorder: &Recorder,
    repo: &Arc<Repo>,
    req: PushRequest,
) -> Result<Body, PushError> {
    let started = Instant::now();
    let spool = tempfile::Builder::new()
        .prefix("portcullis-push-")
        .tempdir()?;
    let body_path = spool.path().join("body");
    let limit = repo.target.max_push_bytes;
    // A gzipped body (git never sends one for a push, but HTTP allows it) is taken whole,
    // then unpacked; a plain one is indexed as it arrives.
    let (request, intake) = if req.gzip {
        let raw = spool.path().join("body.gz");
        intake::spool(req.body, &raw, limit, None).await?;
        let (from, to) = (raw.clone(), body_path.clone());
        tokio::task::spawn_blocking(move || gunzip(&from, &to, limit))
            .await
            .map_err(std::io::Error::other)??;
        let mut head = Vec::new();
        std::fs::File::open(&body_path)?
            .take(MAX_COMMAND_SECTION as u64)
            .read_to_end(&mut head)?;
        let request = receive::parse_request(&head).map_err(|e| match e {
            receive::RequestError::Truncated => PushError::Truncated,
            e => PushError::Malformed(e.to_string()),
        })?;
        (request, None)
    } else {
        let (request, intake) = intake::start(req.body, &body_path, limit).await?;
        (request, Some(intake))
    };
    if request.commands.is_empty() {
        // The probe git sends before a large chunked push: nothing to judge or apply.
        return Ok(Body::empty());
    }
    let session = format!("{:016x}", rand::random::<u64>());
    let prompt = request
        .options
        .iter()
        .find_map(|o| o.strip_prefix("prompt="))
        .map(str::to_string)
        .or(req.prompt.clone());
    let target = Target {
        name: repo.target.name.clone(),
    };
    let mut log = PushLog {
        recorder,
        peer: &req.peer,
        session: &session,
        repo: &repo.target.name,
        agent: &req.agent,
        prompt: prompt.as_deref(),
        request: &request,
        facts: &[],
        started,
    };
    if !request.shallow.is_empty() {
        let why = "portcullis: pushes from shallow clones are not accepted (fetch the full history first)";
        log.record("denied", &[], &[], Some(why.into())).await;
        return refuse_all(&request, Ok(()), why);
    }

    let guard = repo.lock.clone().lock_owned().await;
    // What the upstream accepts now, and the mirror brought up to date with it.
    let upstream_caps = match upstream_capabilities(repo).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "upstream unavailable for a push");
            let why = "portcullis: the upstream is unavailable; nothing was pushed";
            log.record("error", &[], &[], Some(e)).await;
            return refuse_all(&request, Ok(()), why);
        }
    };
    if let Err(e) = repo.upstream.refresh_mirror().await {
        tracing::warn!(repo = %repo.target.name, error = %e, "mirror refresh failed");
        let why = "portcullis: the gateway could not refresh its mirror of the upstream; nothing was pushed";
        log.record("error", &[], &[], Some(e.to_string())).await;
        return refuse_all(&request, Ok(()), why);
    }

    let prepared = started.elapsed();
    let mirror = repo.upstream.mirror().to_path_buf();
    let quarantine_dir = spool.path().join("quarantine");
    let quarantine = match intake {
        Some(intake) => intake
            .finish(Go {
                mirror: mirror.clone(),
                quarantine: quarantine_dir,
            })
            .await?
            .map_err(Failure::Unpack),
        None if request.needs_pack() => {
            let (mirror, body_path, offset) =
                (mirror.clone(), body_path.clone(), request.pack_offset);
            tokio::task::spawn_blocking(move || {
                index_file(&mirror, &quarantine_dir, &body_path, offset)
            })
            .await
            .map_err(std::io::Error::other)?
        }
        None => Ok(None),
    };
    let spooled = started.elapsed();
    // The indexed pack, for `apply = "direct"` (the quarantine folder lives in `spool`).
    let indexed_pack = match &quarantine {
        Ok(Some(q)) => q.pack_path().map(Path::to_path_buf),
        _ => None,
    };
    let inspected = match quarantine {
        Ok(quarantine) => {
            let protected = repo.protected.clone();
            let request = request.clone();
            tokio::task::spawn_blocking(move || {
                inspect(&mirror, quarantine.as_ref(), &request, &protected)
            })
            .await
            .map_err(std::io::Error::other)?
        }
        Err(e) => Err(e),
    };
    let judged_at = started.elapsed();
    let mut facts = match inspected {
        Ok(f) => f,
        Err(Failure::Unpack(why)) => {
            log.record("error", &[], &[], Some(why.clone())).await;
            return refuse_all(&request, Err(&why), "unpacker error");
        }
        Err(Failure::Inspect(why)) => {
            let line = format!("portcullis: the push could not be inspected: {why}");
            log.record("error", &[], &[], Some(why)).await;
            return refuse_all(&request, Ok(()), &line);
        }
    };
    for (_, push) in &mut facts {
        push.set_options(request.options.clone());
        push.set_refs(request.commands.len());
    }
    log.facts = &facts;

    let judged = crate::gateway::judge_refs(rules, &facts, &req.agent, &target);
    let (deciding, monitored) = (judged.deciding.clone(), judged.monitored.clone());

    if let Some(message) = judged.outcome.refusal.clone() {
        let body = refusal(&request, &facts, &judged.reasons);
        if request.report_status().is_none() {
            // A client that asked for no report would read silence as success.
            log.record("denied", &deciding, &monitored, Some(message.clone()))
                .await;
            return Err(PushError::Refused(message));
        }
        let state = if judged.decision == Decision::Deny {
            "denied"
        } else {
            "review"
        };
        log.record(state, &deciding, &monitored, Some(message))
            .await;
        return Ok(Body::from(body));
    }

    // Allowed: forward the command list (re-encoded for what the upstream supports) and
    // the pack bytes exactly as the client sent them.
    let mut caps: Vec<String> = request
        .capabilities
        .iter()
        .filter(|c| {
            let name = c.split('=').next().unwrap_or(c);
            name == "agent"
                || upstream_caps
                    .iter()
                    .any(|u| u.split('=').next() == Some(name))
        })
        .cloned()
        .collect();
    let upstream_atomic = upstream_caps.iter().any(|c| c == "atomic");
    if upstream_atomic && request.commands.len() > 1 && !caps.iter().any(|c| c == "atomic") {
        // The gateway's verdict is all-or-nothing; ask the upstream to apply it that way.
        caps.push("atomic".into());
    }
    let options = upstream_caps.iter().any(|c| c == "push-options")
        && caps.iter().any(|c| c == "push-options");
    if let (GitApply::Direct, GitUpstream::Local(dir)) = (repo.target.apply, &repo.target.upstream)
    {
        return apply_direct(
            repo,
            dir,
            indexed_pack.as_deref(),
            &request,
            &mut log,
            (&deciding, &monitored),
        )
        .await;
    }
    let head = receive::encode_commands(&request, &caps, options);
    let mut file = tokio::fs::File::open(&body_path).await?;
    file.seek(SeekFrom::Start(request.pack_offset as u64))
        .await?;
    let forward = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(upstream::file_stream(file))
        .boxed();
    // The push's event is committed before anything goes upstream.
    if let Err(e) = log.record_allowed(&deciding, &monitored).await {
        tracing::error!(repo = %repo.target.name, error = %e, "push not recorded; refused");
        return refuse_all(&request, Ok(()), &format!("portcullis: {e}"));
    }
    let reply = match repo.upstream.rpc(Service::ReceivePack, None, forward).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "upstream push failed");
            log.record("error", &deciding, &monitored, Some(e.to_string()))
                .await;
            let why = "portcullis: the upstream is unavailable; nothing was pushed";
            return refuse_all(&request, Ok(()), why);
        }
    };
    tracing::debug!(
        repo = %repo.target.name,
        received_ms = spooled.as_millis() as u64,
        prepare_ms = prepared.as_millis() as u64,
        inspect_ms = (judged_at - spooled).as_millis() as u64,
        "push judged; forwarding"
    );
    let mut notes = Vec::new();
    for m in &monitored {
        notes.extend(receive::progress_packet(
            &request,
            &format!("portcullis: monitor: this push would be refused by {m}\n"),
        ));
    }
    // The spool (with the pack) and the repository lock live until the upstream's answer
    // has been relayed in full.
    let keep = (spool, guard);
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(notes)) })
            .chain(reply.body)
            .chain(futures_util::stream::once(async move {
                drop(keep);
                Ok(Bytes::new())
            }));
    Ok(Body::from_stream(body))
}

enum Failure {
    /// The pack could not be read: git reports this as `unpack <reason>`.
    Unpack(String),
    /// The objects are there but the push could not be judged (missing objects, ...).
    Inspect(String),
}

/// `apply = "direct"`: records the push, moves the already-indexed pack into the local
/// upstream and updates its refs in one transaction, then reports as receive-pack would.
async fn apply_direct(
    repo: &Repo,
    dir: &Path,
    pack: Option<&Path>,
    request: &Request,
    log: &mut PushLog<'_>,
    (deciding, monitored): (&[&str], &[&str]),
) -> Result<Body, PushError> {
    if let Err(e) = log.record_allowed(deciding, monitored).await {
        tracing::error!(repo = %repo.target.name, error = %e, "push not recorded; refused");
        return refuse_all(request, Ok(()), &format!("portcullis: {e}"));
    }
    let updates: Vec<(String, String, String)> = request
        .commands
        .iter()
        .map(|c| (c.name.clone(), c.old.to_string(), c.new.to_string()))
        .collect();
    match upstream::apply_pack(dir, pack, &updates).await {
        Ok(()) => {
            let refs: Vec<(&str, Option<&str>)> = request
                .commands
                .iter()
                .map(|c| (c.name.as_str(), None))
                .collect();
            let notes: Vec<String> = monitored
                .iter()
                .map(|m| format!("portcullis: monitor: this push would be refused by {m}\n"))
                .collect();
            Ok(Body::from(receive::encode_report(
                request,
                Ok(()),
                &refs,
                &notes,
            )))
        }
        Err(e) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "direct apply failed");
            log.record("error", deciding, monitored, Some(e.clone()))
                .await;
            refuse_all(
                request,
                Ok(()),
                &format!("portcullis: the refs could not be updated: {e}"),
            )
        }
    }
}

/// Indexes the pack of a spooled body (the gzip path) into `quarantine`.
fn index_file(
    mirror: &Path,
    quarantine: &Path,
    body: &Path,
    pack_offset: usize,
) -> Result<Option<Quarantine>, Failure> {
    let unpack = |e: &dyn std::fmt::Display| Failure::Unpack(e.to_string());
    std::fs::create_dir_all(quarantine).map_err(|e| unpack(&e))?;
    let mut file = std::fs::File::open(body).map_err(|e| unpack(&e))?;
    file.seek(SeekFrom::Start(pack_offset as u64))
        .map_err(|e| unpack(&e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    Quarantine::index(&mut reader, quarantine, mirror)
        .map(Some)
        .map_err(|e| unpack(&e))
}

fn inspect(
    mirror: &Path,
    quarantine: Option<&Quarantine>,
    request: &Request,
    protected: &super::facts::Protected,
) -> Result<Vec<(RefFacts, PushFacts)>, Failure> {
    let updates: Vec<Update> = request
        .commands
        .iter()
        .map(|c| Update::new(c.old, c.new, c.name.clone()))
        .collect();
    let options = InspectOptions {
        hidden: Hidden::AllRefs,
        ..InspectOptions::default()
    };
    history::inspect(mirror, quarantine, &updates, protected, &options)
        .map_err(|e| Failure::Inspect(e.to_string()))
}

/// The report for a refused push: the refused refs say why (with their findings: path,
/// commit, line, detector); every other ref is refused too (a push is all-or-nothing)
/// and says which ref stopped it.
fn refusal(
    request: &Request,
    facts: &[(RefFacts, PushFacts)],
    reasons: &[Option<(String, Vec<String>)>],
) -> Vec<u8> {
    let mut progress = Vec::new();
    for ((r, _), reason) in facts.iter().zip(reasons) {
        if let Some((why, findings)) = reason {
            progress.push(format!("{}: {why}\n", r.name));
            for line in findings {
                progress.push(format!("portcullis:   {line}\n"));
            }
        }
    }
    let first_ref = facts
        .iter()
        .zip(reasons)
        .find_map(|((r, _), why)| why.as_ref().map(|_| r.name.as_str()))
        .unwrap_or_default();
    let blocked_by =
        format!("portcullis: not applied: the push is all-or-nothing and {first_ref} was refused");
    let refs: Vec<(&str, Option<&str>)> = request
        .commands
        .iter()
        .map(|c| {
            let why = facts
                .iter()
                .zip(reasons)
                .find(|((r, _), _)| r.name == c.name)
                .and_then(|(_, w)| w.as_ref().map(|(why, _)| why.as_str()));
            (c.name.as_str(), Some(why.unwrap_or(&blocked_by)))
        })
        .collect();
    progress.push("portcullis: nothing was pushed\n".into());
    receive::encode_report(request, Ok(()), &refs, &progress)
}

/// A report refusing every ref with the same reason (an HTTP error for a client that
/// asked for no report).
fn refuse_all(request: &Request, unpack: Result<(), &str>, why: &str) -> Result<Body, PushError> {
    if request.report_status().is_none() {
        return Err(PushError::Refused(why.to_string()));
    }
    let refs: Vec<(&str, Option<&str>)> = request
        .commands
        .iter()
        .map(|c| (c.name.as_str(), Some(why)))
        .collect();
    let lines = [format!("{why}\n")];
    Ok(Body::from(receive::encode_report(
        request, unpack, &refs, &lines,
    )))
}

/// The capabilities the upstream advertises for pushes right now.
async fn upstream_capabilities(repo: &Repo) -> Result<Vec<String>, String> {
    let reply = repo
        .upstream
        .advertise(Service::ReceivePack, None)
        .await
        .map_err(|e| e.to_string())?;
    let body = upstream::collect(reply.body, 256 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let ad = receive::parse_advertisement(&body).map_err(|e| e.to_string())?;
    Ok(ad.capabilities)
}

fn gunzip(from: &Path, to: &Path, limit: u64) -> Result<(), PushError> {
    let mut decoder = flate2::read::GzDecoder::new(BufReader::new(std::fs::File::open(from)?));
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    let copied = std::io::copy(&mut (&mut decoder).take(limit + 1), &mut out)
        .map_err(|_| PushError::Malformed("the gzip body is corrupt".into()))?;
    if copied > limit {
        return Err(PushError::TooLarge(limit));
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// What gets recorded about one push.
struct PushLog<'a> {
    recorder: &'a Recorder,
    peer: &'a str,
    session: &'a str,
    repo: &'a str,
    agent: &'a Agent,
    prompt: Option<&'a str>,
    request: &'a Request,
    facts: &'a [(RefFacts, PushFacts)],
    started: Instant,
}

impl PushLog<'_> {
    /// Records a refused or failed push; a store failure is logged (the push is refused
    /// anyway).
    async fn record(
        &self,
        decision: &'static str,
        rules: &[&str],
        monitored: &[&str],
        message: Option<String>,
    ) {
        if let Err(e) = self.send(decision, rules, monitored, message).await {
            tracing::error!(session = %self.session, error = %e, "push event not recorded");
        }
    }

    /// Records an allowed push, durably unless `durability = "async"`.
    async fn record_allowed(&self, rules: &[&str], monitored: &[&str]) -> Result<(), Unrecorded> {
        self.send("allowed", rules, monitored, None).await
    }

    async fn send(
        &self,
        decision: &'static str,
        rules: &[&str],
        monitored: &[&str],
        message: Option<String>,
    ) -> Result<(), Unrecorded> {
        let refs = self
            .request
            .commands
            .iter()
            .map(|c| {
                let facts = self.facts.iter().find(|(r, _)| r.name == c.name);
                RefEvent {
                    name: &c.name,
                    old: c.old.to_string(),
                    new: c.new.to_string(),
                    kind: c.kind().name(),
                    forced: facts.map(|(r, _)| r.force),
                    commits: facts.map(|(_, p)| p.commits.len()),
                }
            })
            .collect();
        let e = PushEvent {
            session_id: self.session,
            target: self.repo,
            subject: &self.agent.sub,
            groups: &self.agent.groups,
            prompt: self.prompt,
            refs,
            options: &self.request.options,
            decision,
            rule_ids: rules.to_vec(),
            monitored: monitored.to_vec(),
            message,
            duration_us: self.started.elapsed().as_micros() as u64,
        };
        self.recorder.push(&e, Some(self.peer)).await
    }
}
