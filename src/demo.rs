//! `portcullis demo`: a throwaway PostgreSQL with sample data behind the gateway.
//!
//! Everything lives in one temporary folder that is removed on exit: the cluster
//! (initdb, SCRAM, 127.0.0.1 only), a dev signing key and its JWKS, and the config.
//! As root, initdb and pg_ctl run as the `postgres` OS user (initdb refuses root).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The sample schema: what a newcomer queries first.
pub const SAMPLE_SQL: &str = "\
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE, created_at timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), amount_cents int NOT NULL, created_at timestamptz DEFAULT now());
INSERT INTO users (name, email) VALUES ('Ada Lovelace', 'ada@example.com'), ('Grace Hopper', 'grace@example.com'), ('Alan Turing', 'alan@example.com');
INSERT INTO orders (user_id, amount_cents) VALUES (1, 1999), (1, 4500), (2, 1250), (3, 99900);
";

/// A running throwaway cluster; stopped and deleted on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub bindir: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    superuser_password: String,
    run_as: Option<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn random_password() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// PostgreSQL's binaries: `pg_config --bindir`, the highest /usr/lib/postgresql/*/bin,
/// or the PATH.
pub fn find_bindir() -> Result<PathBuf, String> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, p)) = versions.pop() {
        return Ok(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|p| p.join("initdb").is_file())
        .ok_or_else(|| "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql); install the postgresql package".to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// initdb, start on a free port, create the `portcullis` role and the `app`
    /// database with the sample schema.
    pub fn start() -> Result<Cluster, String> {
        let bindir = find_bindir()?;
        let dir =
            std::env::temp_dir().join(format!("portcullis-demo-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let run_as = is_root().then(|| "postgres".to_string());
        let cluster = Cluster {
            dir,
            bindir,
            port: free_port()?,
            user: "portcullis".into(),
            password: random_password(),
            superuser_password: random_password(),
            run_as,
        };
        // The server's OS user owns the folder (and so can write the data directory).
        std::fs::set_permissions(&cluster.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let pwfile = cluster.dir.join("pwfile");
        std::fs::write(&pwfile, &cluster.superuser_password).map_err(|e| e.to_string())?;
        if let Some(user) = &cluster.run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&cluster.dir)
                .status();
            if !status.is_ok_and(|s| s.success()) {
                return Err(format!(
                    "cannot give {} to the {user} OS user",
                    cluster.dir.display()
                ));
            }
        }
        let data = cluster.dir.join("data");
        cluster.server_command(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=scram-sha-256".as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off",
            cluster.port,
            cluster.dir.display()
        );
        let log = cluster.dir.join("postgres.log");
        cluster.server_command(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-o".as_ref(),
                options.as_ref(),
                "start".as_ref(),
            ],
        )?;
        let role = format!(
            "CREATE ROLE portcullis LOGIN PASSWORD '{}'",
            cluster.password
        );
        let su = cluster.superuser_password.clone();
        cluster.psql("postgres", &su, "postgres", &role)?;
        // CREATE DATABASE cannot share a transaction with anything else.
        cluster.psql(
            "postgres",
            &su,
            "postgres",
            "CREATE DATABASE app OWNER portcullis",
        )?;
        cluster.psql("portcullis", &cluster.password.clone(), "app", SAMPLE_SQL)?;
        Ok(cluster)
    }

    fn server_command(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
        let exe = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out)
    }

    /// Runs SQL directly against the cluster (not through the gateway).
    pub fn psql(&self, user: &str, password: &str, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bindir.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn psql_path(&self) -> PathBuf {
        self.bindir.join("psql")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.server_command(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the demo's key, JWKS and config into `dir`; returns (config path, key PEM).
pub fn write_gateway_files(
    dir: &Path,
    cluster: &Cluster,
    listen_port: u16,
    git_port: u16,
    admin_port: u16,
) -> Result<(PathBuf, String), String> {
    let key =
        crate::identity::generate_key(crate::identity::KeyAlg::Es256).map_err(|e| e.to_string())?;
    let jwks = crate::identity::jwks_for(&key).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).map_err(|e| e.to_string())?;
    let config = format!(
        "# Written by `portcullis demo`; deleted when the demo stops.\n\
         [server]\nunparsed = \"deny\"\ngit_listen = \"127.0.0.1:{git_port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\n\
         [audit]\npath = \"audit.duckdb\"\n\n\
         [identity]\nissuer = \"{DEMO_ISSUER}\"\naudience = \"{DEMO_AUDIENCE}\"\njwks_path = \"jwks.json\"\n\n\
         [[postgres]]\nname = \"app\"\nlisten = \"127.0.0.1:{listen_port}\"\n\
         upstream = \"postgres://{}@127.0.0.1:{}/app?sslmode=disable\"\nupstream_password_env = \"{DEMO_PASSWORD_ENV}\"\n\n\
         [[git]]\nname = \"app\"\nupstream = \"app.git\"\nprotected = [\"main\"]\n",
        cluster.user, cluster.port
    );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    Ok((path, key))
}

/// A bare repository `app.git` in `dir` with a README on `main`, as the demo's upstream.
pub fn seed_repository(dir: &Path) -> Result<PathBuf, String> {
    let bare = dir.join("app.git");
    let work = dir.join("app-seed");
    let git = |cwd: &Path, args: &[&str]| -> Result<(), String> {
        let out = Command::new("git")
            .current_dir(cwd)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Portcullis demo")
            .env("GIT_AUTHOR_EMAIL", "demo@portcullis.invalid")
            .env("GIT_COMMITTER_NAME", "Portcullis demo")
            .env("GIT_COMMITTER_EMAIL", "demo@portcullis.invalid")
            .output()
            .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let (bare_s, work_s) = (
        bare.to_str().ok_or("non-UTF-8 path")?,
        work.to_str().ok_or("non-UTF-8 path")?,
    );
    git(dir, &["init", "--quiet", "--bare", "-b", "main", bare_s])?;
    git(dir, &["init", "--quiet", "-b", "main", work_s])?;
    std::fs::write(
        work.join("README.md"),
        "# app\n\nA sample repository behind Portcullis.\n",
    )
    .map_err(|e| e.to_string())?;
    git(&work, &["add", "README.md"])?;
    git(&work, &["commit", "--quiet", "-m", "Initial commit"])?;
    git(&work, &["push", "--quiet", bare_s, "main"])?;
    std::fs::remove_dir_all(&work).map_err(|e| e.to_string())?;
    Ok(bare)
}

pub const DEMO_ISSUER: &str = "portcullis-demo";
pub const DEMO_AUDIENCE: &str = "portcullis";
pub const DEMO_PASSWORD_ENV: &str = "PORTCULLIS_DEMO_DB_PASSWORD";
