//! `portcullis.toml`: strict parsing, validation, secrets from the environment.

use std::path::Path;

use portcullis::config::Unparsed;
use portcullis::config::{Config, JwksSource, SslMode};

const GOOD: &str = r#"
[server]
admin_listen = "127.0.0.1:8080"
rules        = ["rules"]
unparsed     = "review"

[identity]
issuer    = "https://idp.example.com/"
audience  = "portcullis"
jwks_path = "keys/jwks.json"

[audit]
path = "portcullis-audit.duckdb"
result_rows = 100

[[postgres]]
name                  = "app"
listen                = "127.0.0.1:6432"
upstream              = "postgres://portcullis@127.0.0.1:5432/app"
upstream_password_env = "APP_DB_PASSWORD"
tls_cert = "certs/gw.crt"
tls_key  = "certs/gw.key"
"#;

fn env(name: &str) -> Option<String> {
    (name == "APP_DB_PASSWORD").then(|| "s3cret".to_string())
}

#[test]
fn the_spec_example_loads_with_paths_resolved_against_the_file() {
    let c = Config::parse(Path::new("/etc/portcullis/portcullis.toml"), GOOD, &env)
        .expect("valid config");
    assert_eq!(c.server.unparsed, Unparsed::Review);
    assert_eq!(c.server.rules, [Path::new("/etc/portcullis/rules")]);
    let id = c.identity.expect("identity");
    assert_eq!(
        id.jwks,
        JwksSource::File("/etc/portcullis/keys/jwks.json".into())
    );
    let pg = &c.postgres[0];
    assert_eq!(
        (
            pg.upstream.user.as_str(),
            pg.upstream.port,
            pg.upstream.database.as_str()
        ),
        ("portcullis", 5432, "app")
    );
    assert_eq!(pg.upstream.sslmode, SslMode::Prefer);
    assert_eq!(pg.upstream_password.as_deref(), Some("s3cret"));
    assert_eq!(
        pg.tls.as_ref().expect("tls").cert,
        Path::new("/etc/portcullis/certs/gw.crt")
    );
}

#[test]
fn unknown_keys_name_the_key_the_file_and_the_line() {
    let bad = GOOD.replace(
        "tls_key  = \"certs/gw.key\"",
        "tls_key  = \"certs/gw.key\"\ntls_keyy = \"x\"",
    );
    let e = Config::parse(Path::new("p.toml"), &bad, &env)
        .expect_err("unknown key")
        .to_string();
    assert!(e.starts_with("p.toml:23:"), "{e}");
    assert!(e.contains("tls_keyy"), "{e}");
    let e = Config::parse(Path::new("p.toml"), "[srever]\nx = 1\n", &env)
        .expect_err("unknown table")
        .to_string();
    assert!(e.starts_with("p.toml:1:") && e.contains("srever"), "{e}");
}

#[test]
fn secrets_come_from_the_environment_only() {
    let e = Config::parse(Path::new("p.toml"), GOOD, &|_| None)
        .expect_err("unset env")
        .to_string();
    assert!(e.contains("APP_DB_PASSWORD is not set"), "{e}");
    let inline = GOOD.replace("postgres://portcullis@", "postgres://portcullis:hunter2@");
    let e = Config::parse(Path::new("p.toml"), &inline, &env)
        .expect_err("password in URL")
        .to_string();
    assert!(e.contains("must not contain a password"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn invalid_values_are_named() {
    for (from, to, expect) in [
        (
            "unparsed     = \"review\"",
            "unparsed     = \"maybe\"",
            "server.unparsed",
        ),
        (
            "listen                = \"127.0.0.1:6432\"",
            "listen = \"nowhere\"",
            "postgres[0].listen",
        ),
        ("/app\"", "/app?sslmode=verify-full\"", "sslrootcert"),
        (
            "result_rows = 100",
            "result_rows = 100\nmemory_limit = \"8MB\"",
            "audit.memory_limit",
        ),
        (
            "tls_key  = \"certs/gw.key\"",
            "tls_key  = \"certs/gw.key\"\nstartup_timeout = \"soon\"",
            "postgres[0].startup_timeout",
        ),
    ] {
        let bad = GOOD.replace(from, to);
        let e = Config::parse(Path::new("p.toml"), &bad, &env)
            .expect_err(expect)
            .to_string();
        assert!(e.contains(expect), "{e}");
    }
}

#[test]
fn git_entries_are_validated() {
    let base = "[server]\ngit_listen = \"127.0.0.1:8081\"\n\n[identity]\nissuer = \"i\"\naudience = \"a\"\njwks_path = \"j.json\"\n";
    let parse = |git: &str| {
        Config::parse(
            Path::new("/srv/p/portcullis.toml"),
            &format!("{base}\n[[git]]\n{git}"),
            &|n: &str| (n == "GIT_TOKEN").then(|| "t".to_string()),
        )
    };
    let c = parse("name = \"app\"\nupstream = \"repos/app.git\"\napply = \"direct\"\n").unwrap();
    let g = &c.git[0];
    assert_eq!(
        g.upstream,
        portcullis::config::GitUpstream::Local("/srv/p/repos/app.git".into())
    );
    assert_eq!(g.protected, vec!["main", "master", "release/*"]);
    assert_eq!(g.apply, portcullis::config::GitApply::Direct);
    let c = parse("name = \"svc\"\nupstream = \"https://git.example.com/o/svc.git\"\nupstream_token_env = \"GIT_TOKEN\"\n").unwrap();
    assert_eq!(c.git[0].upstream_token.as_deref(), Some("t"));
    assert!(c.git[0].mirror.ends_with(".portcullis/mirrors/svc.git"));
    for (bad, says) in [
        (
            "name = \"s\"\nupstream = \"https://h/s.git\"\napply = \"direct\"\n",
            "local upstream",
        ),
        (
            "name = \"s\"\nupstream = \"https://user:pw@h/s.git\"\n",
            "credentials in the URL",
        ),
        ("name = \"s\"\nupstream = \"ssh://h/s.git\"\n", "http(s)"),
        ("name = \"../x\"\nupstream = \"a.git\"\n", "letters"),
        (
            "name = \"s\"\nupstream = \"a.git\"\nprotected = [\"[\"]\n",
            "bad glob",
        ),
        (
            "name = \"s\"\nupstream = \"https://h/s.git\"\nupstream_token_env = \"NOPE\"\n",
            "NOPE",
        ),
        ("name = \"s\"\nupstream = \"a.git\"\nfoo = 1\n", "foo"),
    ] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}
