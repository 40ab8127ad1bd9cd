//! A private PostgreSQL cluster per test.
//!
//! Integration tests talk to a real server, never a mock: the gateway forwards
//! PostgreSQL's own bytes, so only PostgreSQL can say whether it did so
//! faithfully. Each [`PgCluster`] is its own data directory, port and Unix
//! socket directory inside a temporary directory, with SCRAM authentication as
//! a production server has, so tests run in parallel and the same on CI and on
//! a laptop. Nothing touches a system cluster.
//!
//! Every cluster has:
//! - superuser [`SUPERUSER`] ([`PgCluster::superuser_password`]);
//! - login role [`USER`] owning database [`DATABASE`] ([`PgCluster::user_password`]);
//! - login role [`MD5_USER`] whose password is stored as MD5 and whose
//!   `pg_hba.conf` line says `md5` ([`PgCluster::md5_password`]), for the
//!   legacy upstream authentication path;
//! - optionally TLS ([`PgCluster::start_with_tls`]) with a certificate for
//!   `localhost` and `127.0.0.1` signed by a test CA ([`PgCluster::ca_cert_path`]).
//!
//! ```no_run
//! let pg = PgCluster::start();
//! let out = pg.psql(USER, pg.user_password(), DATABASE, "SELECT 1");
//! assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{}", pg.log());
//! ```
//!
//! Binaries come from `$PG_BINDIR`, else `pg_config --bindir`, else the
//! highest `/usr/lib/postgresql/*/bin`, else `PATH`. PostgreSQL refuses to run
//! as root, so as root `initdb` and `pg_ctl` run as the `postgres` OS user
//! (through `runuser`), which is then given the cluster's directory.
//!
//! # Performance
//!
//! A cluster starts in about 0.3 s on CI's VM. `initdb` would take 1.4 s, so
//! it runs once per machine and PostgreSQL installation: its data directory
//! is kept under Cargo's `CARGO_TARGET_TMPDIR` as a template that each
//! cluster copies (29 MB, about 1,000 files) to tmpfs when it can (see
//! [`scratch_root`]; `PORTCULLIS_PG_TMPDIR` overrides) before
//! `pg_ctl start -w`. Passwords are still random per
//! cluster. Settings go in `postgresql.conf` rather than `pg_ctl -o`, which
//! goes through a shell, so paths need no shell quoting; only the port,
//! which may be retried, is passed with `-o`.

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use rand::RngExt;
use rand::distr::Alphanumeric;
use tempfile::TempDir;

use super::tls::TestPki;

/// The address every cluster listens on, and only that one.
pub const HOST: &str = "127.0.0.1";
/// The bootstrap superuser (`initdb -U`).
pub const SUPERUSER: &str = "postgres";
/// The role the gateway logs in as upstream.
pub const USER: &str = "portcullis";
/// The database owned by [`USER`].
pub const DATABASE: &str = "app";
/// A role with an MD5-stored password and an `md5` `pg_hba.conf` line.
pub const MD5_USER: &str = "md5user";

/// The OS user that owns the server when the tests run as root.
const SERVER_OS_USER: &str = "postgres";

/// Bump when the template's `initdb` options or configuration change, so a
/// stale template under the target dir is not reused.
const TEMPLATE_FORMAT: u32 = 2;

/// Settings every cluster shares, appended to the template's
/// `postgresql.conf`. `fsync = off`: test data need not survive a crash.
const SHARED_SETTINGS: &str = "
# Portcullis test harness (tests/suite/support/pg.rs)
listen_addresses = '127.0.0.1'
password_encryption = 'scram-sha-256'
max_connections = 100
fsync = off
";

/// The `pg_hba.conf` line for [`MD5_USER`]. `pg_hba.conf` is read top down,
/// so it goes before initdb's `scram-sha-256` lines.
const MD5_HBA_LINE: &str = "host all md5user 127.0.0.1/32 md5";

/// Attempts at finding a port nobody else takes before the server binds it.
const START_ATTEMPTS: usize = 5;

