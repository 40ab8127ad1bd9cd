//! The journal: what makes a record durable before its statement or push goes upstream,
//! without a DuckDB commit per record.
//!
//! A DuckDB commit costs about 2 ms of CPU however little it holds (DuckDB 1.5.6: one
//! 25-column row or a thousand rows cost much the same; see docs/audit.md), so a commit
//! for each write the gateway must record first cost more than the write itself. The
//! writer instead appends the records of its open batch to this file, syncs it
//! (`fdatasync`, about 0.25 ms here) and answers the waiters; DuckDB gets the records in
//! the writer's usual large batches, and the journal is emptied after each commit.
//! Opening the store for writing applies what a killed gateway left here
//! ([`super::writer::apply_journal`]), so nothing it acknowledged is lost.
//!
//! The file sits beside the store (`audit.duckdb.journal`). Each frame is its payload's
//! length (u32, little-endian), the payload's CRC-32 (u32) and the payload, a [`Frame`]
//! as JSON. A frame cut short or failing its CRC ends the journal: the writer answers
//! nobody before the whole write is synced, so such a frame was never acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::{Approval, Event, SessionEnd, SessionStart};

/// A record as the journal holds it; an event with the `seq` the writer gave it, so a
/// replay can tell what the store already has.
#[derive(Debug, Deserialize)]
pub enum Frame {
    Event { seq: i64, event: Box<Event> },
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Approval(Approval),
}

/// A [`Frame`] borrowed from the writer's batch: encoding copies nothing first.
#[derive(Serialize)]
pub enum FrameRef<'a> {
    Event { seq: i64, event: &'a Event },
    SessionStart(&'a SessionStart),
    SessionEnd(&'a SessionEnd),
    Approval(&'a Approval),
}

const HEADER: usize = 8;

/// The journal of the store at `store`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Whether the store at `store` has records in its journal that it may not hold yet.
pub fn pending(store: &Path) -> bool {
    std::fs::metadata(path_for(store)).is_ok_and(|m| m.len() > 0)
}

/// The writer's open journal.
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Frames encoded and not yet written.
    buf: Vec<u8>,
    /// Whether the file holds frames (so emptying it needs a call).
    holds: bool,
}

impl Journal {
    /// Opens the journal of the store at `store` empty, creating it; its folder is synced
    /// so the file itself survives a crash.
    pub fn create(store: &Path) -> io::Result<Journal> {
        let path = path_for(store);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.set_len(0)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(Journal {
            file,
            path,
            buf: Vec::with_capacity(64 << 10),
            holds: false,
        })
    }

    /// Encodes `frame` into the pending write.
    pub fn push(&mut self, frame: &FrameRef<'_>) -> io::Result<()> {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        if let Err(e) = serde_json::to_writer(&mut self.buf, frame) {
            self.buf.truncate(at);
            return Err(io::Error::other(e));
        }
        let payload = &self.buf[at + HEADER..];
        let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
        let crc = crc32fast::hash(payload);
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 4..at + HEADER].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Writes the pending frames and syncs the file: once this returns, they survive a
    /// crash of the gateway or of the machine.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.holds = true;
        let written = self.file.write_all(&self.buf);
        self.buf.clear();
        written?;
        self.file.sync_data()
    }

    /// Empties the journal: everything in it is committed to the store. Not synced: a
    /// journal that comes back after a crash holds only records the store has, which a
    /// replay skips.
    pub fn clear(&mut self) -> io::Result<()> {
        self.buf.clear();
        if self.holds {
            self.file.set_len(0)?;
            self.holds = false;
        }
        Ok(())
    }

    /// Removes the file (a clean stop, everything committed).
    pub fn remove(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.holds = false;
        std::fs::remove_file(&self.path)
    }
}

/// What a journal holds: its whole frames, in order, and how many bytes after them were
/// not a whole frame (a write the crash cut short).
pub fn read(store: &Path) -> io::Result<(Vec<Frame>, usize)> {
    let mut bytes = Vec::new();
    match File::open(path_for(store)) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    }
    Ok(decode(&bytes))
}

fn decode(bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match serde_json::from_slice(payload) {
            Ok(frame) => frames.push(frame),
            Err(_) => break,
        }
        at += HEADER + len;
    }
    (frames, bytes.len() - at)
}

/// Appends `record` (as JSON, one line) to the file beside the store that keeps records
/// the journal made durable but the store then refused, so their text is not lost.
pub fn keep_refused(store: &Path, frame: &FrameRef<'_>) -> io::Result<PathBuf> {
    let mut name = store.as_os_str().to_owned();
    name.push(".refused");
    let path = PathBuf::from(name);
    let mut line = serde_json::to_vec(frame).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&line)?;
    file.sync_data()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Decision, Protocol};

    fn event(n: i64) -> Event {
        let mut e = Event::new("s", Protocol::Postgres, "app", "query", Decision::Allowed);
        e.statement = Some(format!("UPDATE t SET n = {n}").into());
        e
    }

    #[test]
    fn frames_come_back_in_order_and_a_cut_or_damaged_tail_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("audit.duckdb");
        let mut j = Journal::create(&store).unwrap();
        let (a, b) = (event(1), event(2));
        let end = SessionEnd {
            session_id: "s".into(),
            started_us: Some(3),
            ended_us: 7,
            reason: None,
        };
        j.push(&FrameRef::Event { seq: 1, event: &a }).unwrap();
        j.push(&FrameRef::SessionEnd(&end)).unwrap();
        j.push(&FrameRef::Event { seq: 2, event: &b }).unwrap();
        j.sync().unwrap();
        assert!(pending(&store));
        let (frames, rest) = read(&store).unwrap();
        assert_eq!(rest, 0);
        assert!(matches!(&frames[..], [
            Frame::Event { seq: 1, event: x },
            Frame::SessionEnd(SessionEnd { ended_us: 7, .. }),
            Frame::Event { seq: 2, event: y },
        ] if **x == a && **y == b));

        let whole = std::fs::read(path_for(&store)).unwrap();
        let mut ends = Vec::new();
        let mut at = 0;
        while at < whole.len() {
            let len = u32::from_le_bytes(whole[at..at + 4].try_into().unwrap()) as usize;
            at += HEADER + len;
            ends.push(at);
        }
        assert_eq!(ends.len(), 3);
        for cut in 0..whole.len() {
            let (frames, rest) = decode(&whole[..cut]);
            let whole_frames = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(frames.len(), whole_frames, "cut at {cut}");
            let kept = if whole_frames == 0 {
                0
            } else {
                ends[whole_frames - 1]
            };
            assert_eq!(rest, cut - kept, "cut at {cut}");
        }
        let mut damaged = whole.clone();
        let last = damaged.len() - 3;
        damaged[last] ^= 1;
        assert_eq!(decode(&damaged).0.len(), 2);

        j.clear().unwrap();
        assert!(!pending(&store));
        j.remove().unwrap();
        assert!(!path_for(&store).exists());
    }
}
