//! [`Verifier`]: a presented JWT → [`Identity`], or the reason it is refused.
//!
//! The order of checks is the attack surface, so it is fixed:
//!
//! 1. Read the header ourselves (not through a typed header) so that `alg: none` and
//!    unknown algorithms are refused by name, and `crit` extensions we do not implement
//!    are refused (RFC 7515 §4.1.11).
//! 2. Pick the key from *our* configuration, never from the token: HS256 only ever uses
//!    the configured secret, RS256/ES256/EdDSA only JWKS keys published for exactly that
//!    algorithm. That is what defeats algorithm confusion: an HS256 token "signed" with
//!    an RSA public key is checked against the HS256 secret, and a `kid` naming an RSA
//!    key cannot be used with ES256. `jku`, `jwk` and `x5u` headers are ignored.
//! 3. Verify the signature, then `exp`/`nbf` (with leeway), `iss`, `aud`
//!    (jsonwebtoken's `decode`), and only then look at the claims we map.
//!
//! An unknown `kid` may mean the IdP rotated keys: the JWKS is reloaded once (at most one
//! reload per `refetch_interval`, so a stream of bogus kids cannot hammer the IdP) and
//! the lookup retried before the token is refused.
//!
//! # Performance
//!
//! Keys are parsed once into `DecodingKey`s when the JWKS is loaded; verification takes
//! a read lock to clone an `Arc`, then runs one signature check. A token that passed
//! is remembered (by digest) until it expires or the key set changes, so an agent that
//! reconnects with it skips the signature check ([`verified`](super::verified)).
//! [`Verifier::verify`] is synchronous and does no I/O, except the rate-limited JWKS
//! reload on an unknown `kid`.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{KeySet, Miss};
use super::verified::Verified;
use super::{Error, Identity, JwksSource, VerifierOptions, fetch};

/// Longest token we look at; real ones are well under 4 KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Shortest HS256 secret (RFC 7518 §3.2: at least the hash size, 256 bits).
const MIN_HS256_SECRET: usize = 32;
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The claims jsonwebtoken must find (and find well-typed) before we map any claim.
const REQUIRED_CLAIMS: [&str; 4] = ["exp", "iss", "aud", "sub"];

/// Checks tokens against one issuer, audience and key set. Cheap to share: put it in an
/// `Arc` and call [`verify`](Self::verify) from every connection.
pub struct Verifier {
    source: JwksSource,
    groups_claim: String,
    hs256: Option<DecodingKey>,
    refetch_interval: Duration,
    /// One prepared `Validation` per accepted algorithm.
    validations: Vec<(Algorithm, Validation)>,
    keys: RwLock<Arc<KeySet>>,
    /// When the JWKS was last reloaded because of an unknown `kid`.
    last_refresh: Mutex<Option<Instant>>,
    /// Tokens that passed every check, until they expire or the keys change.
    verified: Verified,
}

/// What a token's header says, read before any key is chosen.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

impl Verifier {
    /// Builds a verifier and loads its JWKS now: a file is read, a URL fetched (on a
    /// helper thread, blocking the caller up to 10 s, so this works inside or outside a
    /// tokio runtime). An unreadable JWKS, or one without a usable key, is an error.
    pub fn new(options: VerifierOptions) -> Result<Verifier, Error> {
        let verifier = Verifier::empty(options)?;
        let keys = match &verifier.source {
            JwksSource::File(path) => read_file(path)?,
            JwksSource::Url(url) => fetch_url_blocking(url)?,
        };
        verifier.store(keys);
        Ok(verifier)
    }

    /// Like [`new`](Self::new), but a URL is fetched on the caller's runtime.
    pub async fn load(options: VerifierOptions) -> Result<Verifier, Error> {
        let verifier = Verifier::empty(options)?;
        let keys = match &verifier.source {
            JwksSource::File(path) => read_file(path)?,
            JwksSource::Url(url) => fetch_url(url).await?,
        };
        verifier.store(keys);
        Ok(verifier)
    }

