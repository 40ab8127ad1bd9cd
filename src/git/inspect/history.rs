//! What a push adds: new commits, changed files and secrets, per ref update (SPEC "Push facts").
//!
//! A commit is *new* when it is reachable from the update's new tip and from no ref the
//! upstream already has ([`Hidden::AllRefs`]: every ref of the mirror, read at call time).
//! This is `git rev-list <new> --not --all`, the set `git receive-pack` checks, and it is
//! what makes two bypasses visible:
//!
//! * a secret committed and removed again within one push: the middle commit is new, so
//!   its blob is scanned;
//! * a branch deleted upstream and recreated at its old commits: those commits still sit in
//!   the mirror's object database, but no ref reaches them, so they are new again.
//!
//! Files follow `git diff-tree --cc`: a path counts when its blob differs from the blob at
//! that path in *every* parent (all paths of a root commit). Subtrees whose id equals a
//! parent's are skipped whole. A blob (or subtree) that a parent holds under another path
//! was moved or copied: its path is listed in `push.files`, but its content is not new, so
//! it is neither scanned nor counted as the largest blob. Every distinct new blob is read
//! once and scanned with [`Scanner`], binary or not (a NUL byte must not hide a key).
//!
//! # Large blobs
//!
//! A blob over [`InspectOptions::scan_chunk`] is scanned in chunks of that size whose
//! windows overlap by what a detector can look at ([`Scanner::scan_chunked`]): a secret
//! across a cut is found once, its line counted from the blob's start. gix decodes every
//! object whole, though: the indexer does to hash it (refusing anything over
//! [`Limits::max_object_bytes`](super::pack::Limits::max_object_bytes)) and so does the
//! delta-tree pass that hands blobs here, so chunking bounds the scan's work per window,
//! not the memory the blob itself takes. Only blobs over
//! [`InspectOptions::max_scan_bytes`] (1 GiB by default, the indexer's cap) are not
//! scanned; they become `push.unscanned`. In practice these are blobs read from the
//! mirror (a recreated branch), which the indexer never saw.
//!
//! A ref that points straight at a tree or blob (only possible for hand-made pushes) has no
//! history; its tree is listed as if it were a root commit's (commit `""`), a blob as the
//! single file named by the ref, so its content is still scanned.
//!
//! # Failing closed
//!
//! A new tip, a parent, a tree or a blob missing from both the quarantine and the mirror, a
//! malformed commit or tree, or a push beyond [`InspectOptions`]' limits is an
//! [`Error`](crate::git::Error): the caller refuses the push rather than judging partial
//! facts.
//!
//! # Example
//!
//! ```no_run
//! use portcullis::git::inspect::facts::Protected;
//! use portcullis::git::inspect::history::{inspect, InspectOptions, Update};
//!
//! let update = Update::parse(&"0".repeat(40), "2f1d...", "refs/heads/topic")?;
//! let facts = inspect("/srv/mirror.git".as_ref(), None, &[update], &Protected::default(), &InspectOptions::default())?;
//! for (r, push) in &facts {
//!     println!("{} {} adds {} commits", r.name, r.kind.as_str(), push.commits.len());
//! }
//! # Ok::<(), portcullis::git::Error>(())
//! ```
//!
//! # Performance
//!
//! The walk stops at the first commit the mirror already has: commits only in the
//! quarantine are new by construction, and a commit the mirror has is settled at once when
//! it is a ref tip (the usual fast-forward); only otherwise does gix's hidden-tips walk
//! decide, which may read the mirror's history. Commits and blob results are shared across
//! the ref updates of one push, trees go through gix's object cache, and blobs are scanned
//! on [`InspectOptions::threads`] threads, one blob in memory per thread (see "Large
//! blobs").
//!
//! # Known gaps
//!
//! * No rename detection: a moved file is listed (and scanned) again at its new path.
//! * Paths and messages that are not UTF-8 are reported lossily.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, mpsc};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::objs::Exists;
use gix::objs::Kind;
use gix::prelude::{Find, Header};

use super::facts::{
    ADDED, CommitFact, EXECUTABLE, FileFact, MODIFIED, Protected, PushFacts, REGULAR, RefFacts,
    RefKind, SYMLINK, SecretFact, TOO_LARGE, UnscannedFact,
};
use super::pack::{Quarantine, open_repo};
use crate::git::Error;
use crate::mask::detectors::{Finding, Scanner};

const HASH: gix::hash::Kind = gix::hash::Kind::Sha1;
/// Annotated tags pointing at tags: deeper chains are refused.
const MAX_TAG_DEPTH: usize = 64;

