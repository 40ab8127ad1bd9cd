//! Portcullis: a Git- and SQL-aware gateway for AI coding agents.
//!
//! The data path: bytes enter at a protocol module (`pg`, `git`: later issues), become
//! facts ([`sql`]), are judged by [`policy`] (rules written by DBAs and repo admins), and
//! the decision goes back to the protocol module, which turns it into bytes. This crate is
//! one binary (`portcullis`, see [`cli`]) and this library.

pub mod admin;
pub mod audit;
pub mod cases;
pub mod cli;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod git;
pub mod identity;
pub mod mask;
pub mod pg;
pub mod policy;
pub mod sql;
