//! Secret detectors (SPEC rules `git.secrets` and `mask.secrets`): cloud keys, Git host and
//! chat tokens, private key blocks, JWTs and generic `password = "..."` assignments.
//!
//! # Design: prefilter, then confirm
//!
//! Every detector starts with a fixed literal: a prefix (`AKIA`, `ghp_`, `glpat-`,
//! `-----BEGIN`, `eyJ`, ...) or, for [`GENERIC_SECRET`], a keyword (`password`, `secret`,
//! `token`, `api_key`, `apikey`, matched ASCII case-insensitively). [`Scanner`] compiles
//! all of them into one Aho-Corasick automaton and makes a single pass over the input.
//! Only at a hit does it run that detector's anchored regex (`regex::bytes`, on a bounded
//! window starting at the hit) and its validator (token boundaries, JWT header decoding,
//! Shannon entropy and placeholder checks). A blob without a hit therefore costs exactly
//! one Aho-Corasick pass, whatever the number of detectors; the regexes never scan the
//! whole input.
//!
//! # Findings never carry the secret
//!
//! A [`Finding`] says which detector fired and where (line, column, byte span), nothing
//! more. Findings end up in audit rows, `ng <ref> <reason>` lines, side-band messages,
//! logs and `Debug` output; none of those may become a second copy of the leaked secret.
//! A caller that must act on the bytes (masking) uses the span on the buffer it already
//! holds.
//!
//! # Example
//!
//! ```
//! use portcullis::mask::detectors::{AWS_ACCESS_KEY_ID, Scanner};
//!
//! let scanner = Scanner::new();
//! let blob = format!("fn main() {{}}\nlet key = \"AKIA{}\";\n", "Q".repeat(16));
//! let findings = scanner.scan(blob.as_bytes());
//! assert_eq!(findings.len(), 1);
//! assert_eq!(findings[0].detector, AWS_ACCESS_KEY_ID);
//! assert_eq!((findings[0].line, findings[0].column), (2, 12));
//! ```
//!
//! # Performance
//!
//! One Aho-Corasick pass plus, per hit, an anchored regex over at most [`WINDOW`] bytes.
//! SPEC "Targets" asks for ≥ 300 MB/s per core; `cargo bench --bench detectors` measures
//! it on source-like text and on random printable bytes.
//!
//! # Known gaps
//!
//! * A secret split across two scanned buffers is not found: callers scan whole values,
//!   or one value in chunks with [`Scanner::scan_chunked`], whose windows overlap.
//! * In a chunked scan, a keyword assignment whose name, operator and value take more than
//!   [`LOOKAHEAD`] bytes is missed when a cut falls inside it, and a private key block's
//!   span ends at its window (only the start is reported, so lines stay right).
//! * [`GENERIC_SECRET`] needs a keyword in the key name; `db_pass = "..."` is missed.
//! * Hex-only values under a secret keyword fire (old 40-hex GitHub tokens look exactly
//!   like a git SHA); UUID-shaped values do not.
//! * Tokens longer than [`WINDOW`] bytes are not confirmed.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use regex::bytes::Regex;

/// `AKIA`/`ASIA` followed by 16 uppercase letters or digits.
pub const AWS_ACCESS_KEY_ID: &str = "aws-access-key-id";
/// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + 36 alphanumerics, or fine-grained `github_pat_`.
pub const GITHUB_TOKEN: &str = "github-token";
/// `glpat-` + at least 20 of `[A-Za-z0-9_-]`.
pub const GITLAB_TOKEN: &str = "gitlab-token";
/// `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-` tokens.
pub const SLACK_TOKEN: &str = "slack-token";
/// `https://hooks.slack.com/services/T.../B.../...`.
pub const SLACK_WEBHOOK: &str = "slack-webhook";
/// `AIza` + 35 of `[A-Za-z0-9_-]`.
pub const GOOGLE_API_KEY: &str = "google-api-key";
/// `sk_live_`/`rk_live_` + at least 24 alphanumerics.
pub const STRIPE_KEY: &str = "stripe-key";
/// `-----BEGIN ... PRIVATE KEY-----` (RSA, EC, OPENSSH, DSA, PGP, ENCRYPTED or plain PKCS#8).
pub const PRIVATE_KEY: &str = "private-key";
/// Three base64url parts whose header decodes to a JSON object with `"alg"`.
pub const JWT: &str = "jwt";
/// `password = "..."`, `SECRET_KEY: ...`, `api_key=...` with a long, high-entropy value.
pub const GENERIC_SECRET: &str = "generic-secret";