/// One ref update of a push: `<old> <new> <name>` (a zero id on one side: create/delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub old: ObjectId,
    pub new: ObjectId,
    pub name: String,
}

impl Update {
    pub fn new(old: ObjectId, new: ObjectId, name: impl Into<String>) -> Update {
        Update {
            old,
            new,
            name: name.into(),
        }
    }

    /// From the 40-hex ids of a receive-pack command.
    pub fn parse(old: &str, new: &str, name: &str) -> Result<Update, Error> {
        let id = |hex: &str| {
            if hex.len() != HASH.len_in_hex() {
                return Err(Error::BadId(hex.to_owned()));
            }
            ObjectId::from_hex(hex.as_bytes()).map_err(|_| Error::BadId(hex.to_owned()))
        };
        Ok(Update::new(id(old)?, id(new)?, name))
    }
}

/// Which commits count as already upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hidden {
    /// Everything reachable from any ref of the mirror, read when [`inspect`] runs.
    AllRefs,
    /// Everything reachable from these ids and from each update's old value
    /// (`portcullis check push --repo`, where the repository's refs already hold the push).
    Only(Vec<ObjectId>),
}

/// How [`inspect`] works and where it stops.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub hidden: Hidden,
    /// Blobs larger than this are scanned in chunks of this many bytes, each with the
    /// detectors' overlap ([`Scanner::scan_chunked`]).
    pub scan_chunk: usize,
    /// Blobs larger than this are not scanned (`push.unscanned`, reason `too-large`).
    pub max_scan_bytes: u64,
    /// Threads scanning blobs.
    pub threads: usize,
    /// Most new commits per push.
    pub max_commits: usize,
    /// Most `push.files` entries per push.
    pub max_files: usize,
    /// Most tree entries read while diffing, against trees that fan out to huge paths.
    pub max_tree_entries: usize,
    /// Bytes of decoded trees and commits kept in memory for reuse.
    pub object_cache_bytes: usize,
    /// Bytes of delta bases kept for reading deltified objects, for the walk and again
    /// shared among the scanner threads.
    pub pack_cache_bytes: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            hidden: Hidden::AllRefs,
            scan_chunk: 32 << 20,
            // What the indexer decodes at most: every blob of the pack fits.
            max_scan_bytes: super::pack::Limits::default().max_object_bytes as u64,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            max_commits: 1_000_000,
            max_files: 5_000_000,
            max_tree_entries: 50_000_000,
            object_cache_bytes: 64 << 20,
            pack_cache_bytes: 64 << 20,
        }
    }
}

/// Facts for every update, in order: `ref.*` and what it adds (`push.*`). `push.options`
/// and `push.refs` are left for the caller ([`PushFacts::set_options`],
/// [`PushFacts::set_refs`]).
///
/// `quarantine` holds the pushed objects; `None` when they are all in `base` already.
pub fn inspect(
    base: &Path,
    quarantine: Option<&Quarantine>,
    updates: &[Update],
    protected: &Protected,
    opts: &InspectOptions,
) -> Result<Vec<(RefFacts, PushFacts)>, Error> {
    let mut base_repo = open_repo(base)?;
    base_repo.objects.refresh_never();
    let mut repo = match quarantine {
        Some(q) => q.open()?,
        None => base_repo.clone(),
    };
    repo.object_cache_size(opts.object_cache_bytes);
    set_pack_cache(&mut repo.objects, opts.pack_cache_bytes);

    let mut inspector = Inspector {
        repo: &repo,
        base: &base_repo,
        base_path: base,
        in_quarantine: quarantine.is_some(),
        opts,
        hidden: Vec::new(),
        hidden_set: HashSet::new(),
        commits: HashMap::new(),
        blobs: HashMap::new(),
        queued: HashSet::new(),
        sender: None,
        files: 0,
        tree_entries: 0,
        reached: HashSet::new(),
    };
    if let Some(q) = quarantine {
        inspector.blobs = scan_pack(q, opts)?;
    }
    inspector.hide(updates)?;
    let mut facts = updates
        .iter()
        .map(|u| inspector.update(u, protected))
        .collect::<Result<Vec<_>, _>>()?;
    // Every object the pack carries must be reached by a pushed ref (or be upstream
    // already): anything else would be stored upstream without being judged.
    if let Some(q) = quarantine {
        // The first few name the problem; the facts stay small whatever the pack holds.
        let stray: Vec<String> = q
            .object_ids()?
            .into_iter()
            .filter(|id| !inspector.reached.contains(id) && !base_repo.has_object(id))
            .take(MAX_UNREACHABLE_LISTED)
            .map(|id| id.to_hex().to_string())
            .collect();
        if !stray.is_empty() {
            for (_, push) in &mut facts {
                push.unreachable = stray.clone();
            }
        }
    }
    Ok(facts)
}

