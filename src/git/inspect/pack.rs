//! Indexing a pushed pack into a quarantine beside a read-only mirror (SPEC "Git path").
//!
//! A push carries its objects as one packfile (`gitformat-pack`): a 12-byte header
//! (`PACK`, version 2 or 3, object count), the entries, and a trailer that is the hash of
//! everything before it. The client sends a *thin* pack (`gitprotocol-pack`, "thin-pack"):
//! deltas may name a base by id (`REF_DELTA`) that is not in the pack because the client
//! knows the server has it. Such a pack cannot be read on its own.
//!
//! [`Quarantine::index`] therefore streams the pack through gix's indexer
//! ([`gix::odb::pack::Bundle::write_to_directory`]) with the mirror (`base`) as the lookup
//! for missing delta bases; the bases found there are appended so the written pack is
//! complete. The `.pack`/`.idx` land in `<dir>/objects/pack`, and `<dir>` is laid out as
//! a bare repository whose `objects/info/alternates` names `base`'s object directory, so
//! [`Quarantine::open`] reads pushed objects first and the mirror's second — exactly what
//! `git receive-pack` does with its own quarantine (`GIT_QUARANTINE_PATH`). Nothing is
//! ever written into `base`.
//!
//! # Hostile input
//!
//! Every failure is an [`Error`], never a panic: a bad header, a truncated stream, a
//! trailer that does not match, a delta whose base is neither in the pack nor in `base`.
//! [`Limits`] caps the wire size, the object count announced by the header (checked before
//! anything is allocated for it) and the size of any single decoded object, so a small
//! pack that inflates to gigabytes is refused instead of exhausting memory.
//!
//! Object replacement refs (`refs/replace/*`) of `base` are ignored: an object must read
//! as the bytes that hash to its id, or a replacement pushed earlier could hide a secret.
//!
//! # Known gaps
//!
//! * Memory is capped per decoded object, not in total: resolving a long delta chain keeps
//!   each level's object while its children resolve, per indexing thread.
//! * Inflating is not capped in total: a pack of highly compressed entries costs CPU in
//!   proportion to what it inflates to (each entry stays under
//!   [`Limits::max_object_bytes`]), bounded only by [`Limits::max_pack_bytes`] times zlib's
//!   ratio.
//!
//! # Example
//!
//! ```no_run
//! use portcullis::git::inspect::pack::Quarantine;
//! # fn body() -> Vec<u8> { Vec::new() }
//! let dir = tempfile::tempdir().expect("temp dir");
//! let pack = body(); // the bytes after the commands, starting at "PACK"
//! let quarantine = Quarantine::index(&mut pack.as_slice(), dir.path(), "/srv/mirror.git".as_ref())?;
//! let repo = quarantine.open()?; // pushed objects, then the mirror's
//! # Ok::<(), portcullis::git::Error>(())
//! ```
//!
//! # Performance
//!
//! Indexing decompresses every entry once to hash it and resolves deltas on all cores
//! ([`Limits::threads`]); it costs about what `git index-pack` costs on the server side.

use std::fs;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::odb::pack;

use crate::git::Error;

/// Bytes of a pack header: `PACK`, a 4-byte version, a 4-byte object count.
const HEADER_LEN: usize = 12;
/// The signature every pack starts with.
const SIGNATURE: &[u8; 4] = b"PACK";
/// Config that keeps gix from reading replacement objects (see module docs).
const NO_REPLACE_REFS: &str = "core.useReplaceRefs=false";

/// Resource caps for one pack. The defaults admit any ordinary push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes read from the wire for the pack, trailer included.
    pub max_pack_bytes: u64,
    /// Most objects the pack header may announce.
    pub max_objects: u32,
    /// Largest single object (or delta result) the indexer may decode into memory: gix
    /// holds each object whole to hash it, so this bounds a push's memory per thread.
    pub max_object_bytes: usize,
    /// Threads resolving deltas; `None` uses every core.
    pub threads: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pack_bytes: 4 << 30,
            max_objects: 10_000_000,
            max_object_bytes: 1 << 30,
            threads: None,
        }
    }
}

/// A pushed pack, indexed in its own directory, readable together with the mirror it was
/// resolved against.
#[derive(Debug, Clone)]
pub struct Quarantine {
    dir: PathBuf,
    base: PathBuf,
    pack: Option<PathBuf>,
    objects: u32,
}

impl Quarantine {
    /// Indexes `pack` (positioned at `PACK`) into `dir` against the bare repository `base`,
    /// with default [`Limits`]. See [`Quarantine::index_with`].
    pub fn index(pack: &mut dyn BufRead, dir: &Path, base: &Path) -> Result<Quarantine, Error> {
        Quarantine::index_with(pack, dir, base, &Limits::default())
    }

