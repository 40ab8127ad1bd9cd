//! `portcullis check sql` and `check push`: judge a statement or a ref update the way the
//! gateway would.

use clap::{Args, Subcommand};

use super::{RuleOptions, decision_exit};
use crate::policy::value::{Agent, Target};
use crate::sql::{self, SqlFacts};

#[derive(Subcommand)]
pub enum CheckCommand {
    /// Judge a SQL string (every statement in it) and print the decision and facts.
    Sql(SqlArgs),
    /// Judge one ref update of a local repository and print the decision and facts.
    Push(PushArgs),
}

#[derive(Args)]
pub struct PushArgs {
    /// The repository (a work tree or a bare repository).
    #[arg(long, default_value = ".")]
    repo: std::path::PathBuf,
    /// The ref's old value: a revision, or `0` when the push creates the ref.
    old: String,
    /// The ref's new value: a revision, or `0` when the push deletes the ref.
    new: String,
    /// The full ref name, e.g. `refs/heads/main` (a bare `main` means a branch).
    #[arg(value_name = "REF")]
    reference: String,
    #[command(flatten)]
    rules: RuleOptions,
    /// Protected branch globs (`ref.protected`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "main,master,release/*")]
    protected: Vec<String>,
    /// Refs outside branches and tags the repository accepts (`[[git]] special_refs`),
    /// comma-separated full-name globs.
    #[arg(long = "special-refs", value_delimiter = ',')]
    special_refs: Vec<String>,
    /// Revisions the upstream already has besides `old` (their history is not new).
    #[arg(long = "known", value_name = "REV")]
    known: Vec<String>,
    /// A push option (`-o`), repeatable.
    #[arg(long = "push-option", short = 'o')]
    options: Vec<String>,
    #[command(flatten)]
    who: Who,
    /// Print every fact as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SqlArgs {
    /// The SQL text, exactly as a client would send it.
    sql: String,
    #[command(flatten)]
    rules: RuleOptions,
    /// A gateway config: the statement's results are also described by that gateway's
    /// upstream (nothing is run) and their masking plan printed, resolved through the
    /// live catalog as the gateway would.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Which `[[postgres]]` listener of `--config` (default: the first).
    #[arg(long = "listener", value_name = "NAME")]
    listener: Option<String>,
    #[command(flatten)]
    who: Who,
    /// Print every fact as JSON.
    #[arg(long)]
    json: bool,
}

/// Who asks and of what: the `agent.*` and `target.*` facts of a check.
#[derive(Args)]
struct Who {
    /// The identity's subject (`agent.sub`).
    #[arg(long, default_value = "cli")]
    sub: String,
    /// The identity's groups, comma-separated (`agent.groups`).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// The target's name (`target.name`).
    #[arg(long, default_value = "")]
    target: String,
}

impl Who {
    fn into_facts(self) -> (Agent, Target) {
        (
            Agent {
                sub: self.sub,
                groups: self.groups,
                name: None,
            },
            Target { name: self.target },
        )
    }
}

pub fn run(command: CheckCommand) -> Result<u8, String> {
    match command {
        CheckCommand::Sql(args) => sql(args),
        CheckCommand::Push(args) => push(args),
    }
}

