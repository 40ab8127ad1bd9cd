//! Smart HTTP on `server.git_listen`: `/git/<name>.git/info/refs`, `git-upload-pack`
//! (clone and fetch, relayed) and `git-receive-pack` (push, judged before anything goes
//! upstream). Every request carries the agent's JWT as the Basic password or a Bearer
//! token; the upstream sees only the gateway's own credentials.

use std::collections::HashMap;
use std::io::Read as _;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};

use super::Error;
use super::inspect::facts::Protected;
use super::push::{self, PushRequest};
use super::upstream::{self, ByteStream, Reply, Service, Upstream};
use crate::config::GitTarget;
use crate::gateway::RuleSet;
use crate::gateway::record::Recorder;
use crate::identity::Authenticator;
use crate::policy::value::Agent;

/// Largest upload-pack request (wants and haves) the gateway buffers to decompress.
const MAX_FETCH_REQUEST: usize = 64 << 20;
/// Largest ref advertisement read from an upstream to rewrite its capabilities.
const MAX_ADVERTISEMENT: usize = 256 << 20;

/// One `[[git]]` repository as the server sees it.
pub struct Repo {
    pub target: GitTarget,
    pub protected: Protected,
    pub upstream: Upstream,
    /// Pushes to one repository are judged and applied one at a time, so a verdict is
    /// always taken against the state it is applied to.
    pub lock: Arc<tokio::sync::Mutex<()>>,
}

/// Everything the git listener needs.
pub struct GitGateway {
    pub repos: HashMap<String, Arc<Repo>>,
    pub rules: Arc<RuleSet>,
    pub auth: Arc<dyn Authenticator>,
    pub recorder: Recorder,
    /// Where reviewed pushes are held for approval (`None`: refused instead).
    pub approvals: Option<Arc<crate::gateway::approvals::Broker>>,
}

impl GitGateway {
    pub fn new(
        targets: &[GitTarget],
        rules: Arc<RuleSet>,
        auth: Arc<dyn Authenticator>,
        recorder: Recorder,
    ) -> Result<GitGateway, Error> {
        let http = http_client()?;
        let mut repos = HashMap::new();
        for t in targets {
            let protected =
                Protected::new(&t.protected).and_then(|p| p.allow_special(&t.special_refs))?;
            repos.insert(
                t.name.clone(),
                Arc::new(Repo {
                    target: t.clone(),
                    protected,
                    upstream: Upstream::new(t, http.clone()),
                    lock: Arc::new(tokio::sync::Mutex::new(())),
                }),
            );
        }
        Ok(GitGateway {
            repos,
            rules,
            auth,
            recorder,
            approvals: None,
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/git/{repo}/info/refs", get(info_refs))
            .route("/git/{repo}/git-upload-pack", post(upload_pack))
            .route("/git/{repo}/git-receive-pack", post(receive_pack))
            .fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
            .with_state(self)
    }

    /// Serves until `stop` completes.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
    }

    /// The caller's identity and repository, or the response refusing the request.
    async fn admit(&self, headers: &HeaderMap, repo: &str) -> Result<(Agent, Arc<Repo>), Response> {
        let Some(token) = token(headers) else {
            return Err(unauthorized(
                "a token is required (the JWT as the password)",
            ));
        };
        let agent = match self.auth.authenticate(&token).await {
            Ok(identity) => identity.agent(),
            Err((message, _)) => return Err(unauthorized(&message)),
        };
        // Authenticate first, so an unauthenticated caller cannot probe repository names.
        let name = repo.strip_suffix(".git").unwrap_or(repo);
        match self.repos.get(name) {
            Some(r) => Ok((agent, r.clone())),
            None => Err(plain(
                StatusCode::NOT_FOUND,
                &format!("repository {name:?} is not served here"),
            )),
        }
    }
}

async fn info_refs(
    State(gw): State<Arc<GitGateway>>,
    Path(repo): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_agent, repo) = match gw.admit(&headers, &repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(service) = query.get("service").and_then(|s| Service::from_name(s)) else {
        return plain(
            StatusCode::FORBIDDEN,
            "only smart HTTP is served: use a git client newer than 1.6.6",
        );
    };
    let protocol = git_protocol(&headers);
    let reply = match repo.upstream.advertise(service, protocol.as_deref()).await {
        Ok(r) => r,
        Err(e) => return upstream_failed(&repo.target.name, &e),
    };
    if service == Service::UploadPack {
        return relay(reply);
    }
    // The push advertisement is rewritten: push options are always accepted (the prompt
    // travels in them) and push certificates never are (the gateway cannot check them).
    let body = match upstream::collect(reply.body, MAX_ADVERTISEMENT).await {
        Ok(b) => b,
        Err(e) => return upstream_failed(&repo.target.name, &e),
    };
    match super::wire::advertisement::rewrite_advertisement(
        &body,
        service.name(),
        &["push-options"],
        &["push-cert"],
    ) {
        Ok(body) => git_response(
            "application/x-git-receive-pack-advertisement",
            Body::from(body),
        ),
        Err(e) => {
            tracing::warn!(repo = %repo.target.name, error = %e, "unreadable upstream advertisement");
            plain(
                StatusCode::BAD_GATEWAY,
                "the upstream sent a ref advertisement the gateway cannot read",
            )
        }
    }
}

async fn upload_pack(
    State(gw): State<Arc<GitGateway>>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_agent, repo) = match gw.admit(&headers, &repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match request_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let protocol = git_protocol(&headers);
    match repo
        .upstream
        .rpc(Service::UploadPack, protocol.as_deref(), body)
        .await
    {
        Ok(reply) => relay(reply),
        Err(e) => upstream_failed(&repo.target.name, &e),
    }
}

async fn receive_pack(
    State(gw): State<Arc<GitGateway>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(repo): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (agent, repo) = match gw.admit(&headers, &repo).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Err(e) = gw.recorder.check() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
    }
    let gzip = match content_encoding(&headers) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let request = PushRequest {
        peer: peer.to_string(),
        agent,
        prompt: header_text(&headers, "x-portcullis-prompt"),
        body: body
            .into_data_stream()
            .map_err(std::io::Error::other)
            .boxed(),
        gzip,
    };
    match push::receive(
        &gw.rules,
        &gw.recorder,
        &repo,
        gw.approvals.as_ref(),
        request,
    )
    .await
    {
        Ok(body) => git_response("application/x-git-receive-pack-result", body),
        Err(e) => plain(e.status(), e.to_string().trim_start_matches("portcullis: ")),
    }
}

