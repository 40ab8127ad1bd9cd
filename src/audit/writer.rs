//! The writer: one thread that owns the store's connection, fed by a bounded channel.
//!
//! Records arrive in the order the gateways send them; the writer gives each event the
//! next `seq`, chains its hash, and keeps it in an open batch. While a batch is open, a
//! record nobody waits for does not wake the writer: it takes such records off the
//! channel in bulk when the batch is due, or when a record somebody waits for, a flush
//! or a channel three-quarters full calls it. A batch is appended with
//! DuckDB's Appender (as Arrow record batches: the row appender cannot append lists) and
//! committed in one transaction when
//!
//! * it holds [`WriterOptions::max_batch`] rows, or
//! * its oldest record is [`WriterOptions::max_delay`] old (100 ms by default: what a
//!   crash can lose of records nobody waited for), or
//! * it holds [`WriterOptions::max_batch_bytes`] of text, or
//! * somebody flushes (an auditor's query does, so it sees everything recorded before it).
//!
//! # Durable before committed
//!
//! A record somebody waits for (a write under `audit.durability = "writes"`) is made
//! durable in the [journal](super::journal), not by a DuckDB commit: when a caller waits
//! and the channel is momentarily empty, the writer appends the open batch's records to
//! the journal, syncs it and answers every waiter at once (group commit: whatever
//! arrived meanwhile rides along). The batch stays open for DuckDB, which gets it on
//! the usual terms above; the journal is emptied after each commit and applied by the
//! next start after a crash. Should the journal fail, the writer commits instead.
//!
//! # When the channel is full
//!
//! [`AuditHandle::record`] waits (and [`AuditHandle::record_blocking`] blocks) until the
//! writer takes a record off it: a gateway that outruns the store slows down to its pace,
//! and no record is dropped.
//!
//! # When a commit fails
//!
//! The writer rolls back, reopens the store if DuckDB gave up on the connection (it
//! invalidates a database after some failures, running out of memory among them), reads
//! the chain's head again, and writes the batch's records one by one, in order, each in
//! its own commit. A record that still cannot be committed is replaced in the chain by an
//! `error` event saying so, and the record itself is kept, as JSON, in the file beside
//! the store named `<store>.refused`; whoever still waits for it gets
//! [`Error::Unrecorded`] (a record already in the journal was answered, and its request
//! went on). Everyone else goes on, and the chain has no gap. Only when the store cannot
//! be reopened does the writer stop: every waiting ticket and every later `record` then
//! returns [`Error::Failed`], and the gateway refuses new work.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use duckdb::Connection;
use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use duckdb::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::chain::{self, Fields};
use super::journal::{self, Frame, FrameRef, Journal};
use super::record::{Approval, Event, Record, SessionEnd, SessionStart};
use super::{Error, Store, schema};

/// `audit.durability`: when a record counts as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Events flagged [`Event::must_be_durable`] (writes, DDL, pushes) and approval
    /// steps are acknowledged once committed; the rest once queued, and committed within
    /// [`WriterOptions::max_delay`].
    #[default]
    Writes,
    /// Every record is acknowledged once committed.
    All,
    /// Every record is acknowledged once queued.
    Async,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Durability> {
        match s {
            "writes" => Some(Durability::Writes),
            "all" => Some(Durability::All),
            "async" => Some(Durability::Async),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Writes => "writes",
            Durability::All => "all",
            Durability::Async => "async",
        }
    }

    fn waits_for(self, record: &Record) -> bool {
        match self {
            Durability::Writes => record.must_be_durable(),
            Durability::All => true,
            Durability::Async => false,
        }
    }
}

/// How the writer runs; everything can default.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub durability: Durability,
    /// Records the channel holds before `record` waits.
    pub queue: usize,
    /// Rows per commit at most.
    pub max_batch: usize,
    /// Text per commit at most (statements, results, ...): with rows not yet
    /// checkpointed, what bounds the store's memory whatever arrives.
    pub max_batch_bytes: usize,
    /// How long a record nobody waits for may stay uncommitted.
    pub max_delay: Duration,
    /// DuckDB's memory limit for the writer (its buffer cache), e.g. `"256MB"`.
    pub memory_limit: String,
    /// How long an auditor's query may run before it is cancelled.
    pub query_timeout: Duration,
    /// Fault injection for tests: a commit holding an event this says yes to fails
    /// before it reaches DuckDB, as a commit that ran out of memory would.
    #[doc(hidden)]
    pub fail_commit_of: Option<fn(&Event) -> bool>,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            durability: Durability::Writes,
            queue: 8192,
            max_batch: 8192,
            max_batch_bytes: 8 << 20,
            max_delay: Duration::from_millis(100),
            memory_limit: "256MB".into(),
            query_timeout: Duration::from_secs(30),
            fail_commit_of: None,
        }
    }
}

type Ack = oneshot::Sender<Result<(), Error>>;

enum Msg {
    Record(Record, Option<Ack>),
    Flush(Ack),
    Shutdown(Ack),
}

// The channel allocates its slots 32 at a time; at 160 bytes a message (the records
// unboxed) each block was 5 KiB, past the allocator's per-thread cache.
const _: () = assert!(std::mem::size_of::<Msg>() <= 32);

