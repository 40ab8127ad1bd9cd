//! What the integration tests stand on: a private PostgreSQL per test
//! ([`pg`]) and a throwaway certificate authority ([`tls`]).

// Each feature module uses its own subset of these helpers.
#![allow(dead_code)]

pub mod gateway;
pub mod pg;
pub mod tls;
