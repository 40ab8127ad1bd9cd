//! Secret detectors (SPEC rules `git.secrets`, `mask.secrets`): one true positive per
//! detector, positions, several findings at once, and the false positives that must stay
//! quiet.
//!
//! Every fake secret is built by concatenation at run time, so no secret-looking literal
//! sits in the repository (and our own `git.secrets` never trips on this file).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis::mask::detectors::{
    self, AWS_ACCESS_KEY_ID, DETECTORS, Finding, GENERIC_SECRET, GITHUB_TOKEN, GITLAB_TOKEN,
    GOOGLE_API_KEY, JWT, PRIVATE_KEY, SLACK_TOKEN, SLACK_WEBHOOK, STRIPE_KEY, Scanner,
};

fn scan(text: &str) -> Vec<Finding> {
    Scanner::new().scan(text.as_bytes())
}

fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.detector).collect()
}

/// `text` with `secret` in it fires exactly `detector`, at the secret, without the
/// secret showing up in `Debug`.
#[track_caller]
fn assert_detects(detector: &str, secret: &str, text: &str) {
    let findings = scan(text);
    assert_eq!(ids(&findings), vec![detector], "in {text:?}");
    let f = &findings[0];
    let start = text.find(secret).expect("the secret is in the text");
    assert_eq!(f.span.start, start, "{f:?} in {text:?}");
    let debug = format!("{findings:?}");
    assert!(!debug.contains(secret), "Debug leaks the secret: {debug}");
}

fn jwt() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"agent-7","exp":1900000000}"#);
    let signature = URL_SAFE_NO_PAD.encode([7u8; 32]);
    format!("{header}.{payload}.{signature}")
}

#[test]
fn aws_access_key_id() {
    for prefix in ["AKIA", "ASIA"] {
        let key = format!("{prefix}{}", "Q7".repeat(8));
        assert_detects(
            AWS_ACCESS_KEY_ID,
            &key,
            &format!("aws_access_key_id={key}\n"),
        );
    }
}

#[test]
fn github_token() {
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        let token = format!("{prefix}{}", "aB3dE6gH9".repeat(4));
        assert_detects(
            GITHUB_TOKEN,
            &token,
            &format!("git clone https://{token}@github.com/o/r"),
        );
    }
    let fine = format!(
        "github_pat_{}_{}",
        "A1b2C3d4E5".repeat(2) + "xy",
        "Zz9Yy8Xx7W".repeat(5) + "v6Uu5Tt4S"
    );
    assert_detects(GITHUB_TOKEN, &fine, &format!("GH = '{fine}'"));
}

#[test]
fn gitlab_token() {
    let token = format!("glpat-{}", "Ab1_Cd2-Ef3Gh4Ij5Kl6");
    assert_detects(GITLAB_TOKEN, &token, &format!("PRIVATE-TOKEN: {token}\n"));
}

#[test]
fn slack_token() {
    let token = format!(
        "xoxb-{}-{}-{}",
        "1234567890", "1234567890123", "AbCdEfGhIjKlMnOpQrStUvWx"
    );
    assert_detects(SLACK_TOKEN, &token, &format!("slack({token:?})"));
}

#[test]
fn slack_webhook() {
    let url = format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        "ABCD1234", "EFGH5678", "aBcDeFgHiJkLmNoPqRsTuVwX"
    );
    assert_detects(
        SLACK_WEBHOOK,
        &url,
        &format!("curl -X POST {url} -d @msg.json"),
    );
}

#[test]
fn google_api_key() {
    let key = format!("AIza{}", "Sy-A1_b2C3".repeat(3) + "d4E5f");
    assert_detects(
        GOOGLE_API_KEY,
        &key,
        &format!("<script src=\"maps.js?key={key}\">"),
    );
}

#[test]
fn stripe_key() {
    for prefix in ["sk_live_", "rk_live_"] {
        let key = format!("{prefix}{}", "4eC39HqLyjWDarjtT1zdp7dc");
        assert_detects(STRIPE_KEY, &key, &format!("Stripe.key = {key};"));
    }
}

