//! The `portcullis` command line: subcommands, their output and exit codes. Knows no
//! wire bytes; every decision comes from [`crate::policy`].

mod approvals;
mod audit;
mod check;
mod demo;
mod rules;
pub mod serve;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::policy::{self, Decision, RuleSet, UNPARSED_RULE};

/// Exit codes other than 0 and clap's 2 (bad usage).
pub mod exit {
    /// Something went wrong (unreadable rule file, I/O error).
    pub const ERROR: u8 = 1;
    pub const DENY: u8 = 10;
    pub const REVIEW: u8 = 11;
}

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A Git- and SQL-aware gateway for AI coding agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge a statement with the rules, without a gateway (exit 0 allow, 10 deny, 11 review).
    Check {
        #[command(subcommand)]
        what: check::CheckCommand,
    },
    /// Test and show rule packs.
    Rules {
        #[command(subcommand)]
        what: rules::RulesCommand,
    },
    /// Run the gateway: every listener in the config.
    Serve(serve::ServeArgs),
    /// A newcomer's first run: throwaway PostgreSQL with sample data, dev keys, the gateway.
    Demo(demo::DemoArgs),
    /// Auditor commands on the audit store: sql, verify, replay, export.
    Audit {
        #[command(subcommand)]
        what: audit::AuditCommand,
    },
    /// Mint a test JWT, print a key's JWKS, or generate a key (for demos and tests).
    Token(token::TokenArgs),
    /// Approver commands: list, approve and reject held requests (token in PORTCULLIS_TOKEN).
    Approvals {
        #[command(subcommand)]
        what: approvals::ApprovalsCommand,
    },
}

/// One call to a running gateway's admin API at `addr`: a GET, or a POST of `body`, with
/// `token` as the bearer. The body of a success, or the API's own sentence.
fn admin_api(
    addr: &std::net::SocketAddr,
    path: &str,
    token: &str,
    body: Option<String>,
) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = crate::git::http::http_client().map_err(|e| e.to_string())?;
        let url = format!("http://{addr}{path}");
        let req = match body {
            Some(body) => client
                .post(url)
                .header("content-type", "application/json")
                .body(body),
            None => client.get(url),
        };
        let resp = req
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| format!("the admin API at {addr} did not answer: {e}"))?;
        let ok = resp.status().is_success();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(text)
        } else {
            Err(text.trim().trim_start_matches("portcullis: ").to_string())
        }
    })
}

/// Which rules to use: `--rules` files or directories, or the built-in packs.
#[derive(Args, Clone, Debug)]
pub struct RuleOptions {
    /// Rule files or directories (repeatable); the built-in packs when absent.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// What `sql.unparsed` does with SQL the gateway cannot read (like `server.unparsed`).
    #[arg(long, value_enum, default_value_t = Unparsed::Deny)]
    pub unparsed: Unparsed,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Unparsed {
    Deny,
    Review,
}

impl RuleOptions {
    pub fn load(&self) -> Result<RuleSet, policy::Error> {
        let mut set = if self.rules.is_empty() {
            RuleSet::builtin()?
        } else {
            RuleSet::load(&self.rules)?
        };
        if self.unparsed == Unparsed::Review {
            set.set_decision(UNPARSED_RULE, Decision::Review);
        }
        Ok(set)
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Check { .. }
            | Command::Rules { .. }
            | Command::Token(_)
            | Command::Audit { .. }
            | Command::Approvals { .. }
    ) {
        // Printing commands end quietly when their reader goes away (`... | head`), as
        // Unix tools do; the servers keep Rust's default of ignoring SIGPIPE.
        // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Check { what } => check::run(what),
        Command::Rules { what } => rules::run(what),
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Token(args) => token::run(args),
        Command::Audit { what } => audit::run(what),
        Command::Approvals { what } => approvals::run(what),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::from(exit::ERROR)
        }
    }
}

pub fn decision_exit(decision: Decision) -> u8 {
    match decision {
        Decision::Allow => 0,
        Decision::Deny => exit::DENY,
        Decision::Review => exit::REVIEW,
    }
}
