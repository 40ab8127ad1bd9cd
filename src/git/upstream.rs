//! The repository behind a `[[git]]` entry, reached two ways: a local bare repository
//! served by git's own `upload-pack`/`receive-pack` (what `git http-backend` runs), or a
//! smart-HTTP remote reached with the gateway's token. The client's credentials never go
//! upstream, and the token never comes back.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::Command;

use super::Error;
use crate::config::{GitTarget, GitUpstream};

/// A byte stream on its way to the client or the upstream.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The two services of smart HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub fn from_name(name: &str) -> Option<Service> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }
}

/// What an upstream sent back: status, content type and the body as a stream.
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: ByteStream,
}

/// One configured repository's upstream.
pub struct Upstream {
    kind: GitUpstream,
    token: Option<String>,
    http: reqwest::Client,
    mirror: PathBuf,
}

impl Upstream {
    pub fn new(target: &GitTarget, http: reqwest::Client) -> Upstream {
        Upstream {
            kind: target.upstream.clone(),
            token: target.upstream_token.clone(),
            http,
            mirror: target.mirror.clone(),
        }
    }

    /// The read-only repository pushes are judged against.
    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    /// The ref advertisement (`info/refs?service=...`), service header included for v0/v1.
    /// `protocol` is the client's `Git-Protocol` header, already checked.
    pub async fn advertise(
        &self,
        service: Service,
        protocol: Option<&str>,
    ) -> Result<Reply, Error> {
        match &self.kind {
            GitUpstream::Local(dir) => {
                let mut prefix = Vec::new();
                // Like `git http-backend`: protocol v2 starts without the service header.
                if !protocol.is_some_and(|p| p.contains("version=2")) {
                    crate::git::wire::pktline::write_data(
                        &mut prefix,
                        format!("# service={}\n", service.name()).as_bytes(),
                    )
                    .map_err(|e| Error::Http(e.to_string()))?;
                    crate::git::wire::pktline::write_flush(&mut prefix);
                }
                let body = run_git(dir, service, true, protocol, empty_stream()).await?;
                let body = futures_util::stream::once(async move { Ok(Bytes::from(prefix)) })
                    .chain(body)
                    .boxed();
                Ok(Reply {
                    status: 200,
                    content_type: Some(format!("application/x-{}-advertisement", service.name())),
                    body,
                })
            }
            GitUpstream::Http(url) => {
                let mut req = self
                    .http
                    .get(format!("{url}/info/refs?service={}", service.name()));
                req = self.authorize(req);
                if let Some(p) = protocol {
                    req = req.header("Git-Protocol", p);
                }
                self.send(req).await
            }
        }
    }

    /// Runs one stateless-rpc exchange: the client's (already decoded) request body in,
    /// the service's response out.
    pub async fn rpc(
        &self,
        service: Service,
        protocol: Option<&str>,
        body: ByteStream,
    ) -> Result<Reply, Error> {
        match &self.kind {
            GitUpstream::Local(dir) => {
                let body = run_git(dir, service, false, protocol, body).await?;
                Ok(Reply {
                    status: 200,
                    content_type: Some(format!("application/x-{}-result", service.name())),
                    body,
                })
            }
            GitUpstream::Http(url) => {
                let mut req = self
                    .http
                    .post(format!("{url}/{}", service.name()))
                    .header(
                        "Content-Type",
                        format!("application/x-{}-request", service.name()),
                    )
                    .header("Accept", format!("application/x-{}-result", service.name()))
                    .body(reqwest::Body::wrap_stream(body));
                req = self.authorize(req);
                if let Some(p) = protocol {
                    req = req.header("Git-Protocol", p);
                }
                self.send(req).await
            }
        }
    }

    /// Brings the mirror up to date with the upstream's branches and tags (a no-op for a
    /// local upstream, which is its own mirror).
    pub async fn refresh_mirror(&self) -> Result<(), Error> {
        let GitUpstream::Http(url) = &self.kind else {
            return Ok(());
        };
        if !self.mirror.join("HEAD").exists() {
            std::fs::create_dir_all(&self.mirror)
                .map_err(|e| Error::Mirror(format!("{}: {e}", self.mirror.display())))?;
            git_quiet(&self.mirror, &["init", "--bare", "--quiet", "."], None).await?;
        }
        git_quiet(
            &self.mirror,
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            self.authorization().as_deref(),
        )
        .await
    }

