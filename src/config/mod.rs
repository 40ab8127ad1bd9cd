//! Configuration: `portcullis.toml` → [`Config`].
//!
//! Parsed strictly (an unknown key is an error naming the key, the file and the line),
//! then validated into the types the running parts need: relative paths resolved against
//! the config file's folder, secrets read from the environment variables the file names
//! (never from the file itself), listen addresses and upstream URLs checked.

mod error;
mod raw;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use error::Error;
pub use upstream::{SslMode, Upstream};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub server: Server,
    pub identity: Option<Identity>,
    pub postgres: Vec<PostgresTarget>,
    pub git: Vec<GitTarget>,
    /// The `[audit]` section, when present.
    pub audit: Option<Audit>,
    pub mask: Mask,
    pub approvals: Approvals,
    /// Sections present in the file that later issues implement (`approvals`): accepted
    /// and checked, but not active yet.
    pub not_yet_active: Vec<&'static str>,
}

/// `[approvals]`: how long a reviewed request waits, who decides, where they are told.
#[derive(Debug, Clone)]
pub struct Approvals {
    /// A pending request expires after this (a rule's `review ... timeout` overrides it).
    pub timeout: std::time::Duration,
    /// How long the client's request waits on the wire before it is told it is pending.
    pub hold: std::time::Duration,
    /// The group that decides when the rule names none (`approvals.group`).
    pub group: String,
    /// The base URL approvers open (`approvals.link`); default: the admin listener's.
    pub link: Option<String>,
    pub webhook: Option<String>,
    pub webhook_secret_env: Option<String>,
}

/// Default `approvals.timeout`.
pub const DEFAULT_APPROVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Default `approvals.hold`: agents run commands under tool timeouts.
pub const DEFAULT_APPROVAL_HOLD: std::time::Duration = std::time::Duration::from_secs(25);

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            timeout: DEFAULT_APPROVAL_TIMEOUT,
            hold: DEFAULT_APPROVAL_HOLD,
            group: "approvers".into(),
            link: None,
            webhook: None,
            webhook_secret_env: None,
        }
    }
}

/// `[mask]`: where the key of the `hash` strategy comes from (an environment variable or
/// a file). Without either, `serve` makes a random key per run.
#[derive(Debug, Clone, Default)]
pub struct Mask {
    pub hash_key_env: Option<String>,
    pub hash_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub admin_listen: Option<SocketAddr>,
    pub git_listen: Option<SocketAddr>,
    /// Rule files or folders; empty means the built-in packs.
    pub rules: Vec<PathBuf>,
    /// What `sql.unparsed` does: deny or review.
    pub unparsed: Unparsed,
    /// `/metrics` without a token (`server.metrics_public`, default false).
    pub metrics_public: bool,
    /// The group whose tokens may read `/metrics` (`server.metrics_group`).
    pub metrics_group: String,
}

/// Default `server.metrics_group`.
pub const DEFAULT_METRICS_GROUP: &str = "monitoring";

#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub audience: String,
    pub jwks: JwksSource,
    pub groups_claim: String,
    /// HS256 secret, from the env var `hs256_secret_env` names; HS256 is refused without it.
    pub hs256_secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// `[audit]`: where and how events are recorded.
#[derive(Debug, Clone)]
pub struct Audit {
    /// The DuckDB file (`audit.path`, default `portcullis-audit.duckdb` beside the config).
    pub path: PathBuf,
    /// Rows of each (masked) result kept per statement (`audit.result_rows`, default 100).
    pub result_rows: u32,
    /// `audit.durability`: `writes` (default), `all` or `async`.
    pub durability: Durability,
    /// The group (`groups` claim) whose tokens may query the store through the admin API
    /// (`audit.auditor_group`, default `auditors`).
    pub auditor_group: String,
    /// How long an auditor's query may run before it is cancelled (`audit.query_timeout`).
    pub query_timeout: std::time::Duration,
    /// DuckDB's memory limit for the writer (`audit.memory_limit`, default `256MB`).
    pub memory_limit: String,
}

/// Default `audit.memory_limit`.
pub const DEFAULT_AUDIT_MEMORY: &str = "256MB";

