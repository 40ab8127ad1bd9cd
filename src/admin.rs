//! The admin HTTP server on `server.admin_listen`: `/healthz`, `/metrics` (Prometheus
//! text) and `/api/audit/query` (read-only SQL over the live audit store, for tokens of
//! the auditor group). The counters are [`crate::gateway::metrics::Metrics`], which the
//! [`Recorder`] updates as events pass.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::Format;
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
}

/// The admin routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/audit/query", post(audit_query))
        .with_state(admin)
}

async fn healthz(State(admin): State<Admin>) -> Response {
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

fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("portcullis: {message}\n")).into_response()
}