    /// `Authorization` for the upstream: the token as an HTTP Basic password (user
    /// `x-access-token`, as GitHub and Gitea expect), or `user:token` as given.
    fn authorization(&self) -> Option<String> {
        let token = self.token.as_deref()?;
        let pair = if token.contains(':') {
            token.to_string()
        } else {
            format!("x-access-token:{token}")
        };
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.authorization() {
            Some(value) => req.header("Authorization", value),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, Error> {
        let resp = req.send().await.map_err(|e| Error::Http(without_url(&e)))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            // The upstream's body may echo request details; keep only the status.
            return Err(Error::Status {
                status,
                message: resp
                    .status()
                    .canonical_reason()
                    .unwrap_or("error")
                    .to_string(),
            });
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(without_url(&e)))
            .boxed();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}

/// A reqwest error without the URL (which names the upstream's internals).
fn without_url(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    what.to_string()
}

pub fn empty_stream() -> ByteStream {
    futures_util::stream::empty().boxed()
}

/// Runs `git <service> --stateless-rpc [--advertise-refs] <dir>`, feeding `input` to its
/// stdin, and returns its stdout as a stream. A failure to start is an error; a failure
/// midway ends the stream with an error, which aborts the HTTP response.
async fn run_git(
    dir: &Path,
    service: Service,
    advertise: bool,
    protocol: Option<&str>,
    mut input: ByteStream,
) -> Result<ByteStream, Error> {
    let mut cmd = Command::new("git");
    cmd.arg(service.program()).arg("--stateless-rpc");
    if advertise {
        cmd.arg("--advertise-refs");
    }
    cmd.arg(dir)
        .env_remove("GIT_DIR")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match protocol {
        Some(p) => cmd.env("GIT_PROTOCOL", p),
        None => cmd.env_remove("GIT_PROTOCOL"),
    };
    let mut child = cmd.spawn().map_err(Error::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    tokio::spawn(async move {
        while let Some(chunk) = input.next().await {
            match chunk {
                Ok(c) => {
                    if stdin.write_all(&c).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "request body ended early; the git program sees EOF");
                    return;
                }
            }
        }
        let _ = stdin.shutdown().await;
    });
    let program = service.program();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), std::io::Error>>();
    tokio::spawn(async move {
        let mut err = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut err).await;
        let status = child.wait().await;
        let result = match status {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => {
                let message = String::from_utf8_lossy(&err).trim().to_string();
                tracing::warn!(program, status = %s, stderr = %message, "git program failed");
                Err(std::io::Error::other(format!("git {program} failed")))
            }
            Err(e) => Err(e),
        };
        let _ = done_tx.send(result);
    });
    let out = tokio_util::io::ReaderStream::new(stdout);
    // After stdout ends, surface the program's exit status as the stream's last item.
    let tail = futures_util::stream::once(async move {
        match done_rx.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(e)),
            Err(_) => None,
        }
    })
    .filter_map(|x| async move { x });
    Ok(out.chain(tail).boxed())
}