/// Every detector id, in a stable order. Ids are contract: rules and audit rows name them.
pub const DETECTORS: &[&str] = &[
    AWS_ACCESS_KEY_ID,
    GITHUB_TOKEN,
    GITLAB_TOKEN,
    SLACK_TOKEN,
    SLACK_WEBHOOK,
    GOOGLE_API_KEY,
    STRIPE_KEY,
    PRIVATE_KEY,
    JWT,
    GENERIC_SECRET,
];

/// The most bytes a detector's regex looks at after a prefilter hit.
pub const WINDOW: usize = 512;

/// Bytes before a chunk that [`Scanner::scan_chunked`] scans with it: a token detector
/// checks the byte before its prefix and a Slack webhook looks back for `https://`; a
/// whole [`WINDOW`] so that a token which starts there and overlaps a keyword hit in the
/// chunk still keeps that hit from being reported twice.
pub const LOOKBEHIND: usize = WINDOW + 8;

/// Bytes after a chunk that [`Scanner::scan_chunked`] scans with it: a token's [`WINDOW`]
/// plus the byte after it, or a keyword assignment's name and operator and then its
/// value's [`WINDOW`].
pub const LOOKAHEAD: usize = 2 * WINDOW;

/// How many leading bytes [`is_binary`] inspects (git's own heuristic uses 8000).
pub const BINARY_PROBE: usize = 8 * 1024;

/// How far past a `-----BEGIN ... PRIVATE KEY-----` line the matching `-----END` is sought.
const PRIVATE_KEY_MAX: usize = 64 * 1024;

/// Minimum length of a [`GENERIC_SECRET`] value.
const GENERIC_MIN_LEN: usize = 16;
/// Minimum Shannon entropy (bits per byte) of a [`GENERIC_SECRET`] value.
const GENERIC_MIN_ENTROPY: f64 = 3.5;

/// Substrings (lowercase) that mark a value as a placeholder or a reference, not a secret.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "your",
    "example",
    "xxxx",
    "****",
    "...",
    "redacted",
    "dummy",
    "sample",
    "replace",
    "insert",
    "todo",
    "fixme",
    "${",
    "{{",
    "%(",
    "<",
    ">",
];

/// Whether a blob is binary: a NUL byte in its first [`BINARY_PROBE`] bytes. Callers skip
/// binary blobs.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_PROBE)].contains(&0)
}

/// One detector hit. Never contains the secret: only which detector fired and where.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    /// A detector id, one of [`DETECTORS`].
    pub detector: &'static str,
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column within the line.
    pub column: usize,
    /// Byte range of the secret in the scanned buffer, for masking in place.
    pub span: Range<usize>,
}

/// `text` with every secret the detectors find replaced by `[secret:<detector>]`: for
/// free text the gateway keeps (prompts, push options), which must not hold a secret at
/// rest. Borrowed when there is none.
///
/// ```
/// let key = format!("AKIA{}", "Q7".repeat(8));
/// let prompt = format!("deploy with {key} now");
/// let kept = portcullis::mask::detectors::redact(&prompt);
/// assert_eq!(kept, "deploy with [secret:aws-access-key-id] now");
/// ```
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let findings = Scanner::shared().scan(text.as_bytes());
    if findings.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        if f.span.start < at
            || !text.is_char_boundary(f.span.start)
            || !text.is_char_boundary(f.span.end)
        {
            continue;
        }
        out.push_str(&text[at..f.span.start]);
        out.push_str("[secret:");
        out.push_str(f.detector);
        out.push(']');
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

