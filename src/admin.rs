//! The admin HTTP server on `server.admin_listen`: `/healthz`, `/metrics` (Prometheus
//! text), `/api/audit/query` (read-only SQL over the live audit store, for tokens of
//! the auditor group), and approvals: `/api/approvals` for approvers' tokens and the
//! page at `/approvals` where they sign in with one. The counters are [`crate::gateway::metrics::Metrics`], which the
//! [`Recorder`] updates as events pass.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::Format;
use crate::gateway::approvals::{self, Broker, Refused};
use crate::gateway::record::Recorder;
use crate::identity::Authenticator;

/// What the admin routes share.
#[derive(Clone)]
pub struct Admin {
    pub recorder: Recorder,
    pub auth: Arc<dyn Authenticator>,
    /// Tokens carrying this group may query the audit store.
    pub auditor_group: String,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// Tokens carrying this group (or the auditor group) may read `/metrics`.
    pub metrics_group: String,
    /// Held requests (`None` when the gateway holds none).
    pub approvals: Option<Arc<Broker>>,
    /// Listeners that have stopped (`/healthz` fails while any has).
    pub stopped: Arc<std::sync::Mutex<Vec<String>>>,
}

/// The admin routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/audit/query", post(audit_query))
        .route("/api/approvals", get(approvals_list))
        .route("/api/approvals/{id}", get(approval_get))
        .route("/api/approvals/{id}/approve", post(approval_approve))
        .route("/api/approvals/{id}/reject", post(approval_reject))
        .route("/approvals", get(approvals_page))
        .route("/approvals/{id}", get(approvals_page))
        .with_state(admin)
}

async fn healthz(State(admin): State<Admin>) -> Response {
    let stopped = admin.stopped.lock().expect("never poisoned").clone();
    if !stopped.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("listener stopped: {}\n", stopped.join(", ")),
        )
            .into_response();
    }
    match admin.recorder.check() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    if !admin.metrics_public {
        let groups = [admin.metrics_group.as_str(), admin.auditor_group.as_str()];
        if let Err(refusal) = bearer_in_groups(&admin, &headers, &groups).await {
            return refusal;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        admin.recorder.metrics().render(&admin.recorder),
    )
        .into_response()
}

/// `POST /api/audit/query?format=json|csv|table` with the SQL as the body and an auditor's
/// JWT as `Authorization: Bearer`.
async fn audit_query(
    State(admin): State<Admin>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    sql: String,
) -> Response {
    let agent = match bearer_in_groups(&admin, &headers, &[admin.auditor_group.as_str()]).await {
        Ok(a) => a,
        Err(refusal) => return refusal,
    };
    let format = match params.get("format").map(String::as_str) {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some("table") => Format::Table,
        Some(other) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("unknown format {other:?}"),
            );
        }
    };
    tracing::info!(target: "portcullis::event", auditor = %agent.sub, query = %sql, "audit query");
    match admin.recorder.query(&sql).await {
        Ok(result) => {
            let mut out = Vec::new();
            if let Err(e) = result.write(format, &mut out) {
                return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
            (StatusCode::OK, out).into_response()
        }
        Err(e @ (crate::audit::Error::NotReadOnly(_) | crate::audit::Error::Parse(_))) => {
            text(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e @ crate::audit::Error::TimedOut(_)) => {
            text(StatusCode::GATEWAY_TIMEOUT, &e.to_string())
        }
        Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

/// The identity behind `Authorization: Bearer <JWT>`, or the response to send (401).
async fn bearer(admin: &Admin, headers: &HeaderMap) -> Result<crate::identity::Identity, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| text(StatusCode::UNAUTHORIZED, "a token is required (Bearer)"))?;
    admin
        .auth
        .authenticate(token.trim())
        .await
        .map_err(|(message, _)| text(StatusCode::UNAUTHORIZED, &message))
}

/// The broker, the caller's identity, or the response to send.
async fn approver(
    admin: &Admin,
    headers: &HeaderMap,
) -> Result<(Arc<Broker>, crate::identity::Identity), Response> {
    let Some(broker) = admin.approvals.clone() else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "this gateway holds no approvals",
        ));
    };
    Ok((broker, bearer(admin, headers).await?))
}

/// Whether `who` may see `r`: a member of the group that decides it, an auditor, or the
/// one who asked.
fn may_see(admin: &Admin, who: &crate::identity::Identity, r: &approvals::Request) -> bool {
    who.sub == r.subject
        || who
            .groups
            .iter()
            .any(|g| *g == r.group || *g == admin.auditor_group)
}

