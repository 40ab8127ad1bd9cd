//! The file as written: serde types that refuse unknown keys.

use std::path::Path;

use serde::Deserialize;

use super::{
    Audit, Config, DEFAULT_AUDIT_PATH, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RESULT_ROWS, Error,
    Identity, JwksSource, PostgresTarget, Server, TlsFiles, Upstream,
};
use crate::audit::Durability;
use crate::policy::Decision;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    server: RawServer,
    identity: Option<RawIdentity>,
    audit: Option<RawAudit>,
    approvals: Option<RawApprovals>,
    #[serde(default)]
    postgres: Vec<RawPostgres>,
    #[serde(default)]
    git: Vec<RawGit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    admin_listen: Option<String>,
    git_listen: Option<String>,
    rules: Option<Vec<String>>,
    unparsed: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<String>,
    result_rows: Option<u32>,
    durability: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The approvals issue reads these.
struct RawApprovals {
    timeout: Option<String>,
    webhook: Option<String>,
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
    max_message_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The git gateway issue reads these.
struct RawGit {
    name: String,
    upstream: String,
    upstream_token_env: Option<String>,
    protected: Option<Vec<String>>,
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
            rules: self
                .server
                .rules
                .unwrap_or_default()
                .iter()
                .map(|r| base.join(r))
                .collect(),
            unparsed: match self.server.unparsed.as_deref() {
                None | Some("deny") => Decision::Deny,
                Some("review") => Decision::Review,
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
            postgres.push(PostgresTarget {
                listen: addr(&key("listen"), &p.listen)?,
                name: p.name,
                upstream,
                upstream_password,
                tls,
                max_message_bytes: p.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            });
        }
        let audit = match self.audit {
            None => None,
            Some(a) => Some(Audit {
                path: base.join(a.path.as_deref().unwrap_or(DEFAULT_AUDIT_PATH)),
                result_rows: a.result_rows.unwrap_or(DEFAULT_RESULT_ROWS),
                durability: match a.durability.as_deref() {
                    None => Durability::default(),
                    Some(d) => Durability::parse(d).ok_or_else(|| {
                        Error::invalid(
                            path,
                            "audit.durability",
                            format!("{d:?}: expected \"writes\", \"all\" or \"async\""),
                        )
                    })?,
                },
            }),
        };
        let mut not_yet_active = Vec::new();
        // The gateways do not record into the store yet (the wiring is the next step).
        if audit.is_some() {
            not_yet_active.push("audit");
        }
        if self.approvals.is_some() {
            not_yet_active.push("approvals");
        }
        if !self.git.is_empty() {
            not_yet_active.push("git");
        }
        Ok(Config {
            path: path.to_path_buf(),
            server,
            identity,
            postgres,
            audit,
            not_yet_active,
        })
    }
}