/// A running PostgreSQL server in its own temporary directory; dropping it
/// stops the server (`pg_ctl stop -m immediate`) and removes the directory.
pub struct PgCluster {
    port: u16,
    superuser_password: String,
    user_password: String,
    md5_password: String,
    pki: Option<TestPki>,
    /// Declared last: removed only after `Drop::drop` has stopped the server.
    dir: TempDir,
}

impl PgCluster {
    /// Starts a cluster without TLS. Panics, with the server log, on failure.
    pub fn start() -> PgCluster {
        PgCluster::start_inner(false)
    }

    /// Starts a cluster with `ssl = on` and a server certificate signed by
    /// the CA at [`PgCluster::ca_cert_path`]. Plain connections still work.
    pub fn start_with_tls() -> PgCluster {
        PgCluster::start_inner(true)
    }

    fn start_inner(tls: bool) -> PgCluster {
        let template = template();
        let dir = owned_scratch_dir("portcullis-pg-");
        let mut cluster = PgCluster {
            port: 0,
            superuser_password: random_password(),
            user_password: random_password(),
            md5_password: random_password(),
            pki: None,
            dir,
        };
        copy_tree(&template.data, &cluster.data_dir(), server_os_user());

        let mut settings = format!(
            "unix_socket_directories = {}\n",
            conf_string(cluster.dir.path())
        );
        if tls {
            let pki = TestPki::new(&cluster.dir.path().join("tls"));
            give_to_server_os_user(pki.dir());
            settings += &format!(
                "ssl = on\nssl_cert_file = {}\nssl_key_file = {}\n",
                conf_string(&pki.server_cert_path()),
                conf_string(&pki.server_key_path()),
            );
            cluster.pki = Some(pki);
        }
        append(&cluster.data_dir().join("postgresql.conf"), &settings);

        cluster.port = cluster.start_server();
        cluster.create_roles(&template.superuser_password);
        cluster
    }

