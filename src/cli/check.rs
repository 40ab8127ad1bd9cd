//! `portcullis check sql`: judge a statement the way the gateway would.

use clap::{Args, Subcommand};

use super::{RuleOptions, decision_exit};
use crate::policy::value::{Agent, Target};
use crate::sql::{self, SqlFacts};

#[derive(Subcommand)]
pub enum CheckCommand {
    /// Judge a SQL string (every statement in it) and print the decision and facts.
    Sql(SqlArgs),
}

#[derive(Args)]
pub struct SqlArgs {
    /// The SQL text, exactly as a client would send it.
    sql: String,
    #[command(flatten)]
    rules: RuleOptions,
    /// The identity's subject (`agent.sub`).
    #[arg(long, default_value = "cli")]
    sub: String,
    /// The identity's groups, comma-separated (`agent.groups`).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// The target's name (`target.name`).
    #[arg(long, default_value = "")]
    target: String,
    /// Print every fact as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: CheckCommand) -> Result<u8, String> {
    let CheckCommand::Sql(args) = command;
    let rules = args.rules.load().map_err(|e| e.to_string())?;
    let agent = Agent {
        sub: args.sub,
        groups: args.groups,
        name: None,
    };
    let target = Target { name: args.target };
    let analysis = sql::analyze(&args.sql);
    let mut verdict = crate::policy::Verdict::default();
    let mut per_statement = Vec::new();
    for stmt in &analysis.statements {
        let v = rules.judge_sql(stmt, &agent, &target);
        per_statement.push(v.clone());
        verdict.merge(v);
    }
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
        let out = serde_json::json!({
            "decision": verdict.decision,
            "rules": verdict.rule_ids().collect::<Vec<_>>(),
            "reason": verdict.reason(),
            "monitored": verdict.monitored().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            "statements": statements,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
        );
    } else {
        println!("decision: {}", verdict.decision.as_str());
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
        if analysis.statements.is_empty() {
            println!("(no statements: an empty query)");
        }
        for (stmt, v) in analysis.statements.iter().zip(&per_statement) {
            print_statement(stmt, v.decision.as_str());
        }
    }
    Ok(decision_exit(verdict.decision))
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
    if !s.parsed {
        println!(
            "  parsed:         no ({})",
            s.parse_error.as_deref().unwrap_or("unreadable")
        );
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
