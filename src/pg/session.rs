//! One client session: start-up, authentication, then the two relays.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::error::Error;
use super::frame::{
    self, CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3, SSL_REQUEST, complete_len, split_frame,
};
use super::messages::{self, Severity};
use super::stream::{ClientStream, UpstreamStream};
use super::upstream;
use super::{Gateway, cancel::UpstreamKey};
use crate::gateway::record::{self as event, SessionEvent, StatementEvent};
use crate::gateway::{QueryJudgement, judge_query};
use crate::policy::value::{Agent, Target};
use crate::sql::Analyzer;

/// The custom setting that carries the agent's current prompt.
pub const PROMPT_SETTING: &str = "portcullis.prompt";
/// Start-up parameters the gateway consumes instead of forwarding.
const OWN_PARAMS: &[&str] = &["user", "database"];
/// Largest password (token) message accepted.
const MAX_PASSWORD_BYTES: usize = 64 << 10;

pub async fn run(gw: Arc<Gateway>, tcp: TcpStream, peer: SocketAddr) {
    let id = format!("{:016x}", rand::random::<u64>());
    let _ = tcp.set_nodelay(true);
    if let Err(e) = serve(&gw, tcp, peer, &id).await {
        tracing::info!(session = %id, client = %peer, error = %e, "session ended with an error");
    }
}

