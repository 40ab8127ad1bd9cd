//! The bodies of the fuzz targets in `fuzz/` (issue 14, item 4), one function each, so
//! `cargo fuzz` and the regression tests that replay the crashes it found
//! (`tests/suite/fuzz_regressions.rs`) run the same code. Hidden from the docs: this is a
//! test harness, not an API. Each function takes any bytes and must neither panic nor
//! hang; the assertions in them are properties the readers promise.
//!
//! `docs/fuzzing.md` says how to run them.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::git::wire::{advertisement, pktline, report, request};
use crate::identity::{JwksSource, Verifier, VerifierOptions};
use crate::policy::RuleSet;
use crate::policy::value::{Agent, Target};

/// The names of the targets, as `cargo fuzz list` shows them and as the folders of
/// `fuzz/regressions/` are named.
pub const TARGETS: [&str; 6] = [
    "pg_frame",
    "pg_session",
    "git_wire",
    "rules_parse",
    "sql_facts",
    "jwt",
];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "pg_frame" => pg_frame(data),
        "pg_session" => pg_session(data),
        "git_wire" => git_wire(data),
        "rules_parse" => rules_parse(data),
        "sql_facts" => sql_facts(data),
        "jwt" => jwt(data),
        _ => return false,
    }
    true
}

/// PostgreSQL framing and message decoding (`src/pg/frame.rs`, `src/pg/messages.rs`).
pub fn pg_frame(data: &[u8]) {
    crate::pg::fuzz::frames(data);
}

/// A client/server exchange through the session's bookkeeping (see `src/pg/fuzz.rs`).
pub fn pg_session(data: &[u8]) {
    crate::pg::fuzz::session(data);
}

/// pkt-lines, push requests (whole and as they arrive), advertisements and the upstream's
/// report. A request that parses is encoded again and must read back the same.
pub fn git_wire(data: &[u8]) {
    let _ = pktline::Reader::new(data).count();
    let _ = pktline::decode(data);
    let parsed = request::parse_request(data);
    // The scanner, fed in pieces, must end where a parse of the whole body does.
    let piece = 1 + data.first().map_or(0, |b| usize::from(*b % 61));
    let mut scanner = request::RequestScanner::default();
    let mut scanned = None;
    for end in (piece..data.len()).step_by(piece).chain([data.len()]) {
        let ended = end == data.len();
        match scanner.scan(&data[..end], ended) {
            Ok(None) if !ended => continue,
            other => {
                scanned = Some(other);
                break;
            }
        }
    }
    if let (Ok(whole), Some(Ok(Some(scanned)))) = (&parsed, &scanned) {
        assert_eq!(whole, scanned, "the scanner read another request");
    }
    if let Ok(req) = &parsed {
        let mut again = request::encode_commands(req, &req.capabilities, true);
        let pack = &data[req.pack_offset..];
        again.extend_from_slice(pack);
        let reread = request::parse_request(&again).expect("an encoded request parses");
        assert_eq!(reread.commands, req.commands, "commands changed on the way");
        assert_eq!(
            reread.shallow, req.shallow,
            "shallow lines changed on the way"
        );
        let refused: Vec<_> = req
            .commands
            .iter()
            .map(|c| (c.name.as_str(), Some("no")))
            .collect();
        let _ = report::encode_report(req, Ok(()), &refused, &[]);
        let _ = report::progress_packet(req, &String::from_utf8_lossy(data));
    }
    // The data as an upstream's report, to a request with and without side-band.
    for caps in ["report-status", "report-status side-band-64k"] {
        let _ = report::rejections(&fixed_request(caps), data);
    }
    if let Ok(ad) = advertisement::parse_advertisement(data) {
        let _ = ad.supports("report-status");
        let _ = advertisement::rewrite_advertisement(
            data,
            "git-receive-pack",
            &["report-status"],
            &["push-options", "agent="],
        );
    }
    let mut out = Vec::new();
    pktline::sideband(
        &mut out,
        2,
        data,
        usize::from(data.first().copied().unwrap_or(0)) << 8,
    );
}

/// A push request of one ref update asking for capabilities `caps`.
fn fixed_request(caps: &str) -> request::Request {
    let line = format!(
        "{} {} refs/heads/main\0{caps}",
        "0".repeat(40),
        "1".repeat(40)
    );
    let mut body = Vec::new();
    pktline::write_data(&mut body, line.as_bytes()).expect("a short line");
    pktline::write_flush(&mut body);
    body.extend_from_slice(b"PACK\0\0\0\x02\0\0\0\0");
    request::parse_request(&body).expect("a valid push")
}

/// Rule files (`src/policy/parse.rs`). Rules that compile are loaded into a set and judge
/// one statement, so evaluation meets whatever the parser let through.
pub fn rules_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = crate::policy::parse::parse_rules("fuzz.rules", text) else {
        return;
    };
    let _ = rules.len();
    let mut set = RuleSet::default();
    if set.add_text("fuzz.rules", text).is_err() {
        return;
    }
    let analysis = crate::sql::analyze_sqlparser_only(
        "UPDATE users SET email = 'x' WHERE id IN (SELECT id FROM t); DROP TABLE x",
    );
    let agent = Agent {
        sub: "fuzz".into(),
        groups: vec!["dev".into()],
        name: Some("agent".into()),
    };
    let target = Target { name: "db".into() };
    let judged =
        crate::gateway::judge_analysis(&set, analysis, &agent, &target, std::time::Instant::now());
    let _ = judged.verdict.reason();
    // What a session remembers of a shape never changes a verdict: the second text of one
    // shape, judged with the first's memo, gets what the rules give it alone.
    let mut memo = None;
    for text in [
        "SELECT * FROM users WHERE email = 'someone' AND id = 1 LIMIT 5",
        "SELECT * FROM users WHERE email = 'canary@example.com' AND id = 22 LIMIT 5",
    ] {
        let stmt = crate::sql::analyze(text).statements.remove(0);
        let roots: [(&str, &dyn crate::policy::value::Record); 3] =
            [("stmt", &stmt), ("agent", &agent), ("target", &target)];
        let alone = set.judge(crate::policy::Subject::Sql, &roots);
        let (remembered, kept) = set.judge_shape(&roots, memo);
        let ids = |v: &crate::policy::Verdict<'_>| {
            v.matched
                .iter()
                .map(|m| m.rule.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(remembered.decision, alone.decision, "{text}");
        assert_eq!(ids(&remembered), ids(&alone), "{text}");
        memo = Some(kept);
    }
}

