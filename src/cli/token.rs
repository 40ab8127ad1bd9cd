//! `portcullis token`: play the IdP with a local key, for demos and tests.
//!
//! Three modes, exactly one per call:
//! `--key KEY.pem --sub S ...` prints a signed JWT, `--jwks KEY.pem` prints the JWKS
//! that verifies it, `--generate-key KEY.pem [--alg ...]` writes a new private key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};

use crate::identity::{self, KeyAlg, MintOptions};
use crate::policy::parse::duration_value;

/// The minting flags make no sense with the other two modes.
const MINT_CONFLICTS: [&str; 2] = ["jwks", "generate_key"];

#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["key", "jwks", "generate_key"])))]
pub struct TokenArgs {
    /// Sign a token with this private key (PKCS#8 PEM: RSA, EC P-256 or Ed25519).
    #[arg(long, value_name = "KEY.pem", requires = "sub")]
    key: Option<PathBuf>,
    /// Print the JWKS (public key, `kid` = RFC 7638 thumbprint) for this private key.
    #[arg(long, value_name = "KEY.pem")]
    jwks: Option<PathBuf>,
    /// Write a new private key to this file (mode 0600; never overwrites).
    #[arg(long, value_name = "KEY.pem")]
    generate_key: Option<PathBuf>,
    /// Key type for --generate-key.
    #[arg(long, value_enum, default_value_t = AlgArg::Es256, conflicts_with_all = ["key", "jwks"])]
    alg: AlgArg,
    /// The token's subject (`sub`, rules' `agent.sub`).
    #[arg(long, conflicts_with_all = MINT_CONFLICTS)]
    sub: Option<String>,
    /// Groups, comma-separated (`groups`, rules' `agent.groups`).
    #[arg(long, value_delimiter = ',', conflicts_with_all = MINT_CONFLICTS)]
    groups: Vec<String>,
    /// Lifetime: 30s, 15m, 2h, 1d.
    #[arg(long, default_value = "15m", value_parser = parse_ttl, conflicts_with_all = MINT_CONFLICTS)]
    ttl: Duration,
    /// The `iss` claim.
    #[arg(long, default_value = "portcullis-dev", conflicts_with_all = MINT_CONFLICTS)]
    issuer: String,
    /// The `aud` claim.
    #[arg(long, default_value = "portcullis", conflicts_with_all = MINT_CONFLICTS)]
    audience: String,
    /// The `agent` claim: which tool or model acts for the subject.
    #[arg(long, conflicts_with_all = MINT_CONFLICTS)]
    agent: Option<String>,
    /// The header `kid` (default: the key's JWK thumbprint, as --jwks publishes it).
    #[arg(long, conflicts_with_all = MINT_CONFLICTS)]
    kid: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AlgArg {
    Es256,
    Eddsa,
    Rs256,
}

impl AlgArg {
    fn name(self) -> &'static str {
        match self {
            AlgArg::Es256 => "ES256 (EC P-256)",
            AlgArg::Eddsa => "EdDSA (Ed25519)",
            AlgArg::Rs256 => "RS256 (RSA 2048)",
        }
    }
}

impl From<AlgArg> for KeyAlg {
    fn from(alg: AlgArg) -> KeyAlg {
        match alg {
            AlgArg::Es256 => KeyAlg::Es256,
            AlgArg::Eddsa => KeyAlg::EdDsa,
            AlgArg::Rs256 => KeyAlg::Rs256,
        }
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    match duration_value(text) {
        Some(ttl) if ttl.as_secs() > 0 => Ok(ttl),
        Some(_) => Err("the lifetime must be at least 1s".into()),
        None => Err(format!(
            "`{text}` is not a duration like 30s, 15m, 2h or 1d"
        )),
    }
}

pub fn run(args: TokenArgs) -> Result<u8, String> {
    if let Some(path) = &args.generate_key {
        let pem = identity::generate_key(args.alg.into()).map_err(|e| e.to_string())?;
        write_private(path, &pem)?;
        eprintln!(
            "portcullis: wrote a new {} private key to {}",
            args.alg.name(),
            path.display()
        );
    } else if let Some(path) = &args.jwks {
        let jwks = identity::jwks_for(&read_key(path)?).map_err(|e| e.to_string())?;
        let text = serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?;
        print_line(&text)?;
    } else if let Some(path) = &args.key {
        let sub = args.sub.ok_or("--sub is required with --key")?;
        let token = identity::mint(
            &read_key(path)?,
            MintOptions {
                sub,
                groups: args.groups,
                ttl: args.ttl,
                issuer: args.issuer,
                audience: args.audience,
                agent: args.agent,
                kid: args.kid,
            },
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        print_line(&token)?;
    }
    Ok(0)
}

/// Prints one line; a closed pipe is an error to report, not a panic.
fn print_line(text: &str) -> Result<(), String> {
    writeln!(std::io::stdout(), "{text}").map_err(|e| format!("cannot write to stdout ({e})"))
}

fn read_key(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {} ({e})", path.display()))
}

/// Creates `path` readable by its owner only and writes `pem`; refuses to replace a file.
fn write_private(path: &Path, pem: &str) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!("{} already exists; not overwriting a key", path.display())
        }
        _ => format!("cannot create {} ({e})", path.display()),
    })?;
    file.write_all(pem.as_bytes())
        .map_err(|e| format!("cannot write {} ({e})", path.display()))
}
