//! Why the git path could not carry out a request: one type from the HTTP handler down to
//! the pack indexer, the history walk and the upstream. The wire decoders
//! ([`pktline`](super::wire::pktline), [`request`](super::wire::request),
//! [`advertisement`](super::wire::advertisement)) keep their own precise errors (offsets,
//! the offending line), carried here as [`Error::Request`] and [`Error::Advertisement`].

use std::path::PathBuf;

use axum::http::StatusCode;
use gix::ObjectId;

use super::wire::advertisement::AdvertisementError;
use super::wire::request::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The request as it arrived.
    #[error("the push is larger than this repository accepts ({0} bytes)")]
    BodyTooLarge(u64),
    #[error("malformed push request: {0}")]
    Request(#[from] RequestError),
    #[error("malformed push request: {0}")]
    BadBody(String),
    #[error("the push request body ended early")]
    Truncated,
    #[error("the gateway could not store the push: {0}")]
    Io(#[from] std::io::Error),
    /// Refused, for a client that asked for no `report-status` (a `gateway::refusal`
    /// sentence).
    #[error("{0}")]
    Refused(String),

    // The pack: indexing it into the quarantine.
    #[error("cannot prepare the quarantine directory {path}")]
    Quarantine {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the repository at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: gix::Error,
    },
    #[error("the repository at {path} uses {kind} object ids; only sha1 is supported")]
    UnsupportedHash {
        path: PathBuf,
        kind: gix::hash::Kind,
    },
    #[error("the pack ends after {read} bytes, inside its 12-byte header")]
    TruncatedHeader { read: usize },
    #[error("the data does not start with a pack header (signature {signature:?})")]
    NotAPack { signature: [u8; 4] },
    #[error("pack version {0} is not supported (2 and 3 are)")]
    Version(u32),
    #[error("the pack announces {count} objects, more than the limit of {limit}")]
    TooManyObjects { count: u32, limit: u32 },
    #[error("the pack is larger than the limit of {limit} bytes")]
    PackTooLarge { limit: u64 },
    #[error("the pack holds an object larger than the limit of {limit} bytes")]
    ObjectTooLarge { limit: usize },
    #[error("the pack has a delta whose base is neither in the pack nor in the repository")]
    MissingBase(#[source] gix::Error),
    #[error("the pack is corrupt or truncated")]
    Corrupt(#[source] gix::Error),
    #[error("reading the pack or writing the quarantine failed")]
    PackIo(#[source] gix::Error),
    #[error("indexing the pack failed unexpectedly: {0}")]
    Panicked(String),

    // Inspection: the history walk, tree diffs and blob scans.
    #[error("{0:?} is not a 40-hex object id")]
    BadId(String),
    #[error("{what} {id} is in neither the pushed pack nor the repository")]
    Missing { what: &'static str, id: ObjectId },
    #[error("cannot read object {id}")]
    Read {
        id: ObjectId,
        #[source]
        source: gix::Error,
    },
    #[error("object {id} is not a well-formed {kind}")]
    MalformedObject {
        id: ObjectId,
        kind: &'static str,
        #[source]
        source: Option<gix::Error>,
    },
    #[error("cannot list the refs of {path}")]
    Refs {
        path: PathBuf,
        #[source]
        source: gix::Error,
    },
    #[error("walking the history below {tip} failed")]
    Walk {
        tip: ObjectId,
        #[source]
        source: gix::Error,
    },
    #[error("the push exceeds the limit of {limit} {what}")]
    PushTooLarge { what: &'static str, limit: usize },
    #[error("a blob scanner thread failed")]
    Scanner,

    // The upstream.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("the upstream is unreachable: {0}")]
    Http(String),
    #[error("the upstream answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("git {program} failed: {message}")]
    Git {
        program: &'static str,
        message: String,
    },
    #[error("the mirror could not be refreshed: {0}")]
    Mirror(String),
    #[error("the upstream's advertisement is unreadable: {0}")]
    Advertisement(#[from] AdvertisementError),

    // Set-up.
    #[error("bad protected-branch glob {glob:?}")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("HTTP client setup failed ({0})")]
    Client(String),
}

impl Error {
    /// The HTTP status for a push that cannot be answered with a report.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Request(_) | Error::BadBody(_) | Error::Truncated => StatusCode::BAD_REQUEST,
            Error::Refused(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the pack itself could not be read: git reports this as `unpack <reason>`.
    pub fn is_unpack(&self) -> bool {
        matches!(
            self,
            Error::Quarantine { .. }
                | Error::Open { .. }
                | Error::UnsupportedHash { .. }
                | Error::TruncatedHeader { .. }
                | Error::NotAPack { .. }
                | Error::Version(_)
                | Error::TooManyObjects { .. }
                | Error::PackTooLarge { .. }
                | Error::ObjectTooLarge { .. }
                | Error::MissingBase(_)
                | Error::Corrupt(_)
                | Error::PackIo(_)
                | Error::Panicked(_)
        )
    }
}