struct Shared {
    failed: OnceLock<Arc<str>>,
    /// Wakes the writer while its batch is open: for a record somebody waits for, a
    /// flush, a stop, or a channel three-quarters full. Other records do not wake it.
    wake: tokio::sync::Notify,
    committed_events: AtomicU64,
    commits: AtomicU64,
    journal_syncs: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn error(&self) -> Error {
        match self.failed.get() {
            Some(reason) => Error::Failed(reason.clone()),
            None => Error::Closed,
        }
    }
}

/// Counters since the writer started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    pub committed_events: u64,
    pub commits: u64,
    /// Writes of the journal that answered waiters.
    pub journal_syncs: u64,
    /// Records waiting in the channel.
    pub queued: usize,
}

/// The gateways' side of the writer; clone it freely.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    durability: Durability,
    reader: Arc<Reader>,
}

/// The connection auditors' queries run on: never the writer's, so a long query cannot
/// hold up the agents' writes, and each query runs in a read-only transaction.
struct Reader {
    conn: Mutex<duckdb::Connection>,
    /// Replaced with the connection when the writer reopens the store.
    interrupt: Mutex<Arc<duckdb::InterruptHandle>>,
    timeout: Duration,
}

/// Where one auditor's query is: waiting for the reader, running, or given up on.
const WAITING: u8 = 0;
const RUNNING: u8 = 1;
const GIVEN_UP: u8 = 2;
const DONE: u8 = 3;

/// What [`AuditHandle::record`] returns: resolves once the record is as durable as
/// `audit.durability` requires (at once for records that need not wait).
#[must_use = "a ticket that is never awaited acknowledges nothing"]
pub struct Ticket {
    rx: Option<oneshot::Receiver<Result<(), Error>>>,
    shared: Arc<Shared>,
}

impl Ticket {
    /// Whether the record waits for a commit (false: it was acknowledged when queued).
    pub fn waits(&self) -> bool {
        self.rx.is_some()
    }

    /// Waits until the record is durable. Do not call from inside a tokio runtime; use
    /// [`Ticket::durable`] there.
    pub fn wait(self) -> Result<(), Error> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(self.shared.error())),
        }
    }

    /// Waits until the record is durable.
    pub async fn durable(self) -> Result<(), Error> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| Err(self.shared.error())),
        }
    }
}

