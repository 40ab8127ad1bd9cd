//! The gateway's own login to PostgreSQL (PostgreSQL "Start-up" flow, client side):
//! StartupMessage, then whatever authentication the server asks for (trust, cleartext,
//! md5, SCRAM-SHA-256 via postgres-protocol), then ParameterStatus, BackendKeyData and
//! ReadyForQuery, which are handed back for the client.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::Error;
use super::frame::split_frame;
use super::messages;
use super::stream::UpstreamStream;
use crate::config::{SslMode, Upstream};

/// A logged-in upstream connection and what the server said during start-up.
pub struct Session {
    pub stream: UpstreamStream,
    /// ParameterStatus frames, to relay to the client as they are.
    pub parameters: Vec<Bytes>,
    pub settings: Vec<(String, String)>,
    /// `(pid, secret)` from BackendKeyData.
    pub key: Option<(u32, u32)>,
    /// Bytes read past ReadyForQuery (none in practice).
    pub leftover: BytesMut,
}

const MAX_STARTUP_REPLY: usize = 1 << 20;

/// Connects and logs in as the gateway, passing the client's accepted start-up
/// parameters (`application_name`, `options`, ...) along.
pub async fn connect(
    upstream: &Upstream,
    password: Option<&str>,
    params: &[(String, String)],
) -> Result<Session, Error> {
    let up =
        |e: std::io::Error| Error::Upstream(format!("{}:{}: {e}", upstream.host, upstream.port));
    let tcp = TcpStream::connect((upstream.host.as_str(), upstream.port))
        .await
        .map_err(up)?;
    tcp.set_nodelay(true).map_err(up)?;
    let mut stream = negotiate_tls(upstream, tcp).await?;

    let mut buf = BytesMut::new();
    let mut startup: Vec<(&str, &str)> =
        vec![("user", &upstream.user), ("database", &upstream.database)];
    startup.extend(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    frontend::startup_message(startup.iter().copied(), &mut buf).map_err(up)?;
    stream.write_all(&buf).await.map_err(up)?;
    buf.clear();

    let mut scram: Option<ScramSha256> = None;
    let mut session = Session {
        stream,
        parameters: Vec::new(),
        settings: Vec::new(),
        key: None,
        leftover: BytesMut::new(),
    };
    let mut read = BytesMut::with_capacity(4096);
    loop {
        let frame = loop {
            if let Some(f) = split_frame(&mut read, MAX_STARTUP_REPLY)? {
                break f;
            }
            if session.stream.read_buf(&mut read).await.map_err(up)? == 0 {
                return Err(Error::Upstream(
                    "closed the connection during start-up".into(),
                ));
            }
        };
        let mut body = frame.body();
        match frame.tag {
            b'R' => {
                let code = body.get_u32();
                let reply = match code {
                    0 => None,
                    3 => Some(password_message(password_for(password)?.as_bytes())),
                    5 => {
                        let salt: [u8; 4] = body
                            .get(..4)
                            .and_then(|s| s.try_into().ok())
                            .ok_or_else(|| Error::Upstream("short md5 salt".into()))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            upstream.user.as_bytes(),
                            password_for(password)?.as_bytes(),
                            salt,
                        );
                        Some(password_message(hash.as_bytes()))
                    }
                    10 => {
                        let mechanisms = messages::fields_nul_list(body);
                        if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                            return Err(Error::Upstream(format!(
                                "server offers SASL {mechanisms:?}, not SCRAM-SHA-256"
                            )));
                        }
                        let s = ScramSha256::new(
                            password_for(password)?.as_bytes(),
                            ChannelBinding::unsupported(),
                        );
                        let mut b = BytesMut::new();
                        frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut b)
                            .map_err(up)?;
                        scram = Some(s);
                        Some(b.freeze())
                    }
                    11 => {
                        let s = scram.as_mut().ok_or_else(|| {
                            Error::Upstream("SASL continue without a start".into())
                        })?;
                        s.update(body)
                            .map_err(|e| Error::Upstream(format!("SCRAM: {e}")))?;
                        let mut b = BytesMut::new();
                        frontend::sasl_response(s.message(), &mut b).map_err(up)?;
                        Some(b.freeze())
                    }
                    12 => {
                        let mut s = scram
                            .take()
                            .ok_or_else(|| Error::Upstream("SASL final without a start".into()))?;
                        s.finish(body)
                            .map_err(|e| Error::Upstream(format!("SCRAM server signature: {e}")))?;
                        None
                    }
                    other => {
                        return Err(Error::Upstream(format!(
                            "unsupported authentication request {other}"
                        )));
                    }
                };
                if let Some(reply) = reply {
                    session.stream.write_all(&reply).await.map_err(up)?;
                }
            }
            b'S' => {
                let mut b = body;
                let name = super::frame::cstr(&mut b)?.to_string();
                let value = super::frame::cstr(&mut b)?.to_string();
                session.settings.push((name, value));
                session.parameters.push(frame.bytes.clone());
            }
            b'K' => {
                if body.len() >= 8 {
                    session.key = Some((body.get_u32(), body.get_u32()));
                }
            }
            b'N' => {}
            b'Z' => {
                session.leftover = read;
                return Ok(session);
            }
            b'E' => {
                let fields = messages::fields(body);
                let field = |c: u8| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                return Err(Error::UpstreamRefused {
                    code: field(b'C'),
                    message: field(b'M'),
                });
            }
            other => {
                return Err(Error::Upstream(format!(
                    "unexpected message {:?} during start-up",
                    other as char
                )));
            }
        }
    }
}