/// Where a secret found in a message is said to be (`push.secrets.path`).
pub const COMMIT_MESSAGE: &str = "(commit message)";
pub const TAG_MESSAGE: &str = "(tag message)";
/// A ref name is kept upstream (and echoed by git) like any content.
pub const REF_NAME: &str = "(ref name)";
/// Objects of `push.unreachable` listed at most.
const MAX_UNREACHABLE_LISTED: usize = 100;

/// A finding in the message of commit or tag `object`: named by object, line and
/// detector, never by its text.
fn message_secret(finding: &Finding, place: &str, object: &str) -> SecretFact {
    SecretFact {
        detector: finding.detector,
        path: place.to_owned(),
        commit: object.to_owned(),
        line: finding.line as i64,
        column: finding.column as i64,
        blob: String::new(),
    }
}

/// Every blob of the pushed pack, sized and scanned in one pass over the pack; blobs the
/// walk meets outside the pack (in the mirror) are read and scanned one by one later.
fn scan_pack(
    quarantine: &Quarantine,
    opts: &InspectOptions,
) -> Result<HashMap<ObjectId, BlobInfo>, Error> {
    let found = Mutex::new(HashMap::new());
    let limit = usize::try_from(opts.max_scan_bytes).unwrap_or(usize::MAX);
    quarantine.for_each_blob(opts.threads, limit, |id, bytes| {
        let info = BlobInfo {
            size: bytes.len() as u64,
            scan: Scan::Findings(Scanner::shared().scan_chunked(bytes, opts.scan_chunk)),
        };
        if let Ok(mut map) = found.lock() {
            map.insert(id, info);
        }
    })?;
    found.into_inner().map_err(|_| Error::Scanner)
}

/// A file of a commit before its blob is sized and scanned.
struct FileEntry {
    path: String,
    blob: ObjectId,
    kind: &'static str,
    mode: &'static str,
    /// The blob already sits in a parent's tree under another path (a move or a copy):
    /// its path is new, its content is not, so it is listed but not scanned or sized.
    moved: bool,
}

struct CommitInfo {
    fact: CommitFact,
    files: Vec<FileEntry>,
}

/// What reading a blob once told us.
struct BlobInfo {
    size: u64,
    scan: Scan,
}

enum Scan {
    Findings(Vec<Finding>),
    TooLarge,
}

/// An object after following annotated tags.
struct Peeled {
    /// Kind of the object the ref names.
    kind: Kind,
    /// The first non-tag object and its kind.
    target: ObjectId,
    target_kind: Kind,
    tag: Option<TagInfo>,
}

struct TagInfo {
    tagger: Option<(String, String)>,
    message: String,
}

struct Inspector<'r> {
    repo: &'r gix::Repository,
    base: &'r gix::Repository,
    base_path: &'r Path,
    in_quarantine: bool,
    opts: &'r InspectOptions,
    hidden: Vec<ObjectId>,
    hidden_set: HashSet<ObjectId>,
    commits: HashMap<ObjectId, CommitInfo>,
    blobs: HashMap<ObjectId, BlobInfo>,
    /// Blobs handed to the scanners of the running update.
    queued: HashSet<ObjectId>,
    sender: Option<mpsc::Sender<ObjectId>>,
    files: usize,
    tree_entries: usize,
    /// Every object the walks read or listed: the pack's objects must all be here (or
    /// upstream already).
    reached: HashSet<ObjectId>,
}

/// What one update adds before its blobs are sized.
struct Added {
    commits: Vec<ObjectId>,
    /// Files of a ref that names a tree or blob directly.
    loose: Vec<FileEntry>,
    /// The walk met the old value: a fast-forward.
    reached_old: bool,
}

