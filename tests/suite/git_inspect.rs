//! Push inspection against real git: packs made exactly as `git push` makes them
//! (`git pack-objects --thin --stdout --revs`), indexed into a quarantine beside a bare
//! upstream, then walked into facts.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use portcullis::git::Error;
use portcullis::git::inspect::facts::{self, Protected, PushFacts, RefFacts, RefKind};
use portcullis::git::inspect::history::{Hidden, InspectOptions, Update, inspect};
use portcullis::git::inspect::pack::{Limits, Quarantine};
use portcullis::policy::value::{Record, Value};

use crate::support::git::filler;

const ZERO: &str = "0000000000000000000000000000000000000000";

fn aws_key() -> String {
    format!("AKIA{}", "Q7".repeat(8))
}

/// Runs git in `dir` with a fixed identity and no user or system config.
fn git_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada Agent")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Cy Committer")
        .env("GIT_COMMITTER_EMAIL", "cy@example.com")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("git runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("git finishes");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8").trim().to_owned()
}

/// A bare upstream with a first commit on `main`, and a client clone of it.
struct Fixture {
    _root: tempfile::TempDir,
    upstream: PathBuf,
    client: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().expect("temp dir");
        let upstream = root.path().join("upstream.git");
        let client = root.path().join("client");
        git_in(root.path(), &["init", "-q", "--bare", "upstream.git"], None);
        git_in(
            root.path(),
            &["clone", "-q", "upstream.git", "client"],
            None,
        );
        let f = Fixture {
            _root: root,
            upstream,
            client,
        };
        f.write("README.md", b"# demo\n");
        f.write("src/lib.rs", lorem(400).as_bytes());
        f.commit("first");
        f.git(&["push", "-q", "origin", "main"]);
        f
    }

    fn git(&self, args: &[&str]) -> String {
        text(git_in(&self.client, args, None))
    }

    fn upstream_git(&self, args: &[&str]) -> String {
        text(git_in(&self.upstream, args, None))
    }

    fn write(&self, path: &str, content: &[u8]) {
        let full = self.client.join(path);
        std::fs::create_dir_all(full.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(full, content).expect("write file");
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.client.join(path)).expect("remove file");
    }

    /// Commits everything in the work tree; returns the new commit id.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    /// The pack `git push` would send (send-pack's arguments): thin, `new` tips against the
    /// `not` tips.
    fn pack(&self, new: &[&str], not: &[&str]) -> Vec<u8> {
        let mut input = String::new();
        for n in new {
            input.push_str(&format!("{n}\n"));
        }
        for n in not.iter().filter(|n| **n != ZERO) {
            input.push_str(&format!("^{n}\n"));
        }
        git_in(
            &self.client,
            &[
                "pack-objects",
                "--thin",
                "--stdout",
                "--revs",
                "--delta-base-offset",
                "-q",
            ],
            Some(input.as_bytes()),
        )
    }

    /// Indexes `pack` against the upstream and inspects `updates` with default options.
    fn inspect(&self, pack: &[u8], updates: &[(&str, &str, &str)]) -> Vec<(RefFacts, PushFacts)> {
        self.inspect_with(pack, updates, &InspectOptions::default())
            .expect("inspect succeeds")
    }

    fn inspect_with(
        &self,
        pack: &[u8],
        updates: &[(&str, &str, &str)],
        opts: &InspectOptions,
    ) -> Result<Vec<(RefFacts, PushFacts)>, Error> {
        let before = listing(&self.upstream);
        let dir = tempfile::tempdir().expect("quarantine dir");
        let q =
            Quarantine::index(&mut &pack[..], dir.path(), &self.upstream).expect("pack indexes");
        let updates: Vec<Update> = updates
            .iter()
            .map(|(old, new, name)| Update::parse(old, new, name).expect("valid ids"))
            .collect();
        let result = inspect(
            &self.upstream,
            Some(&q),
            &updates,
            &Protected::default(),
            opts,
        );
        assert_eq!(
            before,
            listing(&self.upstream),
            "the upstream was written to"
        );
        result
    }

    fn index_err(&self, pack: &[u8]) -> Error {
        let before = listing(&self.upstream);
        let dir = tempfile::tempdir().expect("quarantine dir");
        let err = Quarantine::index(&mut &pack[..], dir.path(), &self.upstream)
            .expect_err("the pack is refused");
        assert_eq!(
            before,
            listing(&self.upstream),
            "the upstream was written to"
        );
        err
    }
}

