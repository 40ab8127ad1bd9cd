//! Integration tests: one binary, a module per feature (issue #2: rule engine).

mod approvals;
mod approvals_page;
mod audit;
mod bypass_elsewhere;
mod bypass_sql;
mod bypass_writes;
mod cli;
mod config;
mod corpus;
mod demo;
mod detectors;
mod facts;
mod gateway_audit;
mod gateway_git;
mod gateway_pg;
mod gateway_rules;
mod git_inspect;
mod git_protocol;
mod identity;
mod language;
mod logs;
mod masking;
mod masking_corpus;
mod pg_harness;
mod real_clients;
mod support;
