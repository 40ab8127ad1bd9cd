//! Who is asking: a JWT from the organisation's IdP → an [`Identity`].
//!
//! Agents never hold database passwords or Git tokens; they present a short-lived JWT
//! (as the Postgres password, or as the HTTP Basic password / `Authorization: Bearer` for
//! Git). A [`Verifier`] checks it against the IdP's JWKS, and the resulting identity is
//! what rules see as `agent.*` and what every audit event records. This module knows
//! neither Postgres nor Git: the protocol modules hand it a string and get back an
//! [`Identity`] or an [`Error`] that says what to tell the client
//! ([`Error::sqlstate`]).
//!
//! Accepted: RS256, ES256 and EdDSA through the JWKS; HS256 only with a configured
//! secret. Checked: signature, `iss`, `aud`, `exp`, `nbf` (with leeway). Refused:
//! `alg: none`, every other algorithm, algorithm confusion, unknown `kid` (after one JWKS
//! refresh), tampered and expired tokens. See `verify.rs` for the order of the checks.
//!
//! [`mint`], [`jwks_for`] and [`generate_key`] play the IdP for demos and tests
//! (`portcullis token`).
//!
//! ```
//! use std::time::Duration;
//! use portcullis::identity::{self, JwksSource, KeyAlg, MintOptions, Verifier, VerifierOptions};
//!
//! let key = identity::generate_key(KeyAlg::Es256).expect("a fresh key");
//! let dir = tempfile::tempdir().expect("a temp dir");
//! let jwks = dir.path().join("jwks.json");
//! std::fs::write(&jwks, identity::jwks_for(&key).expect("a JWKS").to_string()).expect("written");
//!
//! let verifier = Verifier::new(VerifierOptions::new("portcullis-dev", "portcullis", JwksSource::File(jwks)))
//!     .expect("the JWKS loads");
//! let token = identity::mint(&key, MintOptions {
//!     sub: "alice".into(),
//!     groups: vec!["dev".into()],
//!     ttl: Duration::from_secs(900),
//!     issuer: "portcullis-dev".into(),
//!     audience: "portcullis".into(),
//!     agent: Some("claude".into()),
//!     kid: None,
//! }).expect("signed");
//! let who = verifier.verify(&token).expect("valid");
//! assert_eq!((who.sub.as_str(), who.agent.as_deref()), ("alice", Some("claude")));
//! ```

mod auth;
mod error;
mod fetch;
mod jwks;
mod mint;
mod verified;
mod verify;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::{AuthFuture, AuthResult, Authenticator, JwtAuth};
pub use error::{Error, SQLSTATE_INVALID_AUTHORIZATION, SQLSTATE_INVALID_PASSWORD};
pub use mint::{KeyAlg, MintOptions, generate_key, jwks_for, mint};
pub use verify::Verifier;

pub(crate) use fetch::public_tls_config;

use crate::policy::value::Agent;

/// Default `groups_claim`.
pub const DEFAULT_GROUPS_CLAIM: &str = "groups";
/// Default clock leeway for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default minimum time between two JWKS reloads caused by unknown `kid`s.
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// A verified token's subject, as the rest of the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim.
    pub sub: String,
    /// From the configured groups claim (an array of strings, or one string).
    pub groups: Vec<String>,
    /// The optional `agent` claim: which tool or model acts for `sub`.
    pub agent: Option<String>,
    /// The `exp` claim, seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Identity {
    /// The identity as rules see it (`agent.sub`, `agent.groups`, `agent.name`).
    pub fn agent(&self) -> Agent {
        Agent {
            sub: self.sub.clone(),
            groups: self.groups.clone(),
            name: self.agent.clone(),
        }
    }
}

/// Where the IdP's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS JSON file, re-read on an unknown `kid`.
    File(PathBuf),
    /// An `http://` or `https://` URL, refetched on an unknown `kid`.
    Url(String),
}

/// How a [`Verifier`] checks tokens (the `[identity]` config section).
#[derive(Clone)]
pub struct VerifierOptions {
    /// The exact `iss` tokens must carry.
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    pub jwks: JwksSource,
    /// The claim holding the groups; a dotted path reaches into nested objects.
    pub groups_claim: String,
    /// HS256 secret (at least 32 bytes); HS256 tokens are refused without one.
    pub hs256_secret: Option<Vec<u8>>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Minimum time between two JWKS reloads caused by unknown `kid`s.
    pub refetch_interval: Duration,
}

impl VerifierOptions {
    /// Options with the defaults: `groups` claim, 30 s leeway, 30 s refetch interval, no
    /// HS256.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks: JwksSource) -> Self {
        VerifierOptions {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks,
            ..VerifierOptions::default()
        }
    }
}

/// The defaults, for `..VerifierOptions::default()`; `issuer`, `audience` and `jwks`
/// (an empty path here) must still be set.
impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            issuer: String::new(),
            audience: String::new(),
            jwks: JwksSource::File(PathBuf::new()),
            groups_claim: DEFAULT_GROUPS_CLAIM.to_string(),
            hs256_secret: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
        }
    }
}

impl std::fmt::Debug for VerifierOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The HS256 secret never reaches a log line.
        f.debug_struct("VerifierOptions")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks", &self.jwks)
            .field("groups_claim", &self.groups_claim)
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("leeway_secs", &self.leeway_secs)
            .field("refetch_interval", &self.refetch_interval)
            .finish()
    }
}