    /// A verifier with no keys yet.
    fn empty(options: VerifierOptions) -> Result<Verifier, Error> {
        let hs256 = match &options.hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET => {
                return Err(Error::key(format!(
                    "the HS256 secret must be at least {MIN_HS256_SECRET} bytes"
                )));
            }
            Some(secret) => Some(DecodingKey::from_secret(secret)),
            None => None,
        };
        let mut algorithms = vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
        if hs256.is_some() {
            algorithms.push(Algorithm::HS256);
        }
        let validations = algorithms
            .into_iter()
            .map(|alg| (alg, validation(alg, &options)))
            .collect();
        Ok(Verifier {
            source: options.jwks,
            groups_claim: options.groups_claim,
            hs256,
            refetch_interval: options.refetch_interval,
            validations,
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_refresh: Mutex::new(None),
            verified: Verified::new(options.leeway_secs),
        })
    }

    /// Verifies `token` and returns who it names.
    ///
    /// An unknown `kid` reloads the JWKS once (rate-limited) before the token is
    /// refused: a file is re-read; a URL is refetched on a helper thread, blocking this
    /// call up to 10 s. Async callers that cannot afford that use
    /// [`verify_async`](Self::verify_async).
    pub fn verify(&self, token: &str) -> Result<Identity, Error> {
        let header = match self.first_attempt(token)? {
            Attempt::Done(result) => return result,
            Attempt::Reload(header) => header,
        };
        let keys = match &self.source {
            JwksSource::File(path) => read_file(path)?,
            JwksSource::Url(url) => fetch_url_blocking(url)?,
        };
        self.store(keys);
        self.retry(token, &header)
    }

    /// Like [`verify`](Self::verify), but a URL JWKS is refetched on the caller's runtime.
    pub async fn verify_async(&self, token: &str) -> Result<Identity, Error> {
        let header = match self.first_attempt(token)? {
            Attempt::Done(result) => return result,
            Attempt::Reload(header) => header,
        };
        let keys = match &self.source {
            JwksSource::File(path) => read_file(path)?,
            JwksSource::Url(url) => fetch_url(url).await?,
        };
        self.store(keys);
        self.retry(token, &header)
    }

    /// A remembered token's identity, or verifies with the keys at hand; on an unknown
    /// `kid` with a reload due, says so instead of refusing (the two `verify` flavours
    /// differ only in how they reload).
    fn first_attempt(&self, token: &str) -> Result<Attempt, Error> {
        if let Some(identity) = self.verified.get(token) {
            return Ok(Attempt::Done(Ok(identity)));
        }
        let header = parse_header(token)?;
        Ok(match self.attempt(token, &header) {
            Ok(result) => Attempt::Done(result),
            Err(Miss::Unknown) if self.refresh_due() => Attempt::Reload(header),
            Err(miss) => Attempt::Done(Err(miss_error(miss, &header))),
        })
    }

    /// How many usable keys the current JWKS holds.
    pub fn key_count(&self) -> usize {
        self.current().len()
    }

    /// Verifies with the current keys, or says why no key fits.
    fn attempt(&self, token: &str, header: &TokenHeader) -> Result<Result<Identity, Error>, Miss> {
        // Read before the keys: a token checked with keys replaced meanwhile is not
        // remembered.
        let generation = self.verified.generation();
        if header.alg == Algorithm::HS256 {
            return Ok(match &self.hs256 {
                Some(secret) => self.check(token, header.alg, secret, generation),
                None => Err(Error::algorithm("HS256")),
            });
        }
        let keys = self.current();
        let key = keys.find(header.alg, header.kid.as_deref())?;
        Ok(self.check(token, header.alg, key, generation))
    }

    fn retry(&self, token: &str, header: &TokenHeader) -> Result<Identity, Error> {
        self.attempt(token, header)
            .unwrap_or_else(|miss| Err(miss_error(miss, header)))
    }

    fn check(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
        generation: u64,
    ) -> Result<Identity, Error> {
        let validation = self
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::algorithm(&format!("{alg:?}")))?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| map_jwt_error(&e, alg))?;
        let identity = self.identity(&data.claims)?;
        self.verified.insert(token, &identity, generation);
        Ok(identity)
    }

    /// Maps the claims (already checked: signature, exp, nbf, iss, aud, sub present).
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, Error> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::malformed("the `sub` claim must be a non-empty string"))?;
        let expires_at = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
            .ok_or_else(|| Error::malformed("the `exp` claim must be a number"))?;
        let groups_error = || {
            Error::malformed(format!(
                "the `{}` claim must be a string or an array of strings",
                self.groups_claim
            ))
        };
        let groups = match claim(claims, &self.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(group)) => vec![group.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(groups_error)?,
            Some(_) => return Err(groups_error()),
        };
        let agent = match claims.get("agent") {
            None | Some(Value::Null) => None,
            Some(Value::String(agent)) => Some(agent.clone()),
            Some(_) => return Err(Error::malformed("the `agent` claim must be a string")),
        };
        Ok(Identity {
            sub: sub.to_owned(),
            groups,
            agent,
            expires_at,
        })
    }

    fn current(&self) -> Arc<KeySet> {
        // A poisoned lock still holds a whole KeySet: writers only swap the Arc.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn store(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.verified.clear();
    }

    /// True (and the clock restarted) when a reload is allowed now.
    fn refresh_due(&self) -> bool {
        let mut last = self
            .last_refresh
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match *last {
            Some(at) if now.duration_since(at) < self.refetch_interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("source", &self.source)
            .field("keys", &self.key_count())
            .field("hs256", &self.hs256.is_some())
            .finish_non_exhaustive()
    }
}

