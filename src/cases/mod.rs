//! Labelled cases: the `test` lines under rules and the `corpus/**/*.cases` files (format
//! in corpus/README.md). `portcullis rules test` and `cargo test` run the same code.

pub mod push;

use std::path::{Path, PathBuf};

use crate::policy::value::{Agent, Target};
use crate::policy::{Decision, RuleSet, UNPARSED_RULE};
use crate::sql;

/// One labelled statement and what the rules must decide for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `file:line` where the case is written.
    pub origin: String,
    pub expect: Decision,
    /// For deny/review: a rule id that must be among the deciding rules.
    pub rule: Option<String>,
    pub agent: Agent,
    pub target: Target,
    /// `server.unparsed` for this case (deny when not given).
    pub unparsed: Decision,
    /// `estimate=ROWS/TABLE` or `estimate=failed`: what the planner says of its writes,
    /// as the gateway would ask it.
    pub estimate: Option<(&'static str, i64, i64)>,
    pub note: Option<String>,
    pub sql: String,
}

/// What the rules decided for a case.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub case: Case,
    pub decision: Decision,
    pub rule_ids: Vec<String>,
    /// Why the case could not be run at all (a push scenario whose script failed).
    pub error: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.decision == self.case.expect
            && self
                .case
                .rule
                .as_ref()
                .is_none_or(|id| self.rule_ids.iter().any(|r| r == id))
    }
}

/// Reads a `.cases` file (or a `.push` scenario file: the body is then a script).
pub fn parse_cases(file: &str, text: &str) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    let mut current: Option<(Case, Vec<&str>)> = None;
    for (n, line) in text.lines().enumerate() {
        let Some(header) = line.strip_prefix("===") else {
            if let Some((_, body)) = current.as_mut() {
                body.push(line);
            }
            continue;
        };
        if let Some(done) = current.take() {
            cases.push(finish(done)?);
        }
        let origin = format!("{file}:{}", n + 1);
        current = Some((parse_header(&origin, header)?, Vec::new()));
    }
    if let Some(done) = current.take() {
        cases.push(finish(done)?);
    }
    Ok(cases)
}

fn finish((mut case, body): (Case, Vec<&str>)) -> Result<Case, String> {
    case.sql = body.join("\n").trim().to_string();
    if case.sql.is_empty() {
        return Err(format!(
            "{}: the case has no body under its header",
            case.origin
        ));
    }
    Ok(case)
}

fn parse_header(origin: &str, header: &str) -> Result<Case, String> {
    let (fields, note) = match header.split_once('|') {
        Some((f, n)) => (f, Some(n.trim().to_string()).filter(|n| !n.is_empty())),
        None => (header, None),
    };
    let mut words = fields.split_whitespace();
    let word = words
        .next()
        .ok_or_else(|| format!("{origin}: expected a decision after ==="))?;
    let expect = Decision::parse(word)
        .ok_or_else(|| format!("{origin}: expected allow, deny or review, found {word:?}"))?;
    let mut case = Case {
        origin: origin.to_string(),
        expect,
        rule: None,
        agent: Agent {
            sub: "corpus".into(),
            ..Agent::default()
        },
        target: Target {
            name: "corpus".into(),
        },
        unparsed: Decision::Deny,
        estimate: None,
        note,
        sql: String::new(),
    };
    for w in words {
        match w.split_once('=') {
            Some(("sub", v)) => case.agent.sub = v.to_string(),
            Some(("groups", v)) => {
                case.agent.groups = v
                    .split(',')
                    .filter(|g| !g.is_empty())
                    .map(String::from)
                    .collect()
            }
            Some(("target", v)) => case.target.name = v.to_string(),
            Some(("unparsed", v)) => {
                case.unparsed = match v {
                    "deny" => Decision::Deny,
                    "review" => Decision::Review,
                    _ => {
                        return Err(format!(
                            "{origin}: unparsed= takes deny or review, found {v:?}"
                        ));
                    }
                }
            }
            Some(("estimate", "failed")) => case.estimate = Some(("failed", 0, 0)),
            Some(("estimate", v)) => {
                let parsed = v
                    .split_once('/')
                    .and_then(|(r, t)| Some((r.parse().ok()?, t.parse().ok()?)));
                let Some((rows, table)) = parsed else {
                    return Err(format!(
                        "{origin}: estimate= takes ROWS/TABLE or failed, found {v:?}"
                    ));
                };
                case.estimate = Some(("ok", rows, table));
            }
            Some((k, _)) => {
                return Err(format!(
                    "{origin}: unknown option {k:?} (sub, groups, target, unparsed, estimate)"
                ));
            }
            None if case.rule.is_none() => case.rule = Some(w.to_string()),
            None => return Err(format!("{origin}: unexpected {w:?} in the header")),
        }
    }
    if expect == Decision::Allow && case.rule.is_some() {
        return Err(format!("{origin}: an allow case names no rule"));
    }
    Ok(case)
}

/// Every `.cases` file under `path` (or `path` itself), in name order.
pub fn case_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    files_with_extension(path, "cases")
}

/// Every file named `*.<ext>` under `path` (or `path` itself), in name order.
pub fn files_with_extension(path: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                out.extend(files_with_extension(&p, ext)?);
            } else if p.extension().is_some_and(|e| e == ext) {
                out.push(p);
            }
        }
    } else if path.extension().is_some_and(|e| e == ext) {
        out.push(path.to_path_buf());
    }
    Ok(out)
}

pub fn load_cases(path: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for file in case_files(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        cases.extend(parse_cases(&file.display().to_string(), &text)?);
    }
    Ok(cases)
}

/// The inline `test` lines of every rule in `rules`.
pub fn inline_cases(rules: &RuleSet) -> Vec<Case> {
    let mut cases = Vec::new();
    for rule in rules.rules() {
        for t in &rule.tests {
            let agent = Agent {
                sub: t.sub.clone().unwrap_or_else(|| "rule-test".into()),
                groups: t.groups.clone().unwrap_or_default(),
                name: None,
            };
            cases.push(Case {
                origin: format!("{}:{}", rule.origin.file, t.line),
                expect: t.expect,
                rule: (t.expect != Decision::Allow).then(|| rule.id.clone()),
                agent,
                target: Target {
                    name: t.target.clone().unwrap_or_default(),
                },
                unparsed: Decision::Deny,
                estimate: None,
                note: None,
                sql: t.input.clone(),
            });
        }
    }
    cases
}

/// Runs cases against rule sets built by `load` (called once per `server.unparsed`
/// setting the cases use).
pub fn run(cases: Vec<Case>, load: impl Fn() -> RuleSet) -> Vec<Outcome> {
    let strict = load();
    let mut lenient: Option<RuleSet> = None;
    cases
        .into_iter()
        .map(|case| {
            let rules = match case.unparsed {
                Decision::Review => lenient.get_or_insert_with(|| {
                    let mut r = load();
                    r.set_decision(UNPARSED_RULE, Decision::Review);
                    r
                }),
                _ => &strict,
            };
            let mut analysis = sql::analyze(&case.sql);
            if let Some((how, rows, table)) = case.estimate {
                for s in analysis
                    .statements
                    .iter_mut()
                    .filter(|s| s.wants_estimate())
                {
                    match how {
                        "ok" => s.estimated(rows, table),
                        _ => s.estimate = "failed",
                    }
                }
            }
            let verdict =
                crate::gateway::judge_statements(rules, &analysis, &case.agent, &case.target);
            let rule_ids = verdict.rule_ids().map(String::from).collect();
            Outcome {
                decision: verdict.decision,
                rule_ids,
                case,
                error: None,
            }
        })
        .collect()
}
