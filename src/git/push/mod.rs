//! One `git push`, from request body to the client's report, as named steps:
//!
//! 1. [`intake`]: the body spooled to a private folder while its command list is read
//!    and its pack indexed, as it arrives;
//! 2. [`inspect`]: the pack's quarantine beside the repository's read-only mirror, and
//!    the history each ref update adds, walked into facts;
//! 3. judge: `gateway::judge_refs`, one outcome for the whole push;
//! 4. [`apply`]: only when every ref is allowed, through the upstream's receive-pack or
//!    `apply = "direct"`;
//! 5. [`report`]: otherwise the client's report names the ref and the rule, and the
//!    upstream sees nothing.
//!
//! Every step's event goes through [`log`] to the gateway's recorder.

mod apply;
mod hold;
mod inspect;
mod intake;
mod log;
mod report;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;

use self::log::Log;
use super::Error;
use super::http::Repo;
use super::upstream::ByteStream;
use crate::gateway::approvals::Broker;
use crate::gateway::record::Recorder;
use crate::gateway::{Outcome, RuleSet, judge_refs, refusal};
use crate::policy::value::{Agent, Target};

pub use intake::MAX_COMMAND_SECTION;

pub struct PushRequest {
    /// The client's address, for the audit trail.
    pub peer: String,
    pub agent: Agent,
    /// `X-Portcullis-Prompt`; a `prompt=` push option takes precedence.
    pub prompt: Option<String>,
    pub body: ByteStream,
    pub gzip: bool,
}

/// Judges one push and returns the response body for the client.
pub async fn receive(
    rules: &RuleSet,
    recorder: &Recorder,
    repo: &Arc<Repo>,
    approvals: Option<&Arc<Broker>>,
    req: PushRequest,
) -> Result<Body, Error> {
    let started = Instant::now();
    let spool = tempfile::Builder::new()
        .prefix("portcullis-push-")
        .tempdir()?;
    // 1. Intake.
    let (request, intake) =
        intake::begin(req.body, req.gzip, spool.path(), repo.target.max_push_bytes).await?;
    if request.is_probe() {
        // The probe git sends before a large chunked push: nothing to judge or apply.
        return Ok(Body::empty());
    }
    let prompt = request
        .options
        .iter()
        .find_map(|o| o.strip_prefix("prompt="))
        .map(str::to_string)
        .or(req.prompt.clone());
    let mut log = Log {
        recorder,
        peer: &req.peer,
        session: format!("{:016x}", rand::random::<u64>()),
        repo: &repo.target.name,
        agent: &req.agent,
        prompt: prompt.as_deref(),
        request: &request,
        facts: &[],
        started,
        approved: None,
    };
    if !request.shallow.is_empty() {
        let outcome = Outcome::refused(refusal::SHALLOW_PUSH.into());
        log.refused(&outcome, &[], &[], None).await;
        return report::refuse_all(&request, Ok(()), refusal::SHALLOW_PUSH);
    }

    // Verdicts are taken against the state they are applied to.
    let guard = repo.lock.clone().lock_owned().await;
    let upstream_caps = match apply::prepare(repo).await {
        Ok(caps) => caps,
        Err((sentence, e)) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "upstream not ready for a push");
            log.refused(
                &Outcome::failed(sentence.into()),
                &[],
                &[],
                Some(e.to_string()),
            )
            .await;
            return report::refuse_all(&request, Ok(()), sentence);
        }
    };

    // 2. Inspect.
    let inspected = match inspect::run(intake, repo, &request, spool.path()).await? {
        Ok(inspected) => inspected,
        Err(e) if e.is_unpack() => {
            let why = e.to_string();
            log.refused(&Outcome::failed(why.clone()), &[], &[], None)
                .await;
            return report::refuse_all(&request, Err(&why), "unpacker error");
        }
        Err(e) => {
            let sentence = refusal::uninspectable(&e.to_string());
            log.refused(
                &Outcome::failed(sentence.clone()),
                &[],
                &[],
                Some(e.to_string()),
            )
            .await;
            return report::refuse_all(&request, Ok(()), &sentence);
        }
    };
    let facts = inspected.facts;
    log.facts = &facts;
    tracing::debug!(
        repo = %repo.target.name,
        inspected_ms = started.elapsed().as_millis() as u64,
        "push inspected"
    );

    // 3. Judge.
    let target = Target {
        name: repo.target.name.clone(),
    };
    let judged = judge_refs(rules, &facts, &req.agent, &target);
    let decided = (judged.deciding.as_slice(), judged.monitored.as_slice());

    // 3b. A push a rule sent to review waits for an approver (the answer streams:
    // progress lines while it waits, then the push's report).
    if judged.outcome.review
        && let Some(broker) = approvals
    {
        let rule = judged
            .verdicts
            .iter()
            .flat_map(|v| v.deciding())
            .find_map(|r| match &r.action {
                crate::policy::rule::Action::Review {
                    message,
                    by,
                    timeout,
                } => Some((r.id.clone(), message.clone(), by.clone(), *timeout)),
                _ => None,
            });
        if let Some((rule, message, by, timeout)) = rule {
            let held = hold::Held {
                broker: broker.clone(),
                recorder: recorder.clone(),
                repo: repo.clone(),
                peer: req.peer.clone(),
                session: log.session.clone(),
                agent: req.agent.clone(),
                prompt: prompt.clone(),
                started,
                deciding: judged.deciding.iter().map(|r| r.to_string()).collect(),
                monitored: judged.monitored.iter().map(|r| r.to_string()).collect(),
                rule,
                message,
                by,
                timeout,
                upstream_caps,
                pack: inspected.pack,
                spool,
                guard,
            };
            return Ok(hold::start(held, request, facts));
        }
    }

    // 5. Report a refusal (the upstream sees nothing).
    if let Some(message) = &judged.outcome.refusal {
        log.refused(&judged.outcome, decided.0, decided.1, None)
            .await;
        if request.report_status().is_none() {
            // A client that asked for no report would read silence as success.
            return Err(Error::Refused(message.clone()));
        }
        return Ok(Body::from(report::refused(
            &request,
            &facts,
            &judged.reasons,
        )));
    }

    // 4. Apply.
    let pack = inspected.pack.as_deref();
    apply::apply(
        repo,
        &request,
        &upstream_caps,
        &log,
        decided,
        pack,
        spool,
        guard,
    )
    .await
}
