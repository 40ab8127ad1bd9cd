//! The intake step. A push body as it arrives: written to the spool file (what is forwarded if the push is
//! allowed) and, at the same time, read by a blocking thread that parses the command list
//! and then indexes the pack into the quarantine while the client is still sending it. A
//! large push is then judged moments after its last byte instead of a whole indexing pass
//! later.
//!
//! The thread waits for a go-ahead between the two steps: the mirror must be refreshed
//! (and the repository locked) before thin-pack bases are looked up in it. Chunks travel
//! over a bounded channel, so a slow indexer slows the client instead of filling memory.

use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::git::Error;
use crate::git::inspect::pack::Quarantine;
use crate::git::upstream::ByteStream;
use crate::git::wire::request::{self, Request, RequestScanner};

/// The command section (commands, capabilities, push options) must fit in this much of
/// the body; the pack after it may be as large as `max_push_bytes`.
pub const MAX_COMMAND_SECTION: usize = 16 << 20;

/// Chunks in flight between the socket and the indexer.
const CHANNEL_CHUNKS: usize = 64;
/// How much the command-list reader asks for at a time.
const READ_SIZE: usize = 64 << 10;

/// Where the indexer puts the quarantine, and what it resolves thin packs against.
pub struct Go {
    pub mirror: PathBuf,
    pub quarantine: PathBuf,
}

/// A body being received.
pub struct Intake {
    spool: JoinHandle<Result<(), Error>>,
    go: Option<oneshot::Sender<Go>>,
    index: JoinHandle<Result<Option<Quarantine>, Error>>,
}

/// Starts taking `body` into `dir`/`body` (at most `limit` bytes) and returns its parsed
/// command list once it is in. A plain body is indexed as it arrives ([`Intake`]); a
/// gzipped one (git never sends one for a push, but HTTP allows it) is taken whole, then
/// unpacked, and its pack indexed later by [`index_file`] (`None` here).
pub async fn begin(
    body: ByteStream,
    gzip: bool,
    dir: &Path,
    limit: u64,
) -> Result<(Request, Option<Intake>), Error> {
    let body_path = dir.join("body");
    if !gzip {
        let (request, intake) = start(body, &body_path, limit).await?;
        return Ok((request, Some(intake)));
    }
    let raw = dir.join("body.gz");
    spool(body, &raw, limit, None).await?;
    let to = body_path.clone();
    tokio::task::spawn_blocking(move || gunzip(&raw, &to, limit))
        .await
        .map_err(std::io::Error::other)??;
    let mut head = Vec::new();
    std::fs::File::open(&body_path)?
        .take(MAX_COMMAND_SECTION as u64)
        .read_to_end(&mut head)?;
    let request = request::parse_request(&head).map_err(|e| match e {
        request::RequestError::Truncated => Error::Truncated,
        e => Error::Request(e),
    })?;
    Ok((request, None))
}