    /// Indexes `pack` into `dir`, an empty directory the caller owns (and removes), resolving
    /// thin-pack bases from `base`, which is only read.
    ///
    /// On success `dir` is a bare repository whose objects are the pack's plus, through
    /// `objects/info/alternates`, `base`'s. On error `dir` may hold partial files.
    pub fn index_with(
        pack: &mut dyn BufRead,
        dir: &Path,
        base: &Path,
        limits: &Limits,
    ) -> Result<Quarantine, Error> {
        let base_repo = open_repo(base)?;
        let base_objects = base_repo.objects.store_ref().path().to_owned();
        let base_objects = fs::canonicalize(&base_objects).map_err(|source| Error::Quarantine {
            path: base_objects.clone(),
            source,
        })?;
        let pack_dir = lay_out(dir, &base_objects)?;

        let header = read_header(pack, limits)?;
        let mut limited = Limited {
            inner: io::Cursor::new(header).chain(pack),
            left: limits.max_pack_bytes,
            exceeded: false,
        };
        let options = pack::bundle::write::Options {
            thread_limit: limits.threads,
            iteration_mode: pack::data::input::Mode::Verify,
            index_version: pack::index::Version::default(),
            alloc_limit_bytes: Some(limits.max_object_bytes),
            compression: gix::zlib::Compression::BEST_SPEED,
        };
        let interrupt = AtomicBool::new(false);
        let mut lookup = base_repo.objects.clone();
        // A delta whose base is later in the pack misses here; rescanning the mirror's pack
        // directory on every miss would let a pack of such deltas cost a directory walk each.
        lookup.refresh_never();
        // gix reports hostile packs as errors; the catch is a second line of defence so a
        // gix bug on some crafted input refuses one push instead of killing a worker.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pack::Bundle::write_to_directory(
                &mut limited,
                Some(&pack_dir),
                &mut gix::progress::Discard,
                &interrupt,
                Some(lookup),
                gix::hash::Kind::Sha1,
                options,
            )
        }));
        let outcome = match written {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) if limited.exceeded => {
                drop(err);
                return Err(Error::PackTooLarge {
                    limit: limits.max_pack_bytes,
                });
            }
            Ok(Err(err)) => return Err(classify(err, limits)),
            Err(panic) => return Err(Error::Panicked(panic_message(&panic))),
        };
        Ok(Quarantine {
            dir: dir.to_owned(),
            base: base.to_owned(),
            pack: outcome.data_path,
            objects: outcome.index.num_objects,
        })
    }

    /// A repository reading the quarantined objects first and `base`'s second. Its refs are
    /// empty; the mirror's refs are read from `base`.
    pub fn open(&self) -> Result<gix::Repository, Error> {
        open_repo(&self.dir)
    }

    /// The quarantine directory (a bare repository).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mirror the pack was resolved against.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The written `.pack`, or `None` when the pack held no objects.
    pub fn pack_path(&self) -> Option<&Path> {
        self.pack.as_deref()
    }

    /// Objects in the written pack, thin-pack bases taken from `base` included.
    pub fn num_objects(&self) -> u32 {
        self.objects
    }

    /// The id of every object in the written pack.
    pub fn object_ids(&self) -> Result<Vec<gix::ObjectId>, Error> {
        let Some(data_path) = &self.pack else {
            return Ok(Vec::new());
        };
        let index = pack::index::File::at(data_path.with_extension("idx"), gix::hash::Kind::Sha1)
            .map_err(Error::Corrupt)?;
        Ok(index.iter().map(|e| e.oid).collect())
    }

    /// Calls `visit` with the id and bytes of every blob in the pack, each decoded exactly
    /// once: gix's delta-tree traversal resolves every base a single time, where looking
    /// blobs up one by one would inflate long delta chains again for each of them.
    /// Blobs over `max_blob_bytes` are not visited (their size still comes from the walk);
    /// gix decodes every object whole all the same, as the indexer did.
    pub fn for_each_blob<F>(
        &self,
        threads: usize,
        max_blob_bytes: usize,
        visit: F,
    ) -> Result<(), Error>
    where
        F: Fn(gix::ObjectId, &[u8]) + Send + Sync + Clone,
    {
        let Some(data_path) = &self.pack else {
            return Ok(());
        };
        let index_path = data_path.with_extension("idx");
        let corrupt = |e: gix::Error| Error::Corrupt(e);
        let index = pack::index::File::at(&index_path, gix::hash::Kind::Sha1).map_err(corrupt)?;
        let data = pack::data::File::at(data_path, gix::hash::Kind::Sha1).map_err(corrupt)?;
        let interrupt = AtomicBool::new(false);
        let processor = move |kind: gix::object::Kind,
                              bytes: &[u8],
                              entry: &pack::index::Entry,
                              _: &dyn gix::progress::Progress|
              -> gix::Result {
            if kind == gix::object::Kind::Blob && bytes.len() <= max_blob_bytes {
                visit(entry.oid, bytes);
            }
            Ok(())
        };
        let options = pack::index::traverse::Options {
            traversal: pack::index::traverse::Algorithm::DeltaTreeLookup,
            thread_limit: Some(threads.max(1)),
            // Checksums were verified while the pack was indexed, moments ago.
            check: pack::index::traverse::SafetyCheck::SkipFileAndObjectChecksumVerification,
            alloc_limit_bytes: None,
            make_pack_lookup_cache: || pack::cache::Never,
        };
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            index.traverse(
                &data,
                &mut gix::progress::Discard,
                &interrupt,
                processor,
                options,
            )
        }));
        match done {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Corrupt(e)),
            Err(panic) => Err(Error::Panicked(panic_message(&panic))),
        }
    }
}

