//! The PostgreSQL wire-protocol gateway (PostgreSQL docs: "Frontend/Backend Protocol",
//! "Message Flow", "Message Formats").
//!
//! Per client connection: answer SSLRequest (TLS with rustls) and GSSENCRequest (`N`),
//! read the StartupMessage, ask for a cleartext password (the agent's JWT), verify it,
//! judge the start-up parameters as `SET`s, log in upstream as the gateway, and relay.
//! Client → server, every Query and Parse is judged before anything is sent; other
//! messages pass through as raw frames. A refused statement is replaced by a statement
//! that fails to parse (a marker), so the server itself produces the error at exactly
//! the right place in the stream, skips the rest of an extended-protocol batch up to
//! Sync, and reports a truthful transaction status; on the way back the gateway swaps
//! the marker's error for its own `42501` message. Server → client, runs of complete
//! frames are forwarded without re-encoding.
//!
//! By phase: [`startup`] (encryption, the opening packet), [`login`] (the client's token,
//! start-up parameters, the upstream login), [`relay_up`] and [`relay_down`], with
//! [`markers`] keeping refusals and waiting reads at their place in the stream;
//! [`session`] runs them and holds what the session knows. This module asks the
//! `gateway` seam what a request means and turns the answer into bytes; it never decides
//! itself.

mod cancel;
mod catalog;
mod describe;
mod error;
mod frame;
// Entry points for `crate::fuzzing`: the decoders and session bookkeeping without sockets.
pub(crate) mod fuzz;
mod hold;
mod login;
mod markers;
mod messages;
mod reading;
mod relay_down;
mod relay_up;
pub mod results;
mod rows;
mod session;
mod shapes;
mod startup;
mod stream;
mod tls;
mod upstream;

use std::sync::Arc;

use tokio::net::TcpListener;

pub use cancel::CancelKeys;
pub use describe::masking_plan;
pub use error::Error;

use crate::config::PostgresTarget;
use crate::gateway::RuleSet;
use crate::gateway::record::Recorder;
use crate::identity::Authenticator;
use crate::mask::strategy::HashKey;

/// Everything one `[[postgres]]` listener needs.
pub struct Gateway {
    pub target: PostgresTarget,
    pub rules: Arc<RuleSet>,
    pub auth: Arc<dyn Authenticator>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub cancel: CancelKeys,
    pub recorder: Recorder,
    /// The key of the `hash` mask strategy.
    pub mask_key: HashKey,
    /// What the upstream's catalog says about result columns.
    pub catalog: catalog::Catalog,
    /// Where reviewed statements are held for approval (`None`: refused instead).
    pub approvals: Option<Arc<crate::gateway::approvals::Broker>>,
    /// Client connections open now.
    sessions: Arc<std::sync::atomic::AtomicUsize>,
    /// Connections still logging in.
    pub startups: Arc<Startups>,
}

impl Gateway {
    pub fn new(
        target: PostgresTarget,
        rules: Arc<RuleSet>,
        auth: Arc<dyn Authenticator>,
        recorder: Recorder,
        mask_key: HashKey,
    ) -> Result<Gateway, Error> {
        let tls = match &target.tls {
            Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
            None => None,
        };
        let startups = Arc::new(Startups::new(target.max_startups));
        Ok(Gateway {
            target,
            rules,
            auth,
            tls,
            cancel: CancelKeys::default(),
            recorder,
            mask_key,
            catalog: catalog::Catalog::default(),
            approvals: None,
            sessions: Arc::default(),
            startups,
        })
    }

    /// Accepts clients for good; each runs in its own task, so one bad client never
    /// disturbs another. An accept error (out of file descriptors in a flood) is waited
    /// out, never the end of the listener; beyond `max_connections` a client is told so
    /// and closed.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), Error> {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(e) => {
                    tracing::warn!(target = %self.target.name, error = %e, "accept failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            let Some(slot) = Slot::take(&self.sessions, self.target.max_connections) else {
                tokio::spawn(session::turn_away(tcp, self.target.max_connections));
                continue;
            };
            let gw = self.clone();
            tokio::spawn(async move {
                session::run(gw, tcp, peer).await;
                drop(slot);
            });
        }
    }
}

/// The first and longest wait after an accept error.
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// One client connection counted against `max_connections` until dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(count: &Arc<std::sync::atomic::AtomicUsize>, max: usize) -> Option<Slot> {
        use std::sync::atomic::Ordering;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The connections still logging in, oldest first, at most `max_startups` of them. A
/// client that connects and then stalls (silent, or waiting at the password) holds one
/// place until `startup_timeout`; when all are taken, a new connection pushes out the
/// one that has waited longest. A flood of stalled connections thus cannot keep a
/// real client, which logs in within milliseconds, from getting in.
pub struct Startups {
    max: usize,
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>,
}

/// One connection's place among [`Startups`]; `pushed_out` resolves when a newer one
/// took it. Leaves its place when dropped (logged in, or gone).
pub struct Starting {
    id: u64,
    startups: Arc<Startups>,
    pub pushed_out: tokio::sync::oneshot::Receiver<()>,
}

impl Startups {
    pub fn new(max: usize) -> Startups {
        Startups {
            max: max.max(1),
            next: Default::default(),
            waiting: Default::default(),
        }
    }

    pub fn enter(self: &Arc<Self>) -> Starting {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= self.max
            && let Some((_, oldest)) = waiting.pop_front()
        {
            let _ = oldest.send(());
        }
        waiting.push_back((id, tx));
        Starting {
            id,
            startups: self.clone(),
            pushed_out: rx,
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut waiting = self
            .startups
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(at) = waiting.iter().position(|(id, _)| *id == self.id) {
            waiting.remove(at);
        }
    }
}