/// What a prefilter pattern asks the scanner to confirm.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// Anchored regex `tokens[i]` at the hit, with token boundaries on both sides.
    Token(usize),
    /// `hooks.slack.com/services/...`, reported from its `https://` when present.
    SlackWebhook,
    /// `-----BEGIN ... PRIVATE KEY-----`, spanning to its `-----END` line.
    PrivateKey,
    /// `eyJ...` in three parts, header validated.
    Jwt,
    /// A keyword in the name of an assignment.
    Keyword,
}

/// Prefilter literals and what each hit must be confirmed by. Matched ASCII
/// case-insensitively (keywords come in every case); case-sensitive prefixes are re-checked
/// by their regex.
const PATTERNS: &[(&str, Check)] = &[
    ("AKIA", Check::Token(0)),
    ("ASIA", Check::Token(0)),
    ("ghp_", Check::Token(1)),
    ("gho_", Check::Token(1)),
    ("ghu_", Check::Token(1)),
    ("ghs_", Check::Token(1)),
    ("ghr_", Check::Token(1)),
    ("github_pat_", Check::Token(2)),
    ("glpat-", Check::Token(3)),
    ("xoxb-", Check::Token(4)),
    ("xoxp-", Check::Token(4)),
    ("xoxa-", Check::Token(4)),
    ("xoxr-", Check::Token(4)),
    ("AIza", Check::Token(5)),
    ("sk_live_", Check::Token(6)),
    ("rk_live_", Check::Token(6)),
    ("hooks.slack.com/services/", Check::SlackWebhook),
    ("-----BEGIN", Check::PrivateKey),
    ("eyJ", Check::Jwt),
    ("password", Check::Keyword),
    ("secret", Check::Keyword),
    ("token", Check::Keyword),
    ("api_key", Check::Keyword),
    ("apikey", Check::Keyword),
];

