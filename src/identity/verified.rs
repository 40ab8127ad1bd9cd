//! Tokens already verified, so that an agent reconnecting with the same token does not
//! pay for a signature check each time (an ES256 or RS256 check is most of what a new
//! connection costs the gateway).
//!
//! A token is remembered by its SHA-256 digest (the token itself is not kept), only
//! after it passed every check, and only until it expires. Whatever the checks depend
//! on besides the token's bytes and the clock is the key set, so a new key set forgets
//! everything: a key the IdP withdrew stops vouching for its tokens at the same moment
//! it would have without this cache.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::Identity;

/// Tokens remembered at most; more distinct valid tokens than this at once can only
/// come from whoever holds a signing key, and cost them a fresh check, nothing else.
const CAPACITY: usize = 4096;

pub(super) struct Verified {
    /// `exp` leeway, as the full check applies it.
    leeway: u64,
    tokens: Mutex<Tokens>,
}

#[derive(Default)]
struct Tokens {
    /// Counts key sets: a check that began under another one is not remembered.
    generation: u64,
    by_digest: HashMap<[u8; 32], Identity>,
}

impl Verified {
    pub(super) fn new(leeway: u64) -> Verified {
        Verified {
            leeway,
            tokens: Mutex::new(Tokens::default()),
        }
    }

    /// The identity `token` was verified as, if it was and has not expired since.
    pub(super) fn get(&self, token: &str) -> Option<Identity> {
        let digest = digest(token);
        let mut tokens = self.lock();
        let identity = tokens.by_digest.get(&digest)?;
        if self.expired(identity, now()) {
            // The full check refuses it, with the reason the agent should read.
            tokens.by_digest.remove(&digest);
            return None;
        }
        Some(identity.clone())
    }

    /// The current key set's number, read before a check begins.
    pub(super) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers a token that passed every check, unless the keys it was checked
    /// against have been replaced since (`generation` is from before the check).
    pub(super) fn insert(&self, token: &str, identity: &Identity, generation: u64) {
        let digest = digest(token);
        let mut tokens = self.lock();
        if tokens.generation != generation {
            return;
        }
        if tokens.by_digest.len() >= CAPACITY {
            let now = now();
            tokens.by_digest.retain(|_, id| !self.expired(id, now));
            if tokens.by_digest.len() >= CAPACITY {
                tokens.by_digest.clear();
            }
        }
        tokens.by_digest.insert(digest, identity.clone());
    }

    /// Forgets every token: the key set changed.
    pub(super) fn clear(&self) {
        let mut tokens = self.lock();
        tokens.generation += 1;
        tokens.by_digest.clear();
    }

    /// jsonwebtoken's rule: expired once `exp` is earlier than now minus the leeway.
    fn expired(&self, identity: &Identity, now: u64) -> bool {
        identity.expires_at < now.saturating_sub(self.leeway)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tokens> {
        // Every update leaves the map whole, so a poisoned lock still holds a usable one.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The clock jsonwebtoken checks `exp` against.
fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: u64) -> Identity {
        Identity {
            sub: "agent".into(),
            groups: vec!["dev".into()],
            agent: None,
            expires_at,
        }
    }

    #[test]
    fn a_token_is_remembered_until_it_expires_and_forgotten_with_the_keys() {
        let seen = Verified::new(30);
        let later = now() + 600;
        let first = seen.generation();
        seen.insert("a.b.c", &identity(later), first);
        assert_eq!(seen.get("a.b.c"), Some(identity(later)));
        assert_eq!(seen.get("a.b.d"), None, "another token is not this one");

        seen.clear();
        assert_eq!(seen.get("a.b.c"), None, "a new key set forgets it");
        seen.insert("a.b.c", &identity(later), first);
        assert_eq!(seen.get("a.b.c"), None, "checked against the old keys");

        // Within the leeway it still holds, as the full check would say; past it, not.
        let keys = seen.generation();
        seen.insert("in.leeway.c", &identity(now() - 10), keys);
        assert!(seen.get("in.leeway.c").is_some());
        seen.insert("expired.b.c", &identity(now() - 31), keys);
        assert_eq!(seen.get("expired.b.c"), None);
        assert!(
            !seen.lock().by_digest.contains_key(&digest("expired.b.c")),
            "dropped"
        );
    }

    #[test]
    fn a_full_cache_drops_expired_tokens_first_and_stays_bounded() {
        let seen = Verified::new(0);
        let later = now() + 600;
        let keys = seen.generation();
        for i in 0..CAPACITY - 1 {
            seen.insert(&format!("live.{i}.c"), &identity(later), keys);
        }
        seen.insert("old.b.c", &identity(now() - 5), keys);
        assert_eq!(seen.lock().by_digest.len(), CAPACITY);
        seen.insert("new.b.c", &identity(later), keys);
        assert_eq!(
            seen.lock().by_digest.len(),
            CAPACITY,
            "the expired one made room"
        );
        assert!(seen.get("live.0.c").is_some() && seen.get("new.b.c").is_some());
        seen.insert("one.more.c", &identity(later), keys);
        assert!(seen.lock().by_digest.len() <= CAPACITY);
        assert!(seen.get("one.more.c").is_some());
    }
}