    /// `pg_ctl start -w` on a free port; retries on another port when
    /// someone else bound the chosen one first.
    fn start_server(&self) -> u16 {
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let log_before = fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
            let out = server_command("pg_ctl")
                .arg("start")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-c port={port}"))
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .output()
                .expect("pg_ctl runs");
            if out.status.success() {
                return port;
            }
            // pg_ctl appends to the log: look at this attempt's lines only.
            let log = self.log();
            if !log
                .get(log_before..)
                .unwrap_or(&log)
                .contains("Address already in use")
            {
                panic!(
                    "pg_ctl start failed: {}\n--- server log ---\n{}",
                    describe(&out),
                    self.log()
                );
            }
        }
        panic!(
            "no free port after {START_ATTEMPTS} attempts\n--- server log ---\n{}",
            self.log()
        );
    }

    /// Gives the superuser this cluster's password and creates [`USER`],
    /// [`DATABASE`] and [`MD5_USER`], in one superuser session over TCP.
    fn create_roles(&self, template_password: &str) {
        let statements = [
            format!(
                "ALTER ROLE {SUPERUSER} PASSWORD '{}'",
                self.superuser_password
            ),
            format!("CREATE ROLE {USER} LOGIN PASSWORD '{}'", self.user_password),
            // Not inside a transaction block: each -c is its own statement.
            format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
            "SET password_encryption = 'md5'".to_string(),
            format!(
                "CREATE ROLE {MD5_USER} LOGIN PASSWORD '{}'",
                self.md5_password
            ),
        ];
        let mut psql = self.psql_command(template_password);
        psql.arg("-d").arg(self.conninfo(SUPERUSER, "postgres"));
        for statement in &statements {
            psql.arg("-c").arg(statement);
        }
        let out = psql.output().expect("psql runs");
        assert!(
            out.status.success(),
            "creating roles failed: {}\n--- server log ---\n{}",
            describe(&out),
            self.log()
        );
    }

    /// The port the server listens on at [`HOST`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// [`SUPERUSER`]'s password, random per cluster.
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// [`USER`]'s password (stored as SCRAM-SHA-256), random per cluster.
    pub fn user_password(&self) -> &str {
        &self.user_password
    }

    /// [`MD5_USER`]'s password (stored as MD5), random per cluster.
    pub fn md5_password(&self) -> &str {
        &self.md5_password
    }

    /// The password the harness gave `user`, if it made that role.
    pub fn password_of(&self, user: &str) -> Option<&str> {
        match user {
            SUPERUSER => Some(&self.superuser_password),
            USER => Some(&self.user_password),
            MD5_USER => Some(&self.md5_password),
            _ => None,
        }
    }

    /// `postgres://user:password@127.0.0.1:port/db`, for tokio-postgres or
    /// psql; the password is left out for roles the harness did not make.
    pub fn url(&self, user: &str, db: &str) -> String {
        let password = self
            .password_of(user)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{HOST}:{}/{db}", self.port)
    }

    /// A libpq key/value connection string without password:
    /// `host=127.0.0.1 port=… user=… dbname=…`.
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!("host={HOST} port={} user={user} dbname={db}", self.port)
    }

    /// The CA that signed the server certificate; only for
    /// [`PgCluster::start_with_tls`].
    pub fn ca_cert_path(&self) -> PathBuf {
        self.pki
            .as_ref()
            .expect("ca_cert_path needs a cluster from PgCluster::start_with_tls")
            .ca_cert_path()
    }

    /// The test PKI, if the cluster has TLS.
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// The data directory (`postgresql.conf`, `pg_hba.conf`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Path of a PostgreSQL program (`psql`, `pgbench`, …) in the server's
    /// bin directory, or the bare name (found on `PATH`) if it is not there.
    pub fn bin(name: &str) -> PathBuf {
        let path = bindir().join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// Runs `sql` through `psql -X -v ON_ERROR_STOP=1 -At` as `user` on `db`
    /// over TCP. Output is unaligned, tuples only: `1|a` per row.
    /// Runs `sql` directly (not through a gateway) as the `portcullis` role on the `app`
    /// database; its unaligned output. Fails the test when psql does.
    pub fn query(&self, sql: &str) -> String {
        let out = self.psql(USER, self.user_password(), DATABASE, sql);
        assert!(
            out.status.success(),
            "direct query {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Output {
        self.psql_conninfo(&self.conninfo(user, db), password, sql)
    }

    /// Like [`PgCluster::psql`] with any libpq connection string, e.g. one
    /// with `host=localhost sslmode=verify-full sslrootcert=…`.
    pub fn psql_conninfo(&self, conninfo: &str, password: &str, sql: &str) -> Output {
        self.psql_command(password)
            .arg("-d")
            .arg(conninfo)
            .arg("-c")
            .arg(sql)
            .output()
            .expect("psql runs")
    }

    /// `psql` with a clean `PG*` environment (a developer's `PGHOST` or
    /// `PGSSLMODE` must not change what a test connects to).
    fn psql_command(&self, password: &str) -> Command {
        let mut command = Command::new(PgCluster::bin("psql"));
        for (key, _) in env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(key);
            }
        }
        command
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-At"])
            .stdin(Stdio::null());
        command
    }

    /// The server log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(no server log: {e})"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }
}

impl PgCluster {
    /// `pg_ctl restart -m fast`: sessions are told 57P01 and cut; the server comes back
    /// on the same port (pg_ctl reuses the options it was started with).
    pub fn restart_fast(&self) {
        let out = server_command("pg_ctl")
            .arg("restart")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-m", "fast", "-w", "-t", "60"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl restart failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // No pid file: the server never started (or already stopped).
        if !self.data_dir().join("postmaster.pid").exists() {
            return;
        }
        // Errors are ignored: panicking in drop would abort a failing test.
        let _ = server_command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output();
    }
}

/// An initialised data directory that clusters copy, and the superuser
/// password it was made with.
struct Template {
    data: PathBuf,
    superuser_password: String,
}

/// The template for this PostgreSQL installation, made by `initdb` on first
/// use on this machine (by whichever test process gets there first).
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("pg-template-{:016x}", installation_key()));
        if let Some(template) = read_template(&dir) {
            return template;
        }
        let staging = tempfile::Builder::new()
            .prefix(".pg-template-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("creating a staging dir under CARGO_TARGET_TMPDIR");
        let password = random_password();
        initdb_template(&staging.path().join("data"), &password);
        fs::write(staging.path().join("superuser-password"), &password)
            .expect("writing the template's password");
        // Publish atomically; a process that lost the race uses the winner's.
        let staging = staging.keep();
        if fs::rename(&staging, &dir).is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        read_template(&dir).unwrap_or_else(|| panic!("no template at {}", dir.display()))
    })
}

