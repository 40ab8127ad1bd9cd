//! `portcullis audit`: the auditor's commands on the store file (`--db FILE`, or the
//! `audit.path` of `--config F`). `audit sql --config F` goes through the running
//! gateway's admin API (`server.admin_listen`, with an auditor's JWT in
//! `PORTCULLIS_TOKEN`) when it answers, since DuckDB lets one process open a file for
//! writing at a time; the other commands need the gateway stopped.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::exit;
use crate::audit::{self, Format};
use crate::config::Config;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Run one read-only query (a SELECT or WITH ... SELECT over the audit tables).
    Sql(SqlArgs),
    /// Check the hash chain: exit 0 when intact, 1 and the first broken event otherwise.
    Verify(StoreArgs),
    /// Print a session's timeline.
    Replay {
        /// The session id (the `session_id` column).
        session: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write the audit tables as Parquet files (one per table) into a folder.
    Export {
        /// The folder to write `sessions.parquet`, `events.parquet`, ... into.
        #[arg(long, value_name = "DIR")]
        parquet: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store: `--db FILE` or the `audit.path` of `--config F`.
#[derive(Args)]
pub struct StoreArgs {
    /// The audit store file.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    db: Option<PathBuf>,
    /// A gateway configuration; its `audit.path` names the store.
    #[arg(long, value_name = "F")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    fn path(&self) -> Result<PathBuf, String> {
        match (&self.db, &self.config) {
            (Some(db), _) => Ok(db.clone()),
            (None, Some(config)) => {
                // Reading the audit needs none of the gateway's secrets.
                let view = Config::load_store_view(config).map_err(|e| e.to_string())?;
                Ok(view.audit_path)
            }
            (None, None) => {
                let config = PathBuf::from("portcullis.toml");
                if config.is_file() {
                    StoreArgs {
                        db: None,
                        config: Some(config),
                    }
                    .path()
                } else {
                    Err("give the store with --db FILE or --config F".into())
                }
            }
        }
    }
}

#[derive(Args)]
pub struct SqlArgs {
    /// The query.
    query: String,
    #[command(flatten)]
    store: StoreArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
    Csv,
}

pub fn run(command: AuditCommand) -> Result<u8, String> {
    match command {
        AuditCommand::Sql(args) => {
            if let Some(text) = through_admin_api(&args)? {
                print!("{text}");
                return Ok(0);
            }
            let path = args.store.path()?;
            let result = audit::query(&path, &args.query).map_err(|e| e.to_string())?;
            let format = match args.format {
                OutputFormat::Table => Format::Table,
                OutputFormat::Json => Format::Json,
                OutputFormat::Csv => Format::Csv,
            };
            let mut out = std::io::stdout().lock();
            result
                .write(format, &mut out)
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())?;
            Ok(0)
        }
        AuditCommand::Verify(store) => {
            let path = store.path()?;
            let report = audit::verify(&path).map_err(|e| e.to_string())?;
            match report.broken {
                None => {
                    match &report.head {
                        Some(head) => println!(
                            "intact: {} events, head seq {} hash {}",
                            report.events, head.seq, head.hash
                        ),
                        None => println!("intact: no events yet"),
                    }
                    Ok(0)
                }
                Some(b) => {
                    println!(
                        "broken at seq {} (event {}): {}",
                        b.seq,
                        if b.event_id.is_empty() {
                            "-"
                        } else {
                            &b.event_id
                        },
                        b.reason
                    );
                    println!("{} events before it are intact", report.events);
                    Ok(exit::ERROR)
                }
            }
        }
        AuditCommand::Replay { session, store } => {
            let path = store.path()?;
            match audit::replay(&path, &session).map_err(|e| e.to_string())? {
                Some(text) => {
                    print!("{text}");
                    Ok(0)
                }
                None => Err(format!("no session {session} in {}", path.display())),
            }
        }
        AuditCommand::Export { parquet, store } => {
            let path = store.path()?;
            let files = audit::export_parquet(&path, &parquet).map_err(|e| e.to_string())?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(0)
        }
    }
}

/// Runs the query through a running gateway's admin API when `--config` names one that
/// answers; `None` to read the file instead.
fn through_admin_api(args: &SqlArgs) -> Result<Option<String>, String> {
    if args.store.db.is_some() {
        return Ok(None);
    }
    let path = args
        .store
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("portcullis.toml"));
    if !path.is_file() {
        return Ok(None);
    }
    let view = Config::load_store_view(&path).map_err(|e| e.to_string())?;
    let Some(addr) = view.admin_listen else {
        return Ok(None);
    };
    if std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_err() {
        return Ok(None);
    }
    let token = std::env::var("PORTCULLIS_TOKEN").map_err(|_| {
        format!(
            "the gateway is running (admin API at {addr}): set PORTCULLIS_TOKEN to an auditor's JWT"
        )
    })?;
    let format = match args.format {
        OutputFormat::Table => "table",
        OutputFormat::Json => "json",
        OutputFormat::Csv => "csv",
    };
    super::admin_api(
        &addr,
        &format!("/api/audit/query?format={format}"),
        &token,
        Some(args.query.clone()),
    )
    .map(Some)
}
