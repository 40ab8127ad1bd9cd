//! Fetches a JWKS over HTTP(S): one `GET`, HTTP/1.1 (RFC 9112), `Connection: close`.
//!
//! A JWKS is a small JSON document fetched at startup and at most once per refetch
//! interval, so a full HTTP client would be dead weight. This one does exactly what an
//! IdP's JWKS endpoint needs: `http://` or `https://` (rustls with the webpki roots),
//! `Content-Length`, `Transfer-Encoding: chunked` or read-to-close bodies, a 1 MiB cap
//! and one overall timeout. It does not follow redirects: configure the final URL.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest JWKS response (headers and body) we read.
const MAX_RESPONSE: usize = 1 << 20;

/// Fetches `url` and returns the body of a `200` response.
pub(crate) async fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let target = Target::parse(url)?;
    tokio::time::timeout(timeout, target.get())
        .await
        .map_err(|_| format!("fetching {url} timed out after {}s", timeout.as_secs()))?
}

/// The parts of a URL a GET needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "JWKS URL `{url}` must start with http:// or https://"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("JWKS URL `{url}` needs a host (and no user info)"));
        }
        let default_port = if tls { 443 } else { 80 };
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("JWKS URL `{url}` has an unclosed IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("JWKS URL `{url}` has a bad authority")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("JWKS URL `{url}` has a bad port"))?,
            None => default_port,
        };
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    async fn get(&self) -> Result<Vec<u8>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{} ({e})", self.host, self.port))?;
        if self.tls {
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|_| format!("`{}` is not a valid TLS server name", self.host))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(public_tls_config()?))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {} failed ({e})", self.host))?;
            self.exchange(tls).await
        } else {
            self.exchange(tcp).await
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut stream: S,
    ) -> Result<Vec<u8>, String> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
             User-Agent: portcullis/{}\r\nConnection: close\r\n\r\n",
            self.path,
            env!("CARGO_PKG_VERSION"),
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the JWKS request failed ({e})"))?;
        let mut buf = Vec::with_capacity(8 * 1024);
        let mut chunk = [0u8; 8 * 1024];
        loop {
            if let Parsed::Done(body) = parse_response(&buf, false)? {
                return Ok(body);
            }
            let n = match stream.read(&mut chunk).await {
                Ok(n) => n,
                // Servers that close without TLS close_notify: the body decides.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(format!("reading the JWKS response failed ({e})")),
            };
            if n == 0 {
                return match parse_response(&buf, true)? {
                    Parsed::Done(body) => Ok(body),
                    Parsed::NeedMore => Err("the JWKS response ended early".into()),
                };
            }
            if buf.len() + n > MAX_RESPONSE {
                return Err(format!(
                    "the JWKS response is larger than {MAX_RESPONSE} bytes"
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// TLS for public HTTPS endpoints (a JWKS URL, an HTTPS git upstream): rustls with the
/// ring provider and the webpki roots.
pub(crate) fn public_tls_config() -> Result<rustls::ClientConfig, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup failed ({e})"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    NeedMore,
    Done(Vec<u8>),
}

/// Decodes a complete response from `buf`, or says more bytes are needed. `eof` says
/// the peer closed, which ends a body that has neither length nor chunking.
fn parse_response(buf: &[u8], eof: bool) -> Result<Parsed, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return Ok(Parsed::NeedMore);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| "the JWKS response headers are not UTF-8".to_string())?;
    let body = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") {
        return Err("the JWKS server did not answer HTTP/1.x".into());
    }
    if status != "200" {
        return Err(format!("the JWKS server answered {status}"));
    }
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| "the JWKS response has a bad Content-Length".to_string())?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    if chunked {
        return dechunk(body);
    }
    match length {
        Some(len) if body.len() >= len => Ok(Parsed::Done(body[..len].to_vec())),
        Some(_) => Ok(Parsed::NeedMore),
        None if eof => Ok(Parsed::Done(body.to_vec())),
        None => Ok(Parsed::NeedMore),
    }
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1); trailers are ignored.
fn dechunk(mut body: &[u8]) -> Result<Parsed, String> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return Ok(Parsed::NeedMore);
        };
        let line = std::str::from_utf8(&body[..line_end])
            .map_err(|_| "bad chunk size in the JWKS response".to_string())?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| "bad chunk size in the JWKS response".to_string())?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(Parsed::Done(out));
        }
        if body.len() < size.saturating_add(2) {
            return Ok(Parsed::NeedMore);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("https://idp.example.com/.well-known/jwks.json").expect("valid");
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "idp.example.com".into(),
                port: 443,
                path: "/.well-known/jwks.json".into()
            }
        );
        let t = Target::parse("http://127.0.0.1:8080?x=1").expect("valid");
        assert_eq!((t.port, t.path.as_str()), (8080, "/?x=1"));
        let t = Target::parse("http://[::1]:9/k#frag").expect("valid");
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9, "/k"));
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http://user@x/").is_err());
        assert!(Target::parse("http://x:port/").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(ok, false), Ok(Parsed::Done(b"{}".to_vec())));
        assert_eq!(
            parse_response(&ok[..ok.len() - 1], false),
            Ok(Parsed::NeedMore)
        );

        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                        3;x=y\r\n{\"k\r\n2\r\n\":\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked, false),
            Ok(Parsed::Done(b"{\"k\":".to_vec()))
        );
        assert_eq!(parse_response(&chunked[..60], false), Ok(Parsed::NeedMore));

        let close = b"HTTP/1.0 200 OK\r\n\r\n{}";
        assert_eq!(parse_response(close, false), Ok(Parsed::NeedMore));
        assert_eq!(
            parse_response(close, true),
            Ok(Parsed::Done(b"{}".to_vec()))
        );

        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n", true).is_err());
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false
            )
            .is_err()
        );
    }
}
