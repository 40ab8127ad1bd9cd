use std::path::PathBuf;

/// Why a config file could not be used. Every variant names the file; syntax and key
/// errors also name the line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Error {
    pub(super) fn syntax(path: &std::path::Path, text: &str, e: &toml::de::Error) -> Error {
        let mut line = e.span().map_or(0, |s| {
            text[..s.start.min(text.len())].matches('\n').count() + 1
        });
        // toml's message repeats the source excerpt; keep its first sentence.
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        // For an unknown key toml points at its table; name the key's own line.
        if let Some(key) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            let at_key = |l: &&str| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            };
            if let Some((i, _)) = text
                .lines()
                .enumerate()
                .skip(line.saturating_sub(1))
                .find(|(_, l)| at_key(l))
            {
                line = i + 1;
            }
        }
        Error::Syntax {
            path: path.to_path_buf(),
            line,
            message,
        }
    }

    pub(super) fn invalid(path: &std::path::Path, key: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: message.into(),
        }
    }
}
