//! A statement a rule sent to review, held on the wire: the client gets a notice with the
//! approval's id and link at once, nothing of the request goes upstream, and after the
//! hold it either runs (approved) or is refused (rejected, expired, still pending). The
//! broker in `gateway::approvals` decides; this only asks and tells the client.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Gateway;
use super::messages;
use super::session::{Review, State};
use crate::audit::Decision;
use crate::gateway::approvals::{Answer, Ask, Asked};
use crate::gateway::record::Protocol;
use crate::gateway::refusal;

/// Frames for the client that the server-side relay sends between the server's.
pub type Notices = mpsc::UnboundedSender<Bytes>;

/// Holds the request `statement` (identical requests share `identity`) until it is
/// decided or the hold ends; `None` when it goes ahead, else the sentence that refuses
/// it. Its event is recorded with the final decision.
pub async fn hold(
    gw: &Gateway,
    state: &mut State,
    notices: &Notices,
    mut review: Review,
    statement: &str,
    identity: Vec<String>,
) -> Option<String> {
    let Some(broker) = gw.approvals.clone() else {
        let sentence = refusal::review(Some((&review.rule, &review.message)));
        state.decided(&mut review, Decision::Denied, Some(sentence.clone()));
        return Some(sentence);
    };
    let estimate = match review.estimable {
        true => {
            gw.catalog
                .estimate(&gw.target, statement, state.search_path.as_deref())
                .await
        }
        false => None,
    };
    let ask = Ask {
        protocol: Protocol::Postgres,
        target: state.target.name.clone(),
        subject: state.agent.sub.clone(),
        groups: state.agent.groups.clone(),
        prompt: state.prompt.clone(),
        session_id: state.id.clone(),
        statement: statement.to_string(),
        refs: Vec::new(),
        identity,
        rule: review.rule.clone(),
        message: review.message.clone(),
        by: review.by.clone(),
        timeout: review.timeout,
        earlier: state.history.iter().cloned().collect(),
        estimate,
        shape: review.shape.clone(),
    };
    let notice = |text: &str| {
        let _ = notices.send(messages::notice_response("NOTICE", "00000", text));
    };
    let (id, answer) = match broker.ask(ask).await {
        Err(e) => {
            let sentence = refusal::approval_unavailable(&e);
            state.decided(&mut review, Decision::Error, Some(sentence.clone()));
            return Some(sentence);
        }
        Ok(Asked::Admitted { id, approver }) => (id, Answer::Approved { approver }),
        Ok(Asked::Held { id, link, changes }) => {
            notice(&refusal::held(
                &id,
                &review.rule,
                &review.message,
                &broker.get(&id).map(|r| r.group).unwrap_or_default(),
                &link,
                broker.hold().as_secs(),
            ));
            let answer = broker.wait(&id, changes, broker.hold()).await;
            if answer == Answer::Pending {
                let sentence = refusal::pending(&id, &link, "the same statement");
                state.decided(&mut review, Decision::Denied, Some(sentence.clone()));
                return Some(sentence);
            }
            (id, answer)
        }
    };
    match answer {
        Answer::Approved { approver } => {
            notice(&refusal::approved(&id, &approver));
            state.decided(&mut review, Decision::Approved, None);
            None
        }
        Answer::Rejected { approver, reason } => {
            let sentence = refusal::rejected(&id, &approver, reason.as_deref());
            state.decided(&mut review, Decision::Rejected, Some(sentence.clone()));
            Some(sentence)
        }
        Answer::Expired | Answer::Pending => {
            let sentence = refusal::expired(&id);
            state.decided(&mut review, Decision::Expired, Some(sentence.clone()));
            Some(sentence)
        }
    }
}

/// Whether `buf` holds a complete Sync frame after the frames before it.
pub fn has_sync(mut buf: &[u8]) -> bool {
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if len < 4 || buf.len() < 1 + len {
            return false;
        }
        if buf[0] == b'S' {
            return true;
        }
        buf = &buf[1 + len..];
    }
    false
}
