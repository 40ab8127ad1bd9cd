//! The apply step, for an allowed push: through the upstream's own receive-pack (the
//! command list re-encoded for what it supports, its report relayed), or `apply =
//! "direct"` into a local repository (the indexed pack moved in, the refs updated in one
//! transaction, the report written here).
//!
//! What follows the command list to receive-pack: for a local upstream, the pack the
//! gateway already indexed is linked into the repository first and receive-pack gets an
//! empty pack, so it checks connectivity, runs its hooks and moves the refs without
//! indexing the objects a second time; a remote upstream, or a local one that checks
//! what it is sent itself (`receive.fsckObjects`, `receive.maxInputSize`), gets the pack
//! bytes exactly as the client sent them.

use std::io::SeekFrom;
use std::path::Path;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::AsyncSeekExt;

use super::log::Log;
use super::report;
use crate::config::{GitApply, GitUpstream};
use crate::gateway::{Outcome, refusal};
use crate::git::Error;
use crate::git::http::Repo;
use crate::git::upstream::{self, Service};
use crate::git::wire::advertisement;
use crate::git::wire::caps::{CAP_AGENT, CAP_ATOMIC, CAP_PUSH_OPTIONS};
use crate::git::wire::report::{self as wire_report, encode_report, progress_packet};
use crate::git::wire::request::{self, Request};

/// What the upstream accepts for pushes right now, with the mirror brought up to date
/// with it. The error is the client's sentence and the cause.
pub async fn prepare(repo: &Repo) -> Result<Vec<String>, (&'static str, Error)> {
    let caps = capabilities(repo)
        .await
        .map_err(|e| (refusal::UPSTREAM_UNAVAILABLE, e))?;
    repo.upstream
        .refresh_mirror()
        .await
        .map_err(|e| (refusal::MIRROR_STALE, e))?;
    Ok(caps)
}

async fn capabilities(repo: &Repo) -> Result<Vec<String>, Error> {
    let reply = repo.upstream.advertise(Service::ReceivePack, None).await?;
    let body = upstream::collect(reply.body, 256 << 20).await?;
    Ok(advertisement::parse_advertisement(&body)?.capabilities)
}

/// How much of an upstream's answer to a push is kept to read its report (progress
/// included); past this the report is not read.
const MAX_REPORT_READ: usize = 1 << 20;