impl Inspector<'_> {
    /// Collects the commits whose history counts as upstream.
    fn hide(&mut self, updates: &[Update]) -> Result<(), Error> {
        let tips: Vec<ObjectId> = match &self.opts.hidden {
            Hidden::AllRefs => {
                let refs_error = |source| Error::Refs {
                    path: self.base_path.to_owned(),
                    source,
                };
                let platform = self.base.references().map_err(refs_error)?;
                let iter = platform
                    .all()
                    .map_err(refs_error)?
                    .peeled()
                    .map_err(refs_error)?;
                // A broken ref hides nothing, which only makes more commits new.
                iter.filter_map(|r| r.ok().and_then(|r| r.try_id()).map(|id| id.detach()))
                    .collect()
            }
            Hidden::Only(ids) => {
                let mut ids = ids.clone();
                ids.extend(updates.iter().map(|u| u.old).filter(|id| !id.is_null()));
                ids.iter()
                    .filter_map(|id| self.peel(*id, "hidden commit").ok())
                    .map(|p| p.target)
                    .collect()
            }
        };
        for id in tips {
            let is_commit = self
                .base
                .objects
                .try_header(&id)
                .ok()
                .flatten()
                .is_some_and(|h| h.kind() == Kind::Commit);
            if is_commit && self.hidden_set.insert(id) {
                self.hidden.push(id);
            }
        }
        Ok(())
    }

    fn update(
        &mut self,
        update: &Update,
        protected: &Protected,
    ) -> Result<(RefFacts, PushFacts), Error> {
        let mut facts = RefFacts::new(
            &update.name,
            &update.old.to_hex().to_string(),
            &update.new.to_hex().to_string(),
            protected,
        );
        let mut push = PushFacts::default();
        if facts.kind == RefKind::Delete {
            return Ok((facts, push));
        }
        let new = self.peel(update.new, "new tip")?;
        self.reached.insert(update.new);
        self.reached.insert(new.target);
        facts.object_type = Some(kind_name(new.kind));
        if let Some(tag) = &new.tag {
            facts.tag_message = Some(tag.message.clone());
            if let Some((name, email)) = &tag.tagger {
                facts.tagger = Some(name.clone());
                facts.tagger_email = Some(email.clone());
            }
        }
        let old = match facts.kind {
            RefKind::Update => Some(self.peel(update.old, "old value")?),
            _ => None,
        };
        let old_commit = old
            .as_ref()
            .filter(|o| o.target_kind == Kind::Commit)
            .map(|o| o.target);

        if new.target_kind == Kind::Commit {
            facts.peeled = Some(new.target.to_hex().to_string());
        }
        // Blobs are scanned on other threads while the walk finds them.
        let added = self.with_scanners(|this| this.added(update, &new, old_commit))?;
        if let Some(old) = &old {
            facts.force = match (old_commit, new.target_kind) {
                _ if update.old == update.new => false,
                (Some(o), Kind::Commit) => {
                    o != new.target && !added.reached_old && !self.is_ancestor(o, new.target)?
                }
                _ => old.target != new.target,
            };
        }
        let Added {
            commits,
            loose: loose_files,
            ..
        } = added;
        let mut files: Vec<(&str, FileEntry)> = Vec::new();

        // Messages and ref names are text an agent writes too: a key pasted into one is
        // as leaked as one in a file.
        for finding in Scanner::shared().scan(facts.name.as_bytes()) {
            push.secrets
                .push(message_secret(&finding, REF_NAME, &facts.new));
        }
        if let Some(message) = &facts.tag_message {
            for finding in Scanner::shared().scan(message.as_bytes()) {
                push.secrets
                    .push(message_secret(&finding, TAG_MESSAGE, &facts.new));
            }
        }
        for c in &commits {
            let info = &self.commits[c];
            for finding in Scanner::shared().scan(info.fact.message.as_bytes()) {
                push.secrets
                    .push(message_secret(&finding, COMMIT_MESSAGE, &info.fact.id));
            }
            push.commits.push(info.fact.clone());
            for f in &info.files {
                files.push((&info.fact.id, clone_entry(f)));
            }
        }
        for f in loose_files {
            files.push(("", f));
        }
        for (commit, f) in files {
            self.reached.insert(f.blob);
            // Every file's blob was queued while walking and scanned before the scanners
            // were joined; a gap would be a bug, refused like any other failure.
            let blob = self.blobs.get(&f.blob).ok_or(Error::Scanner)?;
            let size = i64::try_from(blob.size).unwrap_or(i64::MAX);
            let hex = f.blob.to_hex().to_string();
            // Moved or copied content is already upstream: its path counts, not its bytes.
            if !f.moved {
                if size > push.largest_blob || push.largest_blob_path.is_none() {
                    push.largest_blob = size;
                    push.largest_blob_path = Some(f.path.clone());
                }
                match &blob.scan {
                    Scan::Findings(found) => {
                        for finding in found {
                            push.secrets.push(SecretFact {
                                detector: finding.detector,
                                path: f.path.clone(),
                                commit: commit.to_owned(),
                                line: finding.line as i64,
                                column: finding.column as i64,
                                blob: hex.clone(),
                            });
                        }
                    }
                    Scan::TooLarge => push.unscanned.push(UnscannedFact {
                        path: f.path.clone(),
                        blob: hex.clone(),
                        size,
                        reason: TOO_LARGE,
                    }),
                }
            }
            push.files.push(FileFact {
                path: f.path,
                size,
                blob: hex,
                commit: commit.to_owned(),
                kind: f.kind,
                mode: f.mode,
            });
        }
        Ok((facts, push))
    }

    /// What the update adds, by the kind of object its new value peels to.
    fn added(
        &mut self,
        update: &Update,
        new: &Peeled,
        old: Option<ObjectId>,
    ) -> Result<Added, Error> {
        let mut added = Added {
            commits: Vec::new(),
            loose: Vec::new(),
            reached_old: false,
        };
        match new.target_kind {
            Kind::Commit => {
                let (commits, reached_old) = self.new_commits(new.target, old)?;
                added.commits = commits;
                added.reached_old = reached_old;
            }
            Kind::Tree => self.diff(new.target, &[], &mut added.loose)?,
            Kind::Blob => added.loose.push(FileEntry {
                path: update.name.clone(),
                blob: new.target,
                kind: ADDED,
                mode: REGULAR,
                moved: false,
            }),
            Kind::Tag => {
                return Err(Error::PushTooLarge {
                    what: "nested tags",
                    limit: MAX_TAG_DEPTH,
                });
            }
        }
        for f in &added.loose {
            self.queue(f.blob);
        }
        Ok(added)
    }

    /// Runs `work` while [`InspectOptions::threads`] threads scan every blob it
    /// [queues](Inspector::queue); their results land in `self.blobs`.
    fn with_scanners<T>(
        &mut self,
        work: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let repo = self.repo;
        let opts = self.opts;
        let (sender, receiver) = mpsc::channel::<ObjectId>();
        let receiver = Mutex::new(receiver);
        let (done, scanned) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..opts.threads.max(1))
                .map(|_| {
                    let objects = scanner_objects(repo, opts);
                    let receiver = &receiver;
                    scope.spawn(move || scan_worker(&objects, receiver, opts))
                })
                .collect();
            self.sender = Some(sender);
            let done = work(self);
            // Closing the channel lets the workers finish what is queued and stop.
            self.sender = None;
            let scanned: Vec<_> = workers
                .into_iter()
                .map(|w| w.join().unwrap_or(Err(Error::Scanner)))
                .collect();
            (done, scanned)
        });
        let done = done?;
        for result in scanned {
            self.blobs.extend(result?);
        }
        Ok(done)
    }

    /// Hands `blob` to the scanners unless this push already did.
    fn queue(&mut self, blob: ObjectId) {
        if self.blobs.contains_key(&blob) || !self.queued.insert(blob) {
            return;
        }
        if let Some(sender) = &self.sender {
            // The receiver lives until the workers are joined, so this cannot fail.
            let _ = sender.send(blob);
        }
    }

    /// New commits from `tip` (tip first) and whether the walk met `old` on its way.
    fn new_commits(
        &mut self,
        tip: ObjectId,
        old: Option<ObjectId>,
    ) -> Result<(Vec<ObjectId>, bool), Error> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut boundary = Vec::new();
        let mut reached_old = false;
        let mut stack = vec![tip];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            if Some(id) == old {
                reached_old = true;
            }
            if self.hidden_set.contains(&id) {
                continue;
            }
            // Only in the quarantine: the mirror cannot reach it, so it is new, and so are
            // its parents unless proven otherwise. In the mirror: settled below.
            if !self.in_quarantine || self.base.objects.exists(&id) {
                boundary.push(id);
                continue;
            }
            self.commit_info(id)?;
            order.push(id);
            self.check_commits(order.len())?;
            let parents = &self.commits[&id].fact.parents;
            for parent in parents.iter().rev() {
                stack.push(parse_hex(parent));
            }
        }
        if !boundary.is_empty() {
            let walk = self
                .base
                .rev_walk(boundary.iter().copied())
                .with_hidden(self.hidden.iter().copied())
                .all()
                .map_err(|source| Error::Walk { tip, source })?;
            for info in walk {
                let id = info.map_err(|source| Error::Walk { tip, source })?.id;
                if Some(id) == old {
                    reached_old = true;
                }
                if !self.in_quarantine || !seen.contains(&id) || boundary.contains(&id) {
                    order.push(id);
                }
                self.check_commits(order.len())?;
            }
            for id in &order {
                self.commit_info(*id)?;
            }
        }
        Ok((order, reached_old))
    }

    fn check_commits(&self, count: usize) -> Result<(), Error> {
        if count > self.opts.max_commits {
            return Err(Error::PushTooLarge {
                what: "commits",
                limit: self.opts.max_commits,
            });
        }
        Ok(())
    }

    fn is_ancestor(&self, old: ObjectId, new: ObjectId) -> Result<bool, Error> {
        let base = self
            .repo
            .merge_base(old, new)
            .map_err(|source| Error::Walk { tip: new, source })?;
        Ok(base.is_some_and(|b| b.detach() == old))
    }

    /// Parses `id` and diffs it against its parents, once per push.
    fn commit_info(&mut self, id: ObjectId) -> Result<(), Error> {
        if self.commits.contains_key(&id) {
            return Ok(());
        }
        self.reached.insert(id);
        let mut buf = Vec::new();
        let data = read(self.repo, &id, &mut buf, "commit")?;
        if data.kind != Kind::Commit {
            return Err(malformed(id, "commit", None));
        }
        let commit = gix::objs::CommitRef::from_bytes(data.data, HASH)
            .map_err(|e| malformed(id, "commit", Some(e)))?;
        let (author, author_email) = split_signature(commit.author);
        let (committer, committer_email) = split_signature(commit.committer);
        let signed = commit
            .extra_headers
            .iter()
            .any(|(name, _)| *name == "gpgsig" || *name == "gpgsig-sha256");
        let parents: Vec<ObjectId> = commit.parents().collect();
        let tree = commit.tree();
        let fact = CommitFact {
            id: id.to_hex().to_string(),
            author,
            author_email,
            committer,
            committer_email,
            message: commit.message.to_str_lossy().into_owned(),
            signed,
            parents: parents.iter().map(|p| p.to_hex().to_string()).collect(),
        };
        let mut parent_trees = Vec::with_capacity(parents.len());
        let mut pbuf = Vec::new();
        for parent in &parents {
            let data = read(self.repo, parent, &mut pbuf, "parent commit")?;
            if data.kind != Kind::Commit {
                return Err(malformed(*parent, "commit", None));
            }
            let tree = gix::objs::CommitRefIter::from_bytes(data.data, HASH)
                .tree_id()
                .map_err(|e| malformed(*parent, "commit", Some(e)))?;
            parent_trees.push(tree);
        }
        let mut files = Vec::new();
        self.diff(tree, &parent_trees, &mut files)?;
        for f in &files {
            self.queue(f.blob);
        }
        self.commits.insert(id, CommitInfo { fact, files });
        Ok(())
    }

    /// Appends to `out` the files of `tree` whose blob differs from the one at the same path
    /// in every tree of `parents` (all of them when there are no parents), sorted by path.
    fn diff(
        &mut self,
        tree: ObjectId,
        parents: &[ObjectId],
        out: &mut Vec<FileEntry>,
    ) -> Result<(), Error> {
        if parents.contains(&tree) {
            return Ok(());
        }
        let start = out.len();
        // Every object id seen on the parents' side of the visited levels: a new entry
        // found there was moved or copied, not written.
        let mut in_parents: HashSet<ObjectId> = HashSet::new();
        let mut stack = vec![(
            BString::default(),
            tree,
            parents.iter().map(|p| Some(*p)).collect::<Vec<_>>(),
            false,
        )];
        let mut buf = Vec::new();
        let mut parent_bufs: Vec<Vec<u8>> = Vec::new();
        while let Some((prefix, tree, parents, moved_tree)) = stack.pop() {
            let entries = self.tree_entries(tree, &mut buf)?;
            parent_bufs.resize_with(parents.len(), Vec::new);
            let mut parent_entries = Vec::with_capacity(parents.len());
            for (parent, pbuf) in parents.iter().zip(parent_bufs.iter_mut()) {
                parent_entries.push(match parent {
                    Some(p) => self.tree_entries(*p, pbuf)?,
                    None => Vec::new(),
                });
            }
            for pe in &parent_entries {
                in_parents.extend(pe.iter().map(|e| e.oid.to_owned()));
            }
            let mut cursors = vec![0usize; parents.len()];
            let mut same = Vec::with_capacity(parents.len());
            for entry in &entries {
                if entry.mode.is_commit() {
                    continue; // a submodule's commit, not a blob of this repository
                }
                let is_tree = entry.mode.is_tree();
                same.clear();
                for (pe, cursor) in parent_entries.iter().zip(cursors.iter_mut()) {
                    while *cursor < pe.len()
                        && gix::objs::tree::name_order(
                            pe[*cursor].filename,
                            pe[*cursor].mode.is_tree(),
                            entry.filename,
                            is_tree,
                        )
                        .is_lt()
                    {
                        *cursor += 1;
                    }
                    same.push(
                        pe.get(*cursor)
                            .filter(|p| p.filename == entry.filename && p.mode.is_tree() == is_tree)
                            .copied(),
                    );
                }
                let path = join(prefix.as_bstr(), entry.filename);
                if is_tree {
                    if same.iter().flatten().any(|p| p.oid == entry.oid) {
                        continue;
                    }
                    let sub = same.iter().map(|p| p.map(|p| p.oid.to_owned())).collect();
                    let moved = moved_tree || in_parents.contains(entry.oid);
                    stack.push((path, entry.oid.to_owned(), sub, moved));
                    continue;
                }
                let blobs = || {
                    same.iter()
                        .flatten()
                        .filter(|p| p.mode.is_blob_or_symlink())
                };
                if blobs().any(|p| p.oid == entry.oid) {
                    continue;
                }
                self.files += 1;
                if self.files > self.opts.max_files {
                    return Err(Error::PushTooLarge {
                        what: "files",
                        limit: self.opts.max_files,
                    });
                }
                out.push(FileEntry {
                    path: path.to_str_lossy().into_owned(),
                    blob: entry.oid.to_owned(),
                    kind: if blobs().next().is_some() {
                        MODIFIED
                    } else {
                        ADDED
                    },
                    mode: if entry.mode.is_link() {
                        SYMLINK
                    } else if entry.mode.is_executable() {
                        EXECUTABLE
                    } else {
                        REGULAR
                    },
                    moved: moved_tree,
                });
            }
        }
        // Levels are visited depth-first, so a blob's old place may be seen after its new
        // one: decide moves once every level has been read.
        for f in &mut out[start..] {
            f.moved |= in_parents.contains(&f.blob);
        }
        out[start..].sort_by(|a, b| a.path.cmp(&b.path));
        Ok(())
    }

    /// The entries of tree `id`, borrowing `buf`.
    fn tree_entries<'b>(
        &mut self,
        id: ObjectId,
        buf: &'b mut Vec<u8>,
    ) -> Result<Vec<gix::objs::tree::EntryRef<'b>>, Error> {
        self.reached.insert(id);
        if id.is_empty_tree() {
            return Ok(Vec::new());
        }
        let data = read(self.repo, &id, buf, "tree")?;
        if data.kind != Kind::Tree {
            return Err(malformed(id, "tree", None));
        }
        let entries = gix::objs::TreeRefIter::from_bytes(data.data, HASH)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| malformed(id, "tree", Some(e)))?;
        self.tree_entries += entries.len();
        if self.tree_entries > self.opts.max_tree_entries {
            return Err(Error::PushTooLarge {
                what: "tree entries",
                limit: self.opts.max_tree_entries,
            });
        }
        Ok(entries)
    }

    /// Follows annotated tags from `id`, keeping the first tag's tagger and message.
    fn peel(&self, id: ObjectId, what: &'static str) -> Result<Peeled, Error> {
        let kind = header_kind(self.repo, &id, what)?;
        let mut peeled = Peeled {
            kind,
            target: id,
            target_kind: kind,
            tag: None,
        };
        let mut buf = Vec::new();
        for _ in 0..MAX_TAG_DEPTH {
            if peeled.target_kind != Kind::Tag {
                return Ok(peeled);
            }
            let at = peeled.target;
            let data = read(self.repo, &at, &mut buf, what)?;
            let tag = gix::objs::TagRef::from_bytes(data.data, HASH)
                .map_err(|e| malformed(at, "tag", Some(e)))?;
            if peeled.tag.is_none() {
                peeled.tag = Some(TagInfo {
                    tagger: tag.tagger.map(split_signature),
                    message: tag.message.to_str_lossy().into_owned(),
                });
            }
            peeled.target = tag.target();
            peeled.target_kind = header_kind(self.repo, &peeled.target, "tag target")?;
        }
        Err(Error::PushTooLarge {
            what: "nested tags",
            limit: MAX_TAG_DEPTH,
        })
    }
}