impl AuditHandle {
    /// Opens the store at `path` (creating it and its schema) on the caller's thread, so an
    /// unusable store is reported at once, and starts the writer thread.
    ///
    /// ```
    /// use portcullis::audit::{AuditHandle, Decision, Event, Protocol, WriterOptions};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("audit.duckdb");
    /// let audit = AuditHandle::start(&path, WriterOptions::default()).unwrap();
    /// let mut e = Event::new("s1", Protocol::Postgres, "app", "query", Decision::Allowed);
    /// e.statement = Some("DELETE FROM t WHERE id = 1".into());
    /// e.must_be_durable = true;
    /// audit.record_blocking(e).unwrap().wait().unwrap(); // committed
    /// audit.shutdown().unwrap();
    /// assert!(portcullis::audit::verify(&path).unwrap().broken.is_none());
    /// ```
    pub fn start(path: &Path, options: WriterOptions) -> Result<AuditHandle, Error> {
        let store = Store::open_with(path, schema::Access::Write, Some(&options.memory_limit))?;
        let conn = store.into_connection();
        let reader_conn = conn.try_clone().map_err(|e| Error::open(path, e))?;
        let reader = Arc::new(Reader {
            interrupt: Mutex::new(reader_conn.interrupt_handle()),
            conn: Mutex::new(reader_conn),
            timeout: options.query_timeout,
        });
        let (seq, prev) = chain::head(&conn)
            .map_err(|e| Error::open(path, e))?
            .unwrap_or((0, chain::GENESIS));
        let journal = Journal::create(path).map_err(|e| {
            Error::open(
                &journal::path_for(path),
                format!("cannot create the journal: {e}"),
            )
        })?;
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let shared = Arc::new(Shared {
            failed: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
            committed_events: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            journal_syncs: AtomicU64::new(0),
            thread: Mutex::new(None),
        });
        let durability = options.durability;
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            reader: reader.clone(),
            seq,
            prev,
            scratch: Vec::with_capacity(1024),
            batch: Batch::default(),
            opened: None,
            journal,
            options,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::open(path, format!("cannot start the writer thread: {e}")))?;
        *shared.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(AuditHandle {
            tx,
            shared,
            durability,
            reader,
        })
    }

    fn prepare(&self, mut record: Record) -> Result<(Msg, Ticket), Error> {
        self.check()?;
        if let Record::Event(e) = &mut record {
            e.bound();
        }
        let (ack, rx) = if self.durability.waits_for(&record) {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let ticket = Ticket {
            rx,
            shared: self.shared.clone(),
        };
        Ok((Msg::Record(record, ack), ticket))
    }

    /// Queues a record, waiting while the channel is full.
    pub async fn record(&self, record: impl Into<Record>) -> Result<Ticket, Error> {
        let (msg, ticket) = self.prepare(record.into())?;
        self.tx.send(msg).await.map_err(|_| self.shared.error())?;
        self.sent(ticket.waits());
        Ok(ticket)
    }

    /// Wakes the writer when the record just queued cannot wait for the open batch's
    /// deadline. A wake-up per statement (a futex call on both threads) was a
    /// measurable share of a read's cost; reads are taken off the channel in bulk.
    fn sent(&self, urgent: bool) {
        if urgent || self.tx.capacity() < self.tx.max_capacity() / 4 {
            self.shared.wake.notify_one();
        }
    }

    /// Queues a record, blocking while the channel is full. Not from inside a tokio
    /// runtime (use [`AuditHandle::record`]).
    pub fn record_blocking(&self, record: impl Into<Record>) -> Result<Ticket, Error> {
        let (msg, ticket) = self.prepare(record.into())?;
        self.tx
            .blocking_send(msg)
            .map_err(|_| self.shared.error())?;
        self.sent(ticket.waits());
        Ok(ticket)
    }

    /// Runs an auditor's read-only query on the live store, after committing what is
    /// queued, on a connection of its own inside a read-only transaction, cancelled
    /// after `query_timeout`. Rejects anything but a single query over the audit tables,
    /// as `portcullis audit sql` does.
    pub async fn query(&self, sql: &str) -> Result<super::QueryResult, Error> {
        super::check_read_only(sql)?;
        self.flush().await?;
        let state = Arc::new(std::sync::atomic::AtomicU8::new(WAITING));
        let task = {
            let (reader, state, sql) = (self.reader.clone(), state.clone(), sql.to_string());
            tokio::task::spawn_blocking(move || {
                let conn = reader.conn.lock().unwrap_or_else(|p| p.into_inner());
                if state
                    .compare_exchange(WAITING, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    return Err(Error::TimedOut(reader.timeout));
                }
                let result = super::query::read_only(&conn, &sql);
                let _ = state.compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst);
                result
            })
        };
        match tokio::time::timeout(self.reader.timeout, task).await {
            Ok(joined) => joined.unwrap_or_else(|e| Err(Error::Query(e.to_string()))),
            Err(_) => {
                // Interrupt only a query of ours that is still running; one still
                // waiting for the reader will not start.
                if state.swap(GIVEN_UP, Ordering::SeqCst) == RUNNING {
                    let interrupt = self
                        .reader
                        .interrupt
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    interrupt.interrupt();
                }
                Err(Error::TimedOut(self.reader.timeout))
            }
        }
    }

    /// `Ok` while the writer runs; the reason it stopped otherwise.
    pub fn check(&self) -> Result<(), Error> {
        if self.shared.failed.get().is_some() || self.tx.is_closed() {
            return Err(self.shared.error());
        }
        Ok(())
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            committed_events: self.shared.committed_events.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
            journal_syncs: self.shared.journal_syncs.load(Ordering::Relaxed),
            queued: self.tx.max_capacity() - self.tx.capacity(),
        }
    }

    /// Commits everything queued before this call.
    pub async fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| self.shared.error())?;
        self.sent(true);
        rx.await.unwrap_or_else(|_| Err(self.shared.error()))
    }

    /// Commits everything queued before this call (blocking; not inside a runtime).
    pub fn flush_blocking(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .blocking_send(Msg::Flush(tx))
            .map_err(|_| self.shared.error())?;
        self.sent(true);
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(self.shared.error()))
    }

    /// Commits what is queued, stops the writer and waits for its thread (blocking; not
    /// inside a runtime). Other handles' later records fail with [`Error::Closed`].
    pub fn shutdown(self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let result = match self.tx.blocking_send(Msg::Shutdown(tx)) {
            Ok(()) => {
                self.sent(true);
                rx.blocking_recv()
                    .unwrap_or_else(|_| Err(self.shared.error()))
            }
            Err(_) => Err(self.shared.error()),
        };
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            thread.join().ok();
        }
        match (result, self.shared.failed.get()) {
            (_, Some(reason)) => Err(Error::Failed(reason.clone())),
            (Err(Error::Closed), None) | (Ok(()), None) => Ok(()),
            (Err(e), None) => Err(e),
        }
    }
}

/// Records taken off the channel and not yet committed.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    /// `(seq, prev_hash, hash)` of each event, hex.
    links: Vec<(i64, String, String)>,
    starts: Vec<SessionStart>,
    ends: Vec<SessionEnd>,
    approvals: Vec<Approval>,
    /// The records in arrival order: which list, and where in it.
    order: Vec<(Slot, usize)>,
    /// Each waiter with the record it waits for (its place in `order`); `None`: a flush.
    acks: Vec<(Option<usize>, Ack)>,
    /// Text held, roughly.
    bytes: usize,
    /// How many of `order` the journal holds.
    journaled: usize,
}

#[derive(Clone, Copy)]
enum Slot {
    Event,
    Start,
    End,
    Approval,
}

impl Batch {
    fn rows(&self) -> usize {
        self.order.len()
    }

    /// Adds `record`, an event chained after `head` (the last `seq` and hash given out,
    /// moved on); returns its place in `order`.
    fn add(
        &mut self,
        record: Record,
        head: (&mut i64, &mut [u8; 32]),
        scratch: &mut Vec<u8>,
    ) -> usize {
        self.bytes += text_bytes(&record);
        let place = match record {
            Record::Event(e) => {
                let (seq, prev) = head;
                *seq += 1;
                let hash = Fields::of(*seq, &e).hash(prev, scratch);
                self.links.push((*seq, chain::hex(prev), chain::hex(&hash)));
                *prev = hash;
                self.events.push(*e);
                (Slot::Event, self.events.len() - 1)
            }
            Record::SessionStart(s) => {
                self.starts.push(*s);
                (Slot::Start, self.starts.len() - 1)
            }
            Record::SessionEnd(s) => {
                self.ends.push(*s);
                (Slot::End, self.ends.len() - 1)
            }
            Record::Approval(a) => {
                self.approvals.push(*a);
                (Slot::Approval, self.approvals.len() - 1)
            }
        };
        self.order.push(place);
        self.order.len() - 1
    }