/// Token detectors confirmed by an anchored regex; indexes are those of [`Check::Token`].
const TOKENS: &[(&str, &str)] = &[
    (AWS_ACCESS_KEY_ID, r"^(?:AKIA|ASIA)[A-Z0-9]{16}"),
    (GITHUB_TOKEN, r"^gh[pousr]_[A-Za-z0-9]{36}"),
    (GITHUB_TOKEN, r"^github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),
    (GITLAB_TOKEN, r"^glpat-[A-Za-z0-9_-]{20,}"),
    (SLACK_TOKEN, r"^xox[bpar]-[0-9]+-[A-Za-z0-9-]{20,}"),
    (GOOGLE_API_KEY, r"^AIza[A-Za-z0-9_-]{35}"),
    (STRIPE_KEY, r"^[sr]k_live_[A-Za-z0-9]{24,}"),
];

const SLACK_WEBHOOK_RE: &str =
    r"^hooks\.slack\.com/services/T[A-Za-z0-9]{6,}/B[A-Za-z0-9]{6,}/[A-Za-z0-9]{16,}";
const PRIVATE_KEY_RE: &str =
    r"^-----BEGIN (?:(?:RSA|EC|OPENSSH|DSA|PGP|ENCRYPTED) )?PRIVATE KEY(?: BLOCK)?-----";
const JWT_RE: &str = r"^eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*";

/// The compiled detectors. Build once ([`Scanner::new`]) and share: scanning takes `&self`.
#[derive(Debug, Clone)]
pub struct Scanner {
    prefilter: AhoCorasick,
    tokens: Vec<(&'static str, Regex)>,
    slack_webhook: Regex,
    private_key: Regex,
    jwt: Regex,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

/// A confirmed hit before line/column are known.
struct Hit {
    detector: &'static str,
    span: Range<usize>,
}

impl Scanner {
    /// The scanner the whole process shares (prompts, results, pushes): its detectors
    /// are compiled in, so building one per session would repeat the same work.
    pub fn shared() -> &'static Scanner {
        static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
        SCANNER.get_or_init(Scanner::new)
    }

    /// The built-in detectors ([`DETECTORS`]).
    pub fn new() -> Self {
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // Case-insensitivity rules out the SIMD (Teddy) prefilter; a full DFA (small
            // for these few literals) is the fastest byte-at-a-time kind. Listing case
            // variants instead to keep Teddy measured ~11% slower on source-like text.
            .kind(Some(AhoCorasickKind::DFA))
            .build(PATTERNS.iter().map(|(p, _)| p))
            .expect("the prefilter literals are compiled in and few");
        let tokens = TOKENS.iter().map(|&(id, re)| (id, compile(re))).collect();
        Scanner {
            prefilter,
            tokens,
            slack_webhook: compile(SLACK_WEBHOOK_RE),
            private_key: compile(PRIVATE_KEY_RE),
            jwt: compile(JWT_RE),
        }
    }

    /// Every secret in `bytes`, ordered by position. Binary input is scanned too; callers
    /// that want git's behaviour skip it with [`is_binary`] first.
    pub fn scan(&self, bytes: &[u8]) -> Vec<Finding> {
        let hits = self.hits(bytes);
        if hits.is_empty() {
            return Vec::new();
        }
        let mut lines = Lines::default();
        hits.into_iter().map(|h| lines.locate(bytes, h)).collect()
    }

    /// What [`Scanner::scan`] finds, one window at a time: the input is cut into chunks of
    /// `chunk` bytes, and each chunk is scanned with [`LOOKBEHIND`] bytes before it and
    /// [`LOOKAHEAD`] after, keeping only the hits that start inside it. A secret across a
    /// cut is thus seen whole by the window of the chunk it starts in and reported once;
    /// lines and spans count from the start of `bytes`.
    ///
    /// Work per window is bounded by `chunk` plus the overlap, whatever `bytes` holds, and
    /// the overlap is what a detector can look at around a hit, so the findings are those
    /// of a whole scan except where one reaches further (see the module's known gaps).
    ///
    /// ```
    /// use portcullis::mask::detectors::Scanner;
    ///
    /// let scanner = Scanner::new();
    /// let key = format!("AKIA{}", "Q".repeat(16));
    /// let text = format!("{}\nkey = {key}\n", "x".repeat(1000));
    /// // The key starts one byte before the first cut, at 1,008 bytes.
    /// let findings = scanner.scan_chunked(text.as_bytes(), 1008);
    /// assert_eq!(findings, scanner.scan(text.as_bytes()));
    /// assert_eq!((findings[0].line, findings[0].column), (2, 7));
    /// ```
    pub fn scan_chunked(&self, bytes: &[u8], chunk: usize) -> Vec<Finding> {
        let chunk = chunk.max(1);
        if bytes.len() <= chunk {
            return self.scan(bytes);
        }
        let mut lines = Lines::default();
        let mut found = Vec::new();
        let mut owned = 0;
        while owned < bytes.len() {
            let end = bytes.len().min(owned + chunk);
            let from = owned.saturating_sub(LOOKBEHIND);
            let to = bytes.len().min(end + LOOKAHEAD);
            for hit in self.hits(&bytes[from..to]) {
                let start = from + hit.span.start;
                if (owned..end).contains(&start) {
                    let hit = Hit {
                        detector: hit.detector,
                        span: start..from + hit.span.end,
                    };
                    found.push(lines.locate(bytes, hit));
                }
            }
            owned = end;
        }
        found
    }

    /// Confirmed hits in `bytes`, sorted by start, before lines are counted.
    fn hits(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        for m in self.prefilter.find_iter(bytes) {
            let at = m.start();
            let hit = match PATTERNS[m.pattern().as_usize()].1 {
                Check::Token(i) => self.token(bytes, at, i),
                Check::SlackWebhook => self.slack_webhook(bytes, at),
                Check::PrivateKey => self.private_key(bytes, at),
                Check::Jwt => self.jwt(bytes, at),
                Check::Keyword => generic(bytes, m.end()).map(|span| Hit {
                    detector: GENERIC_SECRET,
                    span,
                }),
            };
            hits.extend(hit);
        }
        if hits.is_empty() {
            return hits;
        }
        // A JWT or key assigned to `token = "..."` is reported once, by its own detector.
        let specific: Vec<Range<usize>> = hits
            .iter()
            .filter(|h| h.detector != GENERIC_SECRET)
            .map(|h| h.span.clone())
            .collect();
        hits.retain(|h| {
            h.detector != GENERIC_SECRET
                || !specific
                    .iter()
                    .any(|s| s.start < h.span.end && h.span.start < s.end)
        });
        hits.sort_by_key(|h| (h.span.start, h.detector));
        hits.dedup_by(|a, b| a.span == b.span && a.detector == b.detector);
        hits
    }

    fn token(&self, bytes: &[u8], at: usize, i: usize) -> Option<Hit> {
        let (detector, re) = &self.tokens[i];
        if at > 0 && is_token_byte(bytes[at - 1]) {
            return None;
        }
        let m = re.find(window(bytes, at))?;
        let end = at + m.end();
        if bytes.get(end).is_some_and(|&b| is_token_byte(b)) {
            return None;
        }
        Some(Hit {
            detector,
            span: at..end,
        })
    }

    fn slack_webhook(&self, bytes: &[u8], at: usize) -> Option<Hit> {
        let m = self.slack_webhook.find(window(bytes, at))?;
        let end = at + m.end();
        if bytes.get(end).is_some_and(|&b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let scheme = b"https://";
        let start = if bytes[..at].ends_with(scheme) {
            at - scheme.len()
        } else {
            at
        };
        Some(Hit {
            detector: SLACK_WEBHOOK,
            span: start..end,
        })
    }

    fn private_key(&self, bytes: &[u8], at: usize) -> Option<Hit> {
        let m = self.private_key.find(window(bytes, at))?;
        let header_end = at + m.end();
        let limit = bytes.len().min(header_end + PRIVATE_KEY_MAX);
        let footer = b"-----END";
        let end = bytes[header_end..limit]
            .windows(footer.len())
            .position(|w| w == footer)
            .map(|p| {
                let from = header_end + p + footer.len();
                bytes[from..limit]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(limit, |n| from + n)
            })
            .unwrap_or(header_end);
        Some(Hit {
            detector: PRIVATE_KEY,
            span: at..end,
        })
    }

    fn jwt(&self, bytes: &[u8], at: usize) -> Option<Hit> {
        if at > 0 && is_base64url(bytes[at - 1]) {
            return None;
        }
        let m = self.jwt.find(window(bytes, at))?;
        let end = at + m.end();
        if bytes
            .get(end)
            .is_some_and(|&b| is_base64url(b) || b == b'.')
        {
            return None;
        }
        let token = &bytes[at..end];
        let header = token.split(|&b| b == b'.').next()?;
        let decoded = URL_SAFE_NO_PAD.decode(header).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
        json.as_object()?.get("alg")?;
        Some(Hit {
            detector: JWT,
            span: at..end,
        })
    }
}

fn compile(re: &str) -> Regex {
    Regex::new(re).expect("detector regexes are compiled in and covered by tests")
}

/// At most [`WINDOW`] bytes from `at`.
fn window(bytes: &[u8], at: usize) -> &[u8] {
    &bytes[at..bytes.len().min(at + WINDOW)]
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A [`GENERIC_SECRET`] assignment whose key contains the keyword ending at `kw_end`:
/// `KEY = value`, `KEY: value`, `KEY := value`, `KEY => value`, with the key optionally
/// quoted and the value quoted or bare. Returns the value's span if it looks like a secret.
fn generic(bytes: &[u8], kw_end: usize) -> Option<Range<usize>> {
    let len = bytes.len();
    let mut i = kw_end;
    while i < len && is_key_byte(bytes[i]) {
        i += 1;
    }
    if i < len && matches!(bytes[i], b'"' | b'\'') {
        i += 1;
    }
    while i < len && is_blank(bytes[i]) {
        i += 1;
    }
    let rest = &bytes[i..];
    let op = if rest.starts_with(b":=") || rest.starts_with(b"=>") {
        2
    } else if rest.starts_with(b"==") || rest.starts_with(b"::") {
        return None;
    } else if rest.starts_with(b"=") || rest.starts_with(b":") {
        1
    } else {
        return None;
    };
    i += op;
    while i < len && is_blank(bytes[i]) {
        i += 1;
    }
    let (start, end) = match bytes.get(i) {
        Some(&q @ (b'"' | b'\'' | b'`')) => {
            let start = i + 1;
            let close = bytes[start..len.min(start + WINDOW)]
                .iter()
                .position(|&b| b == q || b == b'\n')?;
            if bytes[start + close] != q {
                return None;
            }
            (start, start + close)
        }
        Some(_) => {
            let stop = bytes[i..len.min(i + WINDOW)]
                .iter()
                .position(|&b| {
                    b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'"' | b'\'' | b'`')
                })
                .unwrap_or(len.min(i + WINDOW) - i);
            (i, i + stop)
        }
        None => return None,
    };
    is_secret_value(&bytes[start..end]).then_some(start..end)
}

/// Long enough, random enough, and not a placeholder, reference or identifier.
fn is_secret_value(value: &[u8]) -> bool {
    if value.len() < GENERIC_MIN_LEN {
        return false;
    }
    // References and expressions: os.environ["X"], getenv(...), $VAR, %(x)s, {...}.
    if value
        .iter()
        .any(|b| matches!(b, b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'$'))
    {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDERS
        .iter()
        .any(|p| lower.windows(p.len()).any(|w| w == p.as_bytes()))
    {
        return false;
    }
    if is_uuid(value) {
        return false;
    }
    entropy(value) >= GENERIC_MIN_ENTROPY
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(value: &[u8]) -> bool {
    value.len() == 36
        && value.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Shannon entropy in bits per byte.
fn entropy(value: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in value {
        counts[usize::from(b)] += 1;
    }
    let n = value.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Line counting over hits sorted by start, each newline counted once.
struct Lines {
    line: usize,
    line_start: usize,
    pos: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            line: 1,
            line_start: 0,
            pos: 0,
        }
    }
}

impl Lines {
    /// `hit` with its 1-based line and column; `bytes` is the whole input.
    fn locate(&mut self, bytes: &[u8], hit: Hit) -> Finding {
        for (i, &b) in bytes[self.pos..hit.span.start].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.line_start = self.pos + i + 1;
            }
        }
        self.pos = hit.span.start;
        Finding {
            detector: hit.detector,
            line: self.line,
            column: hit.span.start - self.line_start + 1,
            span: hit.span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(b"aaaaaaaa"), 0.0);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid(b"123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_uuid(b"123e4567e89b12d3a456426614174000xxxx"));
    }

    /// Every cut position across each secret, and chunks smaller than the overlap: the
    /// chunked scan reports what the whole scan does, once, at the same line and column.
    #[test]
    fn chunked_scan_matches_whole_scan_at_every_cut() {
        let jwt_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let text = format!(
            "intro line\n{}\nkey = AKIA{}\nx{}\npassword = \"{}\"\n\
             -----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n\
             token: {jwt_header}.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\nghp_{} tail\n",
            "lorem ipsum ".repeat(60),
            "Q7".repeat(8),
            " ".repeat(700),
            "Zq8vN2kL5pW9xR4tY7",
            "MIIEow".repeat(40),
            "aB3".repeat(12),
        );
        let scanner = Scanner::new();
        let whole = scanner.scan(text.as_bytes());
        let detectors: Vec<&str> = whole.iter().map(|f| f.detector).collect();
        assert_eq!(
            detectors,
            [
                AWS_ACCESS_KEY_ID,
                GENERIC_SECRET,
                PRIVATE_KEY,
                JWT,
                GITHUB_TOKEN
            ]
        );
        let place = |f: &Finding| (f.detector, f.line, f.column, f.span.start);
        let expected: Vec<_> = whole.iter().map(place).collect();
        for chunk in [1, 2, 3, 7, 31, 63].into_iter().chain(200..text.len() + 2) {
            let chunked = scanner.scan_chunked(text.as_bytes(), chunk);
            let got: Vec<_> = chunked.iter().map(place).collect();
            assert_eq!(got, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn every_token_detector_is_listed() {
        for (id, _) in TOKENS {
            assert!(DETECTORS.contains(id), "{id}");
        }
    }
}
