//! What gets recorded about one push, through the gateway's recorder.

use std::time::Instant;

use crate::gateway::Outcome;
use crate::gateway::record::{PushEvent, Recorder, RefEvent, Unrecorded, UpstreamVerdict};
use crate::git::inspect::facts::{PushFacts, RefFacts};
use crate::git::wire::request::Request;
use crate::policy::value::Agent;

pub struct Log<'a> {
    pub recorder: &'a Recorder,
    pub peer: &'a str,
    pub session: String,
    pub repo: &'a str,
    pub agent: &'a Agent,
    pub prompt: Option<&'a str>,
    pub request: &'a Request,
    /// Empty until the push has been inspected.
    pub facts: &'a [(RefFacts, PushFacts)],
    pub started: Instant,
    /// Set when the push runs on an approval: it is recorded as approved, saying by whom.
    pub approved: Option<String>,
}

impl Log<'_> {
    /// Records a refused or failed push; a store failure is logged (the push is refused
    /// anyway). `detail` is what the audit keeps when it says more than the client's
    /// sentence (the upstream's own error, say).
    pub async fn refused(
        &self,
        outcome: &Outcome,
        rules: &[&str],
        monitored: &[&str],
        detail: Option<String>,
    ) {
        let message = detail.or_else(|| outcome.refusal.clone());
        if let Err(e) = self.send(outcome, rules, monitored, message).await {
            tracing::error!(session = %self.session, error = %e, "push event not recorded");
        }
    }

    /// Records an allowed push, durably unless `durability = "async"`.
    pub async fn allowed(&self, rules: &[&str], monitored: &[&str]) -> Result<(), Unrecorded> {
        match &self.approved {
            None => self.send(&Outcome::allowed(), rules, monitored, None).await,
            Some(note) => {
                let outcome = Outcome {
                    decision: crate::audit::Decision::Approved,
                    refusal: None,
                    review: false,
                };
                self.send(&outcome, rules, monitored, Some(note.clone()))
                    .await
            }
        }
    }

    /// What to record if the upstream refuses the push once it is forwarded.
    pub fn upstream_verdict(&self) -> Option<UpstreamVerdict> {
        let outcome = Outcome::allowed();
        self.recorder
            .upstream_verdict(&self.event(&outcome, &[], &[], None), Some(self.peer))
    }

    async fn send(
        &self,
        outcome: &Outcome,
        rules: &[&str],
        monitored: &[&str],
        message: Option<String>,
    ) -> Result<(), Unrecorded> {
        let e = self.event(outcome, rules, monitored, message);
        self.recorder.push(&e, Some(self.peer)).await
    }

    fn event<'e>(
        &'e self,
        outcome: &'e Outcome,
        rules: &[&'e str],
        monitored: &[&'e str],
        message: Option<String>,
    ) -> PushEvent<'e> {
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
        PushEvent {
            session_id: &self.session,
            target: self.repo,
            subject: &self.agent.sub,
            groups: &self.agent.groups,
            prompt: self.prompt,
            refs,
            options: &self.request.options,
            outcome,
            rule_ids: rules.to_vec(),
            monitored: monitored.to_vec(),
            message,
            duration_us: self.started.elapsed().as_micros() as u64,
        }
    }
}
