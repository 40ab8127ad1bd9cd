//! `portcullis rules test` and `portcullis rules show`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{RuleOptions, exit};
use crate::cases::{self, Outcome};
use crate::policy::{BUILTIN_PACKS, RuleSet};

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Run labelled cases: the `test` lines of rule files, `*.cases` corpus files (SQL)
    /// and `*.push` scenario files (pushes built with the real git).
    ///
    /// A PATH holding `.rules` files makes them the rules under test; cases are judged by
    /// the rules in force (`--rules`, else the built-in packs). Without a PATH: the
    /// built-in packs' own tests and `./corpus` when it exists.
    Test(TestArgs),
    /// Print the rules in force (the built-in packs when no path is given).
    Show {
        /// Rule files or directories.
        paths: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct TestArgs {
    paths: Vec<PathBuf>,
    #[command(flatten)]
    rules: RuleOptions,
    /// Print only the failing cases (and the summary).
    #[arg(long)]
    failures: bool,
}

pub fn run(command: RulesCommand) -> Result<u8, String> {
    match command {
        RulesCommand::Test(args) => test(args),
        RulesCommand::Show { paths } => show(&paths),
    }
}

fn has_rule_files(path: &Path) -> bool {
    if path.is_dir() {
        std::fs::read_dir(path)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "rules"))
            })
            .unwrap_or(false)
    } else {
        path.extension().is_some_and(|e| e == "rules")
    }
}

fn test(args: TestArgs) -> Result<u8, String> {
    let mut paths = args.paths.clone();
    if paths.is_empty() && Path::new("corpus").is_dir() {
        paths.push(PathBuf::from("corpus"));
    }
    for p in &paths {
        if !p.exists() {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    let mut options = args.rules.clone();
    let rule_paths: Vec<PathBuf> = paths
        .iter()
        .filter(|p| has_rule_files(p))
        .cloned()
        .collect();
    if options.rules.is_empty() && !rule_paths.is_empty() {
        options.rules = rule_paths;
    }
    let rules = options.load().map_err(|e| e.to_string())?;
    let mut all = cases::inline_cases(&rules);
    let mut scenarios = Vec::new();
    for p in &paths {
        all.extend(cases::load_cases(p)?);
        scenarios.extend(crate::cases::push::load(p)?);
    }
    if all.is_empty() && scenarios.is_empty() {
        return Err("no test cases found".into());
    }
    let load = || options.load().expect("the same rules loaded a moment ago");
    let mut outcomes = cases::run(all, load);
    outcomes.extend(crate::cases::push::run(scenarios, &rules)?);
    let failed = print_table(&outcomes, args.failures);
    Ok(if failed == 0 { 0 } else { exit::ERROR })
}

/// Prints one row per case and the closing `N passed, M failed` line; returns failures.
pub fn print_table(outcomes: &[Outcome], failures_only: bool) -> usize {
    let mut failed = 0;
    for o in outcomes {
        let pass = o.passed();
        if !pass {
            failed += 1;
        }
        if failures_only && pass {
            continue;
        }
        let expected = match &o.case.rule {
            Some(id) => format!("{} {id}", o.case.expect.as_str()),
            None => o.case.expect.as_str().to_string(),
        };
        let got = if o.rule_ids.is_empty() {
            o.decision.as_str().to_string()
        } else {
            format!("{} {}", o.decision.as_str(), o.rule_ids.join(","))
        };
        let sql: String = o.case.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let sql = if sql.chars().count() > 70 {
            format!("{}...", sql.chars().take(67).collect::<String>())
        } else {
            sql
        };
        if pass {
            println!("PASS  {:<40} {:<32} {sql}", o.case.origin, expected);
        } else if let Some(error) = &o.error {
            println!("FAIL  {:<40} could not run: {error}", o.case.origin);
        } else {
            println!(
                "FAIL  {:<40} expected {expected}, got {got}: {sql}",
                o.case.origin
            );
        }
    }
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    failed
}

fn show(paths: &[PathBuf]) -> Result<u8, String> {
    if paths.is_empty() {
        for (name, text) in BUILTIN_PACKS {
            println!("# built-in pack {name}\n{text}");
        }
        RuleSet::builtin().map_err(|e| e.to_string())?;
        return Ok(0);
    }
    let set = RuleSet::load(paths).map_err(|e| e.to_string())?;
    for rule in set.rules() {
        println!(
            "# {}:{}\n{}\n",
            rule.origin.file, rule.origin.line, rule.source
        );
    }
    Ok(0)
}
