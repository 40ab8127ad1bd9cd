//! Integration tests: one binary, a module per feature (issue #2: rule engine).

mod cli;
mod corpus;
mod facts;
mod language;
