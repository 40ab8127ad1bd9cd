//! Runs every labelled case: the corpus files and the default pack's inline tests.

use std::path::Path;

use portcullis::cases::push as scenario;
use portcullis::cases::{self, Case};
use portcullis::policy::RuleSet;

fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))
}

#[test]
fn the_whole_corpus_gets_its_labelled_decisions() {
    let builtin = || RuleSet::builtin().expect("built-in packs parse");
    let mut all: Vec<Case> = cases::inline_cases(&builtin());
    let corpus = cases::load_cases(corpus_dir()).expect("corpus files parse");
    assert!(
        corpus.len() >= 400,
        "the SQL corpus has only {} cases",
        corpus.len()
    );
    all.extend(corpus);
    let outcomes = cases::run(all, builtin);
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| {
            format!(
                "{}: expected {} {}, got {} {:?}\n    {}",
                o.case.origin,
                o.case.expect.as_str(),
                o.case.rule.as_deref().unwrap_or(""),
                o.decision.as_str(),
                o.rule_ids,
                o.case.sql.replace('\n', "\n    ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}

#[test]
fn every_default_rule_has_corpus_cases() {
    let mut corpus = cases::load_cases(corpus_dir()).expect("corpus files parse");
    corpus.extend(scenario::load(corpus_dir()).expect("scenario files parse"));
    for rule in RuleSet::builtin().expect("built-in packs parse").rules() {
        // Mask rules judge result columns, not statements: their leak attempts run
        // through the gateway in tests/suite/masking.rs.
        if rule.id.starts_with("mask.") {
            continue;
        }
        // Only a blob over 1 GiB read from the mirror goes unscanned (issue 14): too
        // large for a scenario; tests/suite/git_inspect.rs lowers the cap instead.
        if rule.id == "git.unscanned" {
            continue;
        }
        let n = corpus
            .iter()
            .filter(|c| c.rule.as_deref() == Some(rule.id.as_str()))
            .count();
        // Push scenarios each build repositories with git, so they are fewer.
        let want = if rule.id.starts_with("git.") { 2 } else { 5 };
        assert!(n >= want, "{} has only {n} corpus cases", rule.id);
    }
}

#[test]
fn every_push_scenario_gets_its_labelled_decision() {
    let rules = RuleSet::builtin().expect("built-in packs parse");
    let scenarios = scenario::load(corpus_dir()).expect("scenario files parse");
    assert!(
        scenarios.len() >= 60,
        "only {} push scenarios",
        scenarios.len()
    );
    let outcomes = scenario::run(scenarios, &rules).expect("scenarios run");
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| {
            format!(
                "{}: expected {} {}, got {} {:?} {}\n    {}",
                o.case.origin,
                o.case.expect.as_str(),
                o.case.rule.as_deref().unwrap_or(""),
                o.decision.as_str(),
                o.rule_ids,
                o.error.as_deref().unwrap_or(""),
                o.case.sql.replace('\n', "\n    ")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}

#[test]
fn case_file_format_errors_are_located() {
    let e = cases::parse_cases("x.cases", "=== maybe\nSELECT 1\n").unwrap_err();
    assert_eq!(
        e,
        "x.cases:1: expected allow, deny or review, found \"maybe\""
    );
    let e = cases::parse_cases("x.cases", "=== deny sql.ddl\nSELECT 1\n=== allow\n\n").unwrap_err();
    assert_eq!(e, "x.cases:3: the case has no body under its header");
    let ok = cases::parse_cases(
        "x.cases",
        "intro\n=== deny sql.ddl groups=a,b | why\nCREATE TABLE t (id int);\n\n",
    )
    .unwrap();
    assert_eq!(ok[0].sql, "CREATE TABLE t (id int);");
    assert_eq!(ok[0].agent.groups, ["a", "b"]);
    assert_eq!(ok[0].note.as_deref(), Some("why"));
}
