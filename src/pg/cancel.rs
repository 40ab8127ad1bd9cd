//! CancelRequest: clients get gateway-issued keys (BackendKeyData), never the upstream's;
//! a cancel with a gateway key is forwarded upstream with the real one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a session's queries run: what a cancel for it must be sent to.
#[derive(Debug, Clone)]
pub struct UpstreamKey {
    pub host: String,
    pub port: u16,
    pub pid: u32,
    pub secret: u32,
}

#[derive(Clone, Default)]
pub struct CancelKeys {
    keys: Arc<Mutex<HashMap<(u32, u32), UpstreamKey>>>,
}

impl CancelKeys {
    /// Registers a session and returns the key its client is given.
    pub fn issue(&self, upstream: UpstreamKey) -> (u32, u32) {
        let mut keys = self
            .keys
            .lock()
            .expect("cancel key map lock is never poisoned: no panics while held");
        loop {
            let key = (rand::random::<u32>() & 0x7fff_ffff, rand::random::<u32>());
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(key) {
                slot.insert(upstream);
                return key;
            }
        }
    }

    pub fn lookup(&self, pid: u32, secret: u32) -> Option<UpstreamKey> {
        self.keys
            .lock()
            .expect("cancel key map lock is never poisoned")
            .get(&(pid, secret))
            .cloned()
    }

    pub fn remove(&self, key: (u32, u32)) {
        self.keys
            .lock()
            .expect("cancel key map lock is never poisoned")
            .remove(&key);
    }
}