#[test]
fn private_key() {
    for kind in ["RSA ", "EC ", "OPENSSH ", "DSA ", ""] {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
        let block =
            format!("-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----");
        let text = format!("# deploy key\n{block}\nrest of file\n");
        let findings = scan(&text);
        assert_eq!(ids(&findings), vec![PRIVATE_KEY], "{kind}");
        let start = text.find("-----BEGIN").expect("header");
        assert_eq!(
            findings[0].span,
            start..start + block.len(),
            "span covers the block"
        );
        assert!(!format!("{findings:?}").contains(body));
    }
    let pgp = format!("-----BEGIN PGP {} BLOCK-----\n", "PRIVATE KEY");
    assert_eq!(ids(&scan(&pgp)), vec![PRIVATE_KEY]);
    let public = format!("-----BEGIN {} KEY-----\nMIIB\n", "PUBLIC");
    assert!(scan(&public).is_empty(), "public keys are not secrets");
}

#[test]
fn json_web_token() {
    let token = jwt();
    assert_detects(JWT, &token, &format!("Authorization: Bearer {token}\n"));
    // Assigned to a secret-looking name, it is still reported once, as a JWT.
    assert_detects(JWT, &token, &format!("access_token = \"{token}\"\n"));
}

#[test]
fn generic_secret() {
    let value = "x9Kq2LmP7vR4tZ8wN3bY";
    for text in [
        format!("password = \"{value}\""),
        format!("SECRET_KEY: {value}"),
        format!("api_key={value}"),
        format!("{{\"apiKey\": \"{value}\"}}"),
        format!("export GITHUB_TOKEN='{value}'"),
        format!("$db_password := `{value}`"),
        format!("'client_secret' => '{value}',"),
    ] {
        assert_detects(GENERIC_SECRET, value, &text);
    }
}

#[test]
fn every_detector_has_a_true_positive() {
    for &detector in DETECTORS {
        let sample = true_positive(detector)
            .unwrap_or_else(|| panic!("no true positive for detector {detector}"));
        assert_eq!(ids(&scan(&sample)), vec![detector], "{detector}");
    }
}

/// One text each detector must fire on; `None` for a detector nobody wrote one for
/// (which fails [`every_detector_has_a_true_positive`]).
fn true_positive(detector: &str) -> Option<String> {
    Some(match detector {
        AWS_ACCESS_KEY_ID => format!("aws_access_key_id=AKIA{}", "Q7".repeat(8)),
        GITHUB_TOKEN => format!("token ghp_{}", "aB3dE6gH9".repeat(4)),
        GITLAB_TOKEN => format!("PRIVATE-TOKEN: glpat-{}", "Ab1_Cd2-Ef3Gh4Ij5Kl6"),
        SLACK_TOKEN => format!(
            "xoxb-{}-{}-{}",
            "1234567890", "1234567890123", "AbCdEfGhIjKlMnOpQrStUvWx"
        ),
        SLACK_WEBHOOK => format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            "ABCD1234", "EFGH5678", "aBcDeFgHiJkLmNoPqRsTuVwX"
        ),
        GOOGLE_API_KEY => format!("key=AIza{}", "Sy-A1_b2C3".repeat(3) + "d4E5f"),
        STRIPE_KEY => format!("Stripe.key = sk_live_{};", "4eC39HqLyjWDarjtT1zdp7dc"),
        PRIVATE_KEY => format!(
            "-----BEGIN RSA {}-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END RSA {}-----",
            "PRIVATE KEY", "PRIVATE KEY"
        ),
        JWT => format!("Authorization: Bearer {}", jwt()),
        GENERIC_SECRET => "password = \"x9Kq2LmP7vR4tZ8wN3bY\"".to_string(),
        _ => return None,
    })
}

#[test]
fn line_and_column_on_multi_line_input() {
    let key = format!("AKIA{}", "Q7".repeat(8));
    let token = format!("ghp_{}", "aB3dE6gH9".repeat(4));
    let text =
        format!("[default]\nregion = eu-west-1\n\taws_access_key_id = {key}\n\n  # old: {token}\n");
    let findings = scan(&text);
    let got: Vec<_> = findings
        .iter()
        .map(|f| (f.detector, f.line, f.column))
        .collect();
    assert_eq!(
        got,
        vec![(AWS_ACCESS_KEY_ID, 3, 22), (GITHUB_TOKEN, 5, 10)],
        "{text}"
    );
    // Line 1, column 1, and no trailing newline.
    let first = scan(&key);
    assert_eq!((first[0].line, first[0].column), (1, 1));
}

