//! Push facts (SPEC "Push facts"): what `git` rules see as `ref.*` and `push.*`.
//!
//! One ref update of a push is judged at a time. [`RefFacts`] describes the update itself
//! (which ref, create/update/delete, force, protected); [`PushFacts`] describes what the
//! update adds: the commits reachable from its new tip and from no ref the upstream already
//! has, the files those commits add or change, and what the secret scanner found in them.
//! [`crate::git::inspect::history::inspect`] fills both.
//!
//! A finding names a detector, a path, a commit and a position, never the secret: these
//! facts reach audit rows, `ng` lines, side-band progress and `--json` output.
//!
//! ```
//! use portcullis::git::inspect::facts::{Protected, RefFacts, RefKind};
//! use portcullis::policy::value::{Record, Value};
//!
//! let protected = Protected::default();
//! let zero = "0".repeat(40);
//! let facts = RefFacts::new("refs/heads/release/1.0", &"a".repeat(40), &zero, &protected);
//! assert_eq!(facts.kind, RefKind::Delete);
//! assert!(facts.protected);
//! assert!(matches!(facts.get("branch"), Value::Str("release/1.0")));
//! ```

use serde::Serialize;

use crate::git::Error;
use crate::policy::value::{List, Record, Records, Value};

/// Branches protected when the configuration names none.
pub use crate::config::DEFAULT_PROTECTED;

/// Prefix of branch refs.
pub const HEADS: &str = "refs/heads/";
/// Prefix of tag refs.
pub const TAGS: &str = "refs/tags/";

/// Globs over branch short names (`main`, `release/*`); `*` stays within one `/` segment.
#[derive(Debug, Clone)]
pub struct Protected {
    globs: Vec<String>,
    set: globset::GlobSet,
    /// Refs outside `refs/heads/` and `refs/tags/` this repository accepts
    /// (`[[git]] special_refs`); every other such ref is `ref.special`.
    special: globset::GlobSet,
}

fn glob_set(globs: &[String]) -> Result<globset::GlobSet, Error> {
    let mut builder = globset::GlobSetBuilder::new();
    for glob in globs {
        let compiled = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|source| Error::Glob {
                glob: glob.clone(),
                source,
            })?;
        builder.add(compiled);
    }
    builder.build().map_err(|source| Error::Glob {
        glob: globs.join(", "),
        source,
    })
}

impl Protected {
    pub fn new(globs: &[String]) -> Result<Protected, Error> {
        Ok(Protected {
            globs: globs.to_vec(),
            set: glob_set(globs)?,
            special: globset::GlobSet::empty(),
        })
    }

    /// Also accepts the refs outside branches and tags that match `globs` (full names:
    /// `refs/notes/*`).
    pub fn allow_special(mut self, globs: &[String]) -> Result<Protected, Error> {
        self.special = glob_set(globs)?;
        Ok(self)
    }

    /// Whether `name` (a full ref name) is neither a branch nor a tag nor an accepted
    /// special ref: `refs/replace/*` changes what every other ref resolves to for
    /// server-side tools, `refs/notes/*` what reviewers read.
    pub fn is_special(&self, name: &str) -> bool {
        !name.starts_with(HEADS) && !name.starts_with(TAGS) && !self.special.is_match(name)
    }

    /// Whether the branch `short` (without `refs/heads/`) is protected.
    pub fn is_protected(&self, short: &str) -> bool {
        self.set.is_match(short)
    }

    pub fn globs(&self) -> &[String] {
        &self.globs
    }
}

impl Default for Protected {
    fn default() -> Self {
        let globs: Vec<String> = DEFAULT_PROTECTED.iter().map(|g| (*g).to_owned()).collect();
        Protected::new(&globs).expect("the default globs are valid")
    }
}

/// What a ref update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Create,
    Update,
    Delete,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Create => "create",
            RefKind::Update => "update",
            RefKind::Delete => "delete",
        }
    }
}

/// One ref update: `ref.*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefFacts {
    /// Full ref name (`refs/heads/main`).
    pub name: String,
    /// Short name of a `refs/heads/*` ref.
    pub branch: Option<String>,
    /// Short name of a `refs/tags/*` ref.
    pub tag: Option<String>,
    pub kind: RefKind,
    /// The ref's namespace: `heads`, `tags`, `notes`, `replace`, ... (its second part).
    pub namespace: String,
    /// Outside branches and tags, and not accepted by `[[git]] special_refs`.
    pub special: bool,
    /// The old value is not an ancestor of the new one (updates only; see
    /// [`crate::git::inspect::history`] for tags and non-commits).
    pub force: bool,
    pub protected: bool,
    /// Old value, 40 hex (zeros for a create).
    pub old: String,
    /// New value, 40 hex (zeros for a delete).
    pub new: String,
    /// Type of the new object: `commit`, `tag`, `tree`, `blob`; `None` for a delete.
    #[serde(rename = "type")]
    pub object_type: Option<&'static str>,
    /// The commit the new value peels to, when it does.
    pub peeled: Option<String>,
    /// For an annotated tag: its tagger's name, email and message.
    pub tagger: Option<String>,
    pub tagger_email: Option<String>,
    pub tag_message: Option<String>,
}