async fn read_startup<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
) -> Result<(u32, Bytes), Error> {
    loop {
        if let Some(p) = frame::split_startup(buf)? {
            return Ok(p);
        }
        if s.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

async fn send_fatal<S: AsyncWrite + Unpin>(s: &mut S, e: &Error) {
    if let Some(resp) = e.response() {
        let _ = s.write_all(&resp).await;
        let _ = s.flush().await;
    }
}

async fn serve(gw: &Gateway, mut tcp: TcpStream, peer: SocketAddr, id: &str) -> Result<(), Error> {
    let mut buf = BytesMut::with_capacity(1024);
    // SSLRequest / GSSENCRequest come before the StartupMessage (libpq may send both).
    let mut packet = match read_startup(&mut tcp, &mut buf).await {
        Ok(p) => p,
        Err(e) => {
            // Garbage instead of a start-up packet gets a protocol error, and is on the
            // record; a client that merely hung up gets nothing.
            if e.response().is_some() {
                send_fatal(&mut tcp, &e).await;
                session_event(gw, id, peer, None, "refused", Some(&e)).await;
            }
            return Err(e);
        }
    };
    let mut client = loop {
        match packet.0 {
            GSSENC_REQUEST => {
                tcp.write_all(b"N").await?;
                packet = read_startup(&mut tcp, &mut buf).await?;
            }
            SSL_REQUEST => match &gw.tls {
                Some(acceptor) => {
                    if !buf.is_empty() {
                        // Bytes sent before the handshake would be read as if encrypted.
                        return Err(Error::Protocol(
                            "data after SSLRequest before the TLS handshake".into(),
                        ));
                    }
                    tcp.write_all(b"S").await?;
                    let tls = acceptor
                        .accept(tcp)
                        .await
                        .map_err(|e| Error::Tls(e.to_string()))?;
                    let mut client = ClientStream::Tls(Box::new(tls));
                    packet = read_startup(&mut client, &mut buf).await?;
                    break client;
                }
                None => {
                    tcp.write_all(b"N").await?;
                    packet = read_startup(&mut tcp, &mut buf).await?;
                }
            },
            _ => break ClientStream::Plain(tcp),
        }
    };
    match packet.0 {
        PROTOCOL_3 if gw.target.tls_required && matches!(client, ClientStream::Plain(_)) => {
            let e = Error::Auth(
                "this listener requires TLS; connect with sslmode=require or verify-full".into(),
                crate::identity::SQLSTATE_INVALID_AUTHORIZATION,
            );
            session_event(gw, id, peer, None, "refused", Some(&e)).await;
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
        PROTOCOL_3 => {}
        CANCEL_REQUEST => return cancel(gw, &packet.1).await,
        SSL_REQUEST | GSSENC_REQUEST => {
            let e = Error::Protocol("encryption requested twice".into());
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
        other => {
            let e = Error::Protocol(format!(
                "unsupported protocol version {}.{}",
                other >> 16,
                other & 0xffff
            ));
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
    }
    let mut state = match start(gw, &mut client, &mut buf, &packet.1, peer, id).await {
        Ok(s) => s,
        Err(e) => {
            session_event(gw, id, peer, None, "refused", Some(&e)).await;
            send_fatal(&mut client, &e).await;
            return Err(e);
        }
    };
    let upstream_conn = state
        .upstream
        .take()
        .expect("start() always sets the upstream connection");
    let key = state.client_key;
    let result = relay(gw, client, upstream_conn, buf, &mut state).await;
    gw.cancel.remove(key);
    session_event(
        gw,
        id,
        peer,
        Some(&state.agent.sub),
        "ended",
        result.as_ref().err(),
    )
    .await;
    result
}

async fn session_event(
    gw: &Gateway,
    id: &str,
    peer: SocketAddr,
    subject: Option<&str>,
    what: &'static str,
    error: Option<&Error>,
) {
    session_event_in(gw, id, peer, subject, &[], what, error)
        .await
        .unwrap_or_else(
            |e| tracing::error!(session = %id, error = %e, "session event not recorded"),
        );
}

async fn session_event_in(
    gw: &Gateway,
    id: &str,
    peer: SocketAddr,
    subject: Option<&str>,
    groups: &[String],
    what: &'static str,
    error: Option<&Error>,
) -> Result<(), event::Unrecorded> {
    let e = SessionEvent {
        session_id: id,
        target: &gw.target.name,
        client_addr: peer.to_string(),
        subject,
        state: what,
        reason: error.map(|e| e.to_string()),
    };
    gw.recorder
        .session(&e, crate::audit::Protocol::Postgres, groups)
        .await
}

/// Sends the events judged since the last call to the audit store, waiting for those the
/// durability setting says must be committed before their statements go upstream.
async fn flush_events(gw: &Gateway, state: &mut State) -> Result<(), Error> {
    flush_events_to(gw, state, None).await
}

/// As [`flush_events`]; allowed reads go to `reads` to be completed with their results
/// (when the durability setting lets a read's event wait that long).
async fn flush_events_to(
    gw: &Gateway,
    state: &mut State,
    reads: Option<&Shared>,
) -> Result<(), Error> {
    let defer = reads.is_some() && gw.recorder.can_defer_reads();
    for (ev, sync_index) in state.pending.drain(..) {
        if defer
            && sync_index > 0
            && !ev.must_be_durable
            && ev.decision == crate::audit::Decision::Allowed
            && let Some(shared) = reads
        {
            lock(shared).reads.push_back((ev, sync_index));
            continue;
        }
        let ticket = gw
            .recorder
            .submit(ev)
            .await
            .map_err(|e| Error::Refused(e.to_string()))?;
        ticket
            .durable()
            .await
            .map_err(|e| Error::Refused(format!("the audit store is unavailable ({e})")))?;
    }
    Ok(())
}

/// Per-session state shared by the judge.
struct State {
    id: String,
    agent: Agent,
    target: Target,
    prompt: Option<String>,
    analyzer: Analyzer,
    upstream: Option<(UpstreamStream, BytesMut)>,
    client_key: (u32, u32),
    peer: String,
    /// When the token the session logged in with expires (seconds since the epoch).
    expires_at: u64,
    /// Judged statements' events not yet handed to the audit store, with the
    /// ReadyForQuery that ends their results (0: none to wait for).
    pending: Vec<(crate::audit::Event, u64)>,
    /// The ReadyForQuery index the statement being judged will complete at.
    sync_index: u64,
}

async fn cancel(gw: &Gateway, body: &[u8]) -> Result<(), Error> {
    if body.len() < 8 {
        return Err(Error::Protocol("short CancelRequest".into()));
    }
    let pid = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let secret = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    // Unknown keys are ignored silently, as PostgreSQL does.
    if let Some(k) = gw.cancel.lookup(pid, secret) {
        upstream::cancel(&k.host, k.port, k.pid, k.secret).await?;
    }
    Ok(())
}

/// Authentication and the upstream login; on success the client has been told
/// AuthenticationOk, the server's parameters, a gateway key and ReadyForQuery.
async fn start(
    gw: &Gateway,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    startup: &[u8],
    peer: SocketAddr,
    id: &str,
) -> Result<State, Error> {
    let params = messages::startup_params(startup)?;
    gw.recorder
        .check()
        .map_err(|e| Error::Refused(e.to_string()))?;
    client.write_all(&messages::auth_cleartext()).await?;
    client.flush().await?;
    let password = loop {
        if let Some(f) = split_frame(buf, MAX_PASSWORD_BYTES)? {
            break f;
        }
        if client.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    };
    if password.tag != b'p' {
        return Err(Error::Protocol(format!(
            "expected a password message, got {:?}",
            password.tag as char
        )));
    }
    let token = messages::query_text(password.body())?;
    let identity = gw
        .auth
        .authenticate(token.trim())
        .await
        .map_err(|(m, code)| Error::Auth(m, code))?;

    let mut state = State {
        id: id.to_string(),
        agent: identity.agent(),
        expires_at: identity.expires_at,
        target: Target {
            name: gw.target.name.clone(),
        },
        prompt: None,
        analyzer: Analyzer::default(),
        upstream: None,
        client_key: (0, 0),
        peer: peer.to_string(),
        pending: Vec::new(),
        sync_index: 0,
    };
    let judged = judge_startup(gw, &mut state, &params);
    flush_events(gw, &mut state).await?;
    let forwarded = judged?;
    let up = upstream::connect(
        &gw.target.upstream,
        gw.target.upstream_password.as_deref(),
        &forwarded,
    )
    .await?;
    // The gateway reads SQL as PostgreSQL does only with these settings.
    if let Some(why) = up
        .settings
        .iter()
        .find_map(|(name, value)| super::reading::misreading(name, value))
    {
        return Err(Error::Refused(why));
    }
    let (pid, secret) = up.key.unwrap_or_default();
    state.client_key = gw.cancel.issue(UpstreamKey {
        host: gw.target.upstream.host.clone(),
        port: gw.target.upstream.port,
        pid,
        secret,
    });
    let mut hello = BytesMut::new();
    hello.extend_from_slice(&messages::auth_ok());
    for p in &up.parameters {
        hello.extend_from_slice(p);
    }
    hello.extend_from_slice(&messages::backend_key_data(
        state.client_key.0,
        state.client_key.1,
    ));
    hello.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    client.write_all(&hello).await?;
    client.flush().await?;
    session_event_in(
        gw,
        id,
        peer,
        Some(&state.agent.sub),
        &state.agent.groups,
        "started",
        None,
    )
    .await
    .map_err(|e| Error::Refused(e.to_string()))?;
    state.upstream = Some((up.stream, up.leftover));
    Ok(state)
}

/// Start-up parameters change settings as `SET` does, so each is judged as one
/// (`options=-c name=value` included). Returns those to forward.
fn judge_startup(
    gw: &Gateway,
    state: &mut State,
    params: &[(String, String)],
) -> Result<Vec<(String, String)>, Error> {
    let mut forwarded = Vec::new();
    for (name, value) in params {
        if OWN_PARAMS.contains(&name.as_str()) {
            continue;
        }
        if name == "replication" {
            return Err(Error::Refused(
                "replication connections are not served through the gateway".into(),
            ));
        }
        let settings: Vec<(String, String)> = if name == "options" {
            parse_options(value).ok_or_else(|| {
                Error::Refused(format!("cannot read the options parameter {value:?}"))
            })?
        } else {
            vec![(name.clone(), value.clone())]
        };
        for (k, v) in &settings {
            if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(Error::Refused(format!(
                    "start-up setting name {k:?} is not allowed"
                )));
            }
            let sql = format!("SET {k} TO '{}'", v.replace('\'', "''"));
            let judged = judge_query(
                &gw.rules,
                &mut state.analyzer,
                &sql,
                &state.agent,
                &state.target,
            );
            record(&gw.recorder, state, "startup", &sql, &judged);
            if let Some(message) = judged.outcome.refusal {
                return Err(Error::Refused(message));
            }
            if k == PROMPT_SETTING {
                state.prompt = Some(v.clone());
            }
        }
        forwarded.push((name.clone(), value.clone()));
    }
    Ok(forwarded)
}

/// `-c a=b -c c=d` / `--a=b` as libpq passes them (backslash escapes spaces).
fn parse_options(options: &str) -> Option<Vec<(String, String)>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.push(chars.next()?),
            c if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let mut out = Vec::new();
    let mut iter = words.into_iter();
    while let Some(w) = iter.next() {
        let setting = if w == "-c" {
            iter.next()?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_string()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_string()
        } else {
            return None;
        };
        let (k, v) = setting.split_once('=')?;
        out.push((k.replace('-', "_").to_lowercase(), v.to_string()));
    }
    Some(out)
}

fn record(
    recorder: &event::Recorder,
    state: &mut State,
    kind: &'static str,
    text: &str,
    judged: &QueryJudgement<'_>,
) {
    let e = StatementEvent {
        session_id: &state.id,
        target: &state.target.name,
        subject: &state.agent.sub,
        groups: &state.agent.groups,
        prompt: state.prompt.as_deref(),
        kind,
        statement: text,
        fingerprints: judged
            .analysis
            .statements
            .iter()
            .map(|f| f.fingerprint.as_str())
            .collect(),
        decision: judged.outcome.decision.as_str(),
        rule_ids: judged.verdict.rule_ids().collect(),
        monitored: judged.verdict.monitored().map(|r| r.id.as_str()).collect(),
        message: judged.outcome.refusal.clone(),
        judge_us: judged.judge_us,
    };
    let ev = recorder.statement_event(&e, &state.peer, judged.durable);
    if let Some(ev) = ev {
        state.pending.push((ev, state.sync_index));
    }
}

/// A refusal waiting for the server's error at the marker's place in the stream.
struct Marker {
    token: String,
    message: String,
    /// Resolved (dropped if unmatched) once this many ReadyForQuery have come back.
    sync_index: u64,
}

#[derive(Default)]
struct Markers {
    queue: VecDeque<Marker>,
    syncs_sent: u64,
    /// Allowed reads whose events wait for their results (rows, a sample) before they are
    /// recorded; each completes at the ReadyForQuery numbered `.1`.
    reads: VecDeque<(crate::audit::Event, u64)>,
}

type Shared = Arc<Mutex<Markers>>;

async fn relay(
    gw: &Gateway,
    client: ClientStream,
    upstream: (UpstreamStream, BytesMut),
    cbuf: BytesMut,
    state: &mut State,
) -> Result<(), Error> {
    let (ustream, ubuf) = upstream;
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(ustream);
    let markers: Shared = Arc::default();
    let (fatal_tx, fatal_rx) = oneshot::channel::<Bytes>();
    let down = relay_down(ur, cw, ubuf, markers.clone(), fatal_rx, &gw.recorder);
    let up = relay_up(gw, cr, uw, cbuf, markers.clone(), state);
    tokio::pin!(down);
    tokio::pin!(up);
    let result = tokio::select! {
        r = &mut up => {
            if let Err(e) = &r
                && let Some(resp) = e.response()
            {
                let _ = fatal_tx.send(resp);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut down).await;
            }
            r
        }
        r = &mut down => r,
    };
    // Reads that went upstream but whose results never completed are still recorded.
    let unfinished: Vec<_> = lock(&markers).reads.drain(..).map(|(ev, _)| ev).collect();
    for ev in unfinished {
        if let Err(e) = gw.recorder.submit(ev).await {
            tracing::error!(error = %e, "read event not recorded");
        }
    }
    result
}

fn lock(m: &Shared) -> std::sync::MutexGuard<'_, Markers> {
    m.lock()
        .expect("marker lock is never poisoned: nothing panics while holding it")
}

/// Client → server: judge Query, Parse and FunctionCall; forward everything else.
async fn relay_up(
    gw: &Gateway,
    mut cr: ReadHalf<ClientStream>,
    mut uw: WriteHalf<UpstreamStream>,
    mut cbuf: BytesMut,
    markers: Shared,
    state: &mut State,
) -> Result<(), Error> {
    let max = gw.target.max_message_bytes;
    let mut out = BytesMut::with_capacity(8192);
    loop {
        if !cbuf.is_empty() {
            // A session lasts no longer than its token: nothing more is judged or
            // forwarded once it has expired, a Bind/Execute of a statement prepared
            // before included. One clock read per batch the client sent.
            expired(state)?;
        }
        while let Some(f) = split_frame(&mut cbuf, max)? {
            match f.tag {
                b'Q' => {
                    let text = messages::query_text(f.body())?;
                    state.sync_index = {
                        let mut m = lock(&markers);
                        m.syncs_sent += 1;
                        m.syncs_sent
                    };
                    match judge(gw, state, "query", text) {
                        None => out.extend_from_slice(&f.bytes),
                        Some(message) => {
                            let token = marker_token();
                            out.extend_from_slice(&messages::query(&token));
                            let mut m = lock(&markers);
                            let sync_index = m.syncs_sent;
                            m.queue.push_back(Marker {
                                token,
                                message,
                                sync_index,
                            });
                        }
                    }
                }
                b'P' => {
                    let (name, text) = messages::parse_body(f.body())?;
                    state.sync_index = lock(&markers).syncs_sent + 1;
                    match judge(gw, state, "parse", text) {
                        None => out.extend_from_slice(&f.bytes),
                        Some(message) => {
                            let token = marker_token();
                            out.extend_from_slice(&messages::parse(name, &token));
                            let mut m = lock(&markers);
                            let sync_index = m.syncs_sent + 1;
                            m.queue.push_back(Marker {
                                token,
                                message,
                                sync_index,
                            });
                        }
                    }
                }
                b'F' => {
                    // The fast-path function call runs a function by OID with no SQL to
                    // judge (lo_import is one): refused.
                    let token = marker_token();
                    out.extend_from_slice(&messages::query(&token));
                    let mut m = lock(&markers);
                    m.syncs_sent += 1;
                    let sync_index = m.syncs_sent;
                    m.queue.push_back(Marker {
                        token,
                        message:
                            "portcullis: the function-call protocol is not served (no SQL to judge)"
                                .into(),
                        sync_index,
                    });
                }
                b'S' => {
                    lock(&markers).syncs_sent += 1;
                    out.extend_from_slice(&f.bytes);
                }
                b'X' => {
                    out.extend_from_slice(&f.bytes);
                    flush_events_to(gw, state, Some(&markers)).await?;
                    uw.write_all(&out).await?;
                    uw.flush().await?;
                    return Ok(());
                }
                _ => out.extend_from_slice(&f.bytes),
            }
        }
        if !out.is_empty() {
            // Nothing judged goes upstream before its event is recorded as required.
            flush_events_to(gw, state, Some(&markers)).await?;
            uw.write_all(&out).await?;
            uw.flush().await?;
            out.clear();
        }
        if cr.read_buf(&mut cbuf).await? == 0 {
            return Ok(());
        }
    }
}

/// An error ending the session once its token has expired (with the clock leeway the
/// login allowed).
fn expired(state: &State) -> Result<(), Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if now < state.expires_at + crate::identity::DEFAULT_LEEWAY_SECS {
        return Ok(());
    }
    Err(Error::Auth(
        format!(
            "the session's token expired {} s ago; reconnect with a fresh token",
            now.saturating_sub(state.expires_at)
        ),
        crate::identity::SQLSTATE_INVALID_AUTHORIZATION,
    ))
}

