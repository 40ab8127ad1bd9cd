//! Login, both sides: the client's token (as a cleartext password), its start-up
//! parameters judged as `SET`s, then the gateway's own login upstream.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Gateway;
use super::cancel::UpstreamKey;
use super::error::Error;
use super::frame::split_frame;
use super::messages;
use super::session::{Judged, PROMPT_SETTING, State, Upstream};
use super::stream::ClientStream;
use super::upstream;
use crate::audit::Decision;
use crate::gateway::record::SessionState;
use crate::gateway::refusal;

/// Start-up parameters the gateway consumes instead of forwarding.
const OWN_PARAMS: &[&str] = &["user", "database"];
/// Largest password (token) message accepted.
const MAX_PASSWORD_BYTES: usize = 64 << 10;

/// Authenticates the client and logs in upstream; on success the client has been told
/// AuthenticationOk, the server's parameters, a gateway key and ReadyForQuery.
pub async fn login(
    gw: &Gateway,
    client: &mut ClientStream,
    buf: &mut BytesMut,
    startup: &[u8],
    peer: SocketAddr,
    id: &str,
) -> Result<(State, Upstream), Error> {
    let params = messages::startup_params(startup)?;
    gw.recorder
        .check()
        .map_err(|e| Error::Refused(refusal::unrecorded(&e)))?;
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
        .map_err(|(m, code)| Error::Auth(refusal::unauthenticated(&m), code))?;

    let mut state = State::new(id, peer, &identity, &gw.target.name);
    let judged = judge_startup(gw, &mut state, &params).await;
    state.flush_events(gw, None).await?;
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
        return Err(Error::Refused(refusal::misreading(&why)));
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
    state.started_us = crate::audit::record::now_us();
    super::session::record_session(gw, id, peer, Some(&state), SessionState::Started, None)
        .await
        .map_err(|e| Error::Refused(refusal::unrecorded(&e)))?;
    Ok((state, (up.stream, up.leftover)))
}

/// Start-up parameters change settings as `SET` does, so each is judged as one
/// (`options=-c name=value` included). Returns those to forward.
async fn judge_startup(
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
            return Err(Error::Refused(refusal::REPLICATION.into()));
        }
        let settings: Vec<(String, String)> = if name == "options" {
            parse_options(value)
                .ok_or_else(|| Error::Refused(refusal::unreadable_options(value)))?
        } else {
            vec![(name.clone(), value.clone())]
        };
        for (k, v) in &settings {
            if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(Error::Refused(refusal::setting_name(k)));
            }
            let sql = format!("SET {k} TO '{}'", v.replace('\'', "''"));
            match state.judge(gw, "startup", &sql).await {
                Judged::Go => {}
                Judged::Refuse(message) => return Err(Error::Refused(message)),
                // Nothing is held at login: a setting that needs approval is set with
                // SET once connected.
                Judged::Review(mut r) => {
                    let message = refusal::review(Some((&r.rule, &r.message)));
                    state.decided(&mut r, Decision::Denied, Some(message.clone()));
                    return Err(Error::Refused(message));
                }
            }
            if k == PROMPT_SETTING {
                state.prompt = Some(v.clone());
            }
            // A start-up value is the setting's own list syntax, not one literal.
            if k == "search_path" {
                state.search_path = Some(v.clone());
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

#[cfg(test)]
mod tests {
    use super::parse_options;

    fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn options_are_read_as_libpq_writes_them() {
        assert_eq!(
            parse_options("-c search_path=app -csynchronous_commit=off --work-mem=4MB"),
            pairs(&[
                ("search_path", "app"),
                ("synchronous_commit", "off"),
                ("work_mem", "4MB")
            ])
        );
        // A backslash keeps a space inside a value; names are lower-cased.
        assert_eq!(
            parse_options(r"-c Portcullis.Prompt=fix\ the\ bug"),
            pairs(&[("portcullis.prompt", "fix the bug")])
        );
    }

    #[test]
    fn options_the_gateway_cannot_read_are_not_guessed_at() {
        assert_eq!(parse_options("-c"), None);
        assert_eq!(parse_options("-c novalue"), None);
        assert_eq!(parse_options("search_path=app"), None);
        assert_eq!(parse_options("-c a=b \\"), None);
    }
}