fn push(args: PushArgs) -> Result<u8, String> {
    use crate::git::inspect::facts::Protected;
    use crate::git::inspect::history::{self, Hidden, InspectOptions, Update};

    let rules = args.rules.load().map_err(|e| e.to_string())?;
    let repo = gix::open(&args.repo)
        .map_err(|e| format!("{}: not a git repository ({e})", args.repo.display()))?;
    let zero = gix::ObjectId::null(gix::hash::Kind::Sha1);
    let resolve = |spec: &str| -> Result<gix::ObjectId, String> {
        if !spec.is_empty() && spec.chars().all(|c| c == '0') {
            return Ok(zero);
        }
        repo.rev_parse_single(spec)
            .map(|id| id.detach())
            .map_err(|e| format!("{spec:?} is not a revision of this repository ({e})"))
    };
    let old = resolve(&args.old)?;
    let new = resolve(&args.new)?;
    let name = if args.reference.starts_with("refs/") {
        args.reference.clone()
    } else {
        format!("refs/heads/{}", args.reference)
    };
    let mut hidden = Vec::new();
    if old != zero {
        hidden.push(old);
    }
    for k in &args.known {
        hidden.push(resolve(k)?);
    }
    let protected = Protected::new(&args.protected)
        .and_then(|p| p.allow_special(&args.special_refs))
        .map_err(|e| e.to_string())?;
    let options = InspectOptions {
        hidden: Hidden::Only(hidden),
        ..InspectOptions::default()
    };
    let updates = [Update::new(old, new, name)];
    let git_dir = repo.git_dir().to_path_buf();
    let mut facts = history::inspect(&git_dir, None, &updates, &protected, &options)
        .map_err(|e| e.to_string())?;
    let (ref_facts, push_facts) = facts.pop().ok_or("no facts for the ref update")?;
    let mut push_facts = push_facts;
    push_facts.set_options(args.options.clone());
    push_facts.set_refs(1);
    let (agent, target) = args.who.into_facts();
    let facts = [(ref_facts, push_facts)];
    let mut judged = crate::gateway::judge_refs(&rules, &facts, &agent, &target);
    let verdict = judged.verdicts.remove(0);
    let [(ref_facts, push_facts)] = facts;
    if args.json {
        let mut out = verdict_json(&verdict);
        out["ref"] = ref_facts.to_json();
        out["push"] = push_facts.to_json();
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
        return Ok(decision_exit(verdict.decision));
    }
    println!("decision: {}", verdict.decision.as_str());
    print_rules(&verdict);
    println!(
        "ref:      {} {} ({}{}{})",
        ref_facts.name,
        ref_facts.kind.as_str(),
        if ref_facts.force { "forced, " } else { "" },
        if ref_facts.protected {
            "protected, "
        } else {
            ""
        },
        format_args!(
            "{}..{}",
            crate::gateway::record::short(&ref_facts.old),
            crate::gateway::record::short(&ref_facts.new)
        ),
    );
    println!(
        "commits:  {} new; files: {}; largest blob: {} bytes",
        push_facts.commits.len(),
        push_facts.files.len(),
        push_facts.largest_blob
    );
    for line in push_facts.describe_findings() {
        println!("finding:  {line}");
    }
    Ok(decision_exit(verdict.decision))
}

/// The decision, its rules and reason, and the monitor-mode matches, as JSON.
fn verdict_json(verdict: &crate::policy::Verdict<'_>) -> serde_json::Value {
    serde_json::json!({
        "decision": verdict.decision,
        "rules": verdict.rule_ids().collect::<Vec<_>>(),
        "reason": verdict.reason(),
        "monitored": verdict.monitored().map(|r| r.id.as_str()).collect::<Vec<_>>(),
    })
}

fn print_rules(verdict: &crate::policy::Verdict<'_>) {
    for rule in verdict.deciding() {
        println!(
            "rule:     {} ({}): {}",
            rule.id,
            rule.action.keyword(),
            rule.action.message().unwrap_or("")
        );
    }
    for rule in verdict.monitored() {
        println!(
            "monitor:  {} would {}: {}",
            rule.id,
            rule.action.keyword(),
            rule.action.message().unwrap_or("")
        );
    }
}

