//! The crate's error type: every failure names its file, field or line and the rule broken.

use std::path::{Path, PathBuf};

/// Any error lpc-bench reports to a user. The binary prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario that does not load (its error names the file, field and rule).
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// An I/O failure on a file or folder.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// A bad record in a data file: names the file and the 1-based line.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The data file.
        path: PathBuf,
        /// 1-based line of the record (0 when unknown).
        line: usize,
        /// What is wrong with it.
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
