//! What a mask strategy does to one text value (SPEC "Masking"): `redact`, `null`, `hash`
//! (keyed HMAC-SHA256, stable, so joins and GROUP BY over masked values still match),
//! `partial` (all but the last four letters and digits starred) and `email` (the local
//! part cut to its first character). A strategy that cannot produce text (`null`) gives
//! SQL NULL. Values of types that are not text are never rewritten as text: the caller
//! sends NULL for them instead, so a boolean stays a boolean.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::policy::rule::MaskStrategy;

/// What a redacted value reads.
pub const REDACTED: &str = "[redacted]";

/// The key of the `hash` strategy (from `[mask] hash_key_env` or `hash_key_file`).
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    pub fn new(key: impl Into<Vec<u8>>) -> HashKey {
        HashKey(key.into())
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// `value` masked by `strategy`; `None` is SQL NULL.
pub fn apply(
    strategy: MaskStrategy,
    value: &[u8],
    key: &HashKey,
) -> Option<std::borrow::Cow<'static, [u8]>> {
    use std::borrow::Cow;
    match strategy {
        MaskStrategy::Null => None,
        MaskStrategy::Redact => Some(Cow::Borrowed(REDACTED.as_bytes())),
        MaskStrategy::Hash => Some(Cow::Owned(hash(value, key).into_bytes())),
        MaskStrategy::Partial => Some(Cow::Owned(partial(value))),
        MaskStrategy::Email => Some(Cow::Owned(email(value))),
    }
}

/// `h:` and 24 hex digits of HMAC-SHA256(key, value).
pub fn hash(value: &[u8], key: &HashKey) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(value);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(26);
    out.push_str("h:");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in &digest[..12] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Every letter and digit but the last four becomes `*`; separators stay, so
/// `4111 1111 1111 1111` reads `**** **** **** 1111`. Non-ASCII characters are starred
/// whole.
pub fn partial(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(value);
    let keep_from = {
        let mut kept = 0;
        let mut at = text.len();
        for (i, c) in text.char_indices().rev() {
            if c.is_alphanumeric() {
                if kept == 4 {
                    break;
                }
                kept += 1;
                at = i;
            }
        }
        // Values of four or fewer letters and digits are starred whole.
        if kept < 4 { text.len() } else { at }
    };
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if i >= keep_from || !c.is_alphanumeric() {
            out.push(c);
        } else {
            out.push('*');
        }
    }
    out.into_bytes()
}

/// `jane.doe@example.com` reads `j***@example.com`; a value without `@` is [`partial`].
pub fn email(value: &[u8]) -> Vec<u8> {
    let Some(at) = value.iter().rposition(|&b| b == b'@') else {
        return partial(value);
    };
    let first = String::from_utf8_lossy(&value[..at])
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default();
    let mut out = first.into_bytes();
    out.extend_from_slice(b"***");
    out.extend_from_slice(&value[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<std::borrow::Cow<'_, [u8]>>) -> Option<String> {
        v.map(|v| String::from_utf8(v.into_owned()).expect("utf-8"))
    }

    #[test]
    fn each_strategy_on_a_text_value() {
        let key = HashKey::new("k");
        let v = b"jane.doe@example.com";
        assert_eq!(
            text(apply(MaskStrategy::Redact, v, &key)).as_deref(),
            Some(REDACTED)
        );
        assert_eq!(apply(MaskStrategy::Null, v, &key), None);
        assert_eq!(
            text(apply(MaskStrategy::Email, v, &key)).as_deref(),
            Some("j***@example.com")
        );
        assert_eq!(
            text(apply(MaskStrategy::Partial, b"4111 1111 1111 1111", &key)).as_deref(),
            Some("**** **** **** 1111")
        );
        assert_eq!(partial(b"abc"), b"***");
    }

    #[test]
    fn hashing_is_stable_per_key_and_hides_the_value() {
        let (a, b) = (HashKey::new("one"), HashKey::new("two"));
        assert_eq!(hash(b"x@y.com", &a), hash(b"x@y.com", &a));
        assert_ne!(hash(b"x@y.com", &a), hash(b"x@y.com", &b));
        assert_ne!(hash(b"x@y.com", &a), hash(b"z@y.com", &a));
        assert!(!hash(b"x@y.com", &a).contains("x@y"));
        assert_eq!(hash(b"", &a).len(), 26);
    }
}
