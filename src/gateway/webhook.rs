//! The approvals webhook (`[approvals] webhook`): every new request and every decision
//! POSTed as JSON, with a `text` field a chat's incoming webhook shows as it is, and an
//! `X-Portcullis-Signature: sha256=<hex>` header (HMAC-SHA256 of the body) when a
//! secret is configured. Deliveries run on a task of their own and are retried with
//! back-off: the data path never waits for them.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;

use super::approvals::Request;

/// Attempts per delivery, the first included; the waits between them double from one
/// second.
const ATTEMPTS: u32 = 6;
/// Deliveries queued before new ones are dropped (and logged): a webhook that is down
/// for a long time must not grow the gateway's memory.
const QUEUE: usize = 1024;

pub struct Webhook {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Webhook {
    /// Starts the delivery task for `url`.
    pub fn start(url: String, secret: Option<String>) -> Webhook {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        tokio::spawn(async move {
            let client = match crate::git::http::http_client() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "approvals webhook disabled: no HTTP client");
                    return;
                }
            };
            while let Some(body) = rx.recv().await {
                deliver(&client, &url, secret.as_deref(), body).await;
            }
        });
        Webhook { tx }
    }

    /// Queues the notice of `step` (`requested`, `approved`, ...) for `request`.
    pub fn send(&self, step: &str, request: &Request) {
        let text = match step {
            "requested" => format!(
                "Portcullis: {} asks to run on {} ({}: {}). Approve or reject: {}",
                request.subject, request.target, request.rule, request.message, request.link
            ),
            _ => format!(
                "Portcullis: approval {} for {} on {} is {}{}",
                request.id,
                request.subject,
                request.target,
                request.state.as_str(),
                request
                    .approver
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default()
            ),
        };
        let body = serde_json::json!({ "event": step, "text": text, "approval": request });
        if self.tx.try_send(body.to_string().into_bytes()).is_err() {
            tracing::warn!(approval = %request.id, step, "approvals webhook queue full; notice dropped");
        }
    }
}

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!(
        "sha256={}",
        crate::audit::chain::hex(&mac.finalize().into_bytes())
    )
}

async fn deliver(client: &reqwest::Client, url: &str, secret: Option<&str>, body: Vec<u8>) {
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let mut req = client
            .post(url)
            .timeout(Duration::from_secs(10))
            .header("content-type", "application/json");
        if let Some(secret) = secret {
            req = req.header("x-portcullis-signature", signature(secret, &body));
        }
        match req.body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(url, status = %r.status(), attempt, "approvals webhook refused")
            }
            Err(e) => tracing::warn!(url, error = %e, attempt, "approvals webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    tracing::error!(url, "approvals webhook: notice not delivered");
}
