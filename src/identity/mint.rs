//! Local keys for demos and tests: generate a private key, publish its JWKS, mint tokens.
//!
//! In production an IdP mints tokens; `portcullis demo`, `portcullis token` and the test
//! suite need to play that IdP with a key on disk. The algorithm follows from the key:
//! RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA. Keys are PKCS#8 PEM (`BEGIN PRIVATE
//! KEY`, what `openssl genpkey` writes); PKCS#1 RSA and SEC1 EC PEM are read too. The
//! `kid` of a key is its RFC 7638 JWK thumbprint, so a token and the JWKS made from the
//! same key always agree without anyone choosing names.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use rsa::traits::PublicKeyParts;

use super::Error;

/// RSA modulus size [`generate_key`] uses.
const RSA_BITS: usize = 2048;

/// Which kind of key [`generate_key`] makes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlg {
    /// EC P-256 (ES256): small keys, fast signatures.
    #[default]
    Es256,
    /// Ed25519 (EdDSA).
    EdDsa,
    /// RSA 2048 (RS256): what most IdPs use; slow to generate.
    Rs256,
}

/// The claims of a minted token.
#[derive(Debug, Clone)]
pub struct MintOptions {
    pub sub: String,
    pub groups: Vec<String>,
    /// How long the token is valid from now.
    pub ttl: Duration,
    pub issuer: String,
    pub audience: String,
    /// The optional `agent` claim: which tool or model acts for `sub`.
    pub agent: Option<String>,
    /// The header `kid`; the key's JWK thumbprint when `None`.
    pub kid: Option<String>,
}

/// Signs a JWT with `key_pem` carrying `iss`, `aud`, `sub`, `groups`, `iat`, `nbf`, `exp`
/// and (when set) `agent`.
///
/// ```
/// use std::time::Duration;
/// use portcullis::identity::{self, KeyAlg, MintOptions};
///
/// let key = identity::generate_key(KeyAlg::Es256).expect("a fresh key");
/// let token = identity::mint(&key, MintOptions {
///     sub: "alice".into(),
///     groups: vec!["dev".into()],
///     ttl: Duration::from_secs(900),
///     issuer: "portcullis-dev".into(),
///     audience: "portcullis".into(),
///     agent: None,
///     kid: None,
/// }).expect("signed");
/// assert_eq!(token.split('.').count(), 3);
/// ```
pub fn mint(key_pem: &str, claims: MintOptions) -> Result<String, Error> {
    let key = PrivateKey::from_pem(key_pem)?;
    if claims.ttl.as_secs() == 0 {
        return Err(Error::key("the token lifetime must be at least one second"));
    }
    let kid = match claims.kid {
        Some(kid) => kid,
        None => key
            .public_jwk()
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| Error::key(format!("cannot compute the key's thumbprint ({e})")))?,
    };
    let now = jsonwebtoken::get_current_timestamp();
    let mut body = serde_json::json!({
        "iss": claims.issuer,
        "aud": claims.audience,
        "sub": claims.sub,
        "groups": claims.groups,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(claims.ttl.as_secs()),
    });
    if let Some(agent) = claims.agent {
        body["agent"] = serde_json::Value::String(agent);
    }
    let mut header = Header::new(key.algorithm());
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, &body, &key.encoding_key()?)
        .map_err(|e| Error::key(format!("signing failed ({e})")))
}

/// The JWKS (`{"keys":[...]}`) that verifies tokens minted with `key_pem`: one public
/// JWK with `alg`, `use: "sig"` and `kid` = the key's RFC 7638 thumbprint.
pub fn jwks_for(key_pem: &str) -> Result<serde_json::Value, Error> {
    let key = PrivateKey::from_pem(key_pem)?;
    let mut jwk = key.public_jwk();
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| Error::key(format!("cannot compute the key's thumbprint ({e})")))?;
    jwk.common.key_id = Some(kid);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::from(key.algorithm()));
    let jwk = serde_json::to_value(&jwk)
        .map_err(|e| Error::key(format!("cannot serialize the JWK ({e})")))?;
    Ok(serde_json::json!({ "keys": [jwk] }))
}

