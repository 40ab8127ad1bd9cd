//! `portcullis demo`: the newcomer's first command.

use std::time::Duration;

use clap::Args;

use crate::config::Config;
use crate::demo::{self, Cluster, DEMO_AUDIENCE, DEMO_ISSUER, DEMO_PASSWORD_ENV};
use crate::identity::{self, MintOptions};

#[derive(Args)]
pub struct DemoArgs {
    /// Port for the gateway's PostgreSQL listener (a free one if taken).
    #[arg(long, default_value_t = 6432)]
    port: u16,
    /// Start, check that a SELECT passes and a DELETE without WHERE is refused, then stop.
    #[arg(long)]
    self_test: bool,
}

pub fn run(args: DemoArgs) -> Result<u8, String> {
    super::serve::init_tracing_at("warn");
    eprintln!("portcullis demo: starting a throwaway PostgreSQL ...");
    let cluster = Cluster::start()?;
    let port = if std::net::TcpListener::bind(("127.0.0.1", args.port)).is_ok() {
        args.port
    } else {
        demo::free_port()?
    };
    let (config_path, key) = demo::write_gateway_files(&cluster.dir, &cluster, port)?;
    let env = |name: &str| (name == DEMO_PASSWORD_ENV).then(|| cluster.password.clone());
    let text = std::fs::read_to_string(&config_path).map_err(|e| e.to_string())?;
    let config = Config::parse(&config_path, &text, &env).map_err(|e| e.to_string())?;
    let token = |sub: &str, groups: &[&str]| {
        identity::mint(
            &key,
            MintOptions {
                sub: sub.into(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ttl: Duration::from_secs(8 * 3600),
                issuer: DEMO_ISSUER.into(),
                audience: DEMO_AUDIENCE.into(),
                agent: Some("demo".into()),
                kid: None,
            },
        )
        .map_err(|e| e.to_string())
    };
    let agent_token = token("agent@demo", &["dev"])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let psql = cluster.psql_path();
    let conninfo = format!("host=127.0.0.1 port={port} user=agent dbname=app");
    if args.self_test {
        let result = runtime.block_on(async {
            tokio::select! {
                r = super::serve::serve_until(config, || {}, std::future::pending::<()>()) => r.map(|_| Vec::new()),
                checks = self_test(&psql, &conninfo, &agent_token, port) => Ok(checks),
            }
        })?;
        let mut failed = false;
        for (name, ok, detail) in &result {
            println!("{} {name}: {detail}", if *ok { "ok  " } else { "FAIL" });
            failed |= !ok;
        }
        return Ok(if failed { 1 } else { 0 });
    }
    let banner = format!(
        "\nPortcullis is running in front of a throwaway PostgreSQL (sample tables: users, orders).\n\
         Connect as an agent (the password is a JWT signed by the demo's dev key):\n\n  \
         PGPASSWORD='{agent_token}' {} \"{conninfo}\"\n\n\
         Then try:\n  SELECT * FROM users;            -- allowed\n  DELETE FROM users;              -- refused by sql.unbounded-write\n  \
         WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d;   -- refused too\n  \
         CREATE INDEX ON orders (user_id); -- held for review (sql.ddl)\n\n\
         Mint more tokens with: portcullis token --key {}/demo-key.pem --sub you --issuer {DEMO_ISSUER}\n\
         Config: {}\nPress Ctrl-C to stop; everything is deleted.\n",
        psql.display(),
        cluster.dir.display(),
        config_path.display()
    );
    std::fs::write(cluster.dir.join("demo-key.pem"), &key).map_err(|e| e.to_string())?;
    // The lines are printed only once the listener accepts connections.
    runtime.block_on(super::serve::serve_until(
        config,
        || println!("{banner}"),
        super::serve::shutdown_signal(),
    ))?;
    eprintln!("portcullis demo: stopping and cleaning up");
    drop(cluster);
    Ok(0)
}

/// What the README promises a newcomer: a SELECT works, a DELETE without WHERE is refused.
async fn self_test(
    psql: &std::path::Path,
    conninfo: &str,
    token: &str,
    port: u16,
) -> Vec<(&'static str, bool, String)> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let run = |sql: &'static str| {
        let out = std::process::Command::new(psql)
            .args(["-X", "-At", "-d", conninfo, "-c", sql])
            .env("PGPASSWORD", token)
            .output();
        match out {
            Ok(o) => (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
                .trim()
                .to_string(),
            ),
            Err(e) => (false, e.to_string()),
        }
    };
    let (select_ok, select_out) = tokio::task::block_in_place(|| run("SELECT count(*) FROM users"));
    let (delete_ok, delete_out) = tokio::task::block_in_place(|| run("DELETE FROM users"));
    vec![
        (
            "SELECT through the gateway",
            select_ok && select_out == "3",
            select_out,
        ),
        (
            "DELETE without WHERE refused",
            !delete_ok && delete_out.contains("sql.unbounded-write"),
            delete_out,
        ),
    ]
}