/// Default `audit.query_timeout`.
pub const DEFAULT_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A duration as the config writes it: a whole number and a unit (`500ms`, `30s`, `10m`,
/// `2h`).
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(std::time::Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// What the `audit` commands read of a gateway's config.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub admin_listen: Option<SocketAddr>,
    pub audit_path: PathBuf,
}

/// Default `audit.path`.
pub const DEFAULT_AUDIT_PATH: &str = "portcullis-audit.duckdb";
/// Default `audit.result_rows`.
pub const DEFAULT_RESULT_ROWS: u32 = 100;

/// One `[[postgres]]` entry: a listener and the database behind it.
#[derive(Debug, Clone)]
pub struct PostgresTarget {
    pub name: String,
    pub listen: SocketAddr,
    pub upstream: Upstream,
    /// The gateway's own upstream password (from `upstream_password_env`); `None` for
    /// trust authentication.
    pub upstream_password: Option<String>,
    pub tls: Option<TlsFiles>,
    /// Refuse clients that do not negotiate TLS (`tls_required`, needs `tls`).
    pub tls_required: bool,
    /// Largest client message accepted (Query and Parse included), in bytes.
    pub max_message_bytes: usize,
    /// Client connections served at once (`max_connections`); one more is told so and
    /// closed.
    pub max_connections: usize,
    /// How long a client may take from connecting to being logged in
    /// (`startup_timeout`); then it is closed.
    pub startup_timeout: std::time::Duration,
    /// Connections still logging in at once (`max_startups`); one more pushes out the one
    /// that has been logging in longest.
    pub max_startups: usize,
}

/// One `[[git]]` entry: a repository served at `/git/<name>.git`.
#[derive(Debug, Clone)]
pub struct GitTarget {
    pub name: String,
    pub upstream: GitUpstream,
    /// The gateway's own token for an HTTP(S) upstream (from `upstream_token_env`).
    pub upstream_token: Option<String>,
    /// Branch-name globs that are protected (`*` stays within one `/` segment).
    pub protected: Vec<String>,
    /// Refs outside branches and tags this repository accepts (`special_refs`, full-name
    /// globs such as `refs/notes/*`); any other is refused by `git.special-ref`.
    pub special_refs: Vec<String>,
    /// The read-only repository pushes are judged against: the upstream itself when it is
    /// local, else a bare mirror the gateway keeps (`mirror`, default
    /// `.portcullis/mirrors/<name>.git` beside the config file).
    pub mirror: PathBuf,
    /// Largest push body accepted, in bytes.
    pub max_push_bytes: u64,
    /// How an allowed push reaches a local upstream (`apply`).
    pub apply: GitApply,
}

/// How an allowed push is applied to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitApply {
    /// The upstream's own `git receive-pack` (hooks and its own checks run). A local
    /// upstream gets the gateway's indexed pack linked in and an empty pack on the wire,
    /// unless it checks them itself (`receive.fsckObjects`, `receive.maxInputSize`).
    ReceivePack,
    /// Local upstreams only: the gateway moves the pack it already indexed into the
    /// repository and updates the refs in one transaction (`git update-ref --stdin`). No
    /// second indexing pass, and no upstream hooks.
    Direct,
}

/// Where a repository really lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitUpstream {
    /// A bare repository on this machine, served with git's own programs.
    Local(PathBuf),
    /// A smart-HTTP remote (`https://host/org/app.git`).
    Http(String),
}

impl GitUpstream {
    fn parse(value: &str, base: &Path) -> Result<GitUpstream, String> {
        if value.starts_with("https://") || value.starts_with("http://") {
            let rest = value.split_once("://").map_or("", |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or("");
            if authority.contains('@') {
                return Err("credentials in the URL are refused: use upstream_token_env".into());
            }
            if authority.is_empty() {
                return Err(format!("{value:?} has no host"));
            }
            return Ok(GitUpstream::Http(value.trim_end_matches('/').to_string()));
        }
        if value.contains("://") {
            return Err(format!(
                "{value:?}: use a local bare repository path or an http(s):// URL"
            ));
        }
        Ok(GitUpstream::Local(base.join(value)))
    }
}

/// Protected branches when a `[[git]]` entry names none.
/// Branches protected when a `[[git]]` entry names none.
pub const DEFAULT_PROTECTED: &[&str] = &["main", "master", "release/*"];

/// `server.unparsed`: what the `sql.unparsed` rule does with SQL the gateway cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unparsed {
    Deny,
    Review,
}

/// `audit.durability`: which events are committed before their request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Events of requests that can write (the default).
    #[default]
    Writes,
    /// Every event.
    All,
    /// None: events are committed on the writer's cadence.
    Async,
}

impl Durability {
    /// The word the config uses for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Writes => "writes",
            Durability::All => "all",
            Durability::Async => "async",
        }
    }
}

/// Default cap on one push body (pack included).
pub const DEFAULT_MAX_PUSH_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Default cap on one client message: PostgreSQL's own limit is 1 GiB; a gateway that
/// must parse every query keeps statements to a size it can inspect quickly.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default `[[postgres]] max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Default `[[postgres]] startup_timeout`: an agent's driver logs in within
/// milliseconds; PostgreSQL's own `authentication_timeout` is a minute, for people.
pub const DEFAULT_STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default `[[postgres]] max_startups`.
pub const DEFAULT_MAX_STARTUPS: usize = 100;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Config::load_with(path, &|name| std::env::var(name).ok())
    }

    fn load_with(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text, env)
    }

    /// Reads only where the audit store and the admin API are (no secrets needed).
    pub fn load_store_view(path: &Path) -> Result<StoreView, Error> {
        // Every key is still checked; only the secrets' variables may be unset here,
        // and their values are not used.
        let config =
            Config::load_with(path, &|name| Some(std::env::var(name).unwrap_or_default()))?;
        Ok(StoreView {
            admin_listen: config.server.admin_listen,
            audit_path: config.audit.map(|a| a.path).unwrap_or_else(|| {
                path.parent()
                    .unwrap_or(Path::new("."))
                    .join(DEFAULT_AUDIT_PATH)
            }),
        })
    }

    /// Parses `text` as if read from `path`; `env` looks up environment variables.
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| Error::syntax(path, text, &e))?;
        raw.validate(path, env)
    }
}
