//! The start-up phase: encryption negotiation (SSLRequest with rustls, GSSENCRequest
//! declined), then the StartupMessage or a CancelRequest.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::Error;
use super::frame::{self, CANCEL_REQUEST, GSSENC_REQUEST, PROTOCOL_3, SSL_REQUEST};
use super::stream::ClientStream;
use crate::gateway::refusal;

/// What the client opened the connection for.
pub enum Opening {
    /// A session: the StartupMessage's body (its parameters).
    Session(ClientStream, Bytes),
    /// A CancelRequest's body (process id and secret key).
    Cancel(Bytes),
}

/// Why the start-up phase failed, and whether the attempt is worth recording: a client
/// that merely hung up is not; garbage or a refused plain-text login is.
pub struct Failed {
    pub error: Error,
    pub client: Option<ClientStream>,
    pub recorded: bool,
}

/// Negotiates encryption and reads the opening packet. Bytes the client sent after it
/// stay in `buf`.
pub async fn open(
    mut tcp: TcpStream,
    buf: &mut BytesMut,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    tls_required: bool,
) -> Result<Opening, Failed> {
    // SSLRequest / GSSENCRequest come before the StartupMessage (libpq may send both).
    let mut packet = match read_packet(&mut tcp, buf).await {
        Ok(p) => p,
        Err(error) => {
            // Garbage instead of a start-up packet gets a protocol error, and is on the
            // record; a client that merely hung up gets nothing.
            let recorded = error.response().is_some();
            return Err(Failed {
                error,
                client: Some(ClientStream::Plain(tcp)),
                recorded,
            });
        }
    };
    let quiet = |error: Error| Failed {
        error,
        client: None,
        recorded: false,
    };
    let client = loop {
        match packet.0 {
            GSSENC_REQUEST => {
                tcp.write_all(b"N").await.map_err(|e| quiet(e.into()))?;
                packet = read_packet(&mut tcp, buf).await.map_err(quiet)?;
            }
            SSL_REQUEST => match tls {
                Some(acceptor) => {
                    if !buf.is_empty() {
                        // Bytes sent before the handshake would be read as if encrypted.
                        return Err(quiet(Error::Protocol(
                            "data after SSLRequest before the TLS handshake".into(),
                        )));
                    }
                    tcp.write_all(b"S").await.map_err(|e| quiet(e.into()))?;
                    let stream = acceptor
                        .accept(tcp)
                        .await
                        .map_err(|e| quiet(Error::Tls(e.to_string())))?;
                    let mut client = ClientStream::Tls(Box::new(stream));
                    packet = read_packet(&mut client, buf).await.map_err(quiet)?;
                    break client;
                }
                None => {
                    tcp.write_all(b"N").await.map_err(|e| quiet(e.into()))?;
                    packet = read_packet(&mut tcp, buf).await.map_err(quiet)?;
                }
            },
            _ => break ClientStream::Plain(tcp),
        }
    };
    let fail = |error: Error, client: ClientStream, recorded: bool| Failed {
        error,
        client: Some(client),
        recorded,
    };
    match packet.0 {
        PROTOCOL_3 if tls_required && matches!(client, ClientStream::Plain(_)) => Err(fail(
            Error::Auth(
                refusal::TLS_REQUIRED.into(),
                crate::identity::SQLSTATE_INVALID_AUTHORIZATION,
            ),
            client,
            true,
        )),
        PROTOCOL_3 => Ok(Opening::Session(client, packet.1)),
        CANCEL_REQUEST => Ok(Opening::Cancel(packet.1)),
        SSL_REQUEST | GSSENC_REQUEST => Err(fail(
            Error::Protocol("encryption requested twice".into()),
            client,
            false,
        )),
        other => {
            let e = Error::Protocol(format!(
                "unsupported protocol version {}.{}",
                other >> 16,
                other & 0xffff
            ));
            Err(fail(e, client, false))
        }
    }
}

async fn read_packet<S: AsyncRead + Unpin>(
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

/// Tells the client why it is being disconnected (nothing when it is already gone).
pub async fn send_fatal<S: AsyncWrite + Unpin>(s: &mut S, e: &Error) {
    if let Some(resp) = e.response() {
        let _ = s.write_all(&resp).await;
        let _ = s.flush().await;
    }
}
