use std::fmt;

/// A place in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why a rule file or pack could not be loaded. Every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{at}: syntax error: {expected}")]
    Syntax { at: Location, expected: String },
    #[error("{at}: {message}")]
    Invalid { at: Location, message: String },
    #[error("{second}: rule {id} is already defined at {first}")]
    Duplicate {
        id: String,
        first: Location,
        second: Location,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<Error>),
}
