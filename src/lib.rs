//! Portcullis: a Git- and SQL-aware gateway for AI coding agents.
//!
//! The data path: bytes enter at a protocol module ([`pg`], [`git`]) and become facts
//! ([`sql`], [`git::inspect`]); [`gateway`] judges them with [`policy`] (rules written by
//! DBAs and repo admins), decides what the verdict means and records it in [`audit`]; the
//! protocol module turns the outcome back into bytes. This crate is one binary
//! (`portcullis`, see [`cli`]) and this library; `docs/architecture.md` draws the map.

pub mod admin;
pub mod audit;
pub mod cases;
pub mod cli;
pub mod config;
pub mod demo;
// The fuzz targets' bodies (fuzz/): a test harness, public only so the fuzz crate and
// the regression tests reach it.
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod git;
pub mod identity;
pub mod mask;
pub mod pg;
pub mod policy;
pub mod sql;
