//! The file as written: serde types that refuse unknown keys.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    Audit, Config, DEFAULT_AUDIT_PATH, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_PUSH_BYTES,
    DEFAULT_PROTECTED, DEFAULT_RESULT_ROWS, Durability, Error, GitApply, GitTarget, GitUpstream,
    Identity, JwksSource, PostgresTarget, Server, TlsFiles, Unparsed, Upstream,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    identity: Option<RawIdentity>,
    audit: Option<RawAudit>,
    mask: Option<RawMask>,
    approvals: Option<RawApprovals>,
    #[serde(default)]
    postgres: Vec<RawPostgres>,
    #[serde(default)]
    git: Vec<RawGit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMask {
    hash_key_env: Option<String>,
    hash_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    admin_listen: Option<String>,
    git_listen: Option<String>,
    rules: Option<Vec<String>>,
    unparsed: Option<String>,
    metrics_public: Option<bool>,
    metrics_group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    issuer: String,
    audience: String,
    jwks_path: Option<String>,
    jwks_url: Option<String>,
    groups_claim: Option<String>,
    hs256_secret_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
    result_rows: Option<u32>,
    durability: Option<String>,
    auditor_group: Option<String>,
    query_timeout: Option<String>,
    memory_limit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    timeout: Option<String>,
    hold: Option<String>,
    group: Option<String>,
    link: Option<String>,
    webhook: Option<String>,
    webhook_secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    name: String,
    listen: String,
    upstream: String,
    upstream_password_env: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_required: Option<bool>,
    max_message_bytes: Option<usize>,
    max_connections: Option<usize>,
    startup_timeout: Option<String>,
    max_startups: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGit {
    name: String,
    upstream: String,
    upstream_token_env: Option<String>,
    protected: Option<Vec<String>>,
    special_refs: Option<Vec<String>>,
    mirror: Option<String>,
    max_push_bytes: Option<u64>,
    apply: Option<String>,
}

impl RawConfig {
    pub fn validate(
        self,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Error> {
        let base = path.parent().unwrap_or(Path::new("."));
        let addr = |key: &str, v: &str| {
            v.parse().map_err(|_| {
                Error::invalid(
                    path,
                    key,
                    format!("{v:?} is not an address like 127.0.0.1:6432"),
                )
            })
        };
        let server = Server {
            admin_listen: self
                .server
                .admin_listen
                .as_deref()
                .map(|v| addr("server.admin_listen", v))
                .transpose()?,
            git_listen: self
                .server
                .git_listen
                .as_deref()
                .map(|v| addr("server.git_listen", v))
                .transpose()?,
            metrics_public: self.server.metrics_public.unwrap_or(false),
            metrics_group: self
                .server
                .metrics_group
                .clone()
                .unwrap_or_else(|| super::DEFAULT_METRICS_GROUP.into()),
            rules: self
                .server
                .rules
                .unwrap_or_default()
                .iter()
                .map(|r| base.join(r))
                .collect(),
            unparsed: match self.server.unparsed.as_deref() {
                None | Some("deny") => Unparsed::Deny,
                Some("review") => Unparsed::Review,
                Some(other) => {
                    return Err(Error::invalid(
                        path,
                        "server.unparsed",
                        format!("{other:?}: expected \"deny\" or \"review\""),
                    ));
                }
            },
        };
        let identity = match self.identity {
            None => None,
            Some(i) => {
                let jwks = match (i.jwks_path, i.jwks_url) {
                    (Some(p), None) => JwksSource::File(base.join(p)),
                    (None, Some(u)) => JwksSource::Url(u),
                    _ => {
                        return Err(Error::invalid(
                            path,
                            "identity",
                            "set exactly one of jwks_path and jwks_url",
                        ));
                    }
                };
                let hs256_secret = match i.hs256_secret_env {
                    None => None,
                    Some(var) => Some(
                        env(&var)
                            .filter(|s| !s.is_empty())
                            .ok_or_else(|| {
                                Error::invalid(
                                    path,
                                    "identity.hs256_secret_env",
                                    format!("environment variable {var} is not set"),
                                )
                            })?
                            .into_bytes(),
                    ),
                };
                Some(Identity {
                    issuer: i.issuer,
                    audience: i.audience,
                    jwks,
                    groups_claim: i.groups_claim.unwrap_or_else(|| "groups".into()),
                    hs256_secret,
                })
            }
        };
        if !self.postgres.is_empty() && identity.is_none() {
            return Err(Error::invalid(
                path,
                "identity",
                "a [[postgres]] listener needs an [identity] section to check tokens",
            ));
        }
        if !self.git.is_empty() && identity.is_none() {
            return Err(Error::invalid(
                path,
                "identity",
                "a [[git]] repository needs an [identity] section to check tokens",
            ));
        }
        if !self.git.is_empty() && server.git_listen.is_none() {
            return Err(Error::invalid(
                path,
                "server.git_listen",
                "[[git]] repositories need server.git_listen",
            ));
        }
        let git = validate_git(self.git, path, base, env)?;
        let mut postgres = Vec::new();
        for (i, p) in self.postgres.into_iter().enumerate() {
            let key = |k: &str| format!("postgres[{i}].{k}");
            if postgres.iter().any(|t: &PostgresTarget| t.name == p.name) {
                return Err(Error::invalid(
                    path,
                    &key("name"),
                    format!("{:?} is used twice", p.name),
                ));
            }
            let upstream = Upstream::parse(&p.upstream, base)
                .map_err(|m| Error::invalid(path, &key("upstream"), m))?;
            let upstream_password = match p.upstream_password_env {
                None => None,
                Some(var) => Some(env(&var).ok_or_else(|| {
                    Error::invalid(
                        path,
                        &key("upstream_password_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?),
            };
            let tls = match (p.tls_cert, p.tls_key) {
                (None, None) => None,
                (Some(cert), Some(k)) => Some(TlsFiles {
                    cert: base.join(cert),
                    key: base.join(k),
                }),
                _ => {
                    return Err(Error::invalid(
                        path,
                        &key("tls_cert"),
                        "tls_cert and tls_key go together",
                    ));
                }
            };
            let tls_required = p.tls_required.unwrap_or(false);
            if tls_required && tls.is_none() {
                return Err(Error::invalid(
                    path,
                    &key("tls_required"),
                    "tls_required needs tls_cert and tls_key",
                ));
            }
            postgres.push(PostgresTarget {
                tls_required,
                listen: addr(&key("listen"), &p.listen)?,
                name: p.name,
                upstream,
                upstream_password,
                tls,
                max_message_bytes: p.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
                max_connections: p
                    .max_connections
                    .unwrap_or(super::DEFAULT_MAX_CONNECTIONS)
                    .max(1),
                startup_timeout: match p.startup_timeout.as_deref() {
                    None => super::DEFAULT_STARTUP_TIMEOUT,
                    Some(t) => super::duration(t).filter(|d| !d.is_zero()).ok_or_else(|| {
                        Error::invalid(
                            path,
                            &key("startup_timeout"),
                            format!("{t:?}: expected a duration such as \"10s\""),
                        )
                    })?,
                },
                max_startups: p.max_startups.unwrap_or(super::DEFAULT_MAX_STARTUPS).max(1),
            });
        }
        // Every gateway records into the store: without an `[audit]` section it is the
        // default file beside the config.
        let a = self.audit.unwrap_or_default();
        let audit = {
            Some(Audit {
                path: base.join(a.path.as_deref().unwrap_or(DEFAULT_AUDIT_PATH)),
                result_rows: a.result_rows.unwrap_or(DEFAULT_RESULT_ROWS),
                auditor_group: a.auditor_group.clone().unwrap_or_else(|| "auditors".into()),
                query_timeout: match a.query_timeout.as_deref() {
                    None => super::DEFAULT_QUERY_TIMEOUT,
                    Some(t) => super::duration(t).ok_or_else(|| {
                        Error::invalid(
                            path,
                            "audit.query_timeout",
                            format!("{t:?}: expected a duration such as \"30s\" or \"2m\""),
                        )
                    })?,
                },
                memory_limit: match a.memory_limit.as_deref() {
                    None => super::DEFAULT_AUDIT_MEMORY.to_string(),
                    Some(m) => match crate::audit::size_bytes(m) {
                        Some(n) if n >= 64_000_000 => m.to_string(),
                        _ => {
                            return Err(Error::invalid(
                                path,
                                "audit.memory_limit",
                                format!(
                                    "{m:?}: expected a size of at least 64MB, such as \"256MB\" or \"1GB\""
                                ),
                            ));
                        }
                    },
                },
                durability: match a.durability.as_deref() {
                    None => Durability::default(),
                    Some(d) => [Durability::Writes, Durability::All, Durability::Async]
                        .into_iter()
                        .find(|w| w.as_str() == d)
                        .ok_or_else(|| {
                            Error::invalid(
                                path,
                                "audit.durability",
                                format!("{d:?}: expected \"writes\", \"all\" or \"async\""),
                            )
                        })?,
                },
            })
        };
        let not_yet_active = Vec::new();
        let approvals = {
            let a = self.approvals.unwrap_or_default();
            let parse = |key: &str, value: Option<&str>, default| match value {
                None => Ok(default),
                Some(t) => super::duration(t).ok_or_else(|| {
                    Error::invalid(
                        path,
                        key,
                        format!("{t:?}: expected a duration such as \"25s\" or \"10m\""),
                    )
                }),
            };
            let timeout = parse(
                "approvals.timeout",
                a.timeout.as_deref(),
                super::DEFAULT_APPROVAL_TIMEOUT,
            )?;
            let hold = parse(
                "approvals.hold",
                a.hold.as_deref(),
                super::DEFAULT_APPROVAL_HOLD,
            )?;
            if hold > timeout {
                return Err(Error::invalid(
                    path,
                    "approvals.hold",
                    "longer than approvals.timeout: a request would expire while held",
                ));
            }
            if let Some(url) = &a.webhook
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(Error::invalid(
                    path,
                    "approvals.webhook",
                    format!("{url:?}: expected an http:// or https:// URL"),
                ));
            }
            super::Approvals {
                timeout,
                hold,
                group: a.group.unwrap_or_else(|| "approvers".into()),
                link: a.link,
                webhook: a.webhook,
                webhook_secret_env: a.webhook_secret_env,
            }
        };
        Ok(Config {
            path: path.to_path_buf(),
            server,
            identity,
            postgres,
            git,
            audit,
            mask: {
                let m = self.mask.unwrap_or_default();
                super::Mask {
                    hash_key_env: m.hash_key_env,
                    hash_key_file: m.hash_key_file.map(|f| base.join(f)),
                }
            },
            not_yet_active,
            approvals,
        })
    }
}

fn validate_git(
    entries: Vec<RawGit>,
    path: &Path,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<GitTarget>, Error> {
    let mut git: Vec<GitTarget> = Vec::new();
    for (i, g) in entries.into_iter().enumerate() {
        let key = |k: &str| format!("git[{i}].{k}");
        let name_ok = !g.name.is_empty()
            && g.name != "."
            && g.name != ".."
            && g.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                path,
                &key("name"),
                format!("{:?}: use letters, digits, '-', '_' and '.'", g.name),
            ));
        }
        if git.iter().any(|t| t.name == g.name) {
            return Err(Error::invalid(
                path,
                &key("name"),
                format!("{:?} is used twice", g.name),
            ));
        }
        let upstream = GitUpstream::parse(&g.upstream, base)
            .map_err(|m| Error::invalid(path, &key("upstream"), m))?;
        let upstream_token = match g.upstream_token_env {
            None => None,
            Some(var) => Some(env(&var).filter(|t| !t.is_empty()).ok_or_else(|| {
                Error::invalid(
                    path,
                    &key("upstream_token_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
        };
        let protected = g
            .protected
            .unwrap_or_else(|| DEFAULT_PROTECTED.iter().map(|p| p.to_string()).collect());
        let special_refs = g.special_refs.unwrap_or_default();
        for (name, globs) in [("protected", &protected), ("special_refs", &special_refs)] {
            for p in globs {
                if let Err(e) = globset::GlobBuilder::new(p).literal_separator(true).build() {
                    return Err(Error::invalid(
                        path,
                        &key(name),
                        format!("bad glob {p:?}: {e}"),
                    ));
                }
            }
        }
        if let Some(p) = special_refs.iter().find(|p| {
            p.starts_with("refs/heads/") || p.starts_with("refs/tags/") || !p.starts_with("refs/")
        }) {
            return Err(Error::invalid(
                path,
                &key("special_refs"),
                format!(
                    "{p:?}: list full ref names outside refs/heads/ and refs/tags/ (refs/notes/*)"
                ),
            ));
        }
        let upstream_kind_is_local = matches!(upstream, GitUpstream::Local(_));
        let mirror = match (&upstream, g.mirror) {
            (_, Some(m)) => base.join(m),
            (GitUpstream::Local(dir), None) => dir.clone(),
            (GitUpstream::Http(_), None) => base
                .join(".portcullis")
                .join("mirrors")
                .join(format!("{}.git", g.name)),
        };
        git.push(GitTarget {
            name: g.name,
            upstream,
            upstream_token,
            protected,
            special_refs,
            mirror,
            max_push_bytes: g.max_push_bytes.unwrap_or(DEFAULT_MAX_PUSH_BYTES),
            apply: match (g.apply.as_deref(), &upstream_kind_is_local) {
                (None | Some("receive-pack"), _) => GitApply::ReceivePack,
                (Some("direct"), true) => GitApply::Direct,
                (Some("direct"), false) => {
                    return Err(Error::invalid(
                        path,
                        &key("apply"),
                        "\"direct\" applies only to a local upstream",
                    ));
                }
                (Some(other), _) => {
                    return Err(Error::invalid(
                        path,
                        &key("apply"),
                        format!("{other:?}: expected \"receive-pack\" or \"direct\""),
                    ));
                }
            },
        });
    }
    Ok(git)
}
