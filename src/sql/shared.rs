//! Facts by [`quick`](super::quick) key, shared by every session's
//! [`Analyzer`](super::Analyzer): a new connection's first statements are usually
//! shapes another session has read already, and an agent that runs one `psql -c` per
//! command sends nothing but first statements. Each analyzer still answers from its own
//! maps first; this one is only asked when those miss, so a busy session never takes
//! its lock.
//!
//! What it holds is exactly what an analyzer's own maps would hold for the same key
//! (facts that depend on no literal, read from one statement), so sharing them changes
//! no decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::SqlFacts;

/// Quick keys the process keeps at most: at that many the map is emptied and refilled,
/// as an analyzer's own are.
const CAPACITY: usize = 4096;

pub struct SharedShapes {
    capacity: usize,
    /// A quick key → the shape it has and that shape's facts (with no text).
    by_key: Mutex<HashMap<String, (String, SqlFacts)>>,
}

impl SharedShapes {
    pub fn new(capacity: usize) -> SharedShapes {
        SharedShapes {
            capacity,
            by_key: Mutex::new(HashMap::new()),
        }
    }

    /// The one every session of this process uses.
    pub fn process() -> Arc<SharedShapes> {
        static PROCESS: OnceLock<Arc<SharedShapes>> = OnceLock::new();
        Arc::clone(PROCESS.get_or_init(|| Arc::new(SharedShapes::new(CAPACITY))))
    }

    pub(super) fn get(&self, key: &str) -> Option<(String, SqlFacts)> {
        self.lock().get(key).cloned()
    }

    pub(super) fn insert(&self, key: &str, shape: &str, facts: &SqlFacts) {
        let mut by_key = self.lock();
        if by_key.len() >= self.capacity {
            by_key.clear();
        }
        by_key.insert(key.to_string(), (shape.to_string(), facts.clone()));
    }

    /// How many quick keys it knows.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, SqlFacts)>> {
        // Every update leaves the map whole, so a poisoned lock still holds a usable one.
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::Analyzer;

    #[test]
    fn an_analyzer_answers_from_what_another_read_and_keeps_it() {
        let shared = Arc::new(SharedShapes::new(16));
        let mut first = Analyzer::sharing(shared.clone());
        first.analyze("SELECT a FROM shared_t WHERE id = 1");
        assert_eq!(shared.len(), 1);
        // Mark the shared facts, to see where the next analyzer's come from.
        for (_, facts) in shared.lock().values_mut() {
            facts.tables_read = vec!["marked".into()];
        }
        let mut second = Analyzer::sharing(shared.clone());
        let got = second.analyze("SELECT a FROM shared_t WHERE id = 2");
        assert_eq!(got.statements[0].tables_read, ["marked"]);
        assert_eq!(
            got.statements[0].text,
            "SELECT a FROM shared_t WHERE id = 2"
        );
        assert_eq!(second.quick_keys(), 1, "kept in its own maps");

        shared.lock().clear();
        let again = second.analyze("SELECT a FROM shared_t WHERE id = 3");
        assert_eq!(
            again.statements[0].tables_read,
            ["marked"],
            "from its own maps"
        );
        let own = Analyzer::default().analyze("SELECT a FROM shared_t WHERE id = 4");
        assert_eq!(own.statements[0].tables_read, ["shared_t"], "no sharing");
    }
}