fn validation(alg: Algorithm, options: &VerifierOptions) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = options.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.set_issuer(&[&options.issuer]);
    v.set_audience(&[&options.audience]);
    // jsonwebtoken skips `iss` when it is absent; requiring it closes that gap.
    v.set_required_spec_claims(&REQUIRED_CLAIMS);
    v
}

fn parse_header(token: &str) -> Result<TokenHeader, Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::malformed(format!(
            "the token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::malformed(
            "a JWT is three base64url parts separated by dots",
        ));
    };
    if head.is_empty() || payload.is_empty() {
        return Err(Error::malformed("the token header or payload is empty"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| Error::malformed("the token header is not base64url"))?;
    let fields: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| Error::malformed("the token header is not a JSON object"))?;
    if fields.contains_key("crit") {
        return Err(Error::malformed(
            "critical header extensions (`crit`) are not supported",
        ));
    }
    let name = fields
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::malformed("the token header has no `alg`"))?;
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        "HS256" => Algorithm::HS256,
        other => return Err(Error::algorithm(other)),
    };
    let kid = match fields.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Error::malformed("the token's `kid` is not a string")),
    };
    Ok(TokenHeader { alg, kid })
}

/// A claim by name, or by a dotted path into nested objects (`realm_access.roles`) when
/// no top-level claim has that exact name.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn miss_error(miss: Miss, header: &TokenHeader) -> Error {
    match miss {
        Miss::Unknown | Miss::Ambiguous => Error::unknown_key(header.kid.as_deref()),
        Miss::WrongAlgorithm => Error::algorithm(&format!("{:?}", header.alg)),
    }
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error, alg: Algorithm) -> Error {
    match e.kind() {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::ExpiredSignature => Error::Expired,
        ErrorKind::ImmatureSignature => Error::NotYetValid,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => Error::algorithm(&format!("{alg:?}")),
        // The claim names come from REQUIRED_CLAIMS, never from the token.
        ErrorKind::MissingRequiredClaim(name) => Error::malformed(format!(
            "the `{name}` claim is missing or not of the right type"
        )),
        ErrorKind::InvalidClaimFormat(name) => {
            Error::malformed(format!("the `{name}` claim is not of the right type"))
        }
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Error::jwks("a JWKS key could not be used"),
        // Base64/JSON/UTF-8 errors can quote the input: keep their text out.
        _ => Error::malformed("the token is not base64url-encoded JSON"),
    }
}

fn read_file(path: &Path) -> Result<KeySet, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::jwks(format!("cannot read {} ({e})", path.display())))?;
    KeySet::parse(&bytes).map_err(|why| Error::jwks(format!("{}: {why}", path.display())))
}

/// Fetches on a thread of its own with a one-off runtime: callable from sync code and
/// from inside a tokio runtime alike (a nested `block_on` would panic).
fn fetch_url_blocking(url: &str) -> Result<KeySet, Error> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::jwks(format!("cannot start a runtime to fetch {url} ({e})"))
                    })?
                    .block_on(fetch_url(url))
            })
            .join()
            .unwrap_or_else(|_| Err(Error::jwks(format!("fetching {url} failed unexpectedly"))))
    })
}

async fn fetch_url(url: &str) -> Result<KeySet, Error> {
    let bytes = fetch::get(url, FETCH_TIMEOUT).await.map_err(Error::jwks)?;
    KeySet::parse(&bytes).map_err(|why| Error::jwks(format!("{url}: {why}")))
}

/// The outcome of [`Verifier::first_attempt`].
enum Attempt {
    Done(Result<Identity, Error>),
    Reload(TokenHeader),
}