fn read_template(dir: &Path) -> Option<Template> {
    let superuser_password = fs::read_to_string(dir.join("superuser-password")).ok()?;
    let data = dir.join("data");
    data.join("PG_VERSION").is_file().then_some(Template {
        data,
        superuser_password,
    })
}

/// Tells installations apart: binaries and version, and the template format.
fn installation_key() -> u64 {
    let out = Command::new(PgCluster::bin("initdb"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", PgCluster::bin("initdb").display()));
    let mut hasher = DefaultHasher::new();
    (bindir(), out.stdout, TEMPLATE_FORMAT).hash(&mut hasher);
    hasher.finish()
}

/// Runs `initdb` in a scratch dir the server's OS user can reach (the target
/// dir may be under a private home) and copies the result to `target`.
fn initdb_template(target: &Path, superuser_password: &str) {
    let scratch = owned_scratch_dir("portcullis-initdb-");
    let pwfile = scratch.path().join("pwfile");
    fs::write(&pwfile, superuser_password).expect("writing the password file");
    give_to_server_os_user(&pwfile);
    let data = scratch.path().join("data");
    let out = server_command("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER])
        .args(["--auth-local=scram-sha-256", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C"])
        // Skip fsync: the data dir is a throwaway until it is copied.
        .arg("--no-sync")
        // 1 MB WAL segments instead of 16 MB: less for every cluster to copy.
        .arg("--wal-segsize=1")
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .output()
        .expect("initdb runs");
    assert!(out.status.success(), "initdb failed: {}", describe(&out));

    append(&data.join("postgresql.conf"), SHARED_SETTINGS);
    let hba_path = data.join("pg_hba.conf");
    let hba = fs::read_to_string(&hba_path).expect("initdb writes pg_hba.conf");
    fs::write(&hba_path, with_line_before_rules(&hba, MD5_HBA_LINE)).expect("writing pg_hba.conf");

    copy_tree(&data, target, None);
}

/// Inserts `line` before the first rule (non-comment, non-blank line).
fn with_line_before_rules(hba: &str, line: &str) -> String {
    let mut out = String::with_capacity(hba.len() + line.len() + 1);
    let mut inserted = false;
    for existing in hba.lines() {
        let trimmed = existing.trim();
        if !inserted && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            inserted = true;
        }
        out.push_str(existing);
        out.push('\n');
    }
    if !inserted {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The directory of `initdb`, `pg_ctl` and `postgres`, found once.
fn bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(find_bindir)
}

fn find_bindir() -> PathBuf {
    if let Some(dir) = env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return dir;
        }
    }
    // Debian and Ubuntu: /usr/lib/postgresql/<major>/bin, highest major first.
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, dir)) = debian.pop() {
        return dir;
    }
    env::split_paths(&env::var_os("PATH").unwrap_or_default())
        .find(|dir| dir.join("initdb").is_file())
        .unwrap_or_else(|| {
            panic!(
                "PostgreSQL server programs (initdb, pg_ctl, postgres) not found: set PG_BINDIR, \
                 put pg_config on PATH, or install PostgreSQL (.ci/run does, on Debian)"
            )
        })
}

/// A PostgreSQL server program, run as the `postgres` OS user when we are
/// root (PostgreSQL refuses to run as root), else as ourselves.
fn server_command(program: &str) -> Command {
    match server_os_user() {
        Some(_) => {
            let mut command = Command::new("runuser");
            command
                .args(["-u", SERVER_OS_USER, "--"])
                .arg(PgCluster::bin(program));
            command
        }
        None => Command::new(PgCluster::bin(program)),
    }
}

/// `(uid, gid)` of the OS user the server runs as, when that is not us
/// (we are root); `None` when the server runs as the current user.
fn server_os_user() -> Option<(u32, u32)> {
    static OWNER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        if id(&["-u"]) != 0 {
            return None;
        }
        let uid = id(&["-u", SERVER_OS_USER]);
        let gid = id(&["-g", SERVER_OS_USER]);
        Some((uid, gid))
    })
}