/// Every file below `dir`, with its size, to prove nothing was written there.
fn listing(dir: &Path) -> BTreeSet<(PathBuf, u64)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("dir entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert((e.path(), meta.len()));
            }
        }
    }
    out
}

/// Source-like text that deltas well.
fn lorem(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("fn item_{i}() -> u32 {{ {i} * 7 + 3 }} // filler line for deltas\n"))
        .collect()
}

fn ids(push: &PushFacts) -> BTreeSet<String> {
    push.commits.iter().map(|c| c.id.clone()).collect()
}

fn rev_list(f: &Fixture, args: &[&str]) -> BTreeSet<String> {
    let mut all = vec!["rev-list"];
    all.extend_from_slice(args);
    f.git(&all).lines().map(str::to_owned).collect()
}

fn files(push: &PushFacts) -> Vec<(String, String, i64, String)> {
    push.files
        .iter()
        .map(|f| {
            (
                f.commit[..7].to_owned(),
                f.path.clone(),
                f.size,
                f.kind.to_owned(),
            )
        })
        .collect()
}

#[test]
fn fast_forward_is_not_force_and_lists_what_it_adds() {
    let f = Fixture::new();
    let old = f.head();
    // Change one line of a large file: the thin pack sends a delta against upstream's blob.
    let mut lib = lorem(400);
    lib.push_str("fn extra() {}\n");
    f.write("src/lib.rs", lib.as_bytes());
    let a = f.commit("extend lib");
    f.write("docs/guide.md", b"hello\n");
    f.write("run.sh", b"#!/bin/sh\necho hi\n");
    let script = f.client.join("run.sh");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let b = f.commit("docs and script");
    let pack = f.pack(&[&b], &[&old]);

    let dir = tempfile::tempdir().expect("dir");
    let q = Quarantine::index(&mut &pack[..], dir.path(), &f.upstream).expect("thin pack resolves");
    let announced = u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]]);
    assert!(
        q.num_objects() > announced,
        "the pack was thin: {announced} objects sent, {} after completing it",
        q.num_objects()
    );

    let facts = f.inspect(&pack, &[(&old, &b, "refs/heads/main")]);
    let (r, p) = &facts[0];
    assert_eq!(r.kind, RefKind::Update);
    assert!(!r.force);
    assert!(r.protected);
    assert_eq!(r.branch.as_deref(), Some("main"));
    assert_eq!(r.tag, None);
    assert_eq!(r.object_type, Some("commit"));
    assert_eq!(ids(p), BTreeSet::from([a.clone(), b.clone()]));
    assert_eq!(p.commits[0].id, b, "the tip comes first");
    let c = &p.commits[0];
    assert_eq!(
        (c.author.as_str(), c.author_email.as_str()),
        ("Ada Agent", "ada@example.com")
    );
    assert_eq!(
        (c.committer.as_str(), c.committer_email.as_str()),
        ("Cy Committer", "cy@example.com")
    );
    assert_eq!(c.message, "docs and script\n");
    assert_eq!(c.parents, vec![a.clone()]);
    assert!(!c.signed);

    let mut got = files(p);
    got.sort();
    let mut want = vec![
        (
            a[..7].to_owned(),
            "src/lib.rs".to_owned(),
            lib.len() as i64,
            "modified".to_owned(),
        ),
        (
            b[..7].to_owned(),
            "docs/guide.md".to_owned(),
            6,
            "added".to_owned(),
        ),
        (
            b[..7].to_owned(),
            "run.sh".to_owned(),
            18,
            "added".to_owned(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    let script = p
        .files
        .iter()
        .find(|f| f.path == "run.sh")
        .expect("run.sh listed");
    assert_eq!(script.mode, "executable");
    assert_eq!(p.largest_blob, lib.len() as i64);
    assert_eq!(p.largest_blob_path.as_deref(), Some("src/lib.rs"));
    assert!(p.secrets.is_empty(), "{:?}", p.secrets);
    assert!(p.unscanned.is_empty());
}

#[test]
fn rewritten_history_is_force() {
    let f = Fixture::new();
    f.write("a.txt", b"one\n");
    let one = f.commit("one");
    f.git(&["push", "-q", "origin", "main"]);
    f.git(&["reset", "-q", "--hard", "HEAD~1"]);
    f.write("a.txt", b"two\n");
    let two = f.commit("two");
    let pack = f.pack(&[&two], &[&one]);
    let facts = f.inspect(&pack, &[(&one, &two, "refs/heads/main")]);
    let (r, p) = &facts[0];
    assert_eq!(r.kind, RefKind::Update);
    assert!(r.force, "{one} is not an ancestor of {two}");
    assert_eq!(ids(p), BTreeSet::from([two.clone()]));
}

#[test]
fn create_and_delete_kinds() {
    let f = Fixture::new();
    let main = f.head();
    f.git(&["push", "-q", "origin", "main:refs/heads/old-topic"]);
    f.git(&["checkout", "-q", "-b", "topic"]);
    f.write("topic.txt", b"topic\n");
    let t = f.commit("topic work");
    let pack = f.pack(&[&t], &[&main]);
    let facts = f.inspect(
        &pack,
        &[
            (ZERO, &t, "refs/heads/topic"),
            (&main, ZERO, "refs/heads/old-topic"),
        ],
    );
    let (create, pushed) = &facts[0];
    assert_eq!(create.kind, RefKind::Create);
    assert!(!create.force);
    assert!(!create.protected);
    assert_eq!(ids(pushed), BTreeSet::from([t.clone()]));
    let (delete, nothing) = &facts[1];
    assert_eq!(delete.kind, RefKind::Delete);
    assert_eq!(delete.object_type, None);
    assert!(nothing.commits.is_empty() && nothing.files.is_empty());
    assert!(matches!(delete.get("kind"), Value::Str("delete")));
    assert!(matches!(delete.get("type"), Value::Null));
}

#[test]
fn merge_commits_are_new_and_diffed_against_every_parent() {
    let f = Fixture::new();
    let old = f.head();
    f.git(&["checkout", "-q", "-b", "side"]);
    f.write("side.txt", b"side\n");
    let side = f.commit("side");
    f.git(&["checkout", "-q", "main"]);
    f.write("main.txt", b"main\n");
    let on_main = f.commit("main");
    f.git(&["merge", "-q", "--no-ff", "--no-commit", "side"]);
    f.write("evil.txt", b"only in the merge\n");
    let merge = f.commit("merge side");
    let pack = f.pack(&[&merge], &[&old]);
    let facts = f.inspect(&pack, &[(&old, &merge, "refs/heads/main")]);
    let (r, p) = &facts[0];
    assert!(!r.force);
    assert_eq!(ids(p), rev_list(&f, &[&merge, &format!("^{old}")]));
    assert_eq!(
        ids(p),
        BTreeSet::from([side.clone(), on_main.clone(), merge.clone()])
    );
    let m = p
        .commits
        .iter()
        .find(|c| c.id == merge)
        .expect("merge listed");
    assert_eq!(m.parents, vec![on_main.clone(), side.clone()]);
    let merge_files: Vec<&str> = p
        .files
        .iter()
        .filter(|x| x.commit == merge)
        .map(|x| x.path.as_str())
        .collect();
    assert_eq!(
        merge_files,
        vec!["evil.txt"],
        "side.txt and main.txt each match one parent"
    );
}

#[test]
fn secret_in_a_non_tip_commit_is_found_and_never_printed() {
    let f = Fixture::new();
    let old = f.head();
    let mut config = String::new();
    for i in 1..12 {
        config.push_str(&format!("SETTING_{i} = {i}\n"));
    }
    config.push_str(&format!("AWS_KEY = \"{}\"\n", aws_key()));
    f.write("config/app.py", config.as_bytes());
    let leak = f.commit("configure");
    f.write("notes.txt", b"later work\n");
    let tip = f.commit("later");
    let pack = f.pack(&[&tip], &[&old]);
    let facts = f.inspect(&pack, &[(&old, &tip, "refs/heads/main")]);
    let (r, p) = &facts[0];
    assert_eq!(p.secrets.len(), 1, "{:?}", p.secrets);
    let s = &p.secrets[0];
    assert_eq!(s.detector, "aws-access-key-id");
    assert_eq!(s.path, "config/app.py");
    assert_eq!(s.commit, leak);
    assert_eq!((s.line, s.column), (12, 12));
    assert_eq!(
        p.describe_findings(),
        vec![format!(
            "secret aws-access-key-id in config/app.py:12 (commit {})",
            &leak[..7]
        )]
    );
    let json = facts::to_json(r, p).to_string();
    let debug = format!("{facts:?}");
    for shown in [&json, &debug] {
        assert!(
            !shown.contains(&aws_key()),
            "the secret leaked into {shown}"
        );
    }
    assert!(json.contains("\"commit_count\":2"), "{json}");
    assert!(json.contains("\"type\":\"commit\""), "{json}");
}

#[test]
fn secret_added_then_reverted_in_one_push_is_still_found() {
    let f = Fixture::new();
    let old = f.head();
    f.write(
        "deploy/.credentials",
        format!("key={}\n", aws_key()).as_bytes(),
    );
    let leak = f.commit("oops");
    f.remove("deploy/.credentials");
    let clean = f.commit("remove it again");
    let pack = f.pack(&[&clean], &[&old]);
    let facts = f.inspect(&pack, &[(&old, &clean, "refs/heads/main")]);
    let p = &facts[0].1;
    assert_eq!(ids(p), BTreeSet::from([leak.clone(), clean.clone()]));
    assert_eq!(p.secrets.len(), 1);
    assert_eq!(p.secrets[0].commit, leak);
    assert_eq!(p.secrets[0].path, "deploy/.credentials");
    assert!(
        p.files.iter().all(|x| x.commit == leak),
        "a deletion is not a file"
    );
}

#[test]
fn recreating_a_deleted_branch_makes_its_commits_new_again() {
    let f = Fixture::new();
    let main = f.head();
    f.git(&["checkout", "-q", "-b", "leak"]);
    f.write("leak.env", format!("AWS={}\n", aws_key()).as_bytes());
    let leak = f.commit("leak");
    f.git(&["push", "-q", "origin", "leak"]);
    f.upstream_git(&["update-ref", "-d", "refs/heads/leak"]);
    f.upstream_git(&["cat-file", "-e", &leak]);
    f.git(&["update-ref", "-d", "refs/remotes/origin/leak"]);

    // As git sends it (the commit again) and hand-made with no objects at all.
    let as_git_sends = f.pack(&[&leak], &[&main]);
    let empty = git_in(&f.client, &["pack-objects", "--stdout", "-q"], Some(b""));
    for pack in [as_git_sends, empty] {
        let facts = f.inspect(&pack, &[(ZERO, &leak, "refs/heads/again")]);
        let p = &facts[0].1;
        assert_eq!(ids(p), BTreeSet::from([leak.clone()]));
        assert_eq!(p.secrets.len(), 1, "{:?}", p.secrets);
        assert_eq!(p.secrets[0].path, "leak.env");
    }
}

#[test]
fn blobs_over_the_scan_cap_are_sized_but_not_scanned_and_binary_ones_are_scanned() {
    let f = Fixture::new();
    let old = f.head();
    let big = format!("{}\n{}\n", lorem(30_000), aws_key());
    f.write("data/big.txt", big.as_bytes());
    let mut binary = vec![0u8, 1, 2, 3];
    binary.extend_from_slice(aws_key().as_bytes());
    binary.extend(std::iter::repeat_n(7u8, 5000));
    f.write("img/logo.png", &binary);
    let tip = f.commit("assets");
    let pack = f.pack(&[&tip], &[&old]);
    let opts = InspectOptions {
        max_scan_bytes: 1 << 20,
        ..InspectOptions::default()
    };
    assert!(big.len() > 1 << 20);
    let facts = f
        .inspect_with(&pack, &[(&old, &tip, "refs/heads/main")], &opts)
        .expect("inspects");
    let p = &facts[0].1;
    // A NUL byte must not hide a key: the binary blob is scanned; the large one is not.
    let found: Vec<&str> = p.secrets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(found, vec!["img/logo.png"], "{:?}", p.secrets);
    assert_eq!(p.largest_blob, big.len() as i64);
    assert_eq!(p.largest_blob_path.as_deref(), Some("data/big.txt"));
    let mut skipped: Vec<(&str, &str, i64)> = p
        .unscanned
        .iter()
        .map(|u| (u.path.as_str(), u.reason, u.size))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![("data/big.txt", "too-large", big.len() as i64)]
    );
    assert!(matches!(p.get("largest_blob"), Value::Int(n) if n == big.len() as i64));

    // With the default cap the large text blob is scanned too.
    let facts = f.inspect(&pack, &[(&old, &tip, "refs/heads/main")]);
    let mut found: Vec<&str> = facts[0].1.secrets.iter().map(|s| s.path.as_str()).collect();
    found.sort();
    assert_eq!(found, vec!["data/big.txt", "img/logo.png"]);
}

/// The chunk size the issue 14 tests scan with: small, so a blob of a few chunks is quick.
const CHUNK: usize = 64 << 10;

fn chunked() -> InspectOptions {
    InspectOptions {
        scan_chunk: CHUNK,
        ..InspectOptions::default()
    }
}

/// `(detector, line, column)` of every secret found in `path` by `commit`.
fn found_in(push: &PushFacts, path: &str, commit: &str) -> Vec<(&'static str, i64, i64)> {
    push.secrets
        .iter()
        .filter(|s| s.path == path && s.commit == commit)
        .map(|s| (s.detector, s.line, s.column))
        .collect()
}

/// What a whole scan of `blob` finds, as `(detector, line, column)`.
fn whole_scan(blob: &[u8]) -> Vec<(&'static str, i64, i64)> {
    portcullis::mask::detectors::Scanner::new()
        .scan(blob)
        .iter()
        .map(|f| (f.detector, f.line as i64, f.column as i64))
        .collect()
}

/// Overwrites `blob` at `at` with ` <secret> `, so the secret starts at `at + 1` between
/// token boundaries; returns its 1-based line.
fn plant(blob: &mut [u8], at: usize, secret: &str) -> i64 {
    let with_spaces = format!(" {secret} ");
    blob[at..at + with_spaces.len()].copy_from_slice(with_spaces.as_bytes());
    blob[..at].iter().filter(|&&b| b == b'\n').count() as i64 + 1
}

/// Issue #14, item 7: a blob over the chunk size is scanned in chunks; a secret across a
/// cut is reported once, on its line, and so is one deep in a later chunk, also when the
/// blob arrives as a delta against a large base.
#[test]
fn issue_14_secrets_across_a_cut_and_deep_in_a_large_blob_are_found_once() {
    let f = Fixture::new();
    let old = f.head();
    let mut blob = filler(6 * CHUNK);
    // The key starts 7 bytes before the first cut (64 KiB), on line 1,024 (1,023 lines of
    // 64 bytes before it).
    let key_line = plant(&mut blob, CHUNK - 8, &aws_key());
    assert_eq!(key_line, 1024);
    let token = format!("ghp_{}", "aB3".repeat(12));
    let token_line = plant(&mut blob, 4 * CHUNK + 5000, &token);
    f.write("data/big.txt", &blob);
    let first = f.commit("large file");
    // A second version with a third secret across the third cut: git packs it as a delta
    // against the first.
    let mut second = blob.clone();
    let key2_line = plant(
        &mut second,
        3 * CHUNK - 5,
        &format!("AKIA{}", "Z9".repeat(8)),
    );
    f.write("data/big.txt", &second);
    let tip = f.commit("edit the large file");
    let pack = f.pack(&[&tip], &[&old]);

    let facts = f
        .inspect_with(&pack, &[(&old, &tip, "refs/heads/main")], &chunked())
        .expect("inspects");
    let p = &facts[0].1;
    assert!(p.unscanned.is_empty(), "{:?}", p.unscanned);
    assert_eq!(
        found_in(p, "data/big.txt", &first),
        vec![
            ("aws-access-key-id", key_line, 58),
            ("github-token", token_line, 10),
        ]
    );
    assert_eq!(found_in(p, "data/big.txt", &first), whole_scan(&blob));
    let in_second = found_in(p, "data/big.txt", &tip);
    assert_eq!(in_second.len(), 3, "{in_second:?}");
    assert!(
        in_second.contains(&("aws-access-key-id", key2_line, 61)),
        "{in_second:?}"
    );
    assert_eq!(in_second, whole_scan(&second));
    assert_eq!(p.largest_blob, (6 * CHUNK) as i64);
}

/// Issue #14, item 7: a clean blob over the chunk size is judged, not refused as unscanned.
#[test]
fn issue_14_a_clean_large_blob_is_scanned_not_unscanned() {
    let f = Fixture::new();
    let old = f.head();
    f.write("data/big.txt", &filler(5 * CHUNK + 123));
    let tip = f.commit("large file");
    let pack = f.pack(&[&tip], &[&old]);
    let facts = f
        .inspect_with(&pack, &[(&old, &tip, "refs/heads/main")], &chunked())
        .expect("inspects");
    let p = &facts[0].1;
    assert!(p.secrets.is_empty(), "{:?}", p.secrets);
    assert!(p.unscanned.is_empty(), "{:?}", p.unscanned);
    assert_eq!(p.largest_blob, (5 * CHUNK + 123) as i64);
    assert_eq!(p.largest_blob_path.as_deref(), Some("data/big.txt"));
}

#[test]
fn annotated_tag_create_peels_to_its_commit() {
    let f = Fixture::new();
    let main = f.head();
    f.write("CHANGELOG", b"v1\n");
    let release = f.commit("release");
    f.git(&["tag", "-a", "v1.0", "-m", "release one"]);
    let tag = f.git(&["rev-parse", "v1.0"]);
    assert_ne!(tag, release);
    let pack = f.pack(&[&tag], &[&main]);
    let facts = f.inspect(&pack, &[(ZERO, &tag, "refs/tags/v1.0")]);
    let (r, p) = &facts[0];
    assert_eq!(r.kind, RefKind::Create);
    assert_eq!(r.tag.as_deref(), Some("v1.0"));
    assert_eq!(r.branch, None);
    assert!(!r.protected);
    assert_eq!(r.object_type, Some("tag"));
    assert_eq!(r.peeled.as_deref(), Some(release.as_str()));
    assert_eq!(r.tag_message.as_deref(), Some("release one\n"));
    assert_eq!(r.tagger_email.as_deref(), Some("cy@example.com"));
    assert_eq!(ids(p), BTreeSet::from([release]));

    // Moving the tag to an older commit: an update that is not a fast-forward.
    f.git(&["push", "-q", "origin", "main", "v1.0"]);
    f.git(&["tag", "-f", "-a", "v1.0", "-m", "moved", &main]);
    let moved = f.git(&["rev-parse", "v1.0"]);
    let pack = f.pack(&[&moved], &[&tag]);
    let facts = f.inspect(&pack, &[(&tag, &moved, "refs/tags/v1.0")]);
    assert_eq!(facts[0].0.kind, RefKind::Update);
    assert!(facts[0].0.force);
    assert!(facts[0].1.commits.is_empty());
}

#[test]
fn a_ref_to_a_bare_blob_is_scanned() {
    let f = Fixture::new();
    let blob_path = f.client.join("loose.txt");
    std::fs::write(&blob_path, format!("token {}\n", aws_key())).expect("write");
    let blob = f.git(&["hash-object", "-w", "loose.txt"]);
    let pack = git_in(
        &f.client,
        &["pack-objects", "--stdout", "-q"],
        Some(format!("{blob}\n").as_bytes()),
    );
    let facts = f.inspect(&pack, &[(ZERO, &blob, "refs/tags/stash")]);
    let (r, p) = &facts[0];
    assert_eq!(r.object_type, Some("blob"));
    assert_eq!(p.secrets.len(), 1);
    assert_eq!(p.secrets[0].path, "refs/tags/stash");
}

#[test]
fn check_mode_reads_everything_from_the_repository() {
    let f = Fixture::new();
    let old = f.head();
    f.write("x.txt", b"x\n");
    let x = f.commit("x");
    f.write("y.txt", b"y\n");
    let y = f.commit("y");
    let opts = InspectOptions {
        hidden: Hidden::Only(Vec::new()),
        ..InspectOptions::default()
    };
    let update = Update::parse(&old, &y, "refs/heads/main").expect("ids");
    let facts =
        inspect(&f.client, None, &[update], &Protected::default(), &opts).expect("inspects");
    assert_eq!(ids(&facts[0].1), BTreeSet::from([x, y]));
    assert!(!facts[0].0.force);
}

#[test]
fn a_missing_new_tip_fails_closed() {
    let f = Fixture::new();
    let old = f.head();
    f.write("z.txt", b"z\n");
    let z = f.commit("z");
    let empty = git_in(&f.client, &["pack-objects", "--stdout", "-q"], Some(b""));
    let err = f
        .inspect_with(
            &empty,
            &[(&old, &z, "refs/heads/main")],
            &InspectOptions::default(),
        )
        .expect_err("the tip is nowhere");
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
}

#[test]
fn corrupt_truncated_and_baseless_packs_are_clean_errors() {
    let f = Fixture::new();
    let old = f.head();
    f.write("big.txt", lorem(2000).as_bytes());
    let x = f.commit("big file, never pushed");
    let mut changed = lorem(2000);
    changed.push_str("one more line\n");
    f.write("big.txt", changed.as_bytes());
    let y = f.commit("small change");
    let pack = f.pack(&[&y], &[&old]);

    let mut flipped = pack.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 8] {
        *b ^= 0xa5;
    }
    let err = f.index_err(&flipped);
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");

    let mut bad_trailer = pack.clone();
    let last = bad_trailer.len() - 1;
    bad_trailer[last] ^= 1;
    let err = f.index_err(&bad_trailer);
    assert!(matches!(err, Error::Corrupt(_)), "{err:?}");

    for cut in [5, 12, 40, pack.len() - 10] {
        let err = f.index_err(&pack[..cut]);
        assert!(
            matches!(err, Error::TruncatedHeader { .. } | Error::Corrupt(_)),
            "cut at {cut}: {err:?}"
        );
    }

    let err = f.index_err(b"GARBAGE-NOT-A-PACK");
    assert!(matches!(err, Error::NotAPack { .. }), "{err:?}");

    // Thin against a commit the upstream never got: the delta base is nowhere.
    let baseless = f.pack(&[&y], &[&x]);
    let err = f.index_err(&baseless);
    assert!(matches!(err, Error::MissingBase(_)), "{err:?}");
}

