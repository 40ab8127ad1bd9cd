//! The Git path (SPEC "Git path"): smart HTTP in front of a Git server.
//!
//! Bytes become facts here and outcomes become bytes again; what a decision means is the
//! `gateway` seam's. [`wire`] reads and writes the receive-pack formats without I/O;
//! [`push`] takes one push through its steps (intake → inspect → judge → apply →
//! report); [`inspect`] indexes a pushed pack into a quarantine beside a read-only mirror,
//! walks what the push adds and turns it into facts; [`http`] serves smart HTTP and
//! [`upstream`] reaches the real repository. Everything fails with one [`Error`].

pub use error::Error;
pub use http::GitGateway;

mod error;
pub mod http;
pub mod inspect;
pub mod push;
pub mod upstream;
pub mod wire;
