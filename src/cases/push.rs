//! Push scenarios: the git half of the corpus (`corpus/git/*.push`, format in
//! corpus/README.md).
//!
//! A scenario is a short bash script run in a fresh clone of a seeded upstream. It builds
//! commits with the real `git` and names the ref updates to push; the runner then does
//! what `git push` and the gateway do: a thin pack against the refs the upstream
//! advertises, indexed into a quarantine, inspected, judged by the rules. Every case gets
//! its own upstream, so cases can also change the upstream behind the agent's back.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use gix::ObjectId;

use super::{Case, Outcome};
use crate::git::inspect::facts::Protected;
use crate::git::inspect::history::{self, InspectOptions, Update};
use crate::git::inspect::pack::Quarantine;
use crate::policy::{Decision, RuleSet};

/// The scenarios of every `.push` file under `path`; the script is the case's body.
pub fn load(path: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for file in
        super::files_with_extension(path, "push").map_err(|e| format!("{}: {e}", path.display()))?
    {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        cases.extend(super::parse_cases(&file.display().to_string(), &text)?);
    }
    Ok(cases)
}

/// Runs scenarios against `rules`, with the default protected branches.
pub fn run(cases: Vec<Case>, rules: &RuleSet) -> Result<Vec<Outcome>, String> {
    if cases.is_empty() {
        return Ok(Vec::new());
    }
    let protected = Protected::default();
    let scratch = tempfile::Builder::new()
        .prefix("portcullis-scenarios-")
        .tempdir()
        .map_err(|e| format!("no temporary folder: {e}"))?;
    let seed = scratch.path().join("seed.git");
    seed_upstream(scratch.path(), &seed)?;
    // Cases are independent (each has its own upstream and clone), and mostly wait on
    // git processes: run a few at a time.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<CaseResult>>> =
        std::sync::Mutex::new(vec![None; cases.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { break };
                    let dir = scratch.path().join(format!("case-{i}"));
                    let result = run_one(case, &dir, &seed, rules, &protected);
                    let _ = std::fs::remove_dir_all(&dir);
                    results.lock().expect("no poisoned results")[i] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().expect("no poisoned results");
    let mut outcomes = Vec::with_capacity(cases.len());
    for (case, result) in cases.into_iter().zip(results) {
        let result = result.unwrap_or_else(|| Err("the case did not run".into()));
        outcomes.push(match result {
            Ok((decision, rule_ids)) => Outcome {
                case,
                decision,
                rule_ids,
                error: None,
            },
            Err(error) => Outcome {
                case,
                decision: Decision::Allow,
                rule_ids: Vec::new(),
                error: Some(error),
            },
        });
    }
    Ok(outcomes)
}

/// The upstream every scenario starts from: `main` (two commits), `feature` (one more),
/// `release/1.0` at main, and an annotated tag `v1` on main.
fn seed_upstream(root: &Path, bare: &Path) -> Result<(), String> {
    let work = root.join("seed-work");
    let bare_s = bare.to_str().ok_or("non-UTF-8 temp path")?;
    git(root, &["init", "-q", "--bare", "-b", "main", bare_s])?;
    git(
        root,
        &["init", "-q", "-b", "main", work.to_str().unwrap_or("")],
    )?;
    let write = |name: &str, text: &str| {
        std::fs::write(work.join(name), text).map_err(|e| format!("seed: {e}"))
    };
    write("README.md", "# app\n")?;
    git(&work, &["add", "."])?;
    git(&work, &["commit", "-qm", "first"])?;
    write("main.rs", "fn main() {}\n")?;
    git(&work, &["add", "."])?;
    git(&work, &["commit", "-qm", "second"])?;
    git(&work, &["tag", "-a", "v1", "-m", "release 1"])?;
    git(&work, &["branch", "release/1.0"])?;
    git(&work, &["checkout", "-qb", "feature"])?;
    write("feature.rs", "pub fn feature() {}\n")?;
    git(&work, &["add", "."])?;
    git(&work, &["commit", "-qm", "feature work"])?;
    git(
        &work,
        &["push", "-q", bare_s, "main", "feature", "release/1.0", "v1"],
    )?;
    Ok(())
}

/// A scenario's decision and deciding rules, or why it could not run.
type CaseResult = Result<(Decision, Vec<String>), String>;

fn run_one(
    case: &Case,
    dir: &Path,
    seed: &Path,
    rules: &RuleSet,
    protected: &Protected,
) -> CaseResult {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let upstream = dir.join("upstream.git");
    let work = dir.join("work");
    let (seed_s, up_s, work_s) = (
        seed.to_str().unwrap_or(""),
        upstream.to_str().unwrap_or(""),
        work.to_str().unwrap_or(""),
    );
    git(dir, &["clone", "-q", "--bare", seed_s, up_s])?;
    git(dir, &["clone", "-q", up_s, work_s])?;
    git(&work, &["fetch", "-q", "--tags", "origin"])?;
    let pushes = dir.join("pushes");
    let excludes = dir.join("excludes");
    let options = dir.join("options");
    let strays = dir.join("strays");
    let script = format!("{PRELUDE}\n{}\n", fill_placeholders(&case.sql));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&work)
        .envs(git_env())
        .env("UPSTREAM", &upstream)
        .env("PUSHES", &pushes)
        .env("EXCLUDES", &excludes)
        .env("OPTIONS", &options)
        .env("STRAYS", &strays)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the script failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let specs = std::fs::read_to_string(&pushes).map_err(|_| "the script pushes nothing")?;
    let zero = ObjectId::null(gix::hash::Kind::Sha1);
    let mut updates = Vec::new();
    for spec in specs.lines().filter(|l| !l.trim().is_empty()) {
        let spec = spec.trim().trim_start_matches('+');
        let (src, dst) = spec
            .split_once(':')
            .ok_or_else(|| format!("push {spec:?}: expected SRC:DST or :DST"))?;
        let name = if dst.starts_with("refs/") {
            dst.to_string()
        } else {
            format!("refs/heads/{dst}")
        };
        let new = if src.is_empty() {
            zero
        } else {
            oid(&rev_parse(&work, src)?)?
        };
        let old = match rev_parse(&upstream, &name) {
            Ok(id) => oid(&id)?,
            Err(_) => zero,
        };
        updates.push(Update::new(old, new, name));
    }
    // What `git push` sends: the new objects minus everything reachable from the refs the
    // upstream advertises that the client has, plus any `exclude` the script asked for.
    let quarantine = if updates.iter().any(|u| !u.new.is_null()) {
        let mut input = String::new();
        for u in updates.iter().filter(|u| !u.new.is_null()) {
            input.push_str(&format!("{}\n", u.new));
        }
        for tip in git(&upstream, &["for-each-ref", "--format=%(objectname)"])?.lines() {
            if git(&work, &["cat-file", "-e", tip]).is_ok() {
                input.push_str(&format!("^{tip}\n"));
            }
        }
        if let Ok(extra) = std::fs::read_to_string(&strays) {
            for rev in extra.lines().filter(|l| !l.is_empty()) {
                input.push_str(&format!("{}\n", rev_parse(&work, rev)?));
            }
        }
        if let Ok(extra) = std::fs::read_to_string(&excludes) {
            for rev in extra.lines().filter(|l| !l.is_empty()) {
                input.push_str(&format!("^{}\n", rev_parse(&work, rev)?));
            }
        }
        let pack = pack_objects(&work, &input)?;
        let qdir = dir.join("quarantine");
        std::fs::create_dir_all(&qdir).map_err(|e| e.to_string())?;
        match Quarantine::index(&mut &pack[..], &qdir, &upstream) {
            Ok(q) => Some(q),
            Err(e) => return Ok((Decision::Deny, vec![format!("(unpack error: {e})")])),
        }
    } else {
        None
    };
    let facts = match history::inspect(
        &upstream,
        quarantine.as_ref(),
        &updates,
        protected,
        &InspectOptions::default(),
    ) {
        Ok(f) => f,
        Err(e) => return Ok((Decision::Deny, vec![format!("(not inspectable: {e})")])),
    };
    let push_options: Vec<String> = std::fs::read_to_string(&options)
        .map(|o| o.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let facts: Vec<_> = facts
        .into_iter()
        .map(|(r, mut p)| {
            p.set_refs(updates.len());
            p.set_options(push_options.clone());
            (r, p)
        })
        .collect();
    let judged = crate::gateway::judge_refs(rules, &facts, &case.agent, &case.target);
    Ok((
        judged.decision,
        judged.deciding.iter().map(|r| r.to_string()).collect(),
    ))
}

/// Functions a scenario script can call.
const PRELUDE: &str = r#"set -euo pipefail
# commit PATH CONTENT [MESSAGE]: write CONTENT (printf %b escapes) to PATH and commit it.
commit() { mkdir -p "$(dirname "$1")"; printf '%b' "$2" > "$1"; git add -A; git commit -q -m "${3:-change $1}"; }
# upstream GIT-ARGS...: run git in the upstream (changes made behind the agent's back).
upstream() { git -C "$UPSTREAM" "$@"; }
# push [+]SRC:DST | :DST ...: the ref updates of the push (DST defaults to refs/heads/).
push() { for spec in "$@"; do echo "$spec" >> "$PUSHES"; done; }
# exclude REV: leave REV's history out of the pack, as a hand-made thin pack would.
exclude() { echo "$1" >> "$EXCLUDES"; }
# option KEY[=VALUE]: a push option (`git push -o`).
option() { echo "$1" >> "$OPTIONS"; }
# stray REV: put REV's history into the pack too, though no pushed ref reaches it.
stray() { echo "$1" >> "$STRAYS"; }
"#;

/// Secrets are written into scenarios as placeholders, so the corpus files hold none.
fn fill_placeholders(script: &str) -> String {
    script
        .replace("{AWS_KEY}", &format!("AKIA{}", "Q7".repeat(8)))
        .replace("{GITHUB_TOKEN}", &format!("ghp_{}", "aB3dE6gH9".repeat(4)))
        .replace(
            "{SLACK_WEBHOOK}",
            &format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                "ABCD1234", "EFGH5678", "aBcDeFgHiJkLmNoPqRsTuVwX"
            ),
        )
        .replace(
            "{STRIPE_KEY}",
            &format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc"),
        )
        .replace(
            "{PRIVATE_KEY}",
            &format!(
                "-----BEGIN {0}-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END {0}-----\\n",
                "RSA PRIVATE KEY"
            ),
        )
        .replace("{PASSWORD_VALUE}", "x9Kq2LmP7vR4tZ8wN3bY")
        .replace(
            "{GITLAB_TOKEN}",
            &format!("glpat-{}", "Ab1_Cd2-Ef3Gh4Ij5Kl6"),
        )
        .replace(
            "{GOOGLE_API_KEY}",
            &format!("AIza{}", "Sy-A1_b2C3".repeat(3) + "d4E5f"),
        )
}

fn git_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_AUTHOR_NAME", "Scenario Agent"),
        ("GIT_AUTHOR_EMAIL", "agent@example.com"),
        ("GIT_COMMITTER_NAME", "Scenario Agent"),
        ("GIT_COMMITTER_EMAIL", "agent@example.com"),
    ]
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(git_env())
        .env_remove("GIT_DIR")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn rev_parse(dir: &Path, rev: &str) -> Result<String, String> {
    git(dir, &["rev-parse", "--verify", "-q", rev])
}

fn oid(hex: &str) -> Result<ObjectId, String> {
    ObjectId::from_hex(hex.as_bytes()).map_err(|e| format!("{hex:?}: {e}"))
}

fn pack_objects(dir: &Path, input: &str) -> Result<Vec<u8>, String> {
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(["pack-objects", "--thin", "--stdout", "--revs", "-q"])
        .envs(git_env())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git pack-objects: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "git pack-objects: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}