/// Opens a repository for reading only: no environment, no global config, no replacement
/// objects.
pub(crate) fn open_repo(path: &Path) -> Result<gix::Repository, Error> {
    let options = gix::open::Options::isolated().config_overrides([NO_REPLACE_REFS]);
    let mut repo = gix::open_opts(path, options).map_err(|source| Error::Open {
        path: path.to_owned(),
        source,
    })?;
    repo.objects.ignore_replacements = true;
    let kind = repo.object_hash();
    if kind != gix::hash::Kind::Sha1 {
        return Err(Error::UnsupportedHash {
            path: path.to_owned(),
            kind,
        });
    }
    Ok(repo)
}

/// Makes `dir` a bare repository borrowing `base_objects`; returns its pack directory.
fn lay_out(dir: &Path, base_objects: &Path) -> Result<PathBuf, Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Quarantine { path, source }
    };
    let objects = dir.join("objects");
    let pack_dir = objects.join("pack");
    let info = objects.join("info");
    for d in [
        &pack_dir,
        &info,
        &dir.join("refs").join("heads"),
        &dir.join("refs").join("tags"),
    ] {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut alternates = base_objects.as_os_str().as_encoded_bytes().to_vec();
    alternates.push(b'\n');
    let file = info.join("alternates");
    fs::write(&file, alternates).map_err(io(&file))?;
    let head = dir.join("HEAD");
    fs::write(&head, "ref: refs/heads/main\n").map_err(io(&head))?;
    let config = dir.join("config");
    fs::write(
        &config,
        "[core]\n\trepositoryformatversion = 0\n\tbare = true\n",
    )
    .map_err(io(&config))?;
    Ok(pack_dir)
}

/// Reads and checks the 12-byte header, so a hostile object count is refused before gix
/// sizes anything by it.
fn read_header(pack: &mut dyn BufRead, limits: &Limits) -> Result<[u8; HEADER_LEN], Error> {
    let mut header = [0u8; HEADER_LEN];
    let mut read = 0;
    while read < HEADER_LEN {
        match pack.read(&mut header[read..]) {
            Ok(0) => return Err(Error::TruncatedHeader { read }),
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Error::TruncatedHeader { read }),
        }
    }
    let word = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    if &header[..4] != SIGNATURE {
        let mut signature = [0u8; 4];
        signature.copy_from_slice(&header[..4]);
        return Err(Error::NotAPack { signature });
    }
    let version = word(4);
    if version != 2 && version != 3 {
        return Err(Error::Version(version));
    }
    let count = word(8);
    if count > limits.max_objects {
        return Err(Error::TooManyObjects {
            count,
            limit: limits.max_objects,
        });
    }
    Ok(header)
}

/// Sorts a gix failure into what the client is told.
fn classify(err: gix::Error, limits: &Limits) -> Error {
    use gix::error::Class;
    match err.dominant_class() {
        Some(Class::ResourceExhaustion(_)) => {
            drop(err);
            Error::ObjectTooLarge {
                limit: limits.max_object_bytes,
            }
        }
        // gix marks a `REF_DELTA` whose base it never found as not-found.
        Some(Class::NotFound) => Error::MissingBase(err),
        Some(Class::Corruption | Class::Validation) => Error::Corrupt(err),
        _ if is_io(&err) => Error::PackIo(err),
        _ => Error::Corrupt(err),
    }
}

/// Whether a gix failure came from I/O rather than from the pack bytes.
fn is_io(err: &gix::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return !matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            );
        }
        source = e.source();
    }
    false
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// A reader that fails once more than `left` bytes were asked of it.
struct Limited<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R: BufRead> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Limited<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.left == 0 && !self.inner.fill_buf()?.is_empty() {
            self.exceeded = true;
            return Err(io::Error::other("the pack exceeds its size limit"));
        }
        let left = usize::try_from(self.left).unwrap_or(usize::MAX);
        let buf = self.inner.fill_buf()?;
        Ok(&buf[..left.min(buf.len())])
    }

    fn consume(&mut self, amt: usize) {
        self.left = self.left.saturating_sub(amt as u64);
        self.inner.consume(amt);
    }
}