fn marker_token() -> String {
    format!("portcullis_refused_{:016x}", rand::random::<u64>())
}

/// Judges one query string; `Some(message)` refuses it.
fn judge(gw: &Gateway, state: &mut State, kind: &'static str, text: &str) -> Option<String> {
    let judged = judge_query(
        &gw.rules,
        &mut state.analyzer,
        text,
        &state.agent,
        &state.target,
    );
    record(&gw.recorder, state, kind, text, &judged);
    if judged.outcome.refusal.is_none() {
        for s in judged.analysis.statements.iter().flat_map(|s| &s.sets) {
            if s.name == PROMPT_SETTING {
                state.prompt = s.raw_value.clone();
            }
        }
    }
    judged.outcome.refusal
}

/// Server → client: forward runs of complete frames untouched; swap a marker's syntax
/// error for the gateway's refusal.
async fn relay_down(
    mut ur: ReadHalf<UpstreamStream>,
    mut cw: WriteHalf<ClientStream>,
    mut ubuf: BytesMut,
    markers: Shared,
    mut fatal: oneshot::Receiver<Bytes>,
    recorder: &event::Recorder,
) -> Result<(), Error> {
    let mut syncs_seen: u64 = 0;
    let mut results = crate::pg::results::Results::new(recorder.result_rows());
    let mut done: Vec<crate::audit::Event> = Vec::new();
    loop {
        // Find the complete frames at the front; note where a rewrite is needed.
        let mut end = 0;
        let mut rewrite: Option<(usize, usize, Bytes)> = None;
        // Reads waiting for their results are queued before their query goes upstream.
        let mut capturing = !lock(&markers).reads.is_empty();
        while let Some(len) = complete_len(&ubuf[end..]) {
            let tag = ubuf[end];
            if tag == b'E' {
                let mut m = lock(&markers);
                if !m.queue.is_empty() {
                    let fields = messages::fields(&ubuf[end + 5..end + len]);
                    let text = fields
                        .iter()
                        .find(|(c, _)| *c == b'M')
                        .map_or("", |(_, t)| t.as_str());
                    if let Some(i) = m.queue.iter().position(|mk| text.contains(&mk.token)) {
                        // A refusal, not a server error: nothing for the results.
                        let mk = m.queue.remove(i).expect("index from position()");
                        rewrite = Some((
                            end,
                            len,
                            messages::error_response(Severity::Error, "42501", &mk.message),
                        ));
                        drop(m);
                        end += len;
                        break;
                    }
                }
                drop(m);
                if capturing {
                    results.observe(tag, &ubuf[end + 5..end + len]);
                }
            } else if tag == b'S'
                && let Some(why) = super::reading::parameter_status(&ubuf[end + 5..end + len])
                    .and_then(|(name, value)| super::reading::misreading(name, value))
            {
                // A setting changed under the session (a function, a role's or
                // database's default): nothing more is judged by a reading the server
                // no longer shares. The frames before it go out; the session ends.
                cw.write_all(&ubuf[..end]).await?;
                let message = format!("portcullis: {why}; the session is closed");
                cw.write_all(&messages::error_response(
                    Severity::Fatal,
                    "42501",
                    &message,
                ))
                .await?;
                cw.flush().await?;
                return Err(Error::Refused(why));
            } else if tag == b'Z' {
                syncs_seen += 1;
                let mut m = lock(&markers);
                while m
                    .queue
                    .front()
                    .is_some_and(|mk| mk.sync_index <= syncs_seen)
                {
                    m.queue.pop_front();
                }
                let (rows, sample) = results.take();
                let error = results.take_error();
                while m.reads.front().is_some_and(|(_, i)| *i <= syncs_seen) {
                    if let Some((mut ev, _)) = m.reads.pop_front() {
                        ev.rows = rows;
                        ev.result = sample.clone();
                        ev.error = error.clone();
                        done.push(ev);
                    }
                }
                capturing = !m.reads.is_empty();
            } else if capturing {
                results.observe(tag, &ubuf[end + 5..end + len]);
            }
            end += len;
        }
        if end > 0 {
            let chunk = ubuf.split_to(end);
            match rewrite {
                Some((at, len, replacement)) => {
                    cw.write_all(&chunk[..at]).await?;
                    cw.write_all(&replacement).await?;
                    cw.write_all(&chunk[at + len..]).await?;
                }
                None => cw.write_all(&chunk).await?,
            }
            // Reads are recorded once their results are complete.
            for ev in done.drain(..) {
                if let Err(e) = recorder.submit(ev).await {
                    tracing::error!(error = %e, "read event not recorded");
                }
            }
            // More complete frames may already be buffered: handle them before flushing.
            if complete_len(&ubuf).is_some() {
                continue;
            }
            cw.flush().await?;
        }
        tokio::select! {
            n = ur.read_buf(&mut ubuf) => {
                if n? == 0 {
                    let _ = cw.flush().await;
                    return Ok(());
                }
            }
            msg = &mut fatal => {
                if let Ok(resp) = msg {
                    cw.write_all(&resp).await?;
                    cw.flush().await?;
                }
                return Ok(());
            }
        }
    }
}