impl RefFacts {
    /// The facts knowable from the command alone; `force`, `type` and the tag fields are
    /// filled by [`crate::git::inspect::history::inspect`].
    pub fn new(name: &str, old: &str, new: &str, protected: &Protected) -> RefFacts {
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let kind = match (zero(old), zero(new)) {
            (true, _) => RefKind::Create,
            (false, true) => RefKind::Delete,
            (false, false) => RefKind::Update,
        };
        let branch = name.strip_prefix(HEADS).map(str::to_owned);
        let tag = name.strip_prefix(TAGS).map(str::to_owned);
        let special = protected.is_special(name);
        let protected = branch.as_deref().is_some_and(|b| protected.is_protected(b));
        RefFacts {
            name: name.to_owned(),
            branch,
            tag,
            kind,
            namespace: name.split('/').nth(1).unwrap_or("").to_owned(),
            special,
            force: false,
            protected,
            old: old.to_owned(),
            new: new.to_owned(),
            object_type: None,
            peeled: None,
            tagger: None,
            tagger_email: None,
            tag_message: None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("ref facts are plain strings and flags")
    }
}

fn opt_str(s: &Option<String>) -> Value<'_> {
    s.as_deref().map_or(Value::Null, Value::Str)
}

impl Record for RefFacts {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "name" => Value::Str(&self.name),
            "branch" => opt_str(&self.branch),
            "tag" => opt_str(&self.tag),
            "kind" => Value::Str(self.kind.as_str()),
            "namespace" => Value::Str(&self.namespace),
            "special" => Value::Bool(self.special),
            "force" => Value::Bool(self.force),
            "protected" => Value::Bool(self.protected),
            "old" => Value::Str(&self.old),
            "new" => Value::Str(&self.new),
            "type" => self.object_type.map_or(Value::Null, Value::Str),
            "peeled" => opt_str(&self.peeled),
            "tagger" => opt_str(&self.tagger),
            "tagger_email" => opt_str(&self.tagger_email),
            "tag_message" => opt_str(&self.tag_message),
            _ => Value::Null,
        }
    }
}

/// A commit the update adds: an element of `push.commits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitFact {
    pub id: String,
    pub author: String,
    pub author_email: String,
    pub committer: String,
    pub committer_email: String,
    /// The full message, body included.
    pub message: String,
    /// Has a `gpgsig` or `gpgsig-sha256` header (present, not verified).
    pub signed: bool,
    pub parents: Vec<String>,
}

impl Record for CommitFact {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "id" => Value::Str(&self.id),
            "author" => Value::Str(&self.author),
            "author_email" => Value::Str(&self.author_email),
            "committer" => Value::Str(&self.committer),
            "committer_email" => Value::Str(&self.committer_email),
            "message" => Value::Str(&self.message),
            "signed" => Value::Bool(self.signed),
            "parents" => Value::List(List::Strs(&self.parents)),
            _ => Value::Null,
        }
    }
}

/// How a file entered a commit.
pub const ADDED: &str = "added";
pub const MODIFIED: &str = "modified";
/// File modes of `push.files.mode`.
pub const REGULAR: &str = "regular";
pub const EXECUTABLE: &str = "executable";
pub const SYMLINK: &str = "symlink";
/// Why a blob was not scanned.
pub const BINARY: &str = "binary";
pub const TOO_LARGE: &str = "too-large";

/// A path a new commit adds or changes: an element of `push.files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFact {
    /// Slash-separated path from the root of the commit's tree.
    pub path: String,
    /// Blob size in bytes.
    pub size: i64,
    pub blob: String,
    pub commit: String,
    /// [`ADDED`] or [`MODIFIED`].
    pub kind: &'static str,
    /// [`REGULAR`], [`EXECUTABLE`] or [`SYMLINK`].
    pub mode: &'static str,
}