fn clone_entry(f: &FileEntry) -> FileEntry {
    FileEntry {
        path: f.path.clone(),
        blob: f.blob,
        kind: f.kind,
        mode: f.mode,
        moved: f.moved,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Commit => "commit",
        Kind::Tag => "tag",
        Kind::Tree => "tree",
        Kind::Blob => "blob",
    }
}

fn parse_hex(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.as_bytes()).expect("parent ids are stored as the hex of parsed ids")
}

fn malformed(id: ObjectId, kind: &'static str, source: Option<gix::Error>) -> Error {
    Error::MalformedObject { id, kind, source }
}

fn read<'b>(
    repo: &gix::Repository,
    id: &ObjectId,
    buf: &'b mut Vec<u8>,
    what: &'static str,
) -> Result<gix::objs::Data<'b>, Error> {
    match repo.objects.try_find(id, buf) {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(Error::Missing { what, id: *id }),
        Err(source) => Err(Error::Read { id: *id, source }),
    }
}

fn header_kind(repo: &gix::Repository, id: &ObjectId, what: &'static str) -> Result<Kind, Error> {
    if id.is_empty_tree() {
        return Ok(Kind::Tree);
    }
    match repo.objects.try_header(id) {
        Ok(Some(header)) => Ok(header.kind()),
        Ok(None) => Err(Error::Missing { what, id: *id }),
        Err(source) => Err(Error::Read { id: *id, source }),
    }
}

