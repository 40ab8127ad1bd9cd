//! The Git path (SPEC "Git path"): smart HTTP in front of a Git server.
//!
//! Bytes become facts here and decisions become bytes again; policy lives in `policy`.
//! [`pktline`] and [`receive`] read and write the receive-pack protocol, [`pack`] indexes
//! a pushed pack into a quarantine beside a read-only mirror, [`history`] walks what the
//! push adds and turns it into [`facts`]. [`http`] serves smart HTTP, [`push`] takes one
//! push from body to verdict, and [`upstream`] reaches the real repository.

pub use http::GitGateway;

pub mod facts;
pub mod history;
pub mod http;
mod intake;
pub mod pack;
pub mod pktline;
pub mod push;
pub mod receive;
pub mod scenario;
pub mod upstream;
