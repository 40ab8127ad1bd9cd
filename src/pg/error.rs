use super::messages::{self, Severity};

/// What ends or refuses a client session. Each variant knows what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("message {tag:?} of {len} bytes exceeds the limit of {max}")]
    TooLarge { tag: char, len: usize, max: usize },
    /// A sentence from `gateway::refusal`, and the SQLSTATE to send it with.
    #[error("{0}")]
    Auth(String, &'static str),
    /// A sentence from `gateway::refusal`.
    #[error("{0}")]
    Refused(String),
    #[error("upstream: {0}")]
    Upstream(String),
    /// The upstream refused the gateway's login with this SQLSTATE and message.
    #[error("upstream refused the login: {code}: {message}")]
    UpstreamRefused { code: String, message: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The ErrorResponse the client gets before the connection closes, if any (an I/O
    /// error means the client is gone).
    pub fn response(&self) -> Option<bytes::Bytes> {
        let (code, message) = match self {
            Error::Protocol(m) => ("08P01", format!("portcullis: protocol violation: {m}")),
            Error::TooLarge { .. } => ("54000", format!("portcullis: {self}")),
            Error::Auth(m, code) => (*code, m.clone()),
            Error::Refused(m) => ("42501", m.clone()),
            // Upstream trouble is reported without the gateway's internals.
            Error::Upstream(_) => (
                "08006",
                "portcullis: the database is not reachable through the gateway".to_string(),
            ),
            // Load and availability refusals ("too many clients already", a server
            // starting or shutting down) tell the client what to do, so they pass; the
            // rest is about the gateway's own credentials and stays inside.
            Error::UpstreamRefused { code, message }
                if code.starts_with("53") || code.starts_with("57P") =>
            {
                (
                    code.as_str(),
                    format!("portcullis: the database refused the connection: {message}"),
                )
            }
            Error::UpstreamRefused { .. } => (
                "08006",
                "portcullis: the database is not reachable through the gateway".to_string(),
            ),
            Error::Tls(m) => ("08P01", format!("portcullis: TLS: {m}")),
            Error::Io(_) => return None,
        };
        Some(messages::error_response(Severity::Fatal, code, &message))
    }
}