/// SSLRequest, then TLS if the server agrees; `prefer` falls back to plain text.
async fn negotiate_tls(upstream: &Upstream, mut tcp: TcpStream) -> Result<UpstreamStream, Error> {
    if upstream.sslmode == SslMode::Disable {
        return Ok(UpstreamStream::Plain(tcp));
    }
    let up =
        |e: std::io::Error| Error::Upstream(format!("{}:{}: {e}", upstream.host, upstream.port));
    let mut b = BytesMut::new();
    frontend::ssl_request(&mut b);
    tcp.write_all(&b).await.map_err(up)?;
    let answer = tcp.read_u8().await.map_err(up)?;
    match (answer, upstream.sslmode) {
        (b'S', mode) => {
            let connector = super::tls::connector(mode, upstream.sslrootcert.as_deref())?;
            let name = rustls::pki_types::ServerName::try_from(upstream.host.clone())
                .map_err(|e| Error::Upstream(format!("{}: {e}", upstream.host)))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| {
                Error::Upstream(format!("TLS to {}:{}: {e}", upstream.host, upstream.port))
            })?;
            Ok(UpstreamStream::Tls(Box::new(tls)))
        }
        (b'N', SslMode::Prefer) => Ok(UpstreamStream::Plain(tcp)),
        (b'N', _) => Err(Error::Upstream(
            "the server does not offer TLS, and sslmode requires it".into(),
        )),
        (other, _) => Err(Error::Upstream(format!(
            "unexpected answer {other} to SSLRequest"
        ))),
    }
}

fn password_for(password: Option<&str>) -> Result<&str, Error> {
    password.ok_or_else(|| {
        Error::Upstream("asks for a password but upstream_password_env is not set".into())
    })
}

fn password_message(password: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(b'p');
    b.put_u32((4 + password.len() + 1) as u32);
    b.put_slice(password);
    b.put_u8(0);
    b.freeze()
}

/// Sends a CancelRequest for `(pid, secret)` to the server at `host:port`.
pub async fn cancel(host: &str, port: u16, pid: u32, secret: u32) -> Result<(), Error> {
    let mut tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| Error::Upstream(e.to_string()))?;
    let mut b = BytesMut::new();
    frontend::cancel_request(pid as i32, secret as i32, &mut b);
    tcp.write_all(&b).await?;
    Ok(())
}
