//! What can go wrong between a presented JWT and an [`Identity`](super::Identity), and
//! what the client is told about it.
//!
//! Every message is safe to show a client: none contains the token, a claim value or a
//! key. The `kid` and `alg` a token names are echoed (sanitized and cut short) because
//! an operator needs them to see which key rotated.

/// SQLSTATE `invalid_password`: the token itself is bad (the client's fault).
pub const SQLSTATE_INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `invalid_authorization_specification`: the gateway cannot check tokens now.
pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";

/// Longest header value (`kid`, `alg`) an error message repeats.
const ECHO_MAX: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not a JWT, or a JWT whose header or claims do not have the shape we need.
    #[error("malformed token: {reason}")]
    Malformed { reason: String },
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (its nbf is in the future)")]
    NotYetValid,
    #[error("token was issued by an issuer this gateway does not trust")]
    WrongIssuer,
    #[error("token is meant for another audience")]
    WrongAudience,
    #[error("token signature does not verify")]
    BadSignature,
    /// No JWKS key matches the token's `kid` (even after one refresh), or the token has
    /// no `kid` and the JWKS does not have exactly one key of its algorithm.
    #[error("{}", unknown_key_message(.kid.as_deref()))]
    UnknownKeyId { kid: Option<String> },
    /// `none`, anything outside RS256/ES256/EdDSA (and HS256 when configured), or an
    /// algorithm the named key was not published for.
    #[error("token algorithm `{alg}` is not allowed")]
    AlgorithmNotAllowed { alg: String },
    /// The JWKS could not be read, fetched or parsed.
    #[error("JWKS unavailable: {reason}")]
    JwksUnavailable { reason: String },
    /// A private key (for minting) could not be read or generated.
    #[error("bad key: {reason}")]
    Key { reason: String },
}

impl Error {
    /// The SQLSTATE the Postgres listener reports: `28P01` when the token is at fault,
    /// `28000` when the gateway's own keys or configuration are.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::JwksUnavailable { .. } | Error::Key { .. } => SQLSTATE_INVALID_AUTHORIZATION,
            _ => SQLSTATE_INVALID_PASSWORD,
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Error::Malformed {
            reason: reason.into(),
        }
    }

    pub(crate) fn unknown_key(kid: Option<&str>) -> Self {
        Error::UnknownKeyId { kid: kid.map(echo) }
    }

    pub(crate) fn algorithm(alg: &str) -> Self {
        Error::AlgorithmNotAllowed { alg: echo(alg) }
    }

    pub(crate) fn jwks(reason: impl Into<String>) -> Self {
        Error::JwksUnavailable {
            reason: reason.into(),
        }
    }

    pub(crate) fn key(reason: impl Into<String>) -> Self {
        Error::Key {
            reason: reason.into(),
        }
    }
}

fn unknown_key_message(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!("token is signed with unknown key id `{kid}`"),
        None => "token has no key id (kid) and no single JWKS key matches its algorithm".into(),
    }
}

/// A header value made fit for an error message: printable ASCII, at most [`ECHO_MAX`]
/// characters, so a hostile token cannot fill logs or inject control characters.
fn echo(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(ECHO_MAX)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if value.chars().count() > ECHO_MAX {
        out.push('…');
    }
    out
}
