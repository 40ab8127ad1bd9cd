//! Where refusals and results meet the server's replies, counted in ReadyForQuery
//! messages. No sockets: the relays tell it what went up and what came back.
//!
//! A refused statement goes upstream as a marker (a statement that cannot parse, named
//! by a random token), so the server itself fails it at its place in the stream, skips
//! the rest of an extended-protocol batch up to Sync and reports a truthful transaction
//! status. When the server's error names a marker's token, the client gets the gateway's
//! refusal instead. A marker the server never errored on (it was skipped after an earlier
//! error in the same batch) is dropped once the ReadyForQuery ending its batch comes back.
//!
//! Allowed reads whose events wait for their results are kept here too, each until the
//! ReadyForQuery that ends its results.

use std::collections::VecDeque;

/// What a refused request was replaced with, and what the client is told instead.
struct Marker {
    token: String,
    message: String,
    /// Dropped (unmatched) once this many ReadyForQuery have come back.
    ends_at: u64,
}

/// The stream position of refusals and waiting reads, between the two relays.
pub struct Markers<R> {
    queue: VecDeque<Marker>,
    /// Query and Sync messages sent upstream: each earns one ReadyForQuery.
    syncs_sent: u64,
    /// ReadyForQuery messages seen coming back.
    syncs_seen: u64,
    reads: VecDeque<(R, u64)>,
}

impl<R> Default for Markers<R> {
    fn default() -> Self {
        Markers {
            queue: VecDeque::new(),
            syncs_sent: 0,
            syncs_seen: 0,
            reads: VecDeque::new(),
        }
    }
}

impl<R> Markers<R> {
    /// A simple-protocol Query goes up; returns the ReadyForQuery that ends its results.
    pub fn query(&mut self) -> u64 {
        self.syncs_sent += 1;
        self.syncs_sent
    }

    /// A Parse goes up: its results end with the batch's Sync, which is still to come.
    pub fn parse(&self) -> u64 {
        self.syncs_sent + 1
    }

    /// A Sync goes up.
    pub fn sync(&mut self) {
        self.syncs_sent += 1;
    }

    /// The request ending at `ends_at` is refused with `message`: returns the token of the
    /// marker to send upstream in its place.
    pub fn refuse(&mut self, message: String, ends_at: u64) -> String {
        let token = format!("portcullis_refused_{:016x}", rand::random::<u64>());
        self.queue.push_back(Marker {
            token: token.clone(),
            message,
            ends_at,
        });
        token
    }

    /// `read`'s event waits until the ReadyForQuery `ends_at` has come back.
    pub fn defer(&mut self, read: R, ends_at: u64) {
        self.reads.push_back((read, ends_at));
    }

    /// Whether reads wait for results (the relay then watches result messages).
    pub fn waiting(&self) -> bool {
        !self.reads.is_empty()
    }

    /// Whether an ErrorResponse may be a marker's (the relay reads its text only then).
    pub fn refusing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// An ErrorResponse with message `text` came back: the refusal to send in its place
    /// when it is a marker's error, `None` when it is the server's own.
    pub fn error(&mut self, text: &str) -> Option<String> {
        let i = self.queue.iter().position(|m| text.contains(&m.token))?;
        self.queue.remove(i).map(|m| m.message)
    }

    /// A ReadyForQuery came back: markers of the batch it ends are resolved. Then take
    /// the reads it completes with [`Markers::completed`].
    pub fn ready(&mut self) {
        self.syncs_seen += 1;
        while self
            .queue
            .front()
            .is_some_and(|m| m.ends_at <= self.syncs_seen)
        {
            self.queue.pop_front();
        }
    }

    /// The next read whose results are complete.
    pub fn completed(&mut self) -> Option<R> {
        if self.reads.front()?.1 <= self.syncs_seen {
            self.reads.pop_front().map(|(r, _)| r)
        } else {
            None
        }
    }