#[test]
fn limits_refuse_oversized_packs() {
    let f = Fixture::new();
    let old = f.head();
    f.write("big.txt", lorem(2000).as_bytes());
    let tip = f.commit("big");
    let pack = f.pack(&[&tip], &[&old]);
    let dir = tempfile::tempdir().expect("dir");
    let tight =
        |limits: Limits| Quarantine::index_with(&mut &pack[..], dir.path(), &f.upstream, &limits);

    let err = tight(Limits {
        max_pack_bytes: 100,
        ..Limits::default()
    })
    .expect_err("too many bytes");
    assert!(matches!(err, Error::PackTooLarge { limit: 100 }), "{err:?}");

    let err = tight(Limits {
        max_objects: 1,
        ..Limits::default()
    })
    .expect_err("too many objects");
    assert!(
        matches!(err, Error::TooManyObjects { limit: 1, .. }),
        "{err:?}"
    );

    let err = tight(Limits {
        max_object_bytes: 1000,
        ..Limits::default()
    })
    .expect_err("an object over the allocation cap");
    assert!(
        matches!(err, Error::ObjectTooLarge { limit: 1000 }),
        "{err:?}"
    );

    // A header announcing four billion objects is refused before anything is sized by it.
    let mut header = b"PACK\0\0\0\x02".to_vec();
    header.extend_from_slice(&u32::MAX.to_be_bytes());
    let err = f.index_err(&header);
    assert!(matches!(err, Error::TooManyObjects { .. }), "{err:?}");
}