/// Runs a git command in `dir` to completion; `authorization` becomes an HTTP header
/// through the environment, so it never shows in the process list.
async fn git_quiet(dir: &Path, args: &[&str], authorization: Option<&str>) -> Result<(), Error> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(value) = authorization {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {value}"));
    }
    let out = cmd.output().await.map_err(Error::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Mirror(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Reads a whole stream, refusing more than `limit` bytes.
pub async fn collect(mut body: ByteStream, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(std::io::Error::other("response too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A file's bytes from `offset` on, as a stream.
pub fn file_stream<R: AsyncRead + Send + 'static>(reader: R) -> ByteStream {
    tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10).boxed()
}

/// Applies an already-judged push to a local bare repository without `receive-pack`: the
/// indexed pack (and its index) are linked or copied into `objects/pack`, then every ref
/// moves in one `git update-ref --stdin` transaction that checks each old value, so a ref
/// that moved since the verdict fails the whole push. `updates` are (ref, old, new) hex.
pub async fn apply_pack(
    dir: &Path,
    pack: Option<&Path>,
    updates: &[(String, String, String)],
) -> Result<(), Error> {
    let linked = match pack {
        Some(pack) => Some(link_pack(dir, pack).await?),
        None => None,
    };
    let moved = update_refs(dir, updates).await;
    if moved.is_err()
        && let Some(linked) = linked
    {
        // No ref moved, so nothing refers to the pack's objects.
        linked.withdraw();
    }
    moved
}

/// Moves every ref in one `git update-ref --stdin` transaction that checks each old value.
async fn update_refs(dir: &Path, updates: &[(String, String, String)]) -> Result<(), Error> {
    let zero = "0".repeat(40);
    let mut script = String::from("start\n");
    for (name, old, new) in updates {
        if *old == zero {
            script.push_str(&format!("create {name} {new}\n"));
        } else if *new == zero {
            script.push_str(&format!("delete {name} {old}\n"));
        } else {
            script.push_str(&format!("update {name} {new} {old}\n"));
        }
    }
    script.push_str("prepare\ncommit\n");
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(["update-ref", "--stdin"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Git {
            program: "update-ref",
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Hard-links (or copies) `pack` and its `.idx` into `dir/objects/pack`, the index last so
/// no reader sees an index without its pack. Returns the files it added (a file already
/// there is left alone and not returned).
fn install_pack(pack: &Path, dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let target = dir.join("objects").join("pack");
    let mut added = Vec::with_capacity(2);
    for ext in ["pack", "idx"] {
        let from = pack.with_extension(ext);
        let to = target.join(from.file_name().unwrap_or_default());
        if to.exists() {
            continue;
        }
        let staged = target.join(format!(".portcullis-{}.tmp", rand::random::<u64>()));
        if std::fs::hard_link(&from, &staged).is_err() {
            std::fs::copy(&from, &staged)?;
        }
        // Read-only and readable by all, as git leaves its own packs: the indexer wrote
        // them private (0600), and whoever else serves the repository must read them.
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o444))?;
        std::fs::rename(&staged, &to)?;
        added.push(to);
    }
    Ok(added)
}

/// A judged pack linked into a local upstream before its receive-pack runs, so that
/// receive-pack gets an empty pack and does not index the objects a second time.
#[derive(Debug)]
pub struct Linked {
    files: Vec<PathBuf>,
}

impl Linked {
    /// Takes the pack out again: the upstream took none of the refs, so nothing refers to
    /// its objects (git's own quarantine would have dropped them too). The index goes
    /// first, so no reader sees an index without its pack.
    pub fn withdraw(self) {
        for file in self.files.iter().rev() {
            if let Err(e) = std::fs::remove_file(file) {
                tracing::warn!(file = %file.display(), error = %e, "linked pack not withdrawn");
            }
        }
    }
}

/// Links `pack` (an indexed, complete pack: thin-pack bases included) into the local
/// upstream `dir`.
pub async fn link_pack(dir: &Path, pack: &Path) -> Result<Linked, Error> {
    let (pack, dir) = (pack.to_path_buf(), dir.to_path_buf());
    let files = tokio::task::spawn_blocking(move || install_pack(&pack, &dir))
        .await
        .map_err(std::io::Error::other)??;
    Ok(Linked { files })
}

/// Whether the local upstream `dir` must be sent the pack itself rather than have it
/// linked in: it checks the objects pushed to it (`receive.fsckObjects`, else
/// `transfer.fsckObjects`) or limits their size (`receive.maxInputSize`), so that its own
/// check runs on them; also when its settings cannot be read.
pub async fn wants_the_pack(dir: &Path) -> bool {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args([
            "config",
            "--get-regexp",
            r"^(receive\.fsckobjects|transfer\.fsckobjects|receive\.maxinputsize)$",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let out = match out {
        Ok(out) if out.status.success() => out,
        // Exit status 1: none of the keys is set.
        Ok(out) if out.status.code() == Some(1) && out.stderr.is_empty() => return false,
        _ => return true,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // The last value of a key wins, as in git; a key without a value is `true`.
    let value = |key: &str| {
        text.lines()
            .map(|l| l.split_once(' ').unwrap_or((l, "true")))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .next_back()
    };
    let on = |v: String| !matches!(v.as_str(), "false" | "no" | "off" | "0" | "");
    let fsck = value("receive.fsckobjects").or_else(|| value("transfer.fsckobjects"));
    fsck.is_some_and(on) || value("receive.maxinputsize").is_some_and(on)
}