    /// Every read still waiting (the session is over; they are recorded as they are).
    pub fn unfinished(&mut self) -> impl Iterator<Item = R> + '_ {
        self.reads.drain(..).map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's syntax error for a marker, as PostgreSQL words it.
    fn syntax_error(token: &str) -> String {
        format!("syntax error at or near \"{token}\"")
    }

    #[test]
    fn a_refused_query_gets_its_refusal_back_instead_of_the_syntax_error() {
        let mut m: Markers<()> = Markers::default();
        let ends = m.query();
        let token = m.refuse("no".into(), ends);
        assert!(token.starts_with("portcullis_refused_"));
        assert!(m.refusing());
        assert_eq!(m.error(&syntax_error(&token)).as_deref(), Some("no"));
        // Matched once: the same text again is the server's own error.
        assert_eq!(m.error(&syntax_error(&token)), None);
        m.ready();
        assert!(!m.refusing());
    }

    #[test]
    fn a_server_error_that_names_no_marker_is_passed_on() {
        let mut m: Markers<()> = Markers::default();
        let ends = m.query();
        let token = m.refuse("no".into(), ends);
        assert_eq!(m.error("relation \"nope\" does not exist"), None);
        assert_eq!(m.error(&syntax_error(&token)).as_deref(), Some("no"));
    }

    #[test]
    fn a_marker_skipped_after_an_earlier_error_in_its_batch_is_dropped_at_its_sync() {
        // Parse(ok) Parse(refused) Sync: the server fails the first one, skips the
        // marker, and answers the Sync; the marker must not match a later batch's error.
        let mut m: Markers<()> = Markers::default();
        let _first = m.parse();
        let ends = m.parse();
        let token = m.refuse("no".into(), ends);
        m.sync();
        assert_eq!(m.error("division by zero"), None);
        m.ready();
        assert!(!m.refusing(), "resolved by the batch's ReadyForQuery");
        let next = m.query();
        assert_eq!(next, 2);
        assert_eq!(m.error(&syntax_error(&token)), None);
    }

    #[test]
    fn markers_of_later_batches_survive_an_earlier_ready_for_query() {
        // Two queries pipelined, the second refused: the first's ReadyForQuery must not
        // drop the second's marker.
        let mut m: Markers<()> = Markers::default();
        let _a = m.query();
        let b = m.query();
        let token = m.refuse("second refused".into(), b);
        m.ready();
        assert!(m.refusing());
        assert_eq!(
            m.error(&syntax_error(&token)).as_deref(),
            Some("second refused")
        );
        m.ready();
        assert!(!m.refusing());
    }

    #[test]
    fn two_refusals_in_one_batch_each_find_their_own_error() {
        let mut m: Markers<()> = Markers::default();
        let ends = m.parse();
        let t1 = m.refuse("one".into(), ends);
        let t2 = m.refuse("two".into(), m.parse());
        m.sync();
        assert_ne!(t1, t2);
        assert_eq!(m.error(&syntax_error(&t2)).as_deref(), Some("two"));
        assert_eq!(m.error(&syntax_error(&t1)).as_deref(), Some("one"));
    }

    #[test]
    fn reads_complete_at_the_ready_for_query_that_ends_their_results() {
        let mut m: Markers<&str> = Markers::default();
        let a = m.query();
        m.defer("a", a);
        let b = m.parse();
        m.defer("b", b);
        assert!(m.waiting());
        // Nothing back yet.
        assert_eq!(m.completed(), None);
        m.ready();
        assert_eq!(m.completed(), Some("a"));
        assert_eq!(m.completed(), None, "b's batch has not been synced");
        m.sync();
        m.ready();
        assert_eq!(m.completed(), Some("b"));
        assert!(!m.waiting());
    }

    #[test]
    fn reads_still_waiting_when_the_session_ends_are_handed_back() {
        let mut m: Markers<u8> = Markers::default();
        let a = m.query();
        m.defer(1, a);
        m.defer(2, m.parse());
        assert_eq!(m.unfinished().collect::<Vec<_>>(), vec![1, 2]);
        assert!(!m.waiting());
    }
}
