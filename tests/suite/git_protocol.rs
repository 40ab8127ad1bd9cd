//! receive-pack wire format against the real `git` client: the requests it sends are the
//! ones `git::wire` parses, and the reports `git::wire` writes are the ones it
//! understands.
//!
//! Each test gets a fresh bare upstream, a work tree and a tiny HTTP/1.1 server that
//! speaks smart HTTP by running `git receive-pack --stateless-rpc`, with our code in
//! the middle: it rewrites the advertisement, parses and records every push body, and
//! either re-encodes the command section for the real receive-pack or refuses the push
//! with `encode_report`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use portcullis::git::wire::caps::{
    self, CAP_ATOMIC, CAP_PUSH_OPTIONS, CAP_REPORT_STATUS, CAP_REPORT_STATUS_V2, CAP_SIDE_BAND_64K,
};
use portcullis::git::wire::request::{self, CommandKind, Request};
use portcullis::git::wire::{advertisement, report};

const DENIED: &str = "portcullis: denied by git.protected-force: main is protected";
const CHECKING: &str = "portcullis: checking 1 ref update";

/// What the server does with a push.
#[derive(Clone)]
enum Reply {
    /// Forward to the real receive-pack through `encode_commands`, with push options
    /// iff `options`.
    Relay { options: bool },
    /// Refuse every ref with `reason` through `encode_report`.
    Refuse {
        reason: String,
        unpack: Option<String>,
        progress: Vec<String>,
    },
}

#[derive(Clone)]
struct Behaviour {
    add: Vec<&'static str>,
    remove: Vec<&'static str>,
    reply: Reply,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            add: Vec::new(),
            remove: Vec::new(),
            reply: Reply::Relay { options: false },
        }
    }
}

/// One `POST git-receive-pack` as the server saw it.
struct Recorded {
    body: Vec<u8>,
    chunked: bool,
    response: Vec<u8>,
}

#[derive(Default)]
struct State {
    behaviour: Mutex<Behaviour>,
    posts: Mutex<Vec<Recorded>>,
}