/// Runs `id ARGS` and parses the number it prints.
fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("`id` runs");
    assert!(
        out.status.success(),
        "`id {}` failed: {}; as root the tests run PostgreSQL as the `{SERVER_OS_USER}` OS \
         user, which installing PostgreSQL creates",
        args.join(" "),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("`id` prints a number")
}

/// A temporary directory the server's OS user owns and can reach.
fn owned_scratch_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_root())
        .expect("creating a temporary directory");
    give_to_server_os_user(dir.path());
    dir
}

/// Where cluster directories go: `$PORTCULLIS_PG_TMPDIR` if set, else
/// `/dev/shm` when it has room, else `$TMPDIR` (or `/tmp` when, as root, the
/// server's OS user could not traverse `$TMPDIR`, say one under `/root`).
///
/// A data directory is about 1,000 files. On CI's VM creating a file on disk
/// costs over a millisecond, so copying the template took 1.0–1.4 s on ext4
/// and 0.08 s on tmpfs.
fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(dir) = env::var_os("PORTCULLIS_PG_TMPDIR").filter(|dir| !dir.is_empty()) {
            return PathBuf::from(dir);
        }
        let shm = Path::new(SHM_DIR);
        if free_kib(shm).is_some_and(|kib| kib >= SHM_MIN_FREE_KIB) && traversable_by_others(shm) {
            return shm.to_path_buf();
        }
        let tmp = env::temp_dir();
        if server_os_user().is_none() || traversable_by_others(&tmp) {
            tmp
        } else {
            PathBuf::from("/tmp")
        }
    })
}

/// Linux's tmpfs for shared memory.
const SHM_DIR: &str = "/dev/shm";

/// Room `/dev/shm` needs before clusters go there: a cluster is ~30 MB plus
/// its data, and PostgreSQL's own dynamic shared memory lives there too.
/// Docker's default 64 MB `/dev/shm` is far below this.
const SHM_MIN_FREE_KIB: u64 = 2 * 1024 * 1024;

/// Free space under `dir` in KiB, from POSIX `df -Pk`.
fn free_kib(dir: &Path) -> Option<u64> {
    if !dir.is_dir() {
        return None;
    }
    let out = Command::new("df").arg("-Pk").arg(dir).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Second line: filesystem, blocks, used, available, capacity, mount.
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

fn traversable_by_others(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0))
}

/// Recursively hands `path` to the server's OS user, when that is not us.
fn give_to_server_os_user(path: &Path) {
    let Some((uid, gid)) = server_os_user() else {
        return;
    };
    chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).expect("reading a directory we created") {
            give_to_server_os_user(&entry.expect("reading a directory entry").path());
        }
    }
}

/// Copies a directory tree with its permission bits (PostgreSQL insists on a
/// 0700 or 0750 data directory), then gives it to `owner` if any.
fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) {
    try_copy_tree(from, to, owner)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
}

fn try_copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            try_copy_tree(&source, &target, owner)?;
            continue;
        }
        if kind.is_symlink() {
            symlink(fs::read_link(&source)?, &target)?;
        } else {
            fs::copy(&source, &target)?;
        }
        if let Some((uid, gid)) = owner {
            lchown(&target, Some(uid), Some(gid))?;
        }
    }
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    if let Some((uid, gid)) = owner {
        chown(to, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// A port on 127.0.0.1 that is free now and not handed to another cluster
/// of this process. Another process may still take it before the server
/// binds; [`PgCluster::start_server`] then retries.
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        // The listener is closed; check the port is still free.
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// 24 alphanumerics: about 143 bits, and safe inside SQL and URLs as is.
fn random_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// A `postgresql.conf` string literal.
fn conf_string(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

fn append(path: &Path, text: &str) {
    let mut contents =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    contents.push_str(text);
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Exit status and output of a finished command, for panic messages.
fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
