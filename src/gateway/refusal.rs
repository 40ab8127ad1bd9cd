//! Every sentence a client reads when the gateway refuses, holds back or ends its work,
//! for both protocols. Each is complete, starts with `portcullis:`, and names what the
//! client can do about it where there is something. Change the wording here and only
//! here; the protocol modules put these sentences into ErrorResponses, report-status
//! lines and HTTP bodies unchanged.

use std::fmt::Display;

/// What every sentence starts with, so a client's log shows who refused.
pub const PREFIX: &str = "portcullis: ";

/// A rule denied the request; `why` is the rule's own reason (`denied by <id>: <message>`).
pub fn denied(why: &str) -> String {
    format!("{PREFIX}{why}")
}

/// A rule wants a person to approve the request first, and this gateway has no way for
/// anyone to (no `server.admin_listen`): the request is refused, naming the rule.
pub fn review(rule: Option<(&str, &str)>) -> String {
    match rule {
        Some((id, message)) => format!(
            "{PREFIX}approval required by {id}: {message} (no approvals are served here: \
             server.admin_listen is not set, so it is refused)"
        ),
        None => format!("{PREFIX}approval required"),
    }
}

/// What the client is told at once when its request is held (a notice, a progress line).
pub fn held(id: &str, rule: &str, message: &str, group: &str, link: &str, hold_s: u64) -> String {
    format!(
        "{PREFIX}held for approval {id} by {rule}: {message}. A member of {group} can approve \
         it at {link}; waiting up to {hold_s} s"
    )
}

/// A held request is still waiting (a repeated progress line).
pub fn still_held(id: &str, waited_s: u64) -> String {
    format!("{PREFIX}still waiting for approval {id} ({waited_s} s)")
}

/// A held request was approved and goes ahead.
pub fn approved(id: &str, approver: &str) -> String {
    format!("{PREFIX}approved by {approver} (approval {id}); running it")
}

/// A held request was rejected.
pub fn rejected(id: &str, approver: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{PREFIX}rejected by {approver} (approval {id}): {r}; nothing ran"),
        None => format!("{PREFIX}rejected by {approver} (approval {id}); nothing ran"),
    }
}

/// A request expired before anyone decided it.
pub fn expired(id: &str) -> String {
    format!("{PREFIX}approval {id} expired before anyone decided it; nothing ran")
}

/// The hold ended with the request still undecided. `again` says what to send again
/// (`the same statement`, `the same push`).
pub fn pending(id: &str, link: &str, again: &str) -> String {
    format!(
        "{PREFIX}approval {id} is pending ({link}); nothing ran. Run {again} again once \
         approved: it is admitted once"
    )
}

/// The approval could not be asked for (the audit store is down).
pub fn approval_unavailable(why: &dyn Display) -> String {
    format!("{PREFIX}approval could not be requested: {why}; nothing ran")
}

/// The event the durability setting requires could not be recorded.
pub fn unrecorded(why: &dyn Display) -> String {
    format!("{PREFIX}{why}")
}

/// Identity could not be established (bad, expired or missing token).
pub fn unauthenticated(why: &str) -> String {
    format!("{PREFIX}{why}")
}

/// The session's token expired while it was open.
pub fn token_expired(seconds_ago: u64) -> String {
    format!("{PREFIX}the session's token expired {seconds_ago} s ago; reconnect with a fresh token")
}

/// A client beyond a listener's `max_connections`.
pub fn too_many_connections(max: usize) -> String {
    format!("{PREFIX}this listener serves {max} connections at once; try again later")
}

/// A plain-text connection to a listener with `tls_required`.
pub const TLS_REQUIRED: &str =
    "portcullis: this listener requires TLS; connect with sslmode=require or verify-full";

/// PostgreSQL's fast-path function call names a function by OID: there is no SQL to judge.
pub const FUNCTION_CALL: &str =
    "portcullis: the function-call protocol is not served (no SQL to judge)";

/// A `replication=...` start-up parameter.
pub const REPLICATION: &str =
    "portcullis: replication connections are not served through the gateway";

/// A start-up `options` parameter the gateway cannot read as settings.
pub fn unreadable_options(value: &str) -> String {
    format!("{PREFIX}cannot read the options parameter {value:?}")
}

/// A start-up setting whose name is not a plain identifier.
pub fn setting_name(name: &str) -> String {
    format!("{PREFIX}start-up setting name {name:?} is not allowed")
}

/// The server reads SQL differently from the gateway (see `pg::reading`): at login.
pub fn misreading(why: &str) -> String {
    format!("{PREFIX}{why}")
}

/// The same, reported by the server in the middle of a session, which it ends.
pub fn misreading_mid_session(why: &str) -> String {
    format!("{PREFIX}{why}; the session is closed")
}

/// Result rows arrived that no description covers: the gateway cannot tell which values
/// to mask, so the session ends.
pub const UNDESCRIBED_ROWS: &str =
    "portcullis: the server sent rows the gateway cannot place; the session is closed";

/// A binary `COPY ... TO STDOUT` holds a value the mask rules hide.
pub const BINARY_COPY_MASK: &str = "portcullis: a binary COPY holds values that must be masked; \
                                     copy in text or CSV format; the session is closed";

/// `COPY ... TO STDOUT` of a table with a column the rules mask whole.
pub fn copy_of_masked(column_rule: &str) -> String {
    format!(
        "{PREFIX}COPY TO STDOUT of a table with masked columns ({column_rule}) is not served; \
         SELECT the columns instead, which are masked row by row"
    )
}

/// A server error over tables with masked columns: its text could quote a value.
pub fn notice_hidden(sqlstate: &str) -> String {
    format!(
        "{PREFIX}the server sent a notice ({sqlstate}); its message is withheld because it \
         could quote a masked value"
    )
}

pub fn error_hidden(sqlstate: &str) -> String {
    format!(
        "{PREFIX}the server reported error {sqlstate}; its message is withheld because it \
         could quote a masked value"
    )
}

/// A push from a shallow clone: its history cannot be walked.
pub const SHALLOW_PUSH: &str =
    "portcullis: pushes from shallow clones are not accepted (fetch the full history first)";

/// The upstream could not be reached for a push.
pub const UPSTREAM_UNAVAILABLE: &str =
    "portcullis: the upstream is unavailable; nothing was pushed";

/// The gateway's mirror of the upstream could not be brought up to date.
pub const MIRROR_STALE: &str = "portcullis: the gateway could not refresh its mirror of the \
                                upstream; nothing was pushed";

/// The push's objects are there but could not be judged.
pub fn uninspectable(why: &str) -> String {
    format!("{PREFIX}the push could not be inspected: {why}")
}

/// `apply = "direct"` failed to move the refs.
pub fn refs_not_updated(why: &str) -> String {
    format!("{PREFIX}the refs could not be updated: {why}")
}

/// A ref that was not refused itself, in a push that was.
pub fn not_applied(refused_ref: &str) -> String {
    format!("{PREFIX}not applied: the push is all-or-nothing and {refused_ref} was refused")
}

/// The last progress line of a refused push.
pub const NOTHING_PUSHED: &str = "portcullis: nothing was pushed";

/// One finding under a refused ref (path, commit, line, detector; never the secret).
pub fn finding(line: &str) -> String {
    format!("{PREFIX}  {line}")
}

/// A monitor-mode rule matched an allowed request.
pub fn monitored(rule: &str) -> String {
    format!("{PREFIX}monitor: this push would be refused by {rule}")
}