/// `GET /api/approvals?state=pending|approved|rejected|expired`: the requests the caller
/// may see, oldest first.
async fn approvals_list(
    State(admin): State<Admin>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (broker, who) = match approver(&admin, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let state = match params.get("state").map(String::as_str) {
        None | Some("all") => None,
        Some(word) => match approvals::State::parse(word) {
            Some(s) => Some(s),
            None => return text(StatusCode::BAD_REQUEST, &format!("unknown state {word:?}")),
        },
    };
    let visible: Vec<_> = broker
        .list(state)
        .into_iter()
        .filter(|r| may_see(&admin, &who, r))
        .map(|r| view(&r))
        .collect();
    json(&visible)
}

/// `GET /api/approvals/{id}`.
async fn approval_get(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (broker, who) = match approver(&admin, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match broker.get(&id).filter(|r| may_see(&admin, &who, r)) {
        Some(r) => json(&view(&r)),
        None => text(StatusCode::NOT_FOUND, &format!("no approval request {id}")),
    }
}

/// A request as the API shows it: with its age and time left.
fn view(r: &approvals::Request) -> serde_json::Value {
    let now = crate::audit::record::now_us();
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["age_seconds"] = ((now - r.requested_us).max(0) / 1_000_000).into();
    v["seconds_left"] = ((r.deadline_us - now).max(0) / 1_000_000).into();
    v
}

#[derive(serde::Deserialize, Default)]
struct Decision {
    reason: Option<String>,
    /// "Approve similar" for this long (`30m`, `2h`).
    similar_for: Option<String>,
}

async fn approval_approve(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide(admin, id, headers, body, true).await
}

async fn approval_reject(
    State(admin): State<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    decide(admin, id, headers, body, false).await
}

/// `POST /api/approvals/{id}/approve|reject` with an optional `{"reason": "..."}`.
async fn decide(
    admin: Admin,
    id: String,
    headers: HeaderMap,
    body: axum::body::Bytes,
    approve: bool,
) -> Response {
    let (broker, who) = match approver(&admin, &headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let decision: Decision = if body.iter().all(u8::is_ascii_whitespace) {
        Decision::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("the body must be JSON like {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    let similar_for = match decision.similar_for.as_deref() {
        None => None,
        Some(d) => match crate::config::duration(d) {
            Some(d) => Some(d),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("similar_for {d:?}: expected a duration such as \"30m\""),
                );
            }
        },
    };
    match broker
        .decide(&id, &who, approve, decision.reason, similar_for)
        .await
    {
        Ok(r) => json(&view(&r)),
        Err(e) => {
            let status = match e {
                Refused::NotFound(_) => StatusCode::NOT_FOUND,
                Refused::Decided(..) => StatusCode::CONFLICT,
                Refused::OwnRequest(_) | Refused::NotInGroup { .. } => StatusCode::FORBIDDEN,
                Refused::Unrecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
                Refused::TooLong => StatusCode::BAD_REQUEST,
            };
            text(status, &e.to_string())
        }
    }
}

/// The approvers' page: one HTML file that signs in with a token and talks to the API.
async fn approvals_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("admin/approvals.html"),
    )
        .into_response()
}

/// The identity behind `Authorization: Bearer <JWT>` when it is in one of `groups`; the
/// response to send otherwise (401 without a valid token, 403 outside the groups).
async fn bearer_in_groups(
    admin: &Admin,
    headers: &HeaderMap,
    groups: &[&str],
) -> Result<crate::identity::Identity, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return Err(text(
            StatusCode::UNAUTHORIZED,
            &format!(
                "a token of the {} group is required (Bearer)",
                groups.join(" or ")
            ),
        ));
    };
    let agent = admin
        .auth
        .authenticate(token.trim())
        .await
        .map_err(|(message, _)| text(StatusCode::UNAUTHORIZED, &message))?;
    if !groups.iter().any(|g| agent.groups.iter().any(|a| a == g)) {
        return Err(text(
            StatusCode::FORBIDDEN,
            &format!("{} is not in the {} group", agent.sub, groups.join(" or ")),
        ));
    }
    Ok(agent)
}

fn json(value: &impl serde::Serialize) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(value).unwrap_or_default(),
    )
        .into_response()
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("portcullis: {message}\n")).into_response()
}