/// The rules that decided and the monitor-mode rules that matched, for the record.
pub type Rules<'a> = (&'a [&'a str], &'a [&'a str]);

/// A pack of no objects (version 2, SHA-1 trailer): what receive-pack is sent when the
/// objects are already in the repository, as git itself sends when the remote has them.
const EMPTY_PACK: &[u8] = b"PACK\0\0\0\x02\0\0\0\0\x02\x9d\x08\x82\x3b\xd8\xa8\xea\xb5\x10\xad\x6a\xc7\x5c\x82\x3c\xfd\x3e\xd3\x1e";

/// Applies an allowed push the way its repository is configured, and returns the body
/// answering the client. `pack` is the indexed pack (in the spool); the spool and the
/// repository's lock live until the answer has been relayed in full.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    repo: &Repo,
    request: &Request,
    upstream_caps: &[String],
    log: &Log<'_>,
    rules: Rules<'_>,
    pack: Option<&Path>,
    spool: tempfile::TempDir,
    guard: tokio::sync::OwnedMutexGuard<()>,
) -> Result<Body, Error> {
    let link = match (&repo.target.upstream, repo.target.apply) {
        (GitUpstream::Local(dir), GitApply::Direct) => {
            return direct(repo, dir, pack, request, log, rules).await;
        }
        (GitUpstream::Local(dir), GitApply::ReceivePack) => match pack {
            Some(pack) if request.needs_pack() && !upstream::wants_the_pack(dir).await => {
                Some((dir.as_path(), pack))
            }
            _ => None,
        },
        (GitUpstream::Http(_), _) => None,
    };
    let body_path = spool.path().join("body");
    let sent = (body_path.as_path(), link);
    forward(
        repo,
        request,
        upstream_caps,
        log,
        rules,
        sent,
        (spool, guard),
    )
    .await
}

/// Sends the push upstream through receive-pack and returns the body relaying its
/// answer: after the command list, the spooled body's pack bytes, or with `link` (a
/// local upstream and the indexed pack) an empty pack, the pack linked in first.
async fn forward<K: Send + 'static>(
    repo: &Repo,
    request: &Request,
    upstream_caps: &[String],
    log: &Log<'_>,
    (deciding, monitored): Rules<'_>,
    (body_path, link): (&Path, Option<(&Path, &Path)>),
    keep: K,
) -> Result<Body, Error> {
    let mut caps: Vec<String> = request
        .capabilities
        .iter()
        .filter(|c| {
            let name = c.split('=').next().unwrap_or(c);
            name == CAP_AGENT
                || upstream_caps
                    .iter()
                    .any(|u| u.split('=').next() == Some(name))
        })
        .cloned()
        .collect();
    let upstream_atomic = upstream_caps.iter().any(|c| c == CAP_ATOMIC);
    if upstream_atomic && request.commands.len() > 1 && !caps.iter().any(|c| c == CAP_ATOMIC) {
        // The gateway's verdict is all-or-nothing; ask the upstream to apply it that way.
        caps.push(CAP_ATOMIC.into());
    }
    let options = upstream_caps.iter().any(|c| c == CAP_PUSH_OPTIONS)
        && caps.iter().any(|c| c == CAP_PUSH_OPTIONS);
    let head = request::encode_commands(request, &caps, options);
    // The push's event is committed before anything goes upstream.
    if let Err(e) = log.allowed(deciding, monitored).await {
        tracing::error!(repo = %repo.target.name, error = %e, "push not recorded; refused");
        return report::refuse_all(request, Ok(()), &refusal::unrecorded(&e));
    }
    let linked = match link {
        Some((dir, pack)) => match upstream::link_pack(dir, pack).await {
            Ok(linked) => Some(linked),
            Err(e) => {
                // Not a reason to refuse: receive-pack gets the pack bytes instead.
                tracing::warn!(repo = %repo.target.name, error = %e, "pack not linked; sending it");
                None
            }
        },
        None => None,
    };
    let pack: upstream::ByteStream = if linked.is_some() {
        futures_util::stream::once(async { Ok(Bytes::from_static(EMPTY_PACK)) }).boxed()
    } else {
        let mut file = tokio::fs::File::open(body_path).await?;
        file.seek(SeekFrom::Start(request.pack_offset as u64))
            .await?;
        upstream::file_stream(file)
    };
    let forward = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(pack)
        .boxed();
    let reply = match repo.upstream.rpc(Service::ReceivePack, None, forward).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(linked) = linked {
                linked.withdraw();
            }
            tracing::warn!(repo = %repo.target.name, error = %e, "upstream push failed");
            let outcome = Outcome::failed(refusal::UPSTREAM_UNAVAILABLE.into());
            log.refused(&outcome, deciding, monitored, Some(e.to_string()))
                .await;
            return report::refuse_all(request, Ok(()), refusal::UPSTREAM_UNAVAILABLE);
        }
    };
    let mut notes = Vec::new();
    for line in report::monitor_notes(monitored) {
        notes.extend(progress_packet(request, &line));
    }
    // The response is relayed as it comes and kept (up to a bound) to read the upstream's
    // report at its end: what it refused is recorded too.
    let verdict = log.upstream_verdict();
    let request = request.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tap = seen.clone();
    let relayed = reply.body.inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            let mut seen = tap.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() + bytes.len() <= MAX_REPORT_READ {
                seen.extend_from_slice(bytes);
            }
        }
    });
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(notes)) })
            .chain(relayed)
            .chain(futures_util::stream::once(async move {
                let response = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
                let report = wire_report::rejections(&request, &response);
                // A linked pack stays only if the upstream took a ref (its report says
                // so); while the lock is still held, so no other push can refer to it.
                if let (Some(linked), Some(report)) = (linked, &report)
                    && (report.unpack.is_some() || report.refused.len() >= request.commands.len())
                {
                    linked.withdraw();
                }
                drop(keep);
                if let (Some(verdict), Some(report)) = (verdict, report)
                    && (report.unpack.is_some() || !report.refused.is_empty())
                {
                    let mut said: Vec<String> = report
                        .refused
                        .iter()
                        .map(|(name, reason)| format!("{name} ({reason})"))
                        .collect();
                    if let Some(u) = report.unpack {
                        said.insert(0, format!("unpack {u}"));
                    }
                    verdict
                        .refused(format!("the upstream refused: {}", said.join(", ")))
                        .await;
                }
                Ok(Bytes::new())
            }));
    Ok(Body::from_stream(body))
}

/// `apply = "direct"`: records the push, moves the already-indexed pack into the local
/// upstream `dir` and updates its refs in one transaction, then reports as receive-pack
/// would.
async fn direct(
    repo: &Repo,
    dir: &Path,
    pack: Option<&Path>,
    request: &Request,
    log: &Log<'_>,
    (deciding, monitored): Rules<'_>,
) -> Result<Body, Error> {
    if let Err(e) = log.allowed(deciding, monitored).await {
        tracing::error!(repo = %repo.target.name, error = %e, "push not recorded; refused");
        return report::refuse_all(request, Ok(()), &refusal::unrecorded(&e));
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
            let notes = report::monitor_notes(monitored);
            Ok(Body::from(encode_report(request, Ok(()), &refs, &notes)))
        }
        Err(e) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "direct apply failed");
            let sentence = refusal::refs_not_updated(&e.to_string());
            log.refused(
                &Outcome::failed(sentence.clone()),
                deciding,
                monitored,
                Some(e.to_string()),
            )
            .await;
            report::refuse_all(request, Ok(()), &sentence)
        }
    }
}
