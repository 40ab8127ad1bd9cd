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
    /// Port for the gateway's git (smart HTTP) listener (a free one if taken).
    #[arg(long, default_value_t = 8081)]
    git_port: u16,
    /// Start, check that a SELECT passes and a DELETE without WHERE is refused, then stop.
    #[arg(long)]
    self_test: bool,
}

pub fn run(args: DemoArgs) -> Result<u8, String> {
    super::serve::init_tracing_at("warn");
    eprintln!("portcullis demo: starting a throwaway PostgreSQL ...");
    let cluster = Cluster::start()?;
    let pick = |wanted: u16| {
        if std::net::TcpListener::bind(("127.0.0.1", wanted)).is_ok() {
            Ok(wanted)
        } else {
            demo::free_port()
        }
    };
    let port = pick(args.port)?;
    let git_port = pick(args.git_port)?;
    let admin_port = pick(args.git_port.wrapping_add(1).max(1024))?;
    demo::seed_repository(&cluster.dir)?;
    let (config_path, key) =
        demo::write_gateway_files(&cluster.dir, &cluster, port, git_port, admin_port)?;
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
    let auditor_token = token("auditor@demo", &["auditors", "monitoring"])?;
    let reader_token = token("analyst@demo", &["dev", "pii-readers"])?;
    let approver_token = token("approver@demo", &["dba", "maintainers"])?;
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
                checks = self_test(&psql, &conninfo, &agent_token, port, git_port, &cluster.dir, (admin_port, &auditor_token, &approver_token)) => Ok(checks),
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
         Then try:\n  SELECT * FROM users;            -- allowed, emails masked (mask.email)\n  DELETE FROM users;              -- refused by sql.unbounded-write\n  \
         WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d;   -- refused too\n  \
         CREATE INDEX ON orders (user_id); -- held until an approver decides (sql.ddl)\n\n\
         Approve held statements and pushes in a browser, signed in as the demo's approver\n\
         (groups dba and maintainers; the token rides in the link's fragment, never sent):\n\n  \
         http://127.0.0.1:{admin_port}/approvals#token={approver_token}\n\n\
         or from a terminal:\n\n  \
         PORTCULLIS_TOKEN='{approver_token}' {exe} approvals list --config {config}\n\n\
         The same as an analyst in the pii-readers group sees emails as they are:\n\n  \
         PGPASSWORD='{reader_token}' {} \"{conninfo}\" -c 'SELECT * FROM users'\n\n\
         Git: a bare repository with a protected main is behind the gateway:\n\n  \
         git clone 'http://agent:{agent_token}@127.0.0.1:{git_port}/git/app.git' && cd app\n\n\
         Then try:\n  git switch -c agent/hello && echo hi > hello.txt && git add hello.txt && git commit -m hello\n  \
         git push origin agent/hello                  # allowed: a new feature branch\n  \
         git push origin HEAD:main                    # held until an approver decides (git.protected-push)\n  \
         git reset --hard origin/main && git commit --amend -m rewritten\n  \
         git push --force origin HEAD:main            # refused by git.protected-force\n\n\
         Audit: everything above is in a DuckDB store; ask it with SQL (as an auditor):\n\n  \
         PORTCULLIS_TOKEN='{auditor_token}' {exe} audit sql --config {config} \\\n    \
         \"SELECT ts, subject, prompt, statement, decision, rule_ids FROM events ORDER BY seq\"\n\n\
         Who approved what, when and why:\n\n  \
         PORTCULLIS_TOKEN='{auditor_token}' {exe} audit sql --config {config} \\\n    \
         \"SELECT a.approver, a.decided_at, a.state, a.reason, e.subject, e.statement FROM approvals a JOIN events e USING (event_id)\"\n\n\
         Health and metrics (metrics need a token of the monitoring or auditors group):\n\n  \
         curl http://127.0.0.1:{admin_port}/healthz\n  \
         curl -H 'Authorization: Bearer {auditor_token}' http://127.0.0.1:{admin_port}/metrics\n\n\
         Mint more tokens:\n\n  {exe} token --key {}/demo-key.pem --sub you --groups dev --issuer {DEMO_ISSUER} --audience {DEMO_AUDIENCE}\n\n\
         Config: {}\nPress Ctrl-C to stop; everything is deleted.\n",
        psql.display(),
        psql.display(),
        cluster.dir.display(),
        config_path.display(),
        config = config_path.display(),
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "portcullis".into()),
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
    git_port: u16,
    dir: &std::path::Path,
    (admin_port, auditor_token, approver_token): (u16, &str, &str),
) -> Vec<(&'static str, bool, String)> {
    for p in [port, git_port] {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", p))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
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
    let (mask_ok, mask_out) =
        tokio::task::block_in_place(|| run("SELECT email FROM users WHERE id = 1"));
    let (delete_ok, delete_out) = tokio::task::block_in_place(|| run("DELETE FROM users"));
    let url = format!("http://agent:{token}@127.0.0.1:{git_port}/git/app.git");
    let git = tokio::task::block_in_place(|| git_checks(&url, dir));
    let mut checks = vec![
        (
            "SELECT through the gateway",
            select_ok && select_out == "3",
            select_out,
        ),
        (
            "emails masked for the agent",
            mask_ok && mask_out == "a***@example.com",
            mask_out,
        ),
        (
            "DELETE without WHERE refused",
            !delete_ok && delete_out.contains("sql.unbounded-write"),
            delete_out,
        ),
    ];
    checks.extend(git);
    // The auditor sees the refused DELETE in the store, through the admin API.
    let audit = async {
        let resp = crate::git::http::http_client()
            .map_err(|e| e.to_string())?
            .post(format!(
                "http://127.0.0.1:{admin_port}/api/audit/query?format=csv"
            ))
            .bearer_auth(auditor_token)
            .body("SELECT decision, rule_ids FROM events WHERE statement = 'DELETE FROM users'")
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.text().await.map_err(|e| e.to_string())
    };
    let (ok, detail) = match audit.await {
        Ok(text) => (
            text.contains("denied") && text.contains("sql.unbounded-write"),
            text,
        ),
        Err(e) => (false, e),
    };
    checks.push((
        "the refusal is in the audit store",
        ok,
        detail.lines().last().unwrap_or("").to_string(),
    ));
    checks.push(approval_check(psql, conninfo, token, admin_port, approver_token).await);
    checks
}

/// A CREATE INDEX waits for an approver, who approves it through the API; psql finishes.
async fn approval_check(
    psql: &std::path::Path,
    conninfo: &str,
    token: &str,
    admin_port: u16,
    approver_token: &str,
) -> (&'static str, bool, String) {
    const NAME: &str = "CREATE INDEX held, approved, then run";
    let held = {
        let (psql, conninfo, token) = (psql.to_path_buf(), conninfo.to_string(), token.to_string());
        std::thread::spawn(move || {
            std::process::Command::new(psql)
                .args([
                    "-X",
                    "-At",
                    "-d",
                    &conninfo,
                    "-c",
                    "CREATE INDEX ON orders (user_id)",
                ])
                .env("PGPASSWORD", token)
                .output()
        })
    };
    let approve = async {
        let client = crate::git::http::http_client().map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{admin_port}/api/approvals");
        for _ in 0..100 {
            let text = client
                .get(format!("{base}?state=pending"))
                .bearer_auth(approver_token)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            let list: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
            if let Some(id) = list[0]["id"].as_str() {
                let resp = client
                    .post(format!("{base}/{id}/approve"))
                    .bearer_auth(approver_token)
                    .body(r#"{"reason": "demo self-test"}"#)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(resp.status().is_success());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("no pending request appeared".to_string())
    };
    let approved = approve.await;
    let out = tokio::task::block_in_place(|| held.join());
    match (approved, out) {
        (Ok(true), Ok(Ok(o))) => {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            let ok = o.status.success() && err.contains("approved by approver@demo");
            (NAME, ok, err.lines().last().unwrap_or("").to_string())
        }
        (Err(e), _) => (NAME, false, e),
        (_, out) => (NAME, false, format!("{out:?}")),
    }
}

/// Clone, push a feature branch (allowed), force-push main (refused).
fn git_checks(url: &str, dir: &std::path::Path) -> Vec<(&'static str, bool, String)> {
    let work = dir.join("self-test-clone");
    let git = |cwd: &std::path::Path, args: &[&str]| match std::process::Command::new("git")
        .current_dir(cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Demo agent")
        .env("GIT_AUTHOR_EMAIL", "agent@demo.invalid")
        .env("GIT_COMMITTER_NAME", "Demo agent")
        .env("GIT_COMMITTER_EMAIL", "agent@demo.invalid")
        .output()
    {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ),
        Err(e) => (false, e.to_string()),
    };
    let (clone_ok, clone_out) = git(dir, &["clone", "-q", url, &work.to_string_lossy()]);
    if !clone_ok {
        return vec![("git clone through the gateway", false, clone_out)];
    }
    let _ = std::fs::write(work.join("hello.txt"), "hello\n");
    git(&work, &["add", "hello.txt"]);
    git(&work, &["commit", "-qm", "hello"]);
    let (push_ok, push_out) = git(
        &work,
        &["push", "-q", "origin", "HEAD:refs/heads/agent/hello"],
    );
    // Rewrite main's only commit: a non-fast-forward update.
    git(&work, &["reset", "-q", "--hard", "origin/main"]);
    git(
        &work,
        &["commit", "-q", "--amend", "-m", "rewritten history"],
    );
    let (force_ok, force_out) = git(&work, &["push", "--force", "origin", "HEAD:main"]);
    let _ = std::fs::remove_dir_all(&work);
    vec![
        (
            "git clone through the gateway",
            true,
            "cloned app.git".into(),
        ),
        ("git push of a feature branch", push_ok, push_out),
        (
            "git force-push to main refused",
            !force_ok && force_out.contains("git.protected-force"),
            force_out
                .lines()
                .filter(|l| l.contains("rejected"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ]
}
