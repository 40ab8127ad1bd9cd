//! A `portcullis serve` child process in front of a [`PgCluster`], with a fresh signing
//! key and JWKS, for end-to-end tests of the PostgreSQL gateway.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::identity::{self, KeyAlg, MintOptions};

use super::pg::PgCluster;

pub const ISSUER: &str = "https://idp.test/";
pub const AUDIENCE: &str = "portcullis";

/// A running gateway in front of a cluster; killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub key_pem: String,
    pub dir: tempfile::TempDir,
}

/// Sends SIGTERM and waits for the process to exit.
pub fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on a child this test started and has not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
}

/// Waits up to 20 s for a gateway to accept connections on `port`; `log` explains why not.
pub fn wait_listening(port: u16, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "gateway did not listen:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// How a test wants the gateway set up.
#[derive(Default)]
pub struct Options {
    /// Query string of the upstream URL (`sslmode=...`).
    pub upstream_params: String,
    /// Offer TLS to clients with this PKI's server certificate.
    pub client_tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// A rule file to use instead of the built-in pack.
    pub rules: Option<String>,
    /// The role the gateway logs in as (`portcullis`, SCRAM, when `None`).
    pub upstream_user: Option<String>,
    /// More keys for the `[server]` section (`admin_listen = ...`).
    pub server: String,
    /// More keys for the `[[postgres]]` entry (`tls_required = true`).
    pub postgres: String,
    /// More sections at the end of the file (`[audit]`).
    pub sections: String,
    /// Environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// Run the gateway with this limit on open files (soft and hard).
    pub fd_limit: Option<u64>,
}

impl Gateway {
    /// A tokio-postgres client through the gateway; its connection runs on a task.
    pub async fn client(&self, token: &str) -> tokio_postgres::Client {
        let conn_str = format!("{} password={token}", self.conninfo());
        let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect through the gateway: {e}\n{}", self.log()));
        tokio::spawn(connection);
        client
    }

    pub fn start(pg: &PgCluster) -> Gateway {
        Gateway::start_with(
            pg,
            Options {
                upstream_params: "sslmode=disable".into(),
                ..Options::default()
            },
        )
    }

    pub fn start_with(pg: &PgCluster, options: Options) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let key_pem = identity::generate_key(KeyAlg::Es256).expect("key");
        let jwks = identity::jwks_for(&key_pem).expect("jwks");
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).expect("write jwks");
        let port = free_port();
        let rules_line = match &options.rules {
            Some(text) => {
                std::fs::write(dir.path().join("team.rules"), text).expect("write rules");
                "rules = [\"team.rules\"]\n"
            }
            None => "",
        };
        let upstream_user = options
            .upstream_user
            .clone()
            .unwrap_or_else(|| "portcullis".into());
        let upstream_password = pg
            .password_of(&upstream_user)
            .expect("a role the harness made")
            .to_string();
        let config = format!(
            r#"[server]
unparsed = "deny"
{rules_line}{}
[identity]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_path = "jwks.json"

[[postgres]]
name = "app"
listen = "127.0.0.1:{port}"
upstream = "postgres://{upstream_user}@{}:{}/app?{}"
upstream_password_env = "TEST_UPSTREAM_PASSWORD"
max_message_bytes = 1048576
{}{}
{}"#,
            options.server,
            if options.upstream_params.contains("verify-full") {
                "localhost"
            } else {
                "127.0.0.1"
            },
            pg.port(),
            options.upstream_params,
            match &options.client_tls {
                Some((cert, key)) => format!("tls_cert = {cert:?}\ntls_key = {key:?}\n"),
                None => String::new(),
            },
            options.postgres,
            options.sections,
        );
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = match options.fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_portcullis")),
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_portcullis"));
                c
            }
        };
        let child = command
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("TEST_UPSTREAM_PASSWORD", &upstream_password)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("gateway.log")).expect("log file"))
            .spawn()
            .expect("portcullis serve starts");
        let gw = Gateway {
            child,
            port,
            key_pem,
            dir,
        };
        wait_listening(port, || gw.log());
        gw
    }

    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.token_with(sub, groups, AUDIENCE, Duration::from_secs(600))
    }

    pub fn token_with(&self, sub: &str, groups: &[&str], audience: &str, ttl: Duration) -> String {
        identity::mint(
            &self.key_pem,
            MintOptions {
                sub: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ttl,
                issuer: ISSUER.into(),
                audience: audience.into(),
                agent: Some("test-agent".into()),
                kid: None,
            },
        )
        .expect("mint")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The audit store the gateway writes (the default file beside its config).
    pub fn audit_path(&self) -> std::path::PathBuf {
        self.dir.path().join("portcullis-audit.duckdb")
    }

    /// Stops the gateway as Ctrl-C or SIGTERM would, and waits for it to exit.
    pub fn terminate(&mut self) {
        terminate(&mut self.child);
    }

    /// Kills the gateway outright (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=agent dbname=app sslmode=disable",
            self.port
        )
    }

    /// psql through the gateway; returns (exit ok, stdout, stderr).
    pub fn psql(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        self.psql_with(&self.conninfo(), token, args)
    }

    /// psql through the gateway on a thread of its own, for a request that waits.
    pub fn psql_in_background(
        &self,
        token: &str,
        args: &[&str],
    ) -> std::thread::JoinHandle<(bool, String, String)> {
        let (conninfo, token) = (self.conninfo(), token.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            psql_at(&conninfo, &token, &args)
        })
    }

    pub fn psql_with(&self, conninfo: &str, token: &str, args: &[&str]) -> (bool, String, String) {
        psql_at(conninfo, token, args)
    }
}

