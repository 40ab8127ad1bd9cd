//! `portcullis serve`: run every listener in the config until Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::config::{self, Config};
use crate::git;
use crate::identity;
use crate::identity::{Authenticator, JwtAuth};
use crate::pg;
use crate::policy::{RuleSet, UNPARSED_RULE};

#[derive(Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, default_value = "portcullis.toml")]
    config: PathBuf,
}

pub fn verifier(config: &config::Identity) -> Result<identity::Verifier, String> {
    let jwks = match &config.jwks {
        config::JwksSource::File(p) => identity::JwksSource::File(p.clone()),
        config::JwksSource::Url(u) => identity::JwksSource::Url(u.clone()),
    };
    let mut options =
        identity::VerifierOptions::new(config.issuer.clone(), config.audience.clone(), jwks);
    options.groups_claim = config.groups_claim.clone();
    options.hs256_secret = config.hs256_secret.clone();
    identity::Verifier::new(options).map_err(|e| e.to_string())
}

pub fn rules(config: &Config) -> Result<RuleSet, String> {
    let mut rules = if config.server.rules.is_empty() {
        RuleSet::builtin()
    } else {
        RuleSet::load(&config.server.rules)
    }
    .map_err(|e| e.to_string())?;
    rules.set_decision(
        UNPARSED_RULE,
        match config.server.unparsed {
            config::Unparsed::Deny => crate::policy::Decision::Deny,
            config::Unparsed::Review => crate::policy::Decision::Review,
        },
    );
    Ok(rules)
}

pub fn run(args: ServeArgs) -> Result<u8, String> {
    init_tracing_at("info");
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(serve(config))?;
    Ok(0)
}

/// Starts the listeners and waits for Ctrl-C (or SIGTERM).
pub async fn serve(config: Config) -> Result<(), String> {
    serve_until(config, || {}, shutdown_signal()).await
}

