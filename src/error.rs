//! The crate's error type: every failure names its file, field or line and the rule broken.

use std::path::{Path, PathBuf};

/// Any error lpc-bench reports to a user. The binary prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A bad record in a data file: names the file and the 1-based line.
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Bad command-line usage or any other user-facing condition.
    #[error("{0}")]
    Msg(String),
}

/// Shorthand result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    /// A plain message.
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }
}
