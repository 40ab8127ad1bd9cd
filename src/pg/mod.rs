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
