//! `portcullis demo`, README's first command, as a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::gateway::free_port;
use crate::support::pg::PgCluster;

#[test]
fn demo_self_test_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["demo", "--self-test", "--port", &free_port().to_string()])
        .args(["--git-port", &free_port().to_string()])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok   SELECT through the gateway"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   DELETE without WHERE refused"),
        "{stdout}"
    );
    for check in [
        "ok   git clone through the gateway",
        "ok   git push of a feature branch",
        "ok   git force-push to main refused",
        "ok   the refusal is in the audit store",
    ] {
        assert!(stdout.contains(check), "{check} missing:\n{stdout}");
    }
}

#[test]
fn demo_prints_lines_that_work_and_cleans_up_on_ctrl_c() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["demo", "--port", &port.to_string()])
        .args(["--git-port", &free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let paste = banner
        .lines()
        .find(|l| l.trim_start().starts_with("PGPASSWORD="))
        .expect("a psql line to paste");
    let token = paste.split('\'').nth(1).expect("quoted token");
    let conninfo = paste.split('"').nth(1).expect("quoted conninfo");
    let dir = banner
        .lines()
        .find_map(|l| l.strip_prefix("Config: "))
        .expect("config path")
        .to_string();
    let psql = |sql: &str| {
        Command::new(PgCluster::bin("psql"))
            .args(["-X", "-At", "-d", conninfo, "-c", sql])
            .env("PGPASSWORD", token)
            .output()
            .expect("psql")
    };
    let ok = psql("SELECT name FROM users ORDER BY id LIMIT 1");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "Ada Lovelace\n",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = psql("DELETE FROM users");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("denied by sql.unbounded-write"));

    // Ctrl-C stops everything and removes the temporary folder.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("demo exits");
    assert!(status.success(), "{status}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is left behind");
}