/// `Name <email> 1700000000 +0000` → (name, email), leniently: git accepts odd idents.
fn split_signature(raw: &BStr) -> (String, String) {
    let raw: &[u8] = raw.as_ref();
    let (name, rest) = match raw.find_byte(b'<') {
        Some(at) => (&raw[..at], &raw[at + 1..]),
        None => (raw, &b""[..]),
    };
    let email = rest.find_byte(b'>').map_or(rest, |end| &rest[..end]);
    (
        name.trim().to_str_lossy().into_owned(),
        email.trim().to_str_lossy().into_owned(),
    )
}

fn join(prefix: &BStr, name: &BStr) -> BString {
    let mut path = BString::from(Vec::with_capacity(prefix.len() + name.len() + 1));
    if !prefix.is_empty() {
        path.push_str(prefix);
        path.push(b'/');
    }
    path.push_str(name);
    path
}

/// A handle for one scanner thread: no object cache (each blob is read once) and a share
/// of the delta-base cache.
fn scanner_objects(repo: &gix::Repository, opts: &InspectOptions) -> gix::OdbHandle {
    let mut objects = repo.objects.clone();
    objects.unset_object_cache();
    set_pack_cache(&mut objects, opts.pack_cache_bytes / opts.threads.max(1));
    objects
}