fn sql(args: SqlArgs) -> Result<u8, String> {
    let rules = std::sync::Arc::new(args.rules.load().map_err(|e| e.to_string())?);
    let (agent, target) = args.who.into_facts();
    let analysis = sql::analyze(&args.sql);
    let mut verdict = crate::policy::Verdict::default();
    let mut per_statement = Vec::new();
    for stmt in &analysis.statements {
        let v = crate::gateway::judge_statement(&rules, stmt, &agent, &target);
        per_statement.push(v.clone());
        verdict.merge(v);
    }
    let plan = match &args.config {
        Some(path) => Some(masking_plan(
            path,
            args.listener.as_deref(),
            &rules,
            &agent,
            &target,
            &args.sql,
            &analysis,
        )?),
        None => None,
    };
    if args.json {
        let statements: Vec<serde_json::Value> = analysis
            .statements
            .iter()
            .zip(&per_statement)
            .map(|(s, v)| {
                serde_json::json!({
                    "facts": s,
                    "decision": v.decision,
                    "rules": v.rule_ids().collect::<Vec<_>>(),
                    "monitored": v.monitored().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut out = verdict_json(&verdict);
        out["statements"] = statements.into();
        if let Some(plan) = &plan {
            out["masking"] = plan
                .columns
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "column": c.column.name,
                        "type": c.column.type_name,
                        "sources": c.column.sources,
                        "derived": c.column.derived,
                        "opaque": c.column.opaque,
                        "masked_by": c.whole.as_ref().map(|(_, rule)| rule.to_string()),
                        "strategy": c.whole.as_ref().map(|(s, _)| s),
                        "read_for_content": c.read_for_content(),
                    })
                })
                .collect::<Vec<_>>()
                .into();
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        println!("decision: {}", verdict.decision.as_str());
        print_rules(&verdict);
        if analysis.statements.is_empty() {
            println!("(no statements: an empty query)");
        }
        for (stmt, v) in analysis.statements.iter().zip(&per_statement) {
            print_statement(stmt, v.decision.as_str());
        }
        if let Some(plan) = &plan {
            print_plan(plan);
        }
    }
    Ok(decision_exit(verdict.decision))
}

/// The masking plan of `sql`'s results, described by the upstream of the config's
/// listener.
fn masking_plan(
    path: &std::path::Path,
    listener: Option<&str>,
    rules: &std::sync::Arc<crate::policy::RuleSet>,
    agent: &Agent,
    target: &Target,
    text: &str,
    analysis: &sql::Analysis,
) -> Result<crate::gateway::mask::Plan, String> {
    let config = crate::config::Config::load(path).map_err(|e| e.to_string())?;
    let pg = match listener {
        Some(name) => config.postgres.iter().find(|p| p.name == name),
        None => config.postgres.first(),
    }
    .ok_or_else(|| format!("{}: no such [[postgres]] listener", path.display()))?;
    let reads = sql::Reads::of(analysis, &mut sql::Named::default(), true);
    let masker = crate::gateway::mask::Masker::new(
        rules.clone(),
        agent.clone(),
        Target {
            name: if target.name.is_empty() {
                pg.name.clone()
            } else {
                target.name.clone()
            },
        },
        crate::mask::strategy::HashKey::new(Vec::new()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime
        .block_on(crate::pg::masking_plan(pg, &masker, text, &reads))
        .map_err(|e| format!("masking plan: {e}"))
}

fn print_plan(plan: &crate::gateway::mask::Plan) {
    println!("masking plan (described by the upstream, nothing run):");
    for c in &plan.columns {
        let sources = if c.column.opaque {
            format!(
                "opaque: any of {} columns of its tables",
                c.column.sources.len()
            )
        } else if c.column.sources.is_empty() {
            "-".to_string()
        } else if c.column.derived {
            format!("derived from {}", c.column.sources.join(", "))
        } else {
            c.column.sources.join(", ")
        };
        let what = match &c.whole {
            Some((_, rule)) if c.masked_as_null() => format!("masked by {rule} (null: not text)"),
            Some((strategy, rule)) => format!("masked by {rule} ({})", strategy_word(*strategy)),
            None if c.read_for_content() => "read for content".to_string(),
            None => "as it is".to_string(),
        };
        println!(
            "  {:<20} {:<12} {:<40} {what}",
            c.column.name, c.column.type_name, sources
        );
    }
}

fn strategy_word(s: crate::policy::rule::MaskStrategy) -> &'static str {
    use crate::policy::rule::MaskStrategy as M;
    match s {
        M::Redact => "redact",
        M::Null => "null",
        M::Hash => "hash",
        M::Partial => "partial",
        M::Email => "email",
    }
}

fn print_statement(s: &SqlFacts, decision: &str) {
    println!(
        "statement {}/{}: {} -> {decision}",
        s.index, s.statement_count, s.kind
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    if s.kinds.len() > 1 {
        println!("  kinds:          {}", s.kinds.join(", "));
    }
    if s.read_by_postgres {
        println!(
            "  parsed:         by PostgreSQL's grammar (sqlparser: {})",
            s.parse_error.as_deref().unwrap_or("unreadable")
        );
    } else if !s.parsed {
        println!(
            "  parsed:         no ({})",
            s.parse_error.as_deref().unwrap_or("unreadable")
        );
    }
    if let Some(d) = &s.disagreement {
        println!("  disagreement:   {d}");
    }
    println!("  tables read:    {}", list(&s.tables_read));
    println!("  tables written: {}", list(&s.tables_written));
    for w in &s.writes {
        println!(
            "  {} {}: where={} always_true={}",
            w.kind, w.table, w.has_where, w.where_always_true
        );
    }
    if !s.functions.is_empty() {
        println!("  functions:      {}", s.functions.join(", "));
    }
    if let Some(d) = &s.drop_kind {
        println!("  drops:          {d}");
    }
    for set in &s.sets {
        println!(
            "  sets:           {} = {}",
            set.name,
            set.value.as_deref().unwrap_or("(not a constant)")
        );
    }
    println!("  fingerprint:    {}  {}", s.fingerprint, s.normalized);
}