/// psql with `conninfo` and the token as password (usable from another thread);
/// returns (exit ok, stdout, stderr).
pub fn psql_at(conninfo: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    {
        let mut cmd = Command::new(PgCluster::bin("psql"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        let out = cmd
            .env("PGPASSWORD", token)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-At", "-d", conninfo])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("psql runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster with a small `users` table and a gateway in front of it.
/// [`setup`] from async tests (it blocks), then `seed` on the cluster.
pub async fn setup_seeded(seed: fn(&PgCluster)) -> (PgCluster, Gateway) {
    tokio::task::spawn_blocking(move || {
        let (pg, gw) = setup();
        seed(&pg);
        (pg, gw)
    })
    .await
    .expect("setup")
}

pub fn setup() -> (PgCluster, Gateway) {
    let pg = PgCluster::start();
    let out = pg.psql(
        "portcullis",
        pg.user_password(),
        "app",
        "CREATE TABLE users (id int primary key, email text); INSERT INTO users VALUES (1, 'a@x.io'), (2, 'b@x.io');",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw = Gateway::start(&pg);
    (pg, gw)
}

/// One HTTP/1.1 request to a listener on `port` (the admin API); the whole response.
pub fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// The status code and JSON body of an admin API call.
pub fn api(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let raw = http(port, method, path, Some(token), body);
    let status: u16 = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()));
    (status, json)
}

/// Waits for a pending request whose statement contains `needle`; its id.
pub fn pending(port: u16, token: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, list) = api(port, "GET", "/api/approvals?state=pending", token, "");
        assert_eq!(status, 200, "{list}");
        if let Some(r) = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["statement"].as_str().is_some_and(|s| s.contains(needle)))
        {
            return r["id"].as_str().expect("an id").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no pending request for {needle}: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Approves or rejects (`verb`) request `id` as `token`, with `body`; the request as the
/// API returns it. Fails the test unless the API answers 200.
pub fn decide(port: u16, token: &str, id: &str, verb: &str, body: &str) -> serde_json::Value {
    let (status, r) = api(
        port,
        "POST",
        &format!("/api/approvals/{id}/{verb}"),
        token,
        body,
    );
    assert_eq!(status, 200, "{verb} {id}: {r}");
    r
}
