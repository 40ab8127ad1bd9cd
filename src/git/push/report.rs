//! The step that answers a push the gateway does not apply: report-status lines that
//! name the refused ref and its rule (with the findings, never a secret), or one reason
//! for every ref. Sentences come from `gateway::refusal`.

use axum::body::Body;

use crate::gateway::refusal;
use crate::git::Error;
use crate::git::inspect::facts::{PushFacts, RefFacts};
use crate::git::wire::report;
use crate::git::wire::request::Request;

/// The report for a push a rule refused: refused refs say why (with their findings:
/// path, commit, line, detector); every other ref is refused too (a push is
/// all-or-nothing) and says which ref stopped it.
pub fn refused(
    request: &Request,
    facts: &[(RefFacts, PushFacts)],
    reasons: &[Option<(String, Vec<String>)>],
) -> Vec<u8> {
    let mut progress = Vec::new();
    for ((r, _), reason) in facts.iter().zip(reasons) {
        if let Some((why, findings)) = reason {
            progress.push(format!("{}: {why}\n", r.name));
            for line in findings {
                progress.push(format!("{}\n", refusal::finding(line)));
            }
        }
    }
    let first_ref = facts
        .iter()
        .zip(reasons)
        .find_map(|((r, _), why)| why.as_ref().map(|_| r.name.as_str()))
        .unwrap_or_default();
    let blocked_by = refusal::not_applied(first_ref);
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
    progress.push(format!("{}\n", refusal::NOTHING_PUSHED));
    report::encode_report(request, Ok(()), &refs, &progress)
}

/// A report refusing every ref with the same sentence (an HTTP error for a client that
/// asked for no report: it would read silence as success).
pub fn refuse_all(request: &Request, unpack: Result<(), &str>, why: &str) -> Result<Body, Error> {
    if request.report_status().is_none() {
        return Err(Error::Refused(why.to_string()));
    }
    let refs: Vec<(&str, Option<&str>)> = request
        .commands
        .iter()
        .map(|c| (c.name.as_str(), Some(why)))
        .collect();
    let lines = [format!("{why}\n")];
    Ok(Body::from(report::encode_report(
        request, unpack, &refs, &lines,
    )))
}

/// Progress lines for the monitor-mode rules an allowed push matched.
pub fn monitor_notes(monitored: &[&str]) -> Vec<String> {
    monitored
        .iter()
        .map(|m| format!("{}\n", refusal::monitored(m)))
        .collect()
}