#[test]
fn protected_globs_match_one_segment() {
    let p = Protected::default();
    assert!(p.is_protected("main"));
    assert!(p.is_protected("release/1.0"));
    assert!(!p.is_protected("release/1.0/hotfix"));
    assert!(!p.is_protected("feature/main"));
    assert!(Protected::new(&["[".to_owned()]).is_err());
    let r = RefFacts::new("refs/heads/release/2", ZERO, &"b".repeat(40), &p);
    assert!(r.protected);
    assert_eq!(r.kind, RefKind::Create);
    let tag = RefFacts::new("refs/tags/main", &"a".repeat(40), &"b".repeat(40), &p);
    assert!(!tag.protected, "tags are not branches");
}

#[test]
fn a_branch_at_an_old_reachable_commit_adds_nothing() {
    let f = Fixture::new();
    let first = f.head();
    f.write("b.txt", b"b\n");
    f.commit("b");
    f.git(&["push", "-q", "origin", "main"]);
    let empty = git_in(&f.client, &["pack-objects", "--stdout", "-q"], Some(b""));
    let facts = f.inspect(&empty, &[(ZERO, &first, "refs/heads/older")]);
    assert!(facts[0].1.commits.is_empty(), "{:?}", facts[0].1.commits);
}

#[test]
fn replacement_refs_upstream_cannot_hide_a_commit() {
    let f = Fixture::new();
    let old = f.head();
    f.git(&["checkout", "-q", "-b", "decoy"]);
    f.write("clean.txt", b"nothing to see\n");
    let decoy = f.commit("decoy");
    f.git(&["push", "-q", "origin", "decoy"]);
    f.git(&["checkout", "-q", "main"]);
    f.write("leak.txt", format!("{}\n", aws_key()).as_bytes());
    let leak = f.commit("leak");
    // Someone earlier pushed refs/replace/<leak> so that tools honouring it read the decoy.
    f.upstream_git(&["update-ref", &format!("refs/replace/{leak}"), &decoy]);
    let pack = f.pack(&[&leak], &[&old, &decoy]);
    let facts = f.inspect(&pack, &[(&old, &leak, "refs/heads/main")]);
    let p = &facts[0].1;
    assert_eq!(ids(p), BTreeSet::from([leak]));
    assert_eq!(p.secrets.len(), 1, "{:?}", p.files);
}