impl Record for FileFact {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "path" => Value::Str(&self.path),
            "size" => Value::Int(self.size),
            "blob" => Value::Str(&self.blob),
            "commit" => Value::Str(&self.commit),
            "kind" => Value::Str(self.kind),
            "mode" => Value::Str(self.mode),
            _ => Value::Null,
        }
    }
}

/// A detector finding in a new blob: an element of `push.secrets`. Never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretFact {
    /// A detector id from [`crate::mask::detectors::DETECTORS`].
    pub detector: &'static str,
    pub path: String,
    pub commit: String,
    /// 1-based line and byte column.
    pub line: i64,
    pub column: i64,
    pub blob: String,
}

impl Record for SecretFact {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "detector" => Value::Str(self.detector),
            "path" => Value::Str(&self.path),
            "commit" => Value::Str(&self.commit),
            "line" => Value::Int(self.line),
            "column" => Value::Int(self.column),
            "blob" => Value::Str(&self.blob),
            _ => Value::Null,
        }
    }
}

/// A new blob the scanner skipped: an element of `push.unscanned`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnscannedFact {
    pub path: String,
    pub blob: String,
    pub size: i64,
    /// [`BINARY`] or [`TOO_LARGE`].
    pub reason: &'static str,
}

impl Record for UnscannedFact {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "path" => Value::Str(&self.path),
            "blob" => Value::Str(&self.blob),
            "size" => Value::Int(self.size),
            "reason" => Value::Str(self.reason),
            _ => Value::Null,
        }
    }
}

/// What one ref update adds: `push.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushFacts {
    /// New commits, walked from the new tip (the tip first).
    pub commits: Vec<CommitFact>,
    /// Paths the new commits add or change, per commit.
    pub files: Vec<FileFact>,
    pub secrets: Vec<SecretFact>,
    pub unscanned: Vec<UnscannedFact>,
    /// Size of the largest blob in [`PushFacts::files`], 0 when there is none.
    pub largest_blob: i64,
    pub largest_blob_path: Option<String>,
    /// Push options (`git push -o`), set by the caller.
    pub options: Vec<String>,
    /// Ref updates in the whole push, set by the caller.
    pub refs: i64,
    /// Objects of the pushed pack that no pushed ref reaches and the upstream does not
    /// have (the whole push's, on every ref update).
    pub unreachable: Vec<String>,
}

impl PushFacts {
    pub fn set_options(&mut self, options: Vec<String>) {
        self.options = options;
    }

    pub fn set_refs(&mut self, refs: usize) {
        self.refs = i64::try_from(refs).unwrap_or(i64::MAX);
    }

    pub fn commit_count(&self) -> i64 {
        i64::try_from(self.commits.len()).unwrap_or(i64::MAX)
    }

    /// One human line per finding, for side-band progress and `ng` reasons:
    /// `secret aws-access-key-id in config/app.py:12 (commit abc1234)`.
    pub fn describe_findings(&self) -> Vec<String> {
        self.secrets
            .iter()
            .map(|s| {
                let commit = s.commit.get(..7).unwrap_or(&s.commit);
                if commit.is_empty() {
                    format!("secret {} in {}:{}", s.detector, s.path, s.line)
                } else {
                    format!(
                        "secret {} in {}:{} (commit {commit})",
                        s.detector, s.path, s.line
                    )
                }
            })
            .collect()
    }

    /// Every fact as JSON, `commit_count` included.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value =
            serde_json::to_value(self).expect("push facts are plain strings and numbers");
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("commit_count".to_owned(), self.commit_count().into());
        }
        value
    }
}

/// `{"ref": ..., "push": ...}` for one ref update, as `portcullis check push --json` prints it.
pub fn to_json(ref_facts: &RefFacts, push: &PushFacts) -> serde_json::Value {
    serde_json::json!({ "ref": ref_facts.to_json(), "push": push.to_json() })
}

impl Record for PushFacts {
    fn get(&self, field: &str) -> Value<'_> {
        match field {
            "commits" => Value::List(List::Records(&self.commits as &dyn Records)),
            "commit_count" => Value::Int(self.commit_count()),
            "files" => Value::List(List::Records(&self.files as &dyn Records)),
            "secrets" => Value::List(List::Records(&self.secrets as &dyn Records)),
            "unscanned" => Value::List(List::Records(&self.unscanned as &dyn Records)),
            "largest_blob" => Value::Int(self.largest_blob),
            "largest_blob_path" => opt_str(&self.largest_blob_path),
            "options" => Value::List(List::Strs(&self.options)),
            "refs" => Value::Int(self.refs),
            "unreachable" => Value::List(List::Strs(&self.unreachable)),
            _ => Value::Null,
        }
    }
}
