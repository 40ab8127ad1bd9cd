//! `portcullis approvals list | approve ID | reject ID --reason R`: an approver's
//! commands, through the running gateway's admin API (`server.admin_listen` of
//! `--config`), with the approver's own JWT in `PORTCULLIS_TOKEN`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::Config;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// The requests you may see (pending ones unless --state says otherwise).
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// pending, approved, rejected, expired or all.
        #[arg(long, default_value = "pending")]
        state: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held request: it runs (or, when its hold has ended, runs once when sent
    /// again).
    Approve {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
        /// Why (kept in the audit store).
        #[arg(long)]
        reason: Option<String>,
        /// Also let requests of the same shape by the same agent pass for this long
        /// (`30m`, at most `8h`).
        #[arg(long, value_name = "DURATION")]
        similar_for: Option<String>,
    },
    /// Reject a held request; the agent is told why.
    Reject {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Args)]
pub struct AdminArgs {
    /// The gateway's config (its `server.admin_listen` is the API's address).
    #[arg(long, default_value = "portcullis.toml")]
    config: PathBuf,
}

pub fn run(cmd: ApprovalsCommand) -> Result<u8, String> {
    match cmd {
        ApprovalsCommand::List { admin, state, json } => {
            let body = call(
                &admin,
                "GET",
                &format!("/api/approvals?state={state}"),
                None,
            )?;
            if json {
                println!("{body}");
                return Ok(0);
            }
            let items: Vec<serde_json::Value> =
                serde_json::from_str(&body).map_err(|e| format!("unexpected answer: {e}"))?;
            if items.is_empty() {
                println!("no {state} approval requests");
            }
            for r in items {
                let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                println!(
                    "{}  {:<8}  {} on {} ({}: {})  {} s old{}",
                    s("id"),
                    s("state"),
                    s("subject"),
                    s("target"),
                    s("rule"),
                    s("message"),
                    r["age_seconds"],
                    r["approver"]
                        .as_str()
                        .map(|a| format!(", decided by {a}"))
                        .unwrap_or_default()
                );
                println!("    {}", s("statement").replace('\n', "\n    "));
            }
            Ok(0)
        }
        ApprovalsCommand::Approve {
            id,
            admin,
            reason,
            similar_for,
        } => decide(&admin, &id, "approve", reason, similar_for),
        ApprovalsCommand::Reject { id, admin, reason } => {
            decide(&admin, &id, "reject", reason, None)
        }
    }
}

fn decide(
    admin: &AdminArgs,
    id: &str,
    verb: &str,
    reason: Option<String>,
    similar_for: Option<String>,
) -> Result<u8, String> {
    let body = serde_json::json!({ "reason": reason, "similar_for": similar_for }).to_string();
    let answer = call(
        admin,
        "POST",
        &format!("/api/approvals/{id}/{verb}"),
        Some(body),
    )?;
    let r: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| format!("unexpected answer: {e}"))?;
    println!(
        "approval {} {}",
        r["id"].as_str().unwrap_or(id),
        r["state"].as_str().unwrap_or("?")
    );
    Ok(0)
}

/// One request to the admin API; the body of a success, or the API's sentence.
fn call(
    admin: &AdminArgs,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<String, String> {
    let view = Config::load_store_view(&admin.config).map_err(|e| e.to_string())?;
    let addr = view.admin_listen.ok_or_else(|| {
        format!(
            "{}: server.admin_listen is not set, so the gateway serves no approvals",
            admin.config.display()
        )
    })?;
    let token = std::env::var("PORTCULLIS_TOKEN")
        .map_err(|_| "set PORTCULLIS_TOKEN to your approver JWT".to_string())?;
    let body = (method == "POST").then(|| body.unwrap_or_default());
    super::admin_api(&addr, path, &token, body)
}
