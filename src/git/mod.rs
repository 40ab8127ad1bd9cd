//! The Git path (SPEC "Git path"): smart HTTP in front of a Git server.
//!
//! Bytes become facts here and decisions become bytes again; policy lives in `policy`.
//! [`pktline`] and [`receive`] read and write the receive-pack protocol, [`pack`] indexes
//! a pushed pack into a quarantine beside a read-only mirror, [`history`] walks what the
//! push adds and turns it into [`facts`].

pub mod facts;
pub mod history;
pub mod pack;
pub mod pktline;
pub mod receive;