#[test]
fn several_findings_in_one_input() {
    let key = format!("AKIA{}", "Q7".repeat(8));
    let stripe = format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc");
    let token = jwt();
    let password = "x9Kq2LmP7vR4tZ8wN3bY";
    let text = format!(
        "AWS={key} STRIPE={stripe}\nconfig:\n  password: \"{password}\"\n  session: {token}\n"
    );
    let findings = scan(&text);
    assert_eq!(
        ids(&findings),
        vec![AWS_ACCESS_KEY_ID, STRIPE_KEY, GENERIC_SECRET, JWT]
    );
    let debug = format!("{findings:?}");
    for secret in [key.as_str(), stripe.as_str(), token.as_str(), password] {
        assert!(!debug.contains(secret), "Debug leaks {secret}: {debug}");
        assert!(
            !debug.contains(&secret[4..]),
            "Debug leaks part of {secret}"
        );
    }
}

#[test]
fn false_positives_stay_quiet() {
    let image = STANDARD.encode(
        (0u32..3000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let sha = "3f2a9c1d4e5b6a7980f1e2d3c4b5a69788f0e1d2";
    let cases = [
        "Please enter your password to continue. The token expires in an hour.".to_owned(),
        "Password: see the team vault. Secret: ask ops. Token: rotates daily.".to_owned(),
        "fn check_password(password: &str) -> bool { password == stored }".to_owned(),
        "password = \"\"".to_owned(),
        "password = os.environ[\"X\"]".to_owned(),
        "api_key = os.getenv(\"STRIPE_API_KEY_FOR_PRODUCTION\")".to_owned(),
        "password = \"changeme\"".to_owned(),
        "password = \"changeme-before-production-2024\"".to_owned(),
        "api_key = \"xxxxxxxxxxxxxxxxxxxxxxxx\"".to_owned(),
        "secret: ${DB_SECRET_FROM_THE_VAULT}".to_owned(),
        "password = \"<password-goes-here-please>\"".to_owned(),
        "api_key = \"your-api-key-here\"".to_owned(),
        "token: {{ .Values.slack.tokenFromSecret }}".to_owned(),
        "password = \"aaaaaaaabbbbbbbbcccc\"".to_owned(),
        "secret_key = \"abababababababababababab\"".to_owned(),
        "session_token = \"123e4567-e89b-12d3-a456-426614174000\"".to_owned(),
        "request id 123e4567-e89b-12d3-a456-426614174000 failed".to_owned(),
        format!("commit {sha}\nFixes token refresh ({sha})"),
        format!("revision = \"{sha}\""),
        format!("data:image/png;base64,{image}"),
        format!("{image}\n{image}"),
        "eyJustKidding.notajwt.atall".to_owned(),
        "eyJhbGciOiJIUzI1NiJ9 alone".to_owned(),
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(b"{\"typ\":\"JWT\"}"),
            "eyJzdWIiOiJ4In0"
        ),
        "keyJane.doe@example.com".to_owned(),
        "XAKIAQ7Q7Q7Q7Q7Q7Q7Q7Q7".to_owned(),
        format!("AKIA{}", "q7".repeat(8)),
        format!("-----BEGIN {} KEY-----", "CERTIFICATE"),
        "https://hooks.slack.com/services/".to_owned(),
    ];
    let scanner = Scanner::new();
    for text in &cases {
        let findings = scanner.scan(text.as_bytes());
        assert!(findings.is_empty(), "{findings:?} in {text:?}");
    }
}

#[test]
fn binary_blobs() {
    assert!(detectors::is_binary(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"));
    assert!(!detectors::is_binary(b"plain text\n"));
    assert!(!detectors::is_binary(b""));
    let mut late = vec![b'a'; 9 * 1024];
    late.push(0);
    assert!(
        !detectors::is_binary(&late),
        "only the first 8 KiB are probed"
    );
}

#[test]
fn empty_and_hostile_input() {
    let scanner = Scanner::new();
    assert!(scanner.scan(b"").is_empty());
    for text in [
        &b"password"[..],
        b"password =",
        b"password = \"unterminated",
        b"AKIA",
        b"eyJ",
        b"-----BEGIN",
        b"\xff\xfe password = \xff\xff",
    ] {
        assert!(scanner.scan(text).is_empty(), "{text:?}");
    }
}