fn set_pack_cache(objects: &mut gix::OdbHandle, bytes: usize) {
    if bytes == 0 {
        objects.unset_pack_cache();
    } else {
        objects.set_pack_cache(move || {
            Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(bytes))
        });
    }
}

/// Scans blobs from `receiver` until it closes; one blob in memory at a time.
fn scan_worker(
    objects: &gix::OdbHandle,
    receiver: &Mutex<mpsc::Receiver<ObjectId>>,
    opts: &InspectOptions,
) -> Result<Vec<(ObjectId, BlobInfo)>, Error> {
    let mut buf = Vec::new();
    let mut done = Vec::new();
    loop {
        let next = receiver.lock().map_err(|_| Error::Scanner)?.recv();
        let Ok(id) = next else { break };
        done.push((id, scan_blob(objects, &id, opts, &mut buf)?));
    }
    Ok(done)
}

fn scan_blob(
    objects: &gix::OdbHandle,
    id: &ObjectId,
    opts: &InspectOptions,
    buf: &mut Vec<u8>,
) -> Result<BlobInfo, Error> {
    let header = match objects.try_header(id) {
        Ok(Some(h)) => h,
        Ok(None) => {
            return Err(Error::Missing {
                what: "blob",
                id: *id,
            });
        }
        Err(source) => return Err(Error::Read { id: *id, source }),
    };
    if header.kind() != Kind::Blob {
        return Err(malformed(*id, "blob", None));
    }
    let size = header.size();
    if size > opts.max_scan_bytes {
        return Ok(BlobInfo {
            size,
            scan: Scan::TooLarge,
        });
    }
    let data = match objects.try_find(id, buf) {
        Ok(Some(d)) => d.data,
        Ok(None) => {
            return Err(Error::Missing {
                what: "blob",
                id: *id,
            });
        }
        Err(source) => return Err(Error::Read { id: *id, source }),
    };
    // Binary blobs are scanned too: one NUL byte must not hide a key in a text file, and
    // the detectors' prefixes and validators keep binary noise out.
    let scan = Scan::Findings(Scanner::shared().scan_chunked(data, opts.scan_chunk));
    Ok(BlobInfo { size, scan })
}