    /// The `k`th record, as the journal holds it.
    fn frame(&self, k: usize) -> FrameRef<'_> {
        let (slot, i) = self.order[k];
        match slot {
            Slot::Event => FrameRef::Event {
                seq: self.links[i].0,
                event: &self.events[i],
            },
            Slot::Start => FrameRef::SessionStart(&self.starts[i]),
            Slot::End => FrameRef::SessionEnd(&self.ends[i]),
            Slot::Approval => FrameRef::Approval(&self.approvals[i]),
        }
    }

    /// The records in arrival order, each with its waiters, and the flushes' waiters.
    fn into_records(self) -> (Vec<(Record, Vec<Ack>)>, Vec<Ack>) {
        let mut events = self.events.into_iter();
        let mut starts = self.starts.into_iter();
        let mut ends = self.ends.into_iter();
        let mut approvals = self.approvals.into_iter();
        let mut records: Vec<(Record, Vec<Ack>)> = self
            .order
            .iter()
            .filter_map(|(slot, _)| {
                let record = match slot {
                    Slot::Event => Record::from(events.next()?),
                    Slot::Start => Record::from(starts.next()?),
                    Slot::End => Record::from(ends.next()?),
                    Slot::Approval => Record::from(approvals.next()?),
                };
                Some((record, Vec::new()))
            })
            .collect();
        let mut flushes = Vec::new();
        for (at, ack) in self.acks {
            match at.and_then(|i| records.get_mut(i)) {
                Some((_, acks)) => acks.push(ack),
                None => flushes.push(ack),
            }
        }
        (records, flushes)
    }
}