/// A new private key as PKCS#8 PEM (RSA keys are 2048 bits).
pub fn generate_key(alg: KeyAlg) -> Result<String, Error> {
    let pem = match alg {
        KeyAlg::Es256 => p256::SecretKey::random(&mut OsRng).to_pkcs8_pem(LineEnding::LF),
        KeyAlg::EdDsa => {
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            // PKCS#8 v1 (no public key inside): the form `openssl genpkey` writes and
            // every reader accepts.
            ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: secret,
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
        }
        KeyAlg::Rs256 => rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
            .map_err(|e| Error::key(format!("RSA key generation failed ({e})")))?
            .to_pkcs8_pem(LineEnding::LF),
    }
    .map_err(|e| Error::key(format!("cannot encode the key as PEM ({e})")))?;
    Ok(pem.to_string())
}

/// A private key we can sign with.
enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    Ec(p256::SecretKey),
    Ed(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    fn from_pem(pem: &str) -> Result<PrivateKey, Error> {
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(Error::key(
                "encrypted private keys are not supported; decrypt it with `openssl pkcs8`",
            ));
        }
        // Each decoder checks the algorithm OID (and curve), so at most one succeeds.
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::Ec(key));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::Ed(key));
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            return Ok(PrivateKey::Rsa(Box::new(key)));
        }
        if let Ok(key) = p256::SecretKey::from_sec1_pem(pem) {
            return Ok(PrivateKey::Ec(key));
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs1_pem(pem) {
            return Ok(PrivateKey::Rsa(Box::new(key)));
        }
        Err(Error::key(
            "not a PEM private key for RSA, EC P-256 or Ed25519 (expected PKCS#8 `BEGIN PRIVATE KEY`)",
        ))
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            PrivateKey::Rsa(_) => Algorithm::RS256,
            PrivateKey::Ec(_) => Algorithm::ES256,
            PrivateKey::Ed(_) => Algorithm::EdDSA,
        }
    }

    fn encoding_key(&self) -> Result<EncodingKey, Error> {
        let encode_failed =
            |e: &dyn std::fmt::Display| Error::key(format!("cannot encode the key ({e})"));
        Ok(match self {
            PrivateKey::Rsa(key) => EncodingKey::from_rsa_der(
                key.to_pkcs1_der()
                    .map_err(|e| encode_failed(&e))?
                    .as_bytes(),
            ),
            PrivateKey::Ec(key) => EncodingKey::from_ec_der(
                key.to_pkcs8_der()
                    .map_err(|e| encode_failed(&e))?
                    .as_bytes(),
            ),
            PrivateKey::Ed(key) => {
                let v1 = ed25519_dalek::pkcs8::KeypairBytes {
                    secret_key: key.to_bytes(),
                    public_key: None,
                };
                EncodingKey::from_ed_der(
                    v1.to_pkcs8_der().map_err(|e| encode_failed(&e))?.as_bytes(),
                )
            }
        })
    }

    /// The public half as a JWK, without `kid`, `use` or `alg`.
    fn public_jwk(&self) -> Jwk {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let algorithm = match self {
            PrivateKey::Rsa(key) => AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: b64(&key.n().to_bytes_be()),
                e: b64(&key.e().to_bytes_be()),
            }),
            PrivateKey::Ec(key) => {
                let point = key.public_key().to_encoded_point(false);
                // A secret key's public point is never the identity, so both exist.
                let x = point.x().expect("uncompressed non-identity point has x");
                let y = point.y().expect("uncompressed non-identity point has y");
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: b64(x),
                    y: b64(y),
                })
            }
            PrivateKey::Ed(key) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: b64(key.verifying_key().as_bytes()),
            }),
        };
        Jwk {
            common: CommonParameters::default(),
            algorithm,
        }
    }
}