#[test]
fn a_flipped_byte_anywhere_is_refused_without_a_panic() {
    let f = Fixture::new();
    let old = f.head();
    f.write("notes/a.md", lorem(50).as_bytes());
    let tip = f.commit("notes");
    let pack = f.pack(&[&tip], &[&old]);
    let step = (pack.len() / 97).max(1);
    for at in (0..pack.len()).step_by(step) {
        let mut bad = pack.clone();
        bad[at] ^= 0x41;
        let dir = tempfile::tempdir().expect("dir");
        let result = Quarantine::index(&mut &bad[..], dir.path(), &f.upstream);
        assert!(
            result.is_err(),
            "a flip at byte {at} of {} went unnoticed",
            pack.len()
        );
    }
}

#[test]
fn inspection_limits_fail_closed() {
    let f = Fixture::new();
    let old = f.head();
    f.write("one.txt", b"1\n");
    f.commit("one");
    f.write("two.txt", b"2\n");
    let tip = f.commit("two");
    let pack = f.pack(&[&tip], &[&old]);
    let opts = InspectOptions {
        max_commits: 1,
        ..InspectOptions::default()
    };
    let err = f
        .inspect_with(&pack, &[(&old, &tip, "refs/heads/main")], &opts)
        .expect_err("two commits over a limit of one");
    assert!(
        matches!(
            err,
            Error::PushTooLarge {
                what: "commits",
                limit: 1
            }
        ),
        "{err:?}"
    );
}