fn gunzip(from: &Path, to: &Path, limit: u64) -> Result<(), Error> {
    let mut decoder = flate2::read::GzDecoder::new(BufReader::new(std::fs::File::open(from)?));
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    let copied = std::io::copy(&mut (&mut decoder).take(limit + 1), &mut out)
        .map_err(|_| Error::BadBody("the gzip body is corrupt".into()))?;
    if copied > limit {
        return Err(Error::BodyTooLarge(limit));
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Indexes the pack of a spooled body (the gzip path) into `quarantine`.
pub fn index_file(
    mirror: &Path,
    quarantine: &Path,
    body: &Path,
    pack_offset: usize,
) -> Result<Option<Quarantine>, Error> {
    std::fs::create_dir_all(quarantine).map_err(|source| Error::Quarantine {
        path: quarantine.to_path_buf(),
        source,
    })?;
    let mut file = std::fs::File::open(body)?;
    file.seek(SeekFrom::Start(pack_offset as u64))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    Quarantine::index(&mut reader, quarantine, mirror).map(Some)
}

/// Starts receiving `body` into `path` and returns once its command list is parsed.
async fn start(body: ByteStream, path: &Path, limit: u64) -> Result<(Request, Intake), Error> {
    let (chunk_tx, chunk_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (head_tx, head_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel();
    let index = tokio::task::spawn_blocking(move || read_and_index(chunk_rx, head_tx, go_rx));
    let path = path.to_path_buf();
    let spool = tokio::spawn(async move { spool(body, &path, limit, Some(&chunk_tx)).await });
    let parsed = head_rx.await;
    let request = match parsed {
        Ok(Ok(request)) => request,
        other => {
            // A body cut short or too large explains a failed parse better than the parse.
            let spooled = spool.await.map_err(std::io::Error::other)?;
            spooled?;
            return Err(match other {
                Ok(Err(e)) => e,
                _ => Error::Truncated,
            });
        }
    };
    Ok((
        request,
        Intake {
            spool,
            go: Some(go_tx),
            index,
        },
    ))
}

impl Intake {
    /// Lets the indexer resolve the pack against `go.mirror`, then waits for the whole body
    /// and the quarantine (`None` when the push carries no pack). The outer error is the
    /// body's; the inner one is the pack's, reported to git as an unpack failure.
    pub async fn finish(mut self, go: Go) -> Result<Result<Option<Quarantine>, Error>, Error> {
        if let Some(tx) = self.go.take() {
            let _ = tx.send(go);
        }
        let spooled = (&mut self.spool).await.map_err(std::io::Error::other)?;
        let indexed = (&mut self.index).await.map_err(std::io::Error::other)?;
        spooled?;
        Ok(indexed)
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        // Without a go-ahead the indexer stops; the spool finishes (or fails) on its own.
        self.go.take();
    }
}

/// Writes the body to `path`, refusing more than `limit` bytes, and offers each chunk to
/// `tx` (the indexer), which may have stopped listening (no pack, or a bad command list):
/// the file is written regardless. A failure is passed on to `tx` too.
async fn spool(
    mut body: ByteStream,
    path: &Path,
    limit: u64,
    tx: Option<&mpsc::Sender<std::io::Result<Bytes>>>,
) -> Result<(), Error> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut written = 0u64;
    let failure = loop {
        let Some(chunk) = body.next().await else {
            file.flush().await?;
            return Ok(());
        };
        let Ok(chunk) = chunk else {
            break Error::Truncated;
        };
        written += chunk.len() as u64;
        if written > limit {
            break Error::BodyTooLarge(limit);
        }
        file.write_all(&chunk).await?;
        if let Some(tx) = tx {
            let _ = tx.send(Ok(chunk)).await;
        }
    };
    if let Some(tx) = tx {
        let _ = tx
            .send(Err(std::io::Error::other(failure.to_string())))
            .await;
    }
    Err(failure)
}

/// The indexer thread: the command list first, then (after the go-ahead) the pack.
fn read_and_index(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    head_tx: oneshot::Sender<Result<Request, Error>>,
    go_rx: oneshot::Receiver<Go>,
) -> Result<Option<Quarantine>, Error> {
    let mut reader = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let mut head = Vec::new();
    let mut buf = vec![0u8; READ_SIZE];
    let mut scanner = RequestScanner::default();
    let request = loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                let _ = head_tx.send(Err(Error::Truncated));
                return Ok(None);
            }
        };
        head.extend_from_slice(&buf[..n]);
        // Only the packets not decoded before are read; the request is parsed once.
        let ended = n == 0 || head.len() >= MAX_COMMAND_SECTION;
        match scanner.scan(&head, ended) {
            Ok(Some(request)) => break request,
            Ok(None) => continue,
            Err(request::RequestError::Truncated) => {
                let _ = head_tx.send(Err(Error::Truncated));
                return Ok(None);
            }
            Err(e) => {
                let _ = head_tx.send(Err(Error::Request(e)));
                return Ok(None);
            }
        }
    };
    let needs_pack = request.needs_pack();
    let pack_start = request.pack_offset.min(head.len());
    if head_tx.send(Ok(request)).is_err() {
        return Ok(None);
    }
    let Ok(go) = go_rx.blocking_recv() else {
        return Ok(None);
    };
    if !needs_pack {
        return Ok(None);
    }
    std::fs::create_dir_all(&go.quarantine).map_err(|source| Error::Quarantine {
        path: go.quarantine.clone(),
        source,
    })?;
    let started = std::time::Instant::now();
    let rest = Read::chain(Cursor::new(head.split_off(pack_start)), reader);
    let mut pack = BufReader::with_capacity(1 << 20, rest);
    let quarantine = Quarantine::index(&mut pack, &go.quarantine, &go.mirror)?;
    tracing::debug!(
        objects = quarantine.num_objects(),
        index_ms = started.elapsed().as_millis() as u64,
        "pack indexed into the quarantine while it arrived"
    );
    Ok(Some(quarantine))
}

/// The channel's chunks as one `Read`: EOF when the spool is done, an error when the body
/// broke off.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
