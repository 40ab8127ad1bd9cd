//! A JWKS (RFC 7517 §5) parsed once into verification keys.
//!
//! Only signing keys for the algorithms the gateway accepts survive: RSA (RS256, at
//! least 2048 bits), EC P-256 (ES256) and Ed25519 (EdDSA). Symmetric (`oct`) keys are
//! dropped on purpose: an HMAC key published in a JWKS would let anyone who can read the
//! JWKS mint tokens, and HS256 is only ever checked against the configured secret.
//! Each key's material is validated here, so a broken key is reported when the JWKS is
//! loaded, not when the first token arrives.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Smallest RSA modulus we accept (RFC 7518 §3.3: "2048 bits or larger MUST be used").
const MIN_RSA_BITS: usize = 2048;

/// One usable verification key.
pub(crate) struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// The usable keys of one JWKS document.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Key>,
}

/// Why no key was found for a token.
pub(crate) enum Miss {
    /// No key with this kid (or, without a kid, none of this algorithm): a refresh may help.
    Unknown,
    /// The kid exists but was published for another algorithm: algorithm confusion.
    WrongAlgorithm,
    /// No kid, and several keys of the token's algorithm: we will not guess.
    Ambiguous,
}

impl KeySet {
    /// Parses a JWKS document. Unusable keys are skipped (with a warning); a document
    /// with no usable key at all is an error, since it can verify nothing.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, String> {
        let doc: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("the JWKS is not valid JSON ({e})"))?;
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("the JWKS has no `keys` array")?;
        let mut keys = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            match Key::from_json(entry) {
                Ok(key) => keys.push(key),
                Err(why) => tracing::warn!(key = i, "JWKS key skipped: {why}"),
            }
        }
        if keys.is_empty() {
            return Err("the JWKS has no usable RS256, ES256 or EdDSA signing key".into());
        }
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key a token with this `alg` and `kid` must verify against.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, Miss> {
        match kid {
            Some(kid) => {
                let mut named = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    return Err(Miss::Unknown);
                }
                named
                    .find(|k| k.alg == alg)
                    .map(|k| &k.decoding)
                    .ok_or(Miss::WrongAlgorithm)
            }
            None => {
                let mut same = self.keys.iter().filter(|k| k.alg == alg);
                match (same.next(), same.next()) {
                    (Some(key), None) => Ok(&key.decoding),
                    (None, _) => Err(Miss::Unknown),
                    (Some(_), Some(_)) => Err(Miss::Ambiguous),
                }
            }
        }
    }
}

impl Key {
    fn from_json(entry: &serde_json::Value) -> Result<Key, String> {
        let jwk: Jwk = serde_json::from_value(entry.clone())
            .map_err(|e| format!("not a JWK we can read ({e})"))?;
        let kid = jwk.common.key_id.clone();
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            Some(_) => return Err("not a signature key (`use` is not `sig`)".into()),
        }
        let (alg, decoding) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let n = b64(&p.n, "n")?;
                let e = b64(&p.e, "e")?;
                let bits = bit_len(&n);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key has {bits} bits, fewer than {MIN_RSA_BITS}"
                    ));
                }
                rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                )
                .map_err(|e| format!("invalid RSA key ({e})"))?;
                (
                    Algorithm::RS256,
                    DecodingKey::from_rsa_raw_components(&n, &e),
                )
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                let mut point = vec![0x04];
                point.extend(b64(&p.x, "x")?);
                point.extend(b64(&p.y, "y")?);
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| "invalid P-256 point".to_string())?;
                (Algorithm::ES256, DecodingKey::from_ec_der(&point))
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                let x: [u8; 32] = b64(&p.x, "x")?
                    .try_into()
                    .map_err(|_| "Ed25519 key is not 32 bytes".to_string())?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| "invalid Ed25519 key".to_string())?;
                (Algorithm::EdDSA, DecodingKey::from_ed_der(&x))
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err("symmetric (`oct`) keys are never trusted from a JWKS".into());
            }
            _ => return Err("unsupported key type or curve".into()),
        };
        // A key published with an `alg` is only good for that algorithm.
        if let Some(published) = jwk.common.key_algorithm
            && published != KeyAlgorithm::from(alg)
        {
            return Err(format!(
                "key is published for {published}, which is not allowed"
            ));
        }
        Ok(Key { kid, alg, decoding })
    }
}

fn b64(value: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// Significant bits of a big-endian unsigned integer.
fn bit_len(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(first) => (bytes.len() - first - 1) * 8 + (8 - bytes[first].leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::bit_len;

    #[test]
    fn bit_len_counts_significant_bits() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0xff; 256]), 2048);
    }
}
