//! The git gateway end to end: the real `git` CLI pushing and fetching through
//! `portcullis serve` to a local bare upstream and to `git http-backend`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use portcullis::git::inspect::history::InspectOptions;

use crate::support::git::{
    GitGateway, HttpUpstream, UpstreamSpec, filler, git, git_ok, refs, seeded_upstream,
};

/// An AWS access key id of the documented example shape, assembled at run time so this
/// file itself holds no secret.
fn aws_key() -> String {
    format!("AKIA{}", "IOSFODNN7EXAMPL3")
}

struct Fixture {
    root: tempfile::TempDir,
    upstream: PathBuf,
    gw: GitGateway,
    work: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_rules(None)
    }

    fn with_rules(rules: Option<&str>) -> Fixture {
        Fixture::with(rules, None)
    }

    /// With the admin API (and so approvals) on `admin`.
    fn with(rules: Option<&str>, admin: Option<u16>) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        let upstream = seeded_upstream(root.path(), "app");
        let gw = GitGateway::start_with_admin(
            &[("app", UpstreamSpec::Local(upstream.clone()))],
            rules,
            admin,
        );
        let work = root.path().join("work");
        let url = gw.url("app", &gw.token("agent-1"));
        let out = git(root.path(), &["clone", "-q", &url, work.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "clone through the gateway failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        git_ok(&work, &["fetch", "-q", "--tags"]);
        Fixture {
            root,
            upstream,
            gw,
            work,
        }
    }

    fn commit(&self, path: &str, content: &[u8], message: &str) -> String {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        git_ok(&self.work, &["add", "-A"]);
        git_ok(&self.work, &["commit", "-qm", message]);
        git_ok(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git push` through the gateway: (succeeded, stderr).
    fn push(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec!["push", "origin"];
        all.extend_from_slice(args);
        let out = git(&self.work, &all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn upstream_refs(&self) -> String {
        refs(&self.upstream)
    }

    fn upstream_has(&self, rev: &str) -> String {
        git_ok(&self.upstream, &["rev-parse", rev])
    }
}

/// Asserts a refused push: git failed, printed the rule in a `[remote rejected]` line, and
/// the upstream's refs did not move.
fn assert_refused(f: &Fixture, before: &str, result: (bool, String), rule: &str) {
    let (ok, stderr) = result;
    assert!(!ok, "push should fail:\n{stderr}");
    assert!(
        stderr.contains("[remote rejected]") && stderr.contains(rule),
        "expected a [remote rejected] line naming {rule}:\n{stderr}\n{}",
        f.gw.log()
    );
    assert!(
        !stderr.contains("hung up"),
        "git must get a report, not a dropped connection:\n{stderr}"
    );
    assert_eq!(
        f.upstream_refs(),
        before,
        "upstream refs changed after a refusal"
    );
}

#[test]
fn clone_and_fetch_through_the_gateway() {
    let f = Fixture::new();
    assert_eq!(
        git_ok(&f.work, &["rev-parse", "origin/main"]),
        f.upstream_has("main")
    );
    assert!(f.work.join("src.txt").exists());
    // A change made upstream arrives with fetch (protocol v2, the default).
    let seed = f.root.path().join("app-seed");
    std::fs::write(seed.join("later.txt"), "later\n").unwrap();
    git_ok(&seed, &["add", "."]);
    git_ok(&seed, &["commit", "-qm", "later"]);
    git_ok(&seed, &["push", "-q", f.upstream.to_str().unwrap(), "main"]);
    git_ok(&f.work, &["fetch", "-q"]);
    assert_eq!(
        git_ok(&f.work, &["rev-parse", "origin/main"]),
        f.upstream_has("main")
    );
    // Protocol v0 also works.
    let v0 = f.root.path().join("v0");
    let url = f.gw.url("app", &f.gw.token("agent-1"));
    git_ok(
        f.root.path(),
        &[
            "-c",
            "protocol.version=0",
            "clone",
            "-q",
            &url,
            v0.to_str().unwrap(),
        ],
    );
}

#[test]
fn fast_forward_push_to_a_feature_branch_reaches_the_upstream() {
    let f = Fixture::new();
    git_ok(
        &f.work,
        &["checkout", "-q", "-b", "topic", "origin/feature"],
    );
    let head = f.commit("notes.md", b"some notes\n", "add notes");
    let (ok, stderr) = f.push(&["topic:feature"]);
    assert!(ok, "push failed:\n{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("feature"), head);
    // A new branch too.
    let (ok, stderr) = f.push(&["HEAD:refs/heads/agent/work"]);
    assert!(ok, "{stderr}");
    assert_eq!(f.upstream_has("agent/work"), head);
}

#[test]
fn a_push_larger_than_the_post_buffer_is_probed_then_chunked() {
    let f = Fixture::new();
    git_ok(&f.work, &["checkout", "-q", "-b", "bulk", "origin/feature"]);
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of generated text\n"))
        .collect();
    let head = f.commit("data/bulk.txt", text.as_bytes(), "bulk data");
    let out = git(
        &f.work,
        &[
            "-c",
            "http.postBuffer=4096",
            "push",
            "origin",
            "bulk:refs/heads/bulk",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.gw.log()
    );
    assert_eq!(f.upstream_has("bulk"), head);
}

#[test]
fn protected_branch_rules() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    // Force push to main: rewrite the last commit.
    git_ok(&f.work, &["reset", "-q", "--hard", "HEAD~1"]);
    f.commit("other.txt", b"other\n", "rewritten");
    assert_refused(
        &f,
        &before,
        f.push(&["--force", "HEAD:main"]),
        "git.protected-force",
    );
    // A fast-forward to main needs review, which is refused until approvals exist.
    git_ok(&f.work, &["reset", "-q", "--hard", "origin/main"]);
    f.commit("ff.txt", b"ff\n", "fast forward");
    let (ok, stderr) = f.push(&["HEAD:main"]);
    assert_refused(&f, &before, (ok, stderr.clone()), "git.protected-push");
    assert!(stderr.contains("approval required"), "{stderr}");
    // Deleting main.
    assert_refused(
        &f,
        &before,
        f.push(&["--delete", "main"]),
        "git.protected-delete",
    );
    // A force push to an unprotected branch is fine.
    git_ok(&f.work, &["checkout", "-q", "-b", "f2", "origin/feature"]);
    git_ok(&f.work, &["reset", "-q", "--hard", "HEAD~1"]);
    let head = f.commit("f.txt", b"f\n", "rewrite feature");
    let (ok, stderr) = f.push(&["--force", "f2:feature"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("feature"), head);
}

#[test]
fn tags_are_immutable_but_new_tags_are_allowed() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(&f.work, &["tag", "-f", "-a", "v1", "-m", "moved", "HEAD~1"]);
    assert_refused(
        &f,
        &before,
        f.push(&["--force", "refs/tags/v1"]),
        "git.tag-rewrite",
    );
    assert_refused(
        &f,
        &before,
        f.push(&["--delete", "refs/tags/v1"]),
        "git.tag-rewrite",
    );
    git_ok(&f.work, &["tag", "v2"]);
    let (ok, stderr) = f.push(&["refs/tags/v2"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("v2"), git_ok(&f.work, &["rev-parse", "v2"]));
}

#[test]
fn secrets_anywhere_in_the_pushed_history_are_refused() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "leak", "origin/feature"]);
    let secret = format!("aws_access_key_id = \"{}\"\n", aws_key());
    let leaky = f.commit("config/app.ini", secret.as_bytes(), "add config");
    f.commit("README.md", b"# app, documented\n", "docs");
    let (ok, stderr) = f.push(&["leak:refs/heads/leak"]);
    assert_refused(&f, &before, (ok, stderr.clone()), "git.secrets");
    assert!(
        stderr.contains("config/app.ini"),
        "finding names the path:\n{stderr}"
    );
    assert!(
        stderr.contains("aws-access-key-id"),
        "finding names the detector:\n{stderr}"
    );
    assert!(
        stderr.contains(&leaky[..7]),
        "finding names the commit:\n{stderr}"
    );
    assert!(
        !stderr.contains(&aws_key()),
        "the secret itself is never shown:\n{stderr}"
    );
    assert!(
        !f.gw.log().contains(&aws_key()),
        "the secret is never logged"
    );
    // Reverting it in a later commit of the same push does not hide it.
    git_ok(&f.work, &["rm", "-q", "config/app.ini"]);
    git_ok(&f.work, &["commit", "-qm", "remove config"]);
    assert_refused(
        &f,
        &before,
        f.push(&["leak:refs/heads/leak"]),
        "git.secrets",
    );
}

#[test]
fn secret_files_and_large_files_are_refused() {
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/git.rules"))
        .unwrap()
        .replace("push.largest_blob > 50MiB", "push.largest_blob > 64KiB");
    let f = Fixture::with_rules(Some(&rules));
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "env", "origin/feature"]);
    f.commit("deploy/.env", b"DEBUG=1\n", "env file");
    assert_refused(
        &f,
        &before,
        f.push(&["env:refs/heads/env"]),
        "git.secret-files",
    );
    // An example env file is fine.
    git_ok(
        &f.work,
        &["checkout", "-q", "-b", "example", "origin/feature"],
    );
    f.commit(".env.example", b"DEBUG=\n", "example env");
    let (ok, stderr) = f.push(&["example:refs/heads/example"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "big", "origin/feature"]);
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    f.commit("assets/blob.bin", &big, "big binary");
    assert_refused(
        &f,
        &before,
        f.push(&["big:refs/heads/big"]),
        "git.large-file",
    );
}

#[test]
fn one_bad_ref_refuses_the_whole_push() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "good", "origin/feature"]);
    f.commit("good.txt", b"good\n", "good change");
    git_ok(&f.work, &["checkout", "-q", "-b", "bad", "origin/main"]);
    git_ok(&f.work, &["reset", "-q", "--hard", "HEAD~1"]);
    f.commit("bad.txt", b"bad\n", "rewrite main");
    let (ok, stderr) = f.push(&["--force", "good:feature", "bad:main"]);
    assert_refused(&f, &before, (ok, stderr.clone()), "git.protected-force");
    assert!(
        stderr.contains("feature") && stderr.contains("all-or-nothing"),
        "the good ref says why it was not applied:\n{stderr}"
    );
}

#[test]
fn push_options_and_prompt_are_recorded() {
    let f = Fixture::new();
    git_ok(&f.work, &["checkout", "-q", "-b", "opt", "origin/feature"]);
    f.commit("o.txt", b"o\n", "with options");
    let (ok, stderr) = f.push(&["-o", "prompt=fix the login bug", "opt:refs/heads/opt"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    let log = f.gw.log();
    assert!(
        log.contains("\"prompt\":\"fix the login bug\"")
            && log.contains("\"decision\":\"allowed\""),
        "the push event carries the prompt and decision:\n{log}"
    );
}

#[test]
fn tokens_and_repositories_are_checked() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    // No credentials at all: 401 with a challenge, so git asks for them.
    let resp = http(
        f.gw.port,
        "GET",
        "/git/app.git/info/refs?service=git-upload-pack",
        &[],
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{resp}"
    );
    // A forged token.
    let out = git(f.root.path(), &["ls-remote", &f.gw.url("app", "not.a.jwt")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Authentication failed") || err.contains("401"),
        "{err}"
    );
    // A token from another key.
    let foreign = foreign_token();
    git_ok(&f.work, &["checkout", "-q", "-b", "x", "origin/feature"]);
    f.commit("x.txt", b"x\n", "x");
    let out = git(
        &f.work,
        &["push", &f.gw.url("app", &foreign), "x:refs/heads/x"],
    );
    assert!(!out.status.success());
    assert_eq!(f.upstream_refs(), before);
    // Bearer works as well as Basic.
    let token = f.gw.token("agent-1");
    let resp = http(
        f.gw.port,
        "GET",
        "/git/app.git/info/refs?service=git-receive-pack",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("push-options"),
        "push options are advertised: {resp}"
    );
    // An unknown repository.
    let resp = http(
        f.gw.port,
        "GET",
        "/git/nope.git/info/refs?service=git-upload-pack",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[test]
fn malformed_pushes_get_clean_errors_and_touch_nothing() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    let token = f.gw.token("agent-1");
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-git-receive-pack-request"),
    ];
    let path = "/git/app.git/git-receive-pack";
    // A real pack for a new branch, produced by git itself.
    git_ok(&f.work, &["checkout", "-q", "-b", "mal", "origin/feature"]);
    let new = f.commit("m.txt", b"m\n", "m");
    let old = git_ok(&f.work, &["rev-parse", "origin/feature"]);
    let pack = pack_objects(&f.work, &new, &old);
    let zero = "0".repeat(40);
    let command = pkt(&format!(
        "{zero} {new} refs/heads/mal\0report-status side-band-64k agent=test\n"
    ));
    // 1. Corrupt pack: flip bytes in the middle.
    let mut corrupt = pack.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 8] {
        *b ^= 0xff;
    }
    let body = [command.as_bytes(), b"0000", &corrupt].concat();
    let resp = http(f.gw.port, "POST", path, &headers, &body);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.contains("unpack ") && !resp.contains("unpack ok"),
        "{resp}"
    );
    assert!(resp.contains("ng refs/heads/mal"), "{resp}");
    // 2. Truncated body: the pack cut short.
    let body = [command.as_bytes(), b"0000", &pack[..pack.len() / 2]].concat();
    let resp = http(f.gw.port, "POST", path, &headers, &body);
    assert!(resp.contains("ng refs/heads/mal"), "{resp}");
    // 3. A malformed pkt-line.
    let resp = http(f.gw.port, "POST", path, &headers, b"00zzgarbage");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("portcullis:"), "{resp}");
    // 4. The command list cut before its flush.
    let resp = http(f.gw.port, "POST", path, &headers, command.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(f.upstream_refs(), before, "upstream untouched");
    // 5. An unknown content encoding.
    let mut enc = headers.to_vec();
    enc.push(("Content-Encoding", "br"));
    let resp = http(f.gw.port, "POST", path, &enc, b"0000");
    assert!(resp.starts_with("HTTP/1.1 415"), "{resp}");
    assert_eq!(f.upstream_refs(), before, "upstream untouched");
    // A well-formed gzipped body is accepted (HTTP allows it; git itself never sends one).
    let body = [command.as_bytes(), b"0000", &pack].concat();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&body).unwrap();
    let mut enc = headers.to_vec();
    enc.push(("Content-Encoding", "gzip"));
    let resp = http(f.gw.port, "POST", path, &enc, &gz.finish().unwrap());
    assert!(resp.contains("ok refs/heads/mal"), "{resp}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("mal"), new);
    // The gateway still serves everyone else.
    git_ok(&f.work, &["checkout", "-q", "-b", "mal2", "mal"]);
    f.commit("m2.txt", b"m2\n", "m2");
    let (ok, stderr) = f.push(&["mal2:refs/heads/mal2"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
}

#[test]
fn http_upstream_with_the_gateways_own_token() {
    let root = tempfile::tempdir().unwrap();
    let repos = root.path().join("srv");
    std::fs::create_dir_all(&repos).unwrap();
    let bare = seeded_upstream(&repos, "svc");
    let upstream = HttpUpstream::start(&repos, "upstream-secret-token");
    let gw = GitGateway::start(
        &[(
            "svc",
            UpstreamSpec::Http {
                url: upstream.url("svc"),
                token: "upstream-secret-token".into(),
            },
        )],
        None,
    );
    let token = gw.token("agent-7");
    let work = root.path().join("work");
    let out = git(
        root.path(),
        &[
            "clone",
            "-q",
            &gw.url("svc", &token),
            work.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    // An allowed push reaches the HTTP upstream.
    git_ok(&work, &["checkout", "-q", "-b", "topic", "origin/feature"]);
    std::fs::write(work.join("t.txt"), "t\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "t"]);
    let head = git_ok(&work, &["rev-parse", "HEAD"]);
    let out = git(&work, &["push", "origin", "topic:feature"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert_eq!(git_ok(&bare, &["rev-parse", "feature"]), head);
    // A denied one does not.
    let before = refs(&bare);
    git_ok(&work, &["reset", "-q", "--hard", "HEAD~2"]);
    std::fs::write(work.join("r.txt"), "r\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "r"]);
    let out = git(&work, &["push", "--force", "origin", "HEAD:main"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("git.protected-force"),
        "{err}"
    );
    assert_eq!(refs(&bare), before);
    // The upstream only ever saw the gateway's credentials, never the agent's JWT.
    let seen = upstream.seen_auth.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| !a.contains(&token) && !a.is_empty()),
        "{seen:?}"
    );
}

/// A well-formed token signed by a key the gateway does not trust.
fn foreign_token() -> String {
    use portcullis::identity::{self, KeyAlg, MintOptions};
    let key = identity::generate_key(KeyAlg::Es256).unwrap();
    identity::mint(
        &key,
        MintOptions {
            sub: "intruder".into(),
            groups: vec![],
            ttl: std::time::Duration::from_secs(600),
            issuer: crate::support::gateway::ISSUER.into(),
            audience: crate::support::gateway::AUDIENCE.into(),
            agent: None,
            kid: None,
        },
    )
    .unwrap()
}

/// `git pack-objects` for `new` minus `old`, as a push would send it (thin).
fn pack_objects(dir: &Path, new: &str, old: &str) -> Vec<u8> {
    pack_revs(dir, &format!("{new}\n^{old}\n"))
}

/// `git pack-objects --thin --revs` for the given rev list (one per line, `^` excludes).
fn pack_revs(dir: &Path, revs: &str) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(["pack-objects", "--thin", "--stdout", "--revs", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(revs.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().stdout
}

fn pkt(line: &str) -> String {
    format!("{:04x}{line}", line.len() + 4)
}

/// One HTTP/1.1 request over a fresh connection; the whole response as text (lossy).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn check_push_judges_a_local_ref_update() {
    use crate::support::portcullis;
    let root = tempfile::tempdir().unwrap();
    let upstream = seeded_upstream(root.path(), "app");
    let work = root.path().join("work");
    git_ok(
        root.path(),
        &[
            "clone",
            "-q",
            upstream.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    let repo = work.to_str().unwrap();
    // A rewrite of main: denied, exit 10, the rule named.
    git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::write(work.join("x.txt"), "x\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "rewrite"]);
    let (code, out, err) = portcullis(&[
        "check",
        "push",
        "--repo",
        repo,
        "origin/main",
        "HEAD",
        "main",
    ]);
    assert_eq!(code, 10, "{out}{err}");
    assert!(
        out.contains("git.protected-force") && out.contains("forced"),
        "{out}"
    );
    // The same commit on a new feature branch: allowed, with its facts in JSON.
    let (code, out, err) = portcullis(&[
        "check",
        "push",
        "--repo",
        repo,
        "--json",
        "0",
        "HEAD",
        "refs/heads/topic",
        "--known",
        "origin/main",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["ref"]["kind"], "create");
    assert_eq!(v["push"]["commits"].as_array().unwrap().len(), 1, "{out}");
    // A secret: denied, and the finding names path and detector, never the value.
    std::fs::write(work.join("cfg.ini"), format!("key = {}\n", aws_key())).unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "cfg"]);
    let (code, out, _) = portcullis(&[
        "check",
        "push",
        "--repo",
        repo,
        "origin/feature",
        "HEAD",
        "feature",
    ]);
    assert_eq!(code, 10, "{out}");
    assert!(
        out.contains("git.secrets") && out.contains("cfg.ini"),
        "{out}"
    );
    assert!(!out.contains(&aws_key()), "{out}");
    // A notes ref: refused unless the repository lists it.
    let notes = [
        "check",
        "push",
        "--repo",
        repo,
        "0",
        "HEAD",
        "refs/notes/commits",
    ];
    let (code, out, _) = portcullis(&notes);
    assert_eq!(code, 10, "{out}");
    assert!(out.contains("git.special-ref"), "{out}");
    let listed = [&notes[..], &["--special-refs", "refs/notes/*"]].concat();
    let (code, out, _) = portcullis(&listed);
    assert!(!out.contains("git.special-ref"), "{code} {out}");
    // Bad usage: not a repository, not a revision.
    let (code, _, err) = portcullis(&["check", "push", "--repo", "/nonexistent", "0", "HEAD", "x"]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = portcullis(&[
        "check",
        "push",
        "--repo",
        repo,
        "no-such-rev",
        "HEAD",
        "main",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no-such-rev"), "{err}");
}

#[test]
fn an_unreachable_upstream_gets_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let dead = crate::support::gateway::free_port();
    let gw = GitGateway::start(
        &[(
            "gone",
            UpstreamSpec::Http {
                url: format!("http://127.0.0.1:{dead}/gone.git"),
                token: "t".into(),
            },
        )],
        None,
    );
    let token = gw.token("agent-1");
    let resp = http(
        gw.port,
        "GET",
        "/git/gone.git/info/refs?service=git-upload-pack",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
    assert!(
        resp.contains("upstream") && !resp.contains(&dead.to_string()),
        "{resp}"
    );
    let out = git(root.path(), &["ls-remote", &gw.url("gone", &token)]);
    assert!(!out.status.success());
    // The gateway keeps serving: a local repository next to it still works.
    let upstream = seeded_upstream(root.path(), "app");
    let gw2 = GitGateway::start(&[("app", UpstreamSpec::Local(upstream))], None);
    let out = git(
        root.path(),
        &["ls-remote", &gw2.url("app", &gw2.token("a"))],
    );
    assert!(out.status.success());
}

#[test]
fn direct_apply_moves_the_judged_pack_into_a_local_upstream() {
    let root = tempfile::tempdir().unwrap();
    let upstream = seeded_upstream(root.path(), "app");
    let gw = GitGateway::start(
        &[("app", UpstreamSpec::LocalDirect(upstream.clone()))],
        None,
    );
    let work = root.path().join("work");
    git_ok(
        root.path(),
        &[
            "clone",
            "-q",
            &gw.url("app", &gw.token("a")),
            work.to_str().unwrap(),
        ],
    );
    // A two-ref push (a new branch and a tag) arrives, objects and refs.
    git_ok(&work, &["checkout", "-q", "-b", "topic", "origin/feature"]);
    for i in 0..3 {
        std::fs::write(work.join(format!("f{i}.txt")), format!("{i}\n")).unwrap();
        git_ok(&work, &["add", "."]);
        git_ok(&work, &["commit", "-qm", &format!("c{i}")]);
    }
    git_ok(&work, &["tag", "v7"]);
    let head = git_ok(&work, &["rev-parse", "HEAD"]);
    let out = git(
        &work,
        &["push", "origin", "topic:refs/heads/topic", "refs/tags/v7"],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    assert_eq!(git_ok(&upstream, &["rev-parse", "topic"]), head);
    assert_eq!(git_ok(&upstream, &["rev-parse", "v7"]), head);
    git_ok(&upstream, &["fsck", "--strict", "--no-dangling"]);
    // A fast-forward of an existing branch, then its deletion.
    git_ok(&work, &["checkout", "-q", "-b", "f2", "origin/feature"]);
    std::fs::write(work.join("ff.txt"), "ff\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "ff"]);
    git_ok(&work, &["push", "-q", "origin", "f2:feature"]);
    assert_eq!(
        git_ok(&upstream, &["rev-parse", "feature"]),
        git_ok(&work, &["rev-parse", "f2"])
    );
    git_ok(&work, &["push", "-q", "origin", "--delete", "topic"]);
    assert!(
        !git(
            &upstream,
            &["rev-parse", "--verify", "-q", "refs/heads/topic"]
        )
        .status
        .success()
    );
    // Refusals are unchanged.
    let before = refs(&upstream);
    git_ok(&work, &["reset", "-q", "--hard", "origin/main~1"]);
    let out = git(&work, &["push", "--force", "origin", "HEAD:main"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("git.protected-force"),
        "{err}"
    );
    assert_eq!(refs(&upstream), before);
    // A stale old value (the ref moved upstream since the verdict's basis) fails the whole
    // push: the gateway's ref transaction checks every old value.
    let stale = git_ok(&upstream, &["rev-parse", "feature"]);
    let seed = root.path().join("app-seed");
    std::fs::write(seed.join("race.txt"), "race\n").unwrap();
    git_ok(&seed, &["add", "."]);
    git_ok(&seed, &["commit", "-qm", "race"]);
    git_ok(
        &seed,
        &[
            "push",
            "-q",
            "--force",
            upstream.to_str().unwrap(),
            "HEAD:refs/heads/feature",
        ],
    );
    let before = refs(&upstream);
    git_ok(&work, &["checkout", "-q", "f2"]);
    std::fs::write(work.join("late.txt"), "late\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "late"]);
    let new = git_ok(&work, &["rev-parse", "HEAD"]);
    let pack = pack_objects(&work, &new, &stale);
    let command = pkt(&format!(
        "{stale} {new} refs/heads/feature\0report-status agent=test\n"
    ));
    let token = gw.token("a");
    let auth = format!("Bearer {token}");
    let resp = http(
        gw.port,
        "POST",
        "/git/app.git/git-receive-pack",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-git-receive-pack-request"),
        ],
        &[command.as_bytes(), b"0000", &pack].concat(),
    );
    assert!(
        resp.contains("ng refs/heads/feature"),
        "{resp}\n{}",
        gw.log()
    );
    assert_eq!(refs(&upstream), before);
    // The pack moved in for the failed transaction is taken out again.
    assert!(!git(&upstream, &["cat-file", "-e", &new]).status.success());
}

/// Issue #9: refs outside branches and tags change what tools and reviewers see; they are
/// refused, and the upstream keeps its refs.
#[test]
fn issue_9_replace_and_notes_refs_are_refused() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    let main = git_ok(&f.work, &["rev-parse", "origin/main"]);
    git_ok(&f.work, &["checkout", "-q", "-b", "evil", "origin/main"]);
    f.commit("evil.txt", b"what main now shows\n", "evil");
    let replace = format!("evil:refs/replace/{main}");
    assert_refused(&f, &before, f.push(&[&replace]), "git.special-ref");
    git_ok(
        &f.work,
        &["notes", "add", "-m", "approved by security", &main],
    );
    assert_refused(
        &f,
        &before,
        f.push(&["refs/notes/commits:refs/notes/commits"]),
        "git.special-ref",
    );
    // Upstream, main still resolves to itself.
    assert_eq!(f.upstream_has("main"), main);
}

/// Issue #9: a pack may carry objects no pushed ref reaches (a hand-made request); the
/// push is refused and none of them is stored upstream.
#[test]
fn issue_9_objects_no_ref_reaches_never_reach_the_upstream() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(
        &f.work,
        &["checkout", "-q", "-b", "hidden", "origin/feature"],
    );
    let hidden = f.commit(
        "keys.txt",
        format!("aws_access_key_id = {}\n", aws_key()).as_bytes(),
        "keys",
    );
    let hidden_blob = git_ok(&f.work, &["rev-parse", "hidden:keys.txt"]);
    git_ok(&f.work, &["checkout", "-q", "-b", "mal", "origin/feature"]);
    let new = f.commit("m.txt", b"m\n", "m");
    let old = git_ok(&f.work, &["rev-parse", "origin/feature"]);
    // The pack for `mal`, with `hidden`'s history riding along.
    let pack = pack_revs(&f.work, &format!("{new}\n{hidden}\n^{old}\n"));
    let zero = "0".repeat(40);
    let command = pkt(&format!(
        "{zero} {new} refs/heads/mal\0report-status side-band-64k agent=test\n"
    ));
    let token = f.gw.token("agent-1");
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-git-receive-pack-request"),
    ];
    let body = [command.as_bytes(), b"0000", &pack].concat();
    let resp = http(
        f.gw.port,
        "POST",
        "/git/app.git/git-receive-pack",
        &headers,
        &body,
    );
    assert!(resp.contains("ng refs/heads/mal"), "{resp}\n{}", f.gw.log());
    assert!(resp.contains("git.unreachable-objects"), "{resp}");
    assert_eq!(f.upstream_refs(), before);
    for object in [&hidden, &hidden_blob, &new] {
        let out = git(&f.upstream, &["cat-file", "-e", object]);
        assert!(!out.status.success(), "{object} reached the upstream");
    }
}

/// Issue #9: a secret in a commit message (or a tag message) is a secret pushed.
#[test]
fn issue_9_secrets_in_messages_are_refused_and_never_printed() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "s", "origin/feature"]);
    f.commit(
        "a.txt",
        b"a\n",
        &format!("rotate: the old key was {}", aws_key()),
    );
    let (ok, stderr) = f.push(&["s:refs/heads/s"]);
    assert!(
        !stderr.contains(&aws_key()),
        "the secret was printed:\n{stderr}"
    );
    assert_refused(&f, &before, (ok, stderr.clone()), "git.secrets");
    assert!(stderr.contains("(commit message)"), "{stderr}");
    git_ok(
        &f.work,
        &[
            "tag",
            "-a",
            "v9",
            "-m",
            &format!("deploy key {}", aws_key()),
            "origin/feature",
        ],
    );
    let (ok, stderr) = f.push(&["refs/tags/v9:refs/tags/v9"]);
    assert!(
        !stderr.contains(&aws_key()),
        "the secret was printed:\n{stderr}"
    );
    assert_refused(&f, &before, (ok, stderr.clone()), "git.secrets");
    assert!(stderr.contains("(tag message)"), "{stderr}");
}

/// Issue #14, item 7 (was issue #9's refusal as unscanned): a file over the in-memory
/// limit (32 MiB; 33 MiB here) is scanned in chunks: clean, it goes
/// through; with a key across the first cut (sent as a delta against the clean one
/// upstream), it is refused, naming the path, the line and the detector once.
#[test]
fn issue_14_a_file_over_the_in_memory_limit_is_scanned_in_chunks() {
    let chunk = InspectOptions::default().scan_chunk;
    assert_eq!(chunk, 32 << 20);
    let f = Fixture::new();
    git_ok(&f.work, &["checkout", "-q", "-b", "big", "origin/feature"]);
    let clean = filler(chunk + (1 << 20));
    f.commit("data/big.txt", &clean, "big");
    let (ok, stderr) = f.push(&["big:refs/heads/big"]);
    assert!(
        ok,
        "a clean large file is allowed:\n{stderr}\n{}",
        f.gw.log()
    );

    let before = f.upstream_refs();
    let mut leaky = clean;
    let key = format!(" {} ", aws_key());
    // The key starts 7 bytes before the cut, on line 524,288 (64-byte lines).
    leaky[chunk - 8..chunk - 8 + key.len()].copy_from_slice(key.as_bytes());
    f.commit("data/big.txt", &leaky, "leak");
    let (ok, stderr) = f.push(&["big:refs/heads/big"]);
    assert_refused(&f, &before, (ok, stderr.clone()), "git.secrets");
    assert!(
        stderr.contains("secret aws-access-key-id in data/big.txt:524288 "),
        "names detector, path and line:\n{stderr}"
    );
    assert_eq!(stderr.matches("data/big.txt:").count(), 1, "{stderr}");
    assert!(!stderr.contains(&aws_key()), "{stderr}");
}

/// Issue #9: push options that ask the upstream to merge by itself wait for a maintainer
/// (refused, saying so, until approvals land); harmless options pass.
#[test]
fn issue_9_a_push_asking_the_upstream_to_merge_needs_review() {
    let f = Fixture::new();
    let before = f.upstream_refs();
    git_ok(&f.work, &["checkout", "-q", "-b", "s", "origin/feature"]);
    f.commit("a.txt", b"a\n", "a");
    let (ok, stderr) = f.push(&[
        "-o",
        "merge_request.create",
        "-o",
        "merge_request.merge_when_pipeline_succeeds",
        "s:refs/heads/s",
    ]);
    assert_refused(&f, &before, (ok, stderr.clone()), "git.merge-option");
    assert!(stderr.contains("approval required"), "{stderr}");
    let (ok, stderr) = f.push(&["-o", "ci.skip", "s:refs/heads/s"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("s"), git_ok(&f.work, &["rev-parse", "s"]));
}

/// Nothing sensitive at rest: a secret an agent puts in its prompt or a push option is
/// neither logged nor stored in the audit, only the detector that found it.
#[test]
fn issue_9_secrets_in_prompts_and_push_options_are_not_kept() {
    let mut f = Fixture::new();
    git_ok(&f.work, &["checkout", "-q", "-b", "s", "origin/feature"]);
    f.commit("a.txt", b"a\n", "a");
    let prompt = format!("prompt=deploy with {}", aws_key());
    let option = format!("ci.variable=KEY={}", aws_key());
    let (ok, stderr) = f.push(&["-o", &prompt, "-o", &option, "s:refs/heads/s"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    let log = f.gw.log();
    assert!(
        !log.contains(&aws_key()),
        "the secret is in the log:\n{log}"
    );
    assert!(log.contains("[secret:aws-access-key-id]"), "{log}");
    f.gw.terminate();
    let rows = audit_csv(&f.gw, "SELECT prompt FROM events WHERE protocol = 'git'");
    assert!(rows.contains("[secret:aws-access-key-id]"), "{rows}");
    assert!(
        !rows.contains(&aws_key()),
        "the secret is in the audit store:\n{rows}"
    );
}

/// Pushes `HEAD:main` (a fast-forward, which `git.protected-push` sends to review) in
/// the background; the approval request's id once it is pending.
fn held_push(f: &Fixture, admin: u16) -> (std::thread::JoinHandle<std::process::Output>, String) {
    f.commit("held.txt", b"held\n", "needs a maintainer");
    let work = f.work.clone();
    let push = std::thread::spawn(move || git(&work, &["push", "origin", "HEAD:main"]));
    let maintainer = f.gw.token_in("mia", &["maintainers"]);
    let id = crate::support::gateway::pending(admin, &maintainer, "refs/heads/main");
    (push, id)
}

#[test]
fn issue_12_a_push_to_main_waits_for_a_maintainer_then_is_applied_as_judged() {
    let admin = crate::support::gateway::free_port();
    let f = Fixture::with(None, Some(admin));
    let (push, id) = held_push(&f, admin);
    assert_ne!(
        f.upstream_has("main"),
        git_ok(&f.work, &["rev-parse", "HEAD"])
    );
    let (status, r) = crate::support::gateway::api(
        admin,
        "GET",
        &format!("/api/approvals/{id}"),
        &f.gw.token_in("mia", &["maintainers"]),
        "",
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rule"], "git.protected-push");
    assert_eq!(r["refs"][0]["ref"], "refs/heads/main");
    assert_eq!(r["refs"][0]["commits"], 1);
    let (status, r) = crate::support::gateway::api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        &f.gw.token_in("mia", &["maintainers"]),
        r#"{"reason": "reviewed in PR 12"}"#,
    );
    assert_eq!(status, 200, "{r}");
    let out = push.join().expect("git push");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", f.gw.log());
    assert!(
        stderr.contains(&format!("held for approval {id}")),
        "{stderr}"
    );
    assert!(stderr.contains("approved by mia"), "{stderr}");
    assert_eq!(
        f.upstream_has("main"),
        git_ok(&f.work, &["rev-parse", "HEAD"])
    );
}

#[test]
fn issue_12_a_rejected_push_reaches_nothing_and_says_why() {
    let admin = crate::support::gateway::free_port();
    let f = Fixture::with(None, Some(admin));
    let before = f.upstream_refs();
    let (push, id) = held_push(&f, admin);
    let agent = f.gw.token("agent-1");
    let (status, why) = crate::support::gateway::api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/approve"),
        &agent,
        "",
    );
    assert_eq!(status, 403, "an agent is no maintainer: {why}");
    let (status, r) = crate::support::gateway::api(
        admin,
        "POST",
        &format!("/api/approvals/{id}/reject"),
        &f.gw.token_in("mia", &["maintainers"]),
        r#"{"reason": "needs a changelog entry"}"#,
    );
    assert_eq!(status, 200, "{r}");
    let out = push.join().expect("git push");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rejected by mia"), "{stderr}");
    assert!(stderr.contains("needs a changelog entry"), "{stderr}");
    assert_eq!(f.upstream_refs(), before);
}

#[test]
fn issue_14_a_push_the_upstream_refuses_is_recorded_with_its_reason() {
    let f = Fixture::new();
    // The upstream's own hook says no after the gateway allowed the push.
    install_hook(
        &f.upstream,
        "pre-receive",
        "#!/bin/sh\necho 'frozen for the release' >&2\nexit 1\n",
    );
    let hook = f.upstream.join("hooks").join("pre-receive");
    git_ok(&f.work, &["checkout", "-q", "-b", "late", "origin/feature"]);
    let late = f.commit("late.txt", b"late\n", "after the freeze");
    let before = f.upstream_refs();
    let packs = pack_files(&f.upstream);
    let (ok, stderr) = f.push(&["late:refs/heads/late"]);
    assert!(!ok, "the upstream's hook declined it:\n{stderr}");
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    assert_eq!(f.upstream_refs(), before);
    // The pack linked in for the hook is taken out again, as git's quarantine would be.
    assert_eq!(pack_files(&f.upstream), packs);
    assert!(
        !git(&f.upstream, &["cat-file", "-e", &late])
            .status
            .success()
    );

    // A push the upstream accepts leaves no such record.
    std::fs::remove_file(&hook).unwrap();
    let (ok, stderr) = f.push(&["late:refs/heads/late2"]);
    assert!(ok, "{stderr}");

    let mut gw = f.gw;
    gw.terminate();
    let rows = audit_csv(
        &gw,
        "SELECT kind, decision, message FROM events WHERE protocol = 'git' \
         AND kind IN ('push', 'error') ORDER BY seq",
    );
    let rows: Vec<&str> = rows.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("push,allowed"), "{rows:?}");
    assert!(
        rows[1].starts_with("error,error")
            && rows[1]
                .contains("the upstream refused: refs/heads/late (pre-receive hook declined)"),
        "{rows:?}"
    );
    assert!(rows[2].starts_with("push,allowed"), "{rows:?}");
}

/// The files in a repository's `objects/pack`, sorted.
fn pack_files(repo: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo.join("objects").join("pack"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Installs an executable hook in a bare repository.
fn install_hook(repo: &Path, name: &str, script: &str) {
    let hook = repo.join("hooks").join(name);
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Issue #15 (item 6): by default a local upstream's own receive-pack applies the push,
/// but the pack the gateway already indexed is linked in first and receive-pack is sent
/// an empty one: its hooks run and read the whole new history, its refs move, and its
/// quarantine receives no second copy of the objects.
#[test]
fn issue_15_a_local_upstream_runs_its_hooks_on_the_pack_the_gateway_indexed() {
    let f = Fixture::new();
    let seen = f.root.path().join("seen");
    let seen = seen.display();
    install_hook(
        &f.upstream,
        "pre-receive",
        &format!(
            "#!/bin/sh\nset -e\nwhile read old new ref; do\n  \
             git cat-file -e \"$new^{{tree}}\"\n  \
             echo \"pre $ref $(git rev-list --count \"$new\" --not --all) \
             $(find \"$GIT_QUARANTINE_PATH\" -type f | wc -l)\" >>{seen}\ndone\n"
        ),
    );
    install_hook(
        &f.upstream,
        "post-receive",
        &format!("#!/bin/sh\nwhile read old new ref; do echo \"post $ref\" >>{seen}; done\n"),
    );
    git_ok(
        &f.work,
        &["checkout", "-q", "-b", "topic", "origin/feature"],
    );
    for i in 0..3 {
        f.commit(&format!("t{i}.txt"), format!("{i}\n").as_bytes(), "t");
    }
    let head = git_ok(&f.work, &["rev-parse", "HEAD"]);
    let (ok, stderr) = f.push(&["topic:refs/heads/topic"]);
    assert!(ok, "{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_has("topic"), head);
    let seen = std::fs::read_to_string(f.root.path().join("seen")).unwrap();
    // The hook saw three new commits, and nothing arrived in its quarantine.
    assert_eq!(seen, "pre refs/heads/topic 3 0\npost refs/heads/topic\n");
    git_ok(&f.upstream, &["fsck", "--strict", "--no-dangling"]);
    assert!(
        !pack_files(&f.upstream).iter().any(|n| n.ends_with(".tmp")),
        "{:?}",
        pack_files(&f.upstream)
    );
    // The linked files are read-only and readable by all, as git's own packs are.
    for name in pack_files(&f.upstream) {
        let path = f.upstream.join("objects").join("pack").join(&name);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o444, "{name}: {mode:o}");
    }
    // A tag on the same commit: nothing new to send, the upstream takes it as well.
    git_ok(&f.work, &["tag", "v9"]);
    let (ok, stderr) = f.push(&["refs/tags/v9"]);
    assert!(ok, "{stderr}");
    assert_eq!(f.upstream_has("v9"), head);
}

/// Issue #15 (item 6): an upstream that checks what it is sent (`receive.fsckObjects`)
/// is sent the pack itself, so its check still runs: a tree git's fsck calls malformed
/// is refused by the upstream, and nothing of it stays there.
#[test]
fn issue_15_an_upstream_that_checks_objects_is_sent_the_pack() {
    let f = Fixture::new();
    git_ok(&f.upstream, &["config", "receive.fsckObjects", "true"]);
    // A tree whose entries are out of order (git's `treeNotSorted`).
    let blob = git_ok(&f.work, &["hash-object", "-w", "--stdin"]);
    let oid: Vec<u8> = (0..blob.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&blob[i..i + 2], 16).unwrap())
        .collect();
    let raw = [
        b"100644 b.txt\0".as_slice(),
        &oid,
        b"100644 a.txt\0".as_slice(),
        &oid,
    ]
    .concat();
    let file = f.root.path().join("tree.raw");
    std::fs::write(&file, raw).unwrap();
    let tree = git_ok(
        &f.work,
        &[
            "hash-object",
            "-t",
            "tree",
            "--literally",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    let parent = git_ok(&f.work, &["rev-parse", "origin/feature"]);
    let commit = git_ok(
        &f.work,
        &["commit-tree", &tree, "-p", &parent, "-m", "unsorted"],
    );
    let before = f.upstream_refs();
    let (ok, stderr) = f.push(&[&format!("{commit}:refs/heads/unsorted")]);
    assert!(!ok, "the upstream's fsck refused it:\n{stderr}");
    assert!(stderr.contains("treeNotSorted"), "{stderr}\n{}", f.gw.log());
    assert_eq!(f.upstream_refs(), before);
    assert!(
        !git(&f.upstream, &["cat-file", "-e", &commit])
            .status
            .success()
    );
}

/// `portcullis audit sql --format csv` on a (stopped) gateway's store: header and rows.
fn audit_csv(gw: &GitGateway, sql: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "sql", "--format", "csv", "--db"])
        .arg(gw.audit_path())
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