/// The smart-HTTP server in front of one bare repository; stops on drop.
struct Server {
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(bare: PathBuf, home: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // git talks to one server at a time, so one connection at a time will do.
                    if let Ok(stream) = stream {
                        serve(stream, &state, &bare, &home);
                    }
                }
            })
        };
        Server {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("lock") = behaviour;
    }

    fn take_posts(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.state.posts.lock().expect("lock"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An HTTP request: path and the body, de-chunked and un-gzipped.
struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
    chunked: bool,
}

fn read_request(stream: &TcpStream) -> std::io::Result<HttpRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let (mut length, mut chunked, mut gzip, mut expect) = (0usize, false, false, false);
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        let value = value.trim().to_ascii_lowercase();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "content-encoding" => gzip = value.contains("gzip"),
            "expect" => expect = value.contains("100-continue"),
            _ => {}
        }
    }
    if expect {
        let mut writer = stream;
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("0");
            let size = usize::from_str_radix(size, 16).unwrap_or(0);
            if size == 0 {
                // Trailers, then the blank line.
                while {
                    line.clear();
                    reader.read_line(&mut line)? > 2
                } {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            reader.read_line(&mut line)?;
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    if gzip {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
        body = plain;
    }
    Ok(HttpRequest {
        method,
        path,
        body,
        chunked,
    })
}

fn serve(mut stream: TcpStream, state: &State, bare: &Path, home: &Path) {
    let Ok(request) = read_request(&stream) else {
        return;
    };
    let behaviour = state.behaviour.lock().expect("lock").clone();
    let (status, kind, body) = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/up.git/info/refs?service=git-receive-pack") => {
            let refs = run_git(
                home,
                &["receive-pack", "--stateless-rpc", "--advertise-refs"],
                bare,
                &[],
            );
            match advertisement::rewrite_advertisement(
                &refs,
                caps::SERVICE,
                &behaviour.add,
                &behaviour.remove,
            ) {
                Ok(body) => (
                    "200 OK",
                    "application/x-git-receive-pack-advertisement",
                    body,
                ),
                Err(err) => (
                    "500 Internal Server Error",
                    "text/plain",
                    err.to_string().into_bytes(),
                ),
            }
        }
        ("POST", "/up.git/git-receive-pack") => {
            let response = answer_push(&request.body, &behaviour, bare, home);
            state.posts.lock().expect("lock").push(Recorded {
                body: request.body,
                chunked: request.chunked,
                response: response.clone(),
            });
            ("200 OK", "application/x-git-receive-pack-result", response)
        }
        _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// What the server answers to a push body: the real receive-pack's response to our
/// re-encoding, or our own refusal.
fn answer_push(body: &[u8], behaviour: &Behaviour, bare: &Path, home: &Path) -> Vec<u8> {
    let request = match request::parse_request(body) {
        Ok(request) => request,
        Err(err) => return format!("unparsable push: {err}").into_bytes(),
    };
    match &behaviour.reply {
        Reply::Relay { options } => {
            let mut forward = request::encode_commands(&request, &request.capabilities, *options);
            forward.extend_from_slice(request.pack(body));
            run_git(home, &["receive-pack", "--stateless-rpc"], bare, &forward)
        }
        Reply::Refuse { .. } if request.is_probe() => Vec::new(),
        Reply::Refuse {
            reason,
            unpack,
            progress,
        } => {
            let refs: Vec<(&str, Option<&str>)> = request
                .commands
                .iter()
                .map(|c| (c.name.as_str(), Some(reason.as_str())))
                .collect();
            report::encode_report(
                &request,
                unpack.as_deref().map_or(Ok(()), Err),
                &refs,
                progress,
            )
        }
    }
}

/// Runs git with a private configuration, feeding `stdin`; returns stdout.
fn run_git(home: &Path, args: &[&str], dir: &Path, stdin: &[u8]) -> Vec<u8> {
    let mut child = git_command(home, dir)
        .args(args)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A thread, so a large pack cannot deadlock against receive-pack's output.
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("git finishes");
    let _ = feeder.join();
    out.stdout
}

fn git_command(home: &Path, dir: &Path) -> Command {
    let mut cmd = crate::support::git::git_command(dir);
    cmd.env("HOME", home).env_remove("GIT_ASKPASS");
    cmd
}

/// A bare upstream `up.git` behind a [`Server`], and a work tree whose `origin` is it.
struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    bare: PathBuf,
    work: PathBuf,
    server: Server,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let bare = dir.path().join("up.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&home).expect("home");
        let fixture = Fixture {
            server: Server::start(bare.clone(), home.clone()),
            _dir: dir,
            home,
            bare,
            work,
        };
        fixture.git_in(
            fixture._dir.path(),
            &["init", "-q", "--bare", "-b", "main", "up.git"],
        );
        fixture.git_in(fixture._dir.path(), &["init", "-q", "-b", "main", "work"]);
        let url = format!("http://127.0.0.1:{}/up.git", fixture.server.port);
        fixture.git(&["remote", "add", "origin", &url]);
        fixture.commit("README.md", "# app\n");
        fixture
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = git_command(&self.home, dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?} failed:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.work, args)
    }

    /// Writes `file` and commits it; returns the new commit.
    fn commit(&self, file: &str, content: &str) -> String {
        std::fs::write(self.work.join(file), content).expect("write");
        self.git(&["add", file]);
        self.git(&["commit", "-qm", &format!("change {file}")]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git push` with `args`; does not insist on success.
    fn push(&self, args: &[&str]) -> Output {
        git_command(&self.home, &self.work)
            .arg("push")
            .args(args)
            .output()
            .expect("git runs")
    }

    fn push_ok(&self, args: &[&str]) -> String {
        let out = self.push(args);
        assert!(
            out.status.success(),
            "git push {args:?} failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// The one push body since the last call, parsed.
    fn one_post(&self) -> (Recorded, Request) {
        let mut posts = self.server.take_posts();
        assert_eq!(posts.len(), 1, "expected one POST");
        let post = posts.remove(0);
        let request = request::parse_request(&post.body).expect("git's request parses");
        (post, request)
    }

    fn upstream(&self, rev: &str) -> String {
        self.git_in(&self.bare, &["rev-parse", rev])
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The request re-encoded with its own capabilities plus its pack: git's bytes again.
fn assert_round_trips(body: &[u8], request: &Request) {
    let mut again = request::encode_commands(
        request,
        &request.capabilities,
        request.wants(CAP_PUSH_OPTIONS),
    );
    again.extend_from_slice(request.pack(body));
    assert_eq!(
        again[..request.pack_offset].escape_ascii().to_string(),
        body[..request.pack_offset].escape_ascii().to_string()
    );
    assert_eq!(again, body);
}

#[test]
fn create_update_delete_and_tags_parse_as_git_sends_them() {
    let f = Fixture::new();
    let first = f.git(&["rev-parse", "HEAD"]);

    f.push_ok(&["origin", "main"]);
    let (post, req) = f.one_post();
    assert_eq!(req.commands.len(), 1);
    let create = &req.commands[0];
    assert_eq!(
        (create.kind(), create.name.as_str()),
        (CommandKind::Create, "refs/heads/main")
    );
    assert_eq!(create.new.to_string(), first);
    for cap in [CAP_REPORT_STATUS_V2, CAP_SIDE_BAND_64K, "agent"] {
        assert!(req.wants(cap), "{cap} in {:?}", req.capabilities);
    }
    assert!(
        req.capability("agent")
            .is_some_and(|a| a.starts_with("git/"))
    );
    assert_eq!(&post.body[req.pack_offset..][..4], b"PACK");
    assert_round_trips(&post.body, &req);
    // The relay through encode_commands really pushed.
    assert_eq!(f.upstream("main"), first);

    let second = f.commit("src.txt", "fn main() {}\n");
    f.push_ok(&["origin", "main"]);
    let (post, req) = f.one_post();
    let update = &req.commands[0];
    assert_eq!(update.kind(), CommandKind::Update);
    assert_eq!(
        (update.old.to_string(), update.new.to_string()),
        (first.clone(), second.clone())
    );
    assert_eq!(&post.body[req.pack_offset..][..4], b"PACK");
    assert_round_trips(&post.body, &req);

    f.git(&["tag", "-a", "v1", "-m", "release 1"]);
    f.push_ok(&["origin", "v1"]);
    let (post, req) = f.one_post();
    let tag = &req.commands[0];
    assert_eq!(
        (tag.kind(), tag.name.as_str()),
        (CommandKind::Create, "refs/tags/v1")
    );
    assert_eq!(tag.new.to_string(), f.git(&["rev-parse", "v1"]));
    assert_round_trips(&post.body, &req);

    f.push_ok(&["origin", "main:refs/heads/a", "main:refs/heads/b"]);
    let (post, req) = f.one_post();
    let names: Vec<_> = req.commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["refs/heads/a", "refs/heads/b"]);
    // Both point at objects upstream has: the pack is empty but still sent.
    assert_eq!(&post.body[req.pack_offset..][..4], b"PACK");
    assert_round_trips(&post.body, &req);

    f.push_ok(&["origin", ":refs/heads/a"]);
    let (post, req) = f.one_post();
    assert_eq!(req.commands[0].kind(), CommandKind::Delete);
    assert!(!req.needs_pack());
    assert_eq!(req.pack_offset, post.body.len());
    assert_round_trips(&post.body, &req);

    f.git(&["reset", "-q", "--hard", &first]);
    let rewritten = f.commit("other.txt", "rewritten\n");
    f.push_ok(&["--force", "origin", "main"]);
    let (_, req) = f.one_post();
    assert_eq!(req.commands[0].kind(), CommandKind::Update);
    assert_eq!(req.commands[0].old.to_string(), second);
    assert_eq!(f.upstream("main"), rewritten);
}

#[test]
fn atomic_pushes_ask_for_atomic() {
    let f = Fixture::new();
    f.git(&["branch", "other"]);
    f.push_ok(&["--atomic", "origin", "main", "other"]);
    let (post, req) = f.one_post();
    assert!(req.wants(CAP_ATOMIC), "{:?}", req.capabilities);
    assert_eq!(req.commands.len(), 2);
    assert_round_trips(&post.body, &req);
}

#[test]
fn push_options_need_the_rewritten_advertisement() {
    let f = Fixture::new();
    // receive-pack does not advertise push-options by default, so git refuses to send them.
    let out = f.push(&["-o", "prompt=hello", "origin", "main"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not support push options"),
        "{}",
        text(&out)
    );
    assert!(f.server.take_posts().is_empty());

    // Advertised by us, parsed by us, and dropped before the upstream that cannot take them.
    f.server.set(Behaviour {
        add: vec![CAP_PUSH_OPTIONS],
        ..Behaviour::default()
    });
    f.push_ok(&["-o", "prompt=hello", "-o", "x=y", "origin", "main"]);
    let (post, req) = f.one_post();
    assert!(req.wants(CAP_PUSH_OPTIONS));
    assert_eq!(req.options, ["prompt=hello", "x=y"]);
    assert_eq!(&post.body[req.pack_offset..][..4], b"PACK");
    assert_round_trips(&post.body, &req);
    assert_eq!(f.upstream("main"), f.git(&["rev-parse", "HEAD"]));

    // An upstream that takes them gets them, section and all.
    f.git_in(&f.bare, &["config", "receive.advertisePushOptions", "true"]);
    let hook = f.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\ni=0\nwhile [ $i -lt \"${GIT_PUSH_OPTION_COUNT:-0}\" ]; do\n  eval \"echo option \\$GIT_PUSH_OPTION_$i\" >&2\n  i=$((i+1))\ndone\n",
    )
    .expect("hook");
    make_executable(&hook);
    f.server.set(Behaviour {
        reply: Reply::Relay { options: true },
        ..Behaviour::default()
    });
    f.commit("more.txt", "more\n");
    let out = f.push_ok(&["-o", "prompt=hello", "-o", "x=y", "origin", "main"]);
    assert!(out.contains("remote: option prompt=hello"), "{out}");
    assert!(out.contains("remote: option x=y"), "{out}");
    let (_, req) = f.one_post();
    assert_eq!(req.options, ["prompt=hello", "x=y"]);
}

#[test]
fn a_big_push_sends_a_probe_then_a_chunked_body() {
    let f = Fixture::new();
    // Incompressible, so the pack outgrows the smallest http.postBuffer git allows.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: String = (0..300_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            char::from(b'!' + (seed % 90) as u8)
        })
        .collect();
    f.commit("noise.txt", &noise);
    let out = git_command(&f.home, &f.work)
        .args(["-c", "http.postBuffer=65536", "push", "origin", "main"])
        .output()
        .expect("git runs");
    assert!(out.status.success(), "{}", text(&out));
    let posts = f.server.take_posts();
    assert_eq!(posts.len(), 2, "a probe, then the push");
    assert_eq!(posts[0].body, b"0000");
    let probe = request::parse_request(&posts[0].body).expect("the probe parses");
    assert!(probe.is_probe());
    assert!(posts[1].chunked, "a large body is sent chunked");
    let req = request::parse_request(&posts[1].body).expect("the push parses");
    assert_eq!(req.commands[0].kind(), CommandKind::Create);
    assert!(req.pack(&posts[1].body).len() > 65536);
    assert_eq!(f.upstream("main"), f.git(&["rev-parse", "HEAD"]));
}

#[test]
fn push_cert_is_removed_from_the_advertisement() {
    let f = Fixture::new();
    // With a nonce seed, receive-pack advertises `push-cert=<nonce>`.
    f.git_in(&f.bare, &["config", "receive.certNonceSeed", "seed"]);
    let refs = run_git(
        &f.home,
        &["receive-pack", "--stateless-rpc", "--advertise-refs"],
        &f.bare,
        &[],
    );
    let upstream =
        advertisement::parse_advertisement(&refs).expect("receive-pack's advertisement parses");
    assert_eq!(
        upstream.service, None,
        "--advertise-refs prints no service header"
    );
    assert!(
        upstream.supports(caps::CAP_PUSH_CERT),
        "{:?}",
        upstream.capabilities
    );

    f.server.set(Behaviour {
        remove: vec![caps::CAP_PUSH_CERT],
        ..Behaviour::default()
    });
    let out = f.push(&["--signed", "origin", "main"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not support --signed push"),
        "{}",
        text(&out)
    );
    assert!(f.server.take_posts().is_empty());
}

/// Real bodies, broken the ways a hostile or buggy client could break them.
#[test]
fn broken_variants_of_a_real_body_get_specific_errors() {
    use request::RequestError as E;

    let f = Fixture::new();
    f.git(&["branch", "other"]);
    f.push_ok(&["origin", "main", "other"]);
    let (post, req) = f.one_post();
    let body = post.body;
    let commands_end = req.pack_offset - 4;
    let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let at = body
            .windows(from.len())
            .position(|w| w == from)
            .expect("present");
        [&body[..at], to, &body[at + from.len()..]].concat()
    };

    // Cut anywhere before the flush.
    for cut in [0, 3, 20, commands_end, commands_end + 2] {
        assert_eq!(
            request::parse_request(&body[..cut]),
            Err(E::Truncated),
            "cut at {cut}"
        );
    }
    // The flush missing, the pack right after the commands.
    let unflushed = [&body[..commands_end], &body[req.pack_offset..]].concat();
    assert!(matches!(
        request::parse_request(&unflushed),
        Err(E::Pktline(_))
    ));
    // A length that is not hex.
    let mut bad_len = body.clone();
    bad_len[1] = b'x';
    assert!(matches!(
        request::parse_request(&bad_len),
        Err(E::Pktline(portcullis::git::wire::pktline::Error::NotHex {
            offset: 0,
            ..
        }))
    ));
    // Uppercase hex: git never sends it, so it is refused.
    let new = req.commands[0].new.to_string();
    let upper = replace(new.as_bytes(), new.to_uppercase().as_bytes());
    assert!(matches!(
        request::parse_request(&upper),
        Err(E::BadOid { .. })
    ));
    // A name git would call funny (same length, so the pkt-line stays valid).
    let funny = replace(b"refs/heads/other", b"refs/heads/o..er");
    assert!(matches!(
        request::parse_request(&funny),
        Err(E::BadRefname { .. })
    ));
    // Both commands for one ref.
    let twice = replace(b"refs/heads/other", b"refs/heads/main\n");
    assert_eq!(
        request::parse_request(&twice),
        Err(E::DuplicateRef {
            name: "refs/heads/main".into()
        })
    );
    // No pack where one is due, or something else instead.
    assert_eq!(
        request::parse_request(&body[..req.pack_offset]),
        Err(E::MissingPack)
    );
    let no_pack = replace(b"PACK", b"KCAP");
    assert!(matches!(
        request::parse_request(&no_pack),
        Err(E::NotAPack { .. })
    ));
}

fn refuse(progress: &[&str]) -> Reply {
    Reply::Refuse {
        reason: DENIED.into(),
        unpack: None,
        progress: progress.iter().map(|p| p.to_string()).collect(),
    }
}

/// Pushes main and insists git reports it rejected with `reason`.
fn assert_rejected(f: &Fixture, reason: &str) -> String {
    let out = f.push(&["origin", "main"]);
    let all = text(&out);
    assert!(!out.status.success(), "the push must fail:\n{all}");
    let expected = format!(" ! [remote rejected] main -> main ({reason})");
    assert!(
        all.lines().any(|l| l == expected),
        "missing {expected:?} in:\n{all}"
    );
    assert!(!all.contains("hung up"), "{all}");
    all
}

#[test]
fn a_refused_push_reads_as_remote_rejected_with_side_band_64k() {
    let f = Fixture::new();
    f.server.set(Behaviour {
        reply: refuse(&[
            CHECKING,
            "portcullis: see https://gw.example/approvals/42\n",
        ]),
        ..Behaviour::default()
    });
    let out = assert_rejected(&f, DENIED);
    // git pads each remote line (a clear-to-end-of-line sequence when on a terminal).
    assert!(out.contains(&format!("remote: {CHECKING}")), "{out}");
    assert!(
        out.contains("remote: portcullis: see https://gw.example/approvals/42"),
        "{out}"
    );
    let (_, req) = f.one_post();
    assert_eq!(req.sideband(), Some(request::Band::SideBand64k));
    // Nothing reached the upstream.
    assert!(f.git_in(&f.bare, &["for-each-ref"]).is_empty());
}

/// git's send-pack asks for side-band only as `side-band-64k`: without it there is no
/// side-band at all, so progress has no channel, but the report still arrives whole.
#[test]
fn a_refused_push_reads_as_remote_rejected_without_side_band() {
    let f = Fixture::new();
    let reason = format!("{DENIED} {}", "very long explanation ".repeat(60));
    f.server.set(Behaviour {
        remove: vec![CAP_SIDE_BAND_64K],
        reply: Reply::Refuse {
            reason: reason.clone(),
            unpack: None,
            progress: vec![CHECKING.into()],
        },
        ..Behaviour::default()
    });
    let out = assert_rejected(&f, &reason);
    assert!(!out.contains(CHECKING), "{out}");
    let (_, req) = f.one_post();
    assert_eq!(req.sideband(), None, "{:?}", req.capabilities);
}

#[test]
fn a_refused_push_reads_as_remote_rejected_with_report_status_v1() {
    let f = Fixture::new();
    f.server.set(Behaviour {
        remove: vec![CAP_REPORT_STATUS_V2],
        reply: refuse(&[CHECKING]),
        ..Behaviour::default()
    });
    assert_rejected(&f, DENIED);
    let (_, req) = f.one_post();
    assert_eq!(req.report_status(), Some(request::ReportStatus::V1));
}

#[test]
fn a_refused_pack_reads_as_unpack_failed() {
    let f = Fixture::new();
    f.server.set(Behaviour {
        reply: Reply::Refuse {
            reason: "unpacker error".into(),
            unpack: Some("portcullis: corrupt pack".into()),
            progress: Vec::new(),
        },
        ..Behaviour::default()
    });
    let out = assert_rejected(&f, "unpacker error");
    assert!(
        out.contains("remote unpack failed: portcullis: corrupt pack"),
        "{out}"
    );
}

#[test]
fn without_report_status_the_client_only_sees_progress() {
    let f = Fixture::new();
    f.server.set(Behaviour {
        remove: vec![CAP_REPORT_STATUS, CAP_REPORT_STATUS_V2],
        reply: refuse(&[CHECKING]),
        ..Behaviour::default()
    });
    let out = f.push(&["origin", "main"]);
    assert!(
        text(&out).contains(&format!("remote: {CHECKING}")),
        "{}",
        text(&out)
    );
    // Without a report git assumes success, as it does with receive-pack itself: the
    // gateway has to keep report-status advertised (every receive-pack advertises it).
    assert!(out.status.success(), "{}", text(&out));
    assert!(f.git_in(&f.bare, &["for-each-ref"]).is_empty());
    let (post, req) = f.one_post();
    assert_eq!(req.report_status(), None);
    assert!(!post.response.windows(6).any(|w| w == b"unpack"));
}

/// Byte for byte: our report for a refused ref equals receive-pack's when its
/// pre-receive hook refuses the same push.
#[test]
fn reports_match_receive_pack_byte_for_byte() {
    for remove in [
        vec![],
        vec![CAP_SIDE_BAND_64K],
        vec![CAP_REPORT_STATUS_V2],
        vec![CAP_SIDE_BAND_64K, CAP_REPORT_STATUS_V2],
    ] {
        let f = Fixture::new();
        let hook = f.bare.join("hooks/pre-receive");
        std::fs::write(&hook, "#!/bin/sh\nexit 1\n").expect("hook");
        make_executable(&hook);
        f.git(&["branch", "other"]);
        f.server.set(Behaviour {
            remove: remove.clone(),
            ..Behaviour::default()
        });
        let out = f.push(&["origin", "main", "other"]);
        assert!(
            text(&out).contains("(pre-receive hook declined)"),
            "{}",
            text(&out)
        );
        let (post, req) = f.one_post();
        let refs: Vec<(&str, Option<&str>)> = req
            .commands
            .iter()
            .map(|c| (c.name.as_str(), Some("pre-receive hook declined")))
            .collect();
        let ours = report::encode_report(&req, Ok(()), &refs, &[]);
        assert_eq!(
            ours.escape_ascii().to_string(),
            post.response.escape_ascii().to_string(),
            "capabilities {:?}",
            req.capabilities
        );
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