/// The client's request body, decompressed when git sent it gzipped (it does for large
/// negotiations).
async fn request_body(headers: &HeaderMap, body: Body) -> Result<ByteStream, Response> {
    let stream: ByteStream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    if !content_encoding(headers).map_err(|r| *r)? {
        return Ok(stream);
    }
    let compressed = upstream::collect(stream, MAX_FETCH_REQUEST)
        .await
        .map_err(|e| plain(StatusCode::PAYLOAD_TOO_LARGE, &e.to_string()))?;
    let mut plain_body = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .take(MAX_FETCH_REQUEST as u64 + 1)
        .read_to_end(&mut plain_body)
        .map_err(|_| plain(StatusCode::BAD_REQUEST, "the gzip request body is corrupt"))?;
    if plain_body.len() > MAX_FETCH_REQUEST {
        return Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        ));
    }
    Ok(futures_util::stream::once(async move { Ok(bytes::Bytes::from(plain_body)) }).boxed())
}

/// Whether the body is gzipped; any other encoding is refused.
fn content_encoding(headers: &HeaderMap) -> Result<bool, Box<Response>> {
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Ok(false),
        Some("gzip") | Some("x-gzip") => Ok(true),
        Some(other) => Err(Box::new(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("content encoding {other:?} is not supported"),
        ))),
    }
}

/// The JWT from `Authorization: Bearer` or the Basic password (the user name when the
/// password is empty, for `https://<token>@host/` URLs).
fn token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token = if password.is_empty() { user } else { password };
    (!token.is_empty()).then(|| token.to_string())
}

/// `Git-Protocol` as git sends it (`version=2`), passed on only when it looks like one.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("git-protocol")?.to_str().ok()?;
    let ok = v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b));
    ok.then(|| v.to_string())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(4096).collect())
}

fn relay(reply: Reply) -> Response {
    let mut resp = Response::new(Body::from_stream(reply.body));
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = reply
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn git_response(content_type: &'static str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("portcullis: {message}\n"),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut resp = plain(StatusCode::UNAUTHORIZED, message);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"portcullis\", charset=\"UTF-8\""),
    );
    resp
}

fn upstream_failed(repo: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::warn!(repo, error = %error, "upstream request failed");
    plain(
        StatusCode::BAD_GATEWAY,
        &format!("the upstream of {repo:?} is unavailable"),
    )
}

/// The client for HTTP(S) upstreams (and the CLI's admin API calls).
pub(crate) fn http_client() -> Result<reqwest::Client, Error> {
    let tls = crate::identity::public_tls_config().map_err(Error::Client)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        // A redirect could carry the gateway's token to another host.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Client(e.to_string()))
}
