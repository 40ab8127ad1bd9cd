//! Upstream URLs: `postgres://user@host:port/database?sslmode=require&sslrootcert=ca.crt`.
//! A password in the URL is refused: secrets come from the environment.

use std::path::{Path, PathBuf};

/// How the gateway protects its own connection to PostgreSQL (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Try TLS, fall back to plain text if the server refuses.
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS, certificate signed by `sslrootcert`.
    VerifyCa,
    /// TLS, certificate signed by `sslrootcert` and naming the host.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
}

impl Upstream {
    /// Parses an upstream URL; relative `sslrootcert` paths resolve against `base`.
    pub fn parse(url: &str, base: &Path) -> Result<Upstream, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("must start with postgres://")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or("must name the gateway's user (postgres://user@host/db)")?;
        if user.contains(':') {
            return Err(
                "must not contain a password; name an env var in upstream_password_env".into(),
            );
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p:?}"))?),
            None => (hostport, 5432),
        };
        if host.is_empty() || user.is_empty() {
            return Err("must name a user and a host".into());
        }
        let mut upstream = Upstream {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            user: user.to_string(),
            database: if database.is_empty() {
                user.to_string()
            } else {
                database.to_string()
            },
            sslmode: SslMode::Prefer,
            sslrootcert: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("bad parameter {pair:?}"))?;
            match k {
                "sslmode" => {
                    upstream.sslmode = match v {
                        "disable" => SslMode::Disable,
                        "prefer" | "allow" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => return Err(format!("unknown sslmode {other:?}")),
                    }
                }
                "sslrootcert" => upstream.sslrootcert = Some(base.join(v)),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (sslmode, sslrootcert)"
                    ));
                }
            }
        }
        if matches!(upstream.sslmode, SslMode::VerifyCa | SslMode::VerifyFull)
            && upstream.sslrootcert.is_none()
        {
            return Err("sslmode=verify-ca/verify-full needs sslrootcert=<CA file>".into());
        }
        Ok(upstream)
    }
}