/// Roughly the text a record holds, for [`WriterOptions::max_batch_bytes`].
fn text_bytes(record: &Record) -> usize {
    let opt = |t: &Option<String>| t.as_ref().map_or(0, String::len);
    match record {
        Record::Event(e) => {
            256 + e.statement.as_deref().map_or(0, str::len)
                + opt(&e.result)
                + opt(&e.message)
                + opt(&e.error)
                + e.prompt.as_deref().map_or(0, str::len)
                + opt(&e.parameters)
                + e.refs.len() * 200
        }
        _ => 256,
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    /// The auditors' connection, reopened with the writer's.
    reader: Arc<Reader>,
    /// The last `seq` given out.
    seq: i64,
    /// The last hash given out.
    prev: [u8; 32],
    scratch: Vec<u8>,
    batch: Batch,
    /// When the open batch got its first record.
    opened: Option<Instant>,
    journal: Journal,
    options: WriterOptions,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                self.fail(format!("cannot start the writer's timer: {e}"));
                return;
            }
        };
        runtime.block_on(self.serve(&mut rx));
        rx.close();
    }

    async fn serve(&mut self, rx: &mut mpsc::Receiver<Msg>) {
        loop {
            let msg = match self.opened {
                None => rx.recv().await,
                Some(opened) => match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if !self.batch.acks.is_empty() {
                            if self.make_durable().is_err() {
                                return;
                            }
                            continue;
                        }
                        // Sleep until the batch is due unless a waiter, a flush or a
                        // filling channel calls (`AuditHandle::sent`).
                        let deadline = opened + self.options.max_delay;
                        let woken =
                            tokio::time::timeout_at(deadline, self.shared.wake.notified()).await;
                        if woken.is_err() && self.commit().is_err() {
                            return;
                        }
                        continue;
                    }
                },
            };
            let outcome = match msg {
                None => {
                    self.commit().ok();
                    return;
                }
                Some(Msg::Record(record, ack)) => {
                    self.push(record, ack);
                    let full = self.batch.rows() >= self.options.max_batch
                        || self.batch.bytes >= self.options.max_batch_bytes;
                    let old = self
                        .opened
                        .is_some_and(|o| o.elapsed() >= self.options.max_delay);
                    if full || old { self.commit() } else { Ok(()) }
                }
                Some(Msg::Flush(ack)) => {
                    self.batch.acks.push((None, ack));
                    self.commit()
                }
                Some(Msg::Shutdown(ack)) => {
                    let ok = self.commit().is_ok();
                    if ok && let Err(e) = self.journal.remove() {
                        tracing::warn!(target: "portcullis::audit", error = %e,
                            "cannot remove the emptied journal");
                    }
                    ack.send(if ok { Ok(()) } else { Err(self.shared.error()) })
                        .ok();
                    return;
                }
            };
            if outcome.is_err() {
                return;
            }
        }
    }

    fn push(&mut self, record: Record, ack: Option<Ack>) {
        if self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        let at = self
            .batch
            .add(record, (&mut self.seq, &mut self.prev), &mut self.scratch);
        if let Some(ack) = ack {
            self.batch.acks.push((Some(at), ack));
        }
    }

    /// Makes the open batch durable in the journal and answers its waiters; the batch
    /// stays open for DuckDB. Commits instead when the journal cannot be written.
    fn make_durable(&mut self) -> Result<(), ()> {
        let written = (|| {
            let b = &self.batch;
            for k in b.journaled..b.order.len() {
                self.journal.push(&b.frame(k))?;
            }
            self.journal.sync()
        })();
        match written {
            Ok(()) => {
                self.batch.journaled = self.batch.order.len();
                self.shared.journal_syncs.fetch_add(1, Ordering::Relaxed);
                for (_, ack) in self.batch.acks.drain(..) {
                    ack.send(Ok(())).ok();
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(target: "portcullis::audit", error = %e,
                    "cannot write the journal; committing to the store instead");
                self.commit()
            }
        }
    }

    /// Empties the journal once what it held is committed.
    fn journal_committed(&mut self) {
        if let Err(e) = self.journal.clear() {
            // Harmless: a replay skips what the store already holds.
            tracing::warn!(target: "portcullis::audit", error = %e, "cannot empty the journal");
        }
    }

    /// Commits the open batch and answers its waiters. A failed commit is retried
    /// record by record (see the module's documentation); `Err` only when the store is
    /// gone for good.
    fn commit(&mut self) -> Result<(), ()> {
        self.opened = None;
        let batch = std::mem::take(&mut self.batch);
        let result = if batch.rows() == 0 {
            Ok(())
        } else {
            write_batch(&self.conn, &batch, self.options.fail_commit_of)
        };
        match result {
            Ok(()) => {
                self.committed(batch.events.len());
                self.journal_committed();
                for (_, ack) in batch.acks {
                    ack.send(Ok(())).ok();
                }
                Ok(())
            }
            Err(e) => {
                let rows = batch.rows();
                tracing::error!(target: "portcullis::audit", records = rows, error = %e,
                    "a commit failed; writing its records again one by one");
                let before = batch.links.first().map_or(self.seq, |(seq, ..)| seq - 1);
                let (records, flushes) = batch.into_records();
                let outcome = self.retry(records, before);
                if let Err(why) = &outcome {
                    let error = self.fail(format!("commit of {rows} records failed ({e}); {why}"));
                    for ack in flushes {
                        ack.send(Err(error.clone())).ok();
                    }
                    return Err(());
                }
                self.journal_committed();
                for ack in flushes {
                    ack.send(Ok(())).ok();
                }
                Ok(())
            }
        }
    }

    fn committed(&self, events: usize) {
        self.shared
            .committed_events
            .fetch_add(events as u64, Ordering::Relaxed);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes `records` of a failed batch one by one, after recovering the connection.
    /// Events already in the store (a commit that failed after it was made durable, such
    /// as a checkpoint that ran out of memory) are not written again: the events after
    /// `seq` `before` are looked up. `Err` when the store cannot be recovered; the
    /// records not yet answered are then answered with the store's failure.
    fn retry(&mut self, records: Vec<(Record, Vec<Ack>)>, before: i64) -> Result<(), String> {
        let mut records = records.into_iter();
        // The store is marked failed before anyone hears of it.
        let fail_rest =
            |me: &Self, records: &mut dyn Iterator<Item = (Record, Vec<Ack>)>, why: &str| {
                let error = me.fail(format!("a commit failed and {why}"));
                for (_, acks) in records {
                    for ack in acks {
                        ack.send(Err(error.clone())).ok();
                    }
                }
            };
        if let Err(why) = self.recover() {
            fail_rest(self, &mut records, &why);
            return Err(why);
        }
        let stored = match self.stored_since(before) {
            Ok(s) => s,
            Err(why) => {
                fail_rest(self, &mut records, &why);
                return Err(why);
            }
        };
        while let Some((record, acks)) = records.next() {
            if let Record::Event(e) = &record
                && stored.contains(&e.event_id)
            {
                for ack in acks {
                    ack.send(Ok(())).ok();
                }
                continue;
            }
            let (seq, prev) = (self.seq, self.prev);
            let substitute = match &record {
                Record::Event(e) => Some(unstorable(e)),
                _ => None,
            };
            self.push(record, None);
            let one = std::mem::take(&mut self.batch);
            self.opened = None;
            match write_batch(&self.conn, &one, self.options.fail_commit_of) {
                Ok(()) => {
                    self.committed(one.events.len());
                    for ack in acks {
                        ack.send(Ok(())).ok();
                    }
                }
                Err(e) => {
                    (self.seq, self.prev) = (seq, prev);
                    let kept = match journal::keep_refused(&self.path, &one.frame(0)) {
                        Ok(file) => format!("; the record is kept in {}", file.display()),
                        Err(e) => format!("; nor could it be kept aside: {e}"),
                    };
                    let why: Arc<str> = format!("{e}{kept}").into();
                    tracing::error!(target: "portcullis::audit", error = %why,
                        "a record could not be committed");
                    for ack in acks {
                        ack.send(Err(Error::Unrecorded(why.clone()))).ok();
                    }
                    if let Err(why) = self.recover() {
                        fail_rest(self, &mut records, &why);
                        return Err(why);
                    }
                    // The chain says an event was lost, and why, in its place.
                    if let Some(mut sub) = substitute {
                        sub.message = Some(format!("{}: {why}", sub.message.unwrap_or_default()));
                        self.push(Record::from(sub), None);
                        let one = std::mem::take(&mut self.batch);
                        self.opened = None;
                        if let Err(e) = write_batch(&self.conn, &one, self.options.fail_commit_of) {
                            let why = format!("not even a note of a lost record: {e}");
                            fail_rest(self, &mut records, &why);
                            return Err(why);
                        }
                        self.committed(1);
                    }
                }
            }
        }
        Ok(())
    }

    /// Rolls back, reopens the store, and takes the chain's head from what is committed.
    /// Reopening also when DuckDB still answers: after a commit that ran out of memory,
    /// the same connection keeps failing smaller ones (measured: a 16 MB limit, 238
    /// single-record commits, then none), a new one does not.
    fn recover(&mut self) -> Result<(), String> {
        self.conn.execute_batch("ROLLBACK").ok();
        self.reopen()?;
        let head = chain::head(&self.conn).map_err(|e| format!("cannot read the chain: {e}"))?;
        (self.seq, self.prev) = head.unwrap_or((0, chain::GENESIS));
        Ok(())
    }

    /// Closes both connections (the database with them: two open at once would both
    /// write the file) and opens the store again, replaying its WAL.
    fn reopen(&mut self) -> Result<(), String> {
        tracing::warn!(target: "portcullis::audit", "reopening the audit store");
        let mut reader = self.reader.conn.lock().unwrap_or_else(|p| p.into_inner());
        let placeholder =
            || Connection::open_in_memory().map_err(|e| format!("cannot reopen the store: {e}"));
        *reader = placeholder()?;
        self.conn = placeholder()?;
        let store = Store::open_with(
            &self.path,
            schema::Access::Reopen,
            Some(&self.options.memory_limit),
        )
        .map_err(|e| format!("cannot reopen the store: {e}"))?;
        let conn = store.into_connection();
        *reader = conn
            .try_clone()
            .map_err(|e| format!("cannot reopen the store: {e}"))?;
        *self
            .reader
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = reader.interrupt_handle();
        self.conn = conn;
        Ok(())
    }

    /// The ids of the events committed after `seq`.
    fn stored_since(&self, seq: i64) -> Result<HashSet<String>, String> {
        let read = || -> duckdb::Result<_> {
            let mut stmt = self
                .conn
                .prepare("SELECT event_id FROM events WHERE seq > ?")?;
            let ids = stmt
                .query_map([seq], |r| r.get::<_, String>(0))?
                .collect::<duckdb::Result<_>>()?;
            Ok(ids)
        };
        read().map_err(|e| format!("cannot read what was committed: {e}"))
    }

    fn fail(&self, reason: String) -> Error {
        tracing::error!(target: "portcullis::audit", %reason, "the audit store failed");
        let reason = self.shared.failed.get_or_init(|| reason.into());
        Error::Failed(reason.clone())
    }
}

/// What stands in the chain for an event that could not be committed: its ids, who and
/// where, kind `error`, and why (its text, the likely cause, is not repeated).
fn unstorable(e: &Event) -> Event {
    let mut sub = Event::new(
        e.session_id.clone(),
        e.protocol,
        e.target.clone(),
        super::record::kind::ERROR,
        super::Decision::Error,
    );
    sub.event_id = e.event_id.clone();
    sub.ts_us = e.ts_us;
    sub.subject = e.subject.clone();
    sub.groups = e.groups.clone();
    sub.client_addr = e.client_addr.clone();
    sub.fingerprint = e.fingerprint.clone();
    sub.message = Some(format!(
        "the {} event (decision {}) could not be stored",
        e.kind,
        e.decision.as_str()
    ));
    sub
}

/// Commits what the journal of the store at `store` holds beyond the store (what a
/// killed gateway acknowledged and never committed), then empties the journal; returns
/// how many records it committed. A journal that does not continue the store's chain is
/// an error: the store is not opened over a gap.
pub(super) fn apply_journal(conn: &Connection, store: &Path) -> Result<usize, String> {
    let (frames, torn) =
        journal::read(store).map_err(|e| format!("cannot read the journal: {e}"))?;
    if torn > 0 {
        tracing::warn!(target: "portcullis::audit", bytes = torn,
            "the journal ends in a write a crash cut short (never acknowledged); dropped");
    }
    if frames.is_empty() && torn == 0 {
        return Ok(0);
    }
    let (mut seq, mut prev) = chain::head(conn)
        .map_err(|e| format!("cannot read the chain: {e}"))?
        .unwrap_or((0, chain::GENESIS));
    let started = |id: &str| -> duckdb::Result<bool> {
        conn.prepare_cached("SELECT count(*) FROM sessions WHERE session_id = ?")?
            .query_row([id], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
    };
    let mut batch = Batch::default();
    let mut scratch = Vec::new();
    for frame in frames {
        let record = match frame {
            // Already committed: the journal was not emptied before the crash.
            Frame::Event { seq: s, .. } if s <= seq => continue,
            Frame::Event { seq: s, event } => {
                if s != seq + 1 {
                    return Err(format!(
                        "the journal holds event {s} but the store ends at {seq}"
                    ));
                }
                Record::Event(event)
            }
            Frame::SessionStart(s) => {
                if started(&s.session_id).map_err(|e| e.to_string())? {
                    continue;
                }
                Record::from(s)
            }
            Frame::SessionEnd(e) => Record::from(e),
            Frame::Approval(a) => Record::from(a),
        };
        batch.add(record, (&mut seq, &mut prev), &mut scratch);
    }
    let records = batch.rows();
    if records > 0 {
        write_batch(conn, &batch, None).map_err(|e| format!("cannot commit the journal: {e}"))?;
        tracing::warn!(target: "portcullis::audit", records,
            "committed the records a stopped gateway left in the journal");
    }
    std::fs::write(journal::path_for(store), b"")
        .map_err(|e| format!("cannot empty the journal: {e}"))?;
    Ok(records)
}

fn write_batch(
    conn: &Connection,
    batch: &Batch,
    fail_commit_of: Option<fn(&Event) -> bool>,
) -> duckdb::Result<()> {
    if let Some(fails) = fail_commit_of
        && batch.events.iter().any(fails)
    {
        return Err(duckdb::Error::ToSqlConversionFailure(
            "injected commit failure".into(),
        ));
    }
    let whole = ends_of_starts(batch);
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = (|| {
        if !batch.starts.is_empty() {
            let mut app = conn.appender(schema::SESSIONS)?;
            app.append_record_batch(sessions_batch(&batch.starts, &whole)?)?;
            app.flush()?;
        }
        if !batch.events.is_empty() {
            let mut app = conn.appender(schema::EVENTS)?;
            app.append_record_batch(events_batch(&batch.events, &batch.links)?)?;
            app.flush()?;
            if batch.events.iter().any(|e| !e.refs.is_empty()) {
                let mut app = conn.appender(schema::REF_UPDATES)?;
                app.append_record_batch(refs_batch(&batch.events)?)?;
                app.flush()?;
            }
        }
        for end in &batch.ends {
            if !whole.contains_key(end.session_id.as_str()) {
                end_session(conn, end)?;
            }
        }
        for a in &batch.approvals {
            conn.prepare_cached("DELETE FROM approvals WHERE approval_id = ?")?
                .execute([&a.approval_id])?;
            conn.prepare_cached(
                "INSERT INTO approvals VALUES (?, ?, make_timestamp(?), make_timestamp(?), ?, ?, ?)",
            )?
            .execute(duckdb::params![
                a.approval_id,
                a.event_id,
                a.requested_us,
                a.decided_us,
                a.approver,
                a.state,
                a.reason
            ])?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            conn.execute_batch("ROLLBACK").ok();
            Err(e)
        }
    }
}

/// The ends of sessions whose start is in the same batch, by session: such a session's
/// row is appended whole, with no UPDATE.
fn ends_of_starts(batch: &Batch) -> HashMap<&str, &SessionEnd> {
    if batch.starts.is_empty() || batch.ends.is_empty() {
        return HashMap::new();
    }
    let started: HashSet<&str> = batch.starts.iter().map(|s| s.session_id.as_str()).collect();
    batch
        .ends
        .iter()
        .filter(|e| started.contains(e.session_id.as_str()))
        .map(|e| (e.session_id.as_str(), e))
        .collect()
}

/// Closes a session row committed by an earlier batch. By `session_id` alone DuckDB
/// reads every row of `sessions` (it has no index), a cost that grows with every
/// session the store has seen; with `started_at` as well, its zone maps skip every row
/// group that cannot hold the row. The lookup by id alone remains for ends that do
/// not know their start (older journals) or whose start time does not match.
fn end_session(conn: &Connection, end: &SessionEnd) -> duckdb::Result<()> {
    if let Some(started) = end.started_us {
        let updated = conn
            .prepare_cached(
                "UPDATE sessions SET ended_at = make_timestamp(?), end_reason = ? \
                 WHERE started_at = make_timestamp(?) AND session_id = ?",
            )?
            .execute(duckdb::params![
                end.ended_us,
                end.reason,
                started,
                end.session_id
            ])?;
        if updated > 0 {
            return Ok(());
        }
    }
    conn.prepare_cached(
        "UPDATE sessions SET ended_at = make_timestamp(?), end_reason = ? \
         WHERE session_id = ?",
    )?
    .execute(duckdb::params![end.ended_us, end.reason, end.session_id])?;
    Ok(())
}

fn text_list<'a>(b: &mut ListBuilder<StringBuilder>, items: impl IntoIterator<Item = &'a String>) {
    for s in items {
        b.values().append_value(s);
    }
    b.append(true);
}

fn arrow_error(e: duckdb::arrow::error::ArrowError) -> duckdb::Error {
    duckdb::Error::ToSqlConversionFailure(Box::new(e))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> duckdb::Result<RecordBatch> {
    RecordBatch::try_from_iter(columns).map_err(arrow_error)
}

/// `events` rows in table order ([`schema::EVENT_COLUMNS`]).
fn events_batch(events: &[Event], links: &[(i64, String, String)]) -> duckdb::Result<RecordBatch> {
    let n = events.len();
    let strings = || StringBuilder::with_capacity(n, n * 16);
    let lists = || ListBuilder::new(StringBuilder::new());
    let (mut event_id, mut session_id, mut protocol, mut target, mut subject) =
        (strings(), strings(), strings(), strings(), strings());
    let (mut client_addr, mut prompt, mut kind, mut statement, mut fingerprint) =
        (strings(), strings(), strings(), strings(), strings());
    let (mut decision, mut message, mut result, mut error, mut prev_hash, mut hash) = (
        strings(),
        strings(),
        strings(),
        strings(),
        strings(),
        strings(),
    );
    let mut parameters = strings();
    let (mut groups, mut rule_ids, mut monitored, mut masked) =
        (lists(), lists(), lists(), lists());
    let (mut seq, mut rows, mut duration) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    for (e, (s, prev, h)) in events.iter().zip(links) {
        event_id.append_value(&e.event_id);
        session_id.append_value(&e.session_id);
        seq.append_value(*s);
        ts.append_value(e.ts_us);
        protocol.append_value(e.protocol.as_str());
        target.append_value(&e.target);
        subject.append_option(e.subject.as_deref());
        text_list(&mut groups, e.groups.iter());
        client_addr.append_option(e.client_addr.as_deref());
        prompt.append_option(e.prompt.as_deref());
        kind.append_value(&e.kind);
        statement.append_option(e.statement.as_deref());
        fingerprint.append_option(e.fingerprint.as_deref());
        decision.append_value(e.decision.as_str());
        text_list(&mut rule_ids, &e.rule_ids);
        text_list(&mut monitored, &e.monitored_rules);
        message.append_option(e.message.as_deref());
        rows.append_option(e.rows);
        text_list(&mut masked, &e.masked_columns);
        result.append_option(e.result.as_deref());
        duration.append_option(e.duration_us);
        error.append_option(e.error.as_deref());
        prev_hash.append_value(prev);
        hash.append_value(h);
        parameters.append_option(e.parameters.as_deref());
    }
    let columns: [ArrayRef; 25] = [
        Arc::new(event_id.finish()),
        Arc::new(session_id.finish()),
        Arc::new(seq.finish()),
        Arc::new(ts.finish()),
        Arc::new(protocol.finish()),
        Arc::new(target.finish()),
        Arc::new(subject.finish()),
        Arc::new(groups.finish()),
        Arc::new(client_addr.finish()),
        Arc::new(prompt.finish()),
        Arc::new(kind.finish()),
        Arc::new(statement.finish()),
        Arc::new(fingerprint.finish()),
        Arc::new(decision.finish()),
        Arc::new(rule_ids.finish()),
        Arc::new(monitored.finish()),
        Arc::new(message.finish()),
        Arc::new(rows.finish()),
        Arc::new(masked.finish()),
        Arc::new(result.finish()),
        Arc::new(duration.finish()),
        Arc::new(error.finish()),
        Arc::new(prev_hash.finish()),
        Arc::new(hash.finish()),
        Arc::new(parameters.finish()),
    ];
    batch(schema::EVENT_COLUMNS.into_iter().zip(columns).collect())
}

fn refs_batch(events: &[Event]) -> duckdb::Result<RecordBatch> {
    let (mut event_id, mut name, mut old, mut new, mut kind) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut position = Int32Builder::new();
    let mut forced = BooleanBuilder::new();
    let mut commits = Int64Builder::new();
    for e in events {
        for (i, r) in e.refs.iter().enumerate() {
            event_id.append_value(&e.event_id);
            position.append_value(i32::try_from(i).unwrap_or(i32::MAX));
            name.append_value(&r.name);
            old.append_value(&r.old_oid);
            new.append_value(&r.new_oid);
            kind.append_value(&r.kind);
            forced.append_value(r.forced);
            commits.append_option(r.commits);
        }
    }
    batch(vec![
        ("event_id", Arc::new(event_id.finish()) as ArrayRef),
        ("position", Arc::new(position.finish())),
        ("ref", Arc::new(name.finish())),
        ("old_oid", Arc::new(old.finish())),
        ("new_oid", Arc::new(new.finish())),
        ("kind", Arc::new(kind.finish())),
        ("forced", Arc::new(forced.finish())),
        ("commits", Arc::new(commits.finish())),
    ])
}

/// `sessions` rows for `starts`, with the end of those `whole` holds.
fn sessions_batch(
    starts: &[SessionStart],
    whole: &HashMap<&str, &SessionEnd>,
) -> duckdb::Result<RecordBatch> {
    let (mut id, mut protocol, mut target, mut subject, mut client_addr, mut reason) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut groups = ListBuilder::new(StringBuilder::new());
    let (mut started, mut ended) = (
        TimestampMicrosecondBuilder::new(),
        TimestampMicrosecondBuilder::new(),
    );
    for s in starts {
        id.append_value(&s.session_id);
        protocol.append_value(s.protocol.as_str());
        target.append_value(&s.target);
        subject.append_option(s.subject.as_deref());
        text_list(&mut groups, &s.groups);
        client_addr.append_option(s.client_addr.as_deref());
        started.append_value(s.started_us);
        let end = whole.get(s.session_id.as_str());
        ended.append_option(end.map(|e| e.ended_us));
        reason.append_option(end.and_then(|e| e.reason.as_deref()));
    }
    batch(vec![
        ("session_id", Arc::new(id.finish()) as ArrayRef),
        ("protocol", Arc::new(protocol.finish())),
        ("target", Arc::new(target.finish())),
        ("subject", Arc::new(subject.finish())),
        ("groups", Arc::new(groups.finish())),
        ("client_addr", Arc::new(client_addr.finish())),
        ("started_at", Arc::new(started.finish())),
        ("ended_at", Arc::new(ended.finish())),
        ("end_reason", Arc::new(reason.finish())),
    ])
}
