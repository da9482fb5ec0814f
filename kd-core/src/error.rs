use std::path::PathBuf;

/// Errors a user can act on. Every message says what was wrong and, where
/// there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shapes, devices, dtypes).
    #[error("{}", candle_message(.0))]
    Candle(#[from] candle_core::Error),

    // The cause is part of the message, not a `source`, so that error chains
    // do not print it twice.
    #[error("cannot {action} {}: {cause}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A file exists but its content is not what it claims to be.
    #[error("{}: {message}", .path.display())]
    BadFile { path: PathBuf, message: String },

    /// A file kd wrote itself (a cache) no longer holds what it wrote.
    #[error("{}: {message}", .path.display())]
    Corrupt { path: PathBuf, message: String },

    /// A weights file does not fit the architecture it is loaded into.
    #[error("{} does not fit architecture `{arch}`:\n{}\nCheck the architecture and input shape it is loaded as, or that the file holds this network's state_dict.", .path.display(), .mismatches.join("\n"))]
    WeightsMismatch {
        path: PathBuf,
        arch: String,
        mismatches: Vec<String>,
    },

    /// A weights file without kd's metadata (a plain PyTorch `state_dict`) was
    /// loaded without saying which architecture it holds.
    #[error("{} carries no kd metadata (architecture, input shape): name the architecture (and the input shape C,H,W if not the data set's)", .path.display())]
    NoMetadata { path: PathBuf },

    /// A method that distils was given no teacher.
    #[error("method `{method}` distils from a teacher, and none was given")]
    MissingTeacher { method: String },

    /// A network lacks a tap (named intermediate tensor) that something reads.
    #[error("{} reads the tap `{tap}`, which the network does not provide (it has: {})", .method.as_ref().map_or("a loss".to_string(), |m| format!("method `{m}`")), if .available.is_empty() { "only logits".to_string() } else { .available.join(", ") })]
    MissingTap {
        /// The method that reads it, once known (see [`Error::in_method`]).
        method: Option<String>,
        tap: String,
        available: Vec<String>,
    },

    /// A method, architecture, recipe or data set that is not registered; the
    /// message lists the known ones and the nearest name.
    #[error("{message}")]
    Unknown {
        kind: String,
        name: String,
        message: String,
    },

    /// Settings that cannot work (absurd hyper-parameters, empty data).
    #[error("{0}")]
    Config(String),

    /// Training produced a NaN or infinite loss or gradient.
    #[error("{0}")]
    Numerical(String),

    /// Another process holds what this one needs (a run folder).
    #[error("{0}")]
    Busy(String),

    /// A stop was asked for (Ctrl-C); the run can be resumed.
    #[error("{0}")]
    Interrupted(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Names the method an error of its loss came from: the trainer and
    /// `kd verify` call this once, so a method's own messages need not.
    pub fn in_method(self, method: &str) -> Self {
        match self {
            Error::MissingTap {
                method: None,
                tap,
                available,
            } => Error::MissingTap {
                method: Some(method.to_string()),
                tap,
                available,
            },
            Error::Config(m) => Error::Config(format!("method `{method}`: {m}")),
            other => other,
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}

/// Candle's `Display` carries a backtrace when `RUST_BACKTRACE` is set; a
/// user needs only the messages.
fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        candle_core::Error::WithPath { inner, path } => {
            format!("{}: {}", path.display(), candle_message(inner))
        }
        other => other.to_string(),
    }
}
