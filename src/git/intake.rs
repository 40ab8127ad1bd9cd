//! A push body as it arrives: written to the spool file (what is forwarded if the push is
//! allowed) and, at the same time, read by a blocking thread that parses the command list
//! and then indexes the pack into the quarantine while the client is still sending it. A
//! large push is then judged moments after its last byte instead of a whole indexing pass
//! later.
//!
//! The thread waits for a go-ahead between the two steps: the mirror must be refreshed
//! (and the repository locked) before thin-pack bases are looked up in it. Chunks travel
//! over a bounded channel, so a slow indexer slows the client instead of filling memory.

use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::pack::Quarantine;
use super::push::{MAX_COMMAND_SECTION, PushError};
use super::receive::{self, Request};
use super::upstream::ByteStream;

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
    spool: JoinHandle<Result<(), PushError>>,
    go: Option<oneshot::Sender<Go>>,
    index: JoinHandle<Result<Option<Quarantine>, String>>,
}

/// Starts receiving `body` into `path` and returns once its command list is parsed.
pub async fn start(
    body: ByteStream,
    path: &Path,
    limit: u64,
) -> Result<(Request, Intake), PushError> {
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
                _ => PushError::Truncated,
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
    pub async fn finish(mut self, go: Go) -> Result<Result<Option<Quarantine>, String>, PushError> {
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
pub async fn spool(
    mut body: ByteStream,
    path: &Path,
    limit: u64,
    tx: Option<&mpsc::Sender<std::io::Result<Bytes>>>,
) -> Result<(), PushError> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut written = 0u64;
    let failure = loop {
        let Some(chunk) = body.next().await else {
            file.flush().await?;
            return Ok(());
        };
        let Ok(chunk) = chunk else {
            break PushError::Truncated;
        };
        written += chunk.len() as u64;
        if written > limit {
            break PushError::TooLarge(limit);
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
    head_tx: oneshot::Sender<Result<Request, PushError>>,
    go_rx: oneshot::Receiver<Go>,
) -> Result<Option<Quarantine>, String> {
    let mut reader = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let mut head = Vec::new();
    let mut buf = vec![0u8; READ_SIZE];
    let request = loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                let _ = head_tx.send(Err(PushError::Truncated));
                return Ok(None);
            }
        };
        head.extend_from_slice(&buf[..n]);
        match receive::parse_request(&head) {
            Ok(request) => break request,
            // More bytes may complete the command list (or the pack's first bytes).
            Err(_) if n > 0 && head.len() < MAX_COMMAND_SECTION => continue,
            Err(receive::RequestError::Truncated) => {
                let _ = head_tx.send(Err(PushError::Truncated));
                return Ok(None);
            }
            Err(e) => {
                let _ = head_tx.send(Err(PushError::Malformed(e.to_string())));
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
    std::fs::create_dir_all(&go.quarantine).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let rest = Read::chain(Cursor::new(head.split_off(pack_start)), reader);
    let mut pack = BufReader::with_capacity(1 << 20, rest);
    let quarantine =
        Quarantine::index(&mut pack, &go.quarantine, &go.mirror).map_err(|e| e.to_string())?;
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