/// SQL facts (`sql::analyze`, both readers), and the shape cache: a text analysed twice
/// gets the same facts the second time.
pub fn sql_facts(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::sql::parameter_count(text);
    let _ = crate::sql::parse(text);
    let mut analyzer = crate::sql::Analyzer::new(16);
    let first = analyzer.analyze(text);
    let _ = first.tables_touched();
    let second = analyzer.analyze(text);
    let facts = |a: &crate::sql::Analysis| serde_json::to_string(a).expect("facts serialize");
    assert_eq!(facts(&first), facts(&second), "the cache changed the facts");
}

/// The HS256 secret of the [`jwt`] target's verifier.
const JWT_SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32";
const JWT_ISSUER: &str = "https://idp.fuzz";
const JWT_AUDIENCE: &str = "portcullis";

/// JWT handling (`src/identity`). The first byte picks what the rest is:
/// 0. a token as a client sends it;
/// 1. `header \n claims`, raw JSON bytes, base64url-encoded and signed with the HS256
///    secret, so the claims reach the mapping that runs after the signature is checked;
/// 2. claims JSON laid over valid ones (`iss`, `aud`, `sub`, `exp`), signed likewise;
/// 3. a JWKS document, loaded by a verifier of its own.
///
/// An identity that comes out goes where a PostgreSQL session would take it.
pub fn jwt(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check_identity(jwt_verifier().verify(token));
            }
        }
        1 => {
            let (header, claims) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (&br#"{"alg":"HS256"}"#[..], rest),
            };
            check_identity(jwt_verifier().verify(&sign(header, claims)));
        }
        2 => {
            let Ok(serde_json::Value::Object(over)) = serde_json::from_slice(rest) else {
                return;
            };
            let mut claims = serde_json::json!({
                "iss": JWT_ISSUER,
                "aud": JWT_AUDIENCE,
                "sub": "agent",
                "exp": 4_102_444_800u64,
            });
            if let Some(base) = claims.as_object_mut() {
                base.extend(over);
            }
            let claims = claims.to_string();
            let header = br#"{"alg":"HS256","typ":"JWT"}"#;
            check_identity(jwt_verifier().verify(&sign(header, claims.as_bytes())));
        }
        _ => {
            let Ok(file) = tempfile::NamedTempFile::new() else {
                return;
            };
            if std::fs::write(file.path(), rest).is_err() {
                return;
            }
            let options = VerifierOptions::new(
                JWT_ISSUER,
                JWT_AUDIENCE,
                JwksSource::File(file.path().into()),
            );
            if let Ok(verifier) = Verifier::new(options) {
                let _ = verifier.key_count();
                let _ = verifier.verify(jwt_token());
            }
        }
    }
}

fn check_identity(result: Result<crate::identity::Identity, crate::identity::Error>) {
    match result {
        Ok(identity) => {
            assert!(!identity.sub.is_empty(), "an identity without a subject");
            let _ = identity.agent();
            crate::pg::fuzz::identity(&identity);
        }
        Err(e) => {
            let _ = (e.to_string(), e.sqlstate());
        }
    }
}

/// `header.claims.signature` with the HS256 secret.
fn sign(header: &[u8], claims: &[u8]) -> String {
    use hmac::Mac as _;
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

/// A verifier over a JWKS of one Ed25519 key, which also takes HS256 tokens. Made once:
/// its JWKS file lives as long as the process.
fn jwt_verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let (path, _) = jwt_keys();
        let mut options = VerifierOptions::new(
            JWT_ISSUER,
            JWT_AUDIENCE,
            JwksSource::File(path.to_path_buf()),
        );
        options.hs256_secret = Some(JWT_SECRET.to_vec());
        Verifier::new(options).expect("the fuzz JWKS loads")
    })
}

/// An EdDSA token the [`jwt_verifier`]'s key signed.
fn jwt_token() -> &'static str {
    jwt_keys().1
}

fn jwt_keys() -> (&'static std::path::Path, &'static str) {
    static KEYS: OnceLock<(tempfile::TempPath, String)> = OnceLock::new();
    let (path, token) = KEYS.get_or_init(|| {
        let pem =
            crate::identity::generate_key(crate::identity::KeyAlg::EdDsa).expect("an Ed25519 key");
        let jwks = crate::identity::jwks_for(&pem).expect("its JWKS");
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), jwks.to_string()).expect("the JWKS is written");
        let token = crate::identity::mint(
            &pem,
            crate::identity::MintOptions {
                sub: "agent".into(),
                groups: vec!["dev".into()],
                ttl: std::time::Duration::from_secs(3600),
                issuer: JWT_ISSUER.into(),
                audience: JWT_AUDIENCE.into(),
                agent: None,
                kid: None,
            },
        )
        .expect("a token");
        (file.into_temp_path(), token)
    });
    (path, token)
}
