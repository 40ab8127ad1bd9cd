//! Real repositories, the real `git` CLI, and a `portcullis serve` in front of them.
//!
//! An upstream is either a local bare repository or a smart-HTTP server: [`HttpUpstream`]
//! runs `git http-backend` (git's own CGI program) behind a small axum server that
//! demands the gateway's token and records every `Authorization` it sees, so a test can
//! prove the agent's JWT never travels upstream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use portcullis::identity::{self, KeyAlg, MintOptions};

use super::gateway::{AUDIENCE, ISSUER, free_port, wait_listening};

/// Runs git in `dir` with a clean, private configuration; panics if git cannot start.
/// `len` bytes of 64-byte source-like lines (the last one cut short), with no keyword or
/// prefix a secret detector reacts to: filler that puts a secret at an exact offset.
pub fn filler(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!("fn item_{i:010}() -> u64 {{ {i:010} * 7 }} // filler, lines\n");
        debug_assert_eq!(line.len(), 64);
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

pub fn git(dir: &Path, args: &[&str]) -> Output {
    git_env(dir, args, &[])
}

pub fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = git_command(dir);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("git runs")
}

/// `git` in `dir` with a private configuration, a fixed identity, the C locale (so its
/// messages can be matched) and no proxies (tests talk to 127.0.0.1).
pub fn git_command(dir: &Path) -> Command {
    let home = std::env::temp_dir().join("portcullis-test-git-home");
    std::fs::create_dir_all(&home).expect("git home");
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Agent Smith")
        .env("GIT_AUTHOR_EMAIL", "agent@example.com")
        .env("GIT_COMMITTER_NAME", "Agent Smith")
        .env("GIT_COMMITTER_EMAIL", "agent@example.com")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LC_ALL", "C")
        .env("NO_PROXY", "*")
        .env("no_proxy", "*");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs git and insists it succeeds; returns stdout, trimmed.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git show-ref` of a repository: every ref and its object, for "nothing changed" checks.
pub fn refs(repo: &Path) -> String {
    let out = git(repo, &["show-ref"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare upstream with `main` (two commits), `feature`, and an annotated tag `v1`.
pub fn seeded_upstream(root: &Path, name: &str) -> PathBuf {
    let bare = root.join(format!("{name}.git"));
    git_ok(
        root,
        &["init", "--bare", "-q", "-b", "main", bare.to_str().unwrap()],
    );
    let work = root.join(format!("{name}-seed"));
    git_ok(root, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::write(work.join("README.md"), "# app\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "first"]);
    std::fs::write(work.join("src.txt"), "fn main() {}\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "second"]);
    git_ok(&work, &["branch", "feature"]);
    git_ok(&work, &["tag", "-a", "v1", "-m", "release 1"]);
    git_ok(
        &work,
        &[
            "push",
            "-q",
            bare.to_str().unwrap(),
            "main",
            "feature",
            "v1",
        ],
    );
    bare
}

/// Where a `[[git]]` entry's upstream lives.
pub enum UpstreamSpec {
    Local(PathBuf),
    /// A local upstream with `apply = "direct"`.
    LocalDirect(PathBuf),
    Http {
        url: String,
        token: String,
    },
}

/// A gateway serving git repositories; killed on drop.
pub struct GitGateway {
    child: Child,
    pub port: u16,
    pub key_pem: String,
    pub dir: tempfile::TempDir,
}

impl GitGateway {
    /// Serves `repos` (name → upstream) with the built-in rules, or `rules` when given.
    pub fn start(repos: &[(&str, UpstreamSpec)], rules: Option<&str>) -> GitGateway {
        GitGateway::start_with_admin(repos, rules, None)
    }

    /// As [`GitGateway::start`], with the admin API on `admin_port`.
    pub fn start_with_admin(
        repos: &[(&str, UpstreamSpec)],
        rules: Option<&str>,
        admin_port: Option<u16>,
    ) -> GitGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_pem = identity::generate_key(KeyAlg::Es256).expect("key");
        let jwks = identity::jwks_for(&key_pem).expect("jwks");
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("write jwks");
        let port = free_port();
        let rules_line = match rules {
            Some(text) => {
                std::fs::write(dir.path().join("team.rules"), text).expect("write rules");
                "rules = [\"team.rules\"]\n"
            }
            None => "",
        };
        let admin_line = admin_port
            .map(|p| format!("admin_listen = \"127.0.0.1:{p}\"\n"))
            .unwrap_or_default();
        let mut config = format!(
            "[server]\ngit_listen = \"127.0.0.1:{port}\"\n{admin_line}{rules_line}\n\
             [identity]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_path = \"jwks.json\"\n"
        );
        let mut envs = Vec::new();
        for (i, (name, spec)) in repos.iter().enumerate() {
            match spec {
                UpstreamSpec::Local(path) => config.push_str(&format!(
                    "\n[[git]]\nname = \"{name}\"\nupstream = {:?}\n",
                    path.to_str().unwrap()
                )),
                UpstreamSpec::LocalDirect(path) => config.push_str(&format!(
                    "\n[[git]]\nname = \"{name}\"\nupstream = {:?}\napply = \"direct\"\n",
                    path.to_str().unwrap()
                )),
                UpstreamSpec::Http { url, token } => {
                    let var = format!("TEST_GIT_TOKEN_{i}");
                    config.push_str(&format!(
                        "\n[[git]]\nname = \"{name}\"\nupstream = \"{url}\"\nupstream_token_env = \"{var}\"\n"
                    ));
                    envs.push((var, token.clone()));
                }
            }
        }
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .envs(envs)
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("gateway.log")).expect("log file"))
            .spawn()
            .expect("portcullis serve starts");
        let gw = GitGateway {
            child,
            port,
            key_pem,
            dir,
        };
        wait_listening(port, || gw.log());
        gw
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_in(sub, &["developers"])
    }

    pub fn token_in(&self, sub: &str, groups: &[&str]) -> String {
        identity::mint(
            &self.key_pem,
            MintOptions {
                sub: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ttl: Duration::from_secs(600),
                issuer: ISSUER.into(),
                audience: AUDIENCE.into(),
                agent: Some("test-agent".into()),
                kid: None,
            },
        )
        .expect("mint")
    }

    /// The clone URL of `repo` with `token` as the Basic password.
    pub fn url(&self, repo: &str, token: &str) -> String {
        format!(
            "http://agent:{token}@127.0.0.1:{}/git/{repo}.git",
            self.port
        )
    }

    pub fn plain_url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/git/{repo}.git", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("portcullis.toml")
    }

    /// The audit store the gateway writes (the default file beside its config).
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("portcullis-audit.duckdb")
    }

    /// Stops the gateway as SIGTERM would, and waits for it to exit.
    pub fn terminate(&mut self) {
        super::gateway::terminate(&mut self.child);
    }
}

impl Drop for GitGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A smart-HTTP git server: `git http-backend` behind axum, on its own thread.
pub struct HttpUpstream {
    pub port: u16,
    pub root: PathBuf,
    /// Every `Authorization` header received, in order.
    pub seen_auth: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpUpstream {
    /// Serves the bare repositories under `root`, demanding Basic `x-access-token:<token>`.
    pub fn start(root: &Path, token: &str) -> HttpUpstream {
        let port = free_port();
        let seen_auth = Arc::new(Mutex::new(Vec::new()));
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
        );
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::new(CgiState {
            root: root.to_path_buf(),
            expected,
            seen: seen_auth.clone(),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind upstream");
                let app = axum::Router::new().fallback(cgi).with_state(state);
                ready_tx.send(()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("upstream serves");
            });
        });
        ready_rx.recv().expect("upstream ready");
        HttpUpstream {
            port,
            root: root.to_path_buf(),
            seen_auth,
            _stop: stop_tx,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}.git", self.port)
    }
}

struct CgiState {
    root: PathBuf,
    expected: String,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn cgi(
    axum::extract::State(state): axum::extract::State<Arc<CgiState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    state.seen.lock().unwrap().push(auth.clone());
    if auth != state.expected {
        return (
            StatusCode::UNAUTHORIZED,
            [("WWW-Authenticate", "Basic realm=\"upstream\"")],
            "bad credentials",
        )
            .into_response();
    }
    let body = axum::body::to_bytes(body, 1 << 30).await.expect("body");
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut env: HashMap<&str, String> = HashMap::new();
    env.insert("GIT_PROJECT_ROOT", state.root.to_str().unwrap().into());
    env.insert("GIT_HTTP_EXPORT_ALL", "1".into());
    env.insert("PATH_INFO", parts.uri.path().into());
    env.insert("QUERY_STRING", parts.uri.query().unwrap_or("").into());
    env.insert("REQUEST_METHOD", parts.method.as_str().into());
    env.insert("CONTENT_TYPE", header("content-type"));
    env.insert("CONTENT_LENGTH", body.len().to_string());
    env.insert("HTTP_CONTENT_ENCODING", header("content-encoding"));
    env.insert("GIT_PROTOCOL", header("git-protocol"));
    env.insert("REMOTE_USER", "gateway".into());
    env.insert("REMOTE_ADDR", "127.0.0.1".into());
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", "/nonexistent")
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("git http-backend");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().expect("http-backend output");
        let _ = writer.join();
        out
    })
    .await
    .expect("cgi");
    // A CGI response: headers, a blank line, the body.
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
    let Some((end, sep)) = split else {
        return (
            StatusCode::BAD_GATEWAY,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
            .into_response();
    };
    let mut builder = axum::http::Response::builder().status(200);
    for line in String::from_utf8_lossy(&raw[..end]).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("status") {
            let code: u16 = v
                .trim()
                .split(' ')
                .next()
                .unwrap_or("500")
                .parse()
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(k.trim(), v.trim());
        }
    }
    builder
        .body(axum::body::Body::from(raw[end + sep..].to_vec()))
        .unwrap()
}