/// Starts the listeners, calls `ready` once every one of them accepts connections, and
/// runs until `stop` completes.
pub async fn serve_until(
    config: Config,
    ready: impl FnOnce(),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    for section in &config.not_yet_active {
        tracing::warn!(section, "this config section is not active in this version");
    }
    let rules = Arc::new(rules(&config)?);
    // Nothing is served unrecorded: without a store the gateway does not start.
    let recorder = match &config.audit {
        Some(a) => {
            let options = crate::audit::WriterOptions {
                durability: match a.durability {
                    config::Durability::Writes => crate::audit::Durability::Writes,
                    config::Durability::All => crate::audit::Durability::All,
                    config::Durability::Async => crate::audit::Durability::Async,
                },
                query_timeout: a.query_timeout,
                memory_limit: a.memory_limit.clone(),
                ..crate::audit::WriterOptions::default()
            };
            let handle = crate::audit::AuditHandle::start(&a.path, options)
                .map_err(|e| format!("cannot open the audit store {}: {e}", a.path.display()))?;
            tracing::info!(path = %a.path.display(), durability = a.durability.as_str(), "audit store open");
            crate::gateway::record::Recorder::new(handle, a.result_rows as usize)
        }
        None => crate::gateway::record::Recorder::log_only(),
    };
    let identity = config
        .identity
        .as_ref()
        .ok_or("the config has no [identity] section")?;
    let auth: Arc<dyn Authenticator> = Arc::new(JwtAuth(verifier(identity)?));
    if config.postgres.is_empty() && config.git.is_empty() {
        return Err("the config has no [[postgres]] listener and no [[git]] repository".into());
    }
    let mask_key = mask_key(&config.mask)?;
    raise_descriptor_limit();
    // Listeners that stopped, for /healthz.
    let stopped: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    // Requests a rule sends to review are held for approvers on the admin listener; with
    // no admin listener nobody could approve, and they are refused.
    let approvals = config.server.admin_listen.map(|addr| {
        crate::gateway::approvals::Broker::new(
            config.approvals.clone(),
            format!("http://{addr}"),
            recorder.clone(),
        )
    });
    for target in &config.postgres {
        let listener = tokio::net::TcpListener::bind(target.listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} for {}: {e}",
                    target.listen, target.name
                )
            })?;
        let mut gw = pg::Gateway::new(
            target.clone(),
            rules.clone(),
            auth.clone(),
            recorder.clone(),
            mask_key.clone(),
        )
        .map_err(|e| e.to_string())?;
        gw.approvals = approvals.clone();
        let gw = Arc::new(gw);
        tracing::info!(target = %target.name, listen = %target.listen, "postgres listener ready");
        eprintln!("portcullis: {} listening on {}", target.name, target.listen);
        let (stopped, name) = (stopped.clone(), target.name.clone());
        tokio::spawn(async move {
            let e = gw.serve(listener).await.err();
            tracing::error!(listener = %name, error = ?e, "listener stopped");
            stopped
                .lock()
                .expect("never poisoned")
                .push(format!("postgres {name}"));
        });
    }
    if let (Some(addr), false) = (config.server.git_listen, config.git.is_empty()) {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} for git: {e}"))?;
        let mut gw =
            git::GitGateway::new(&config.git, rules.clone(), auth.clone(), recorder.clone())
                .map_err(|e| format!("git: {e}"))?;
        gw.approvals = approvals.clone();
        let gw = Arc::new(gw);
        for repo in &config.git {
            tracing::info!(repo = %repo.name, "git repository served");
            eprintln!(
                "portcullis: git {} at http://{addr}/git/{}.git",
                repo.name, repo.name
            );
        }
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let e = gw.serve(listener, std::future::pending()).await.err();
            tracing::error!(error = ?e, "git listener stopped");
            stopped.lock().expect("never poisoned").push("git".into());
        });
    }
    if let Some(addr) = config.server.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} for the admin API: {e}"))?;
        eprintln!(
            "portcullis: admin (/approvals, /healthz, /metrics, /api/audit/query) at http://{addr}"
        );
        let app = crate::admin::router(crate::admin::Admin {
            recorder: recorder.clone(),
            auth: auth.clone(),
            auditor_group: config
                .audit
                .as_ref()
                .map_or_else(|| "auditors".into(), |a| a.auditor_group.clone()),
            metrics_public: config.server.metrics_public,
            metrics_group: config.server.metrics_group.clone(),
            approvals: approvals.clone(),
            stopped: stopped.clone(),
        });
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin listener stopped");
            }
        });
    }
    ready();
    stop.await;
    // Everything recorded so far reaches the file before the process ends.
    if let Err(e) = recorder.flush().await {
        tracing::error!(error = %e, "the audit store could not be flushed at shutdown");
    }
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Logs to stderr at `PORTCULLIS_LOG` (an env-filter directive), else `default`; in
/// colour only when stderr is a terminal (a file or a pipe gets plain text).
pub fn init_tracing_at(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raises the soft limit on open files to the hard one: a gateway holds two descriptors
/// per session, and a flood should meet the hard limit, not a low default.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
}

/// The key of the `hash` mask strategy: `[mask] hash_key_env`, else `hash_key_file`, else
/// one made for this run (hashes then differ after a restart, which is said once).
fn mask_key(mask: &config::Mask) -> Result<crate::mask::strategy::HashKey, String> {
    use crate::mask::strategy::HashKey;
    if let Some(var) = &mask.hash_key_env {
        let key = std::env::var(var)
            .map_err(|_| format!("mask.hash_key_env: environment variable {var} is not set"))?;
        return Ok(HashKey::new(key));
    }
    if let Some(file) = &mask.hash_key_file {
        let key = std::fs::read(file)
            .map_err(|e| format!("mask.hash_key_file {}: {e}", file.display()))?;
        return Ok(HashKey::new(key));
    }
    tracing::warn!(
        "no [mask] hash_key_env or hash_key_file: hashed values change when the gateway restarts"
    );
    Ok(HashKey::new(rand::random::<[u8; 32]>().to_vec()))
}
