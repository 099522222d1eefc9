//! The library's one error type. Every public function that can fail returns [`Result`]; each
//! variant names what a user needs to fix (the file, the field, the setting). Binaries may wrap
//! it in `anyhow`; the library never does.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the library.
///
/// Each message carries its cause once: the I/O and image errors print the operating system's
/// or decoder's message in their own text and keep the original error in a field (`error`),
/// not in [`std::error::Error::source`], so that a report chain (anyhow's `{:#}`) does not
/// print it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A problem inside an input file (annotations, results), naming the place and the field.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file or folder that cannot be read, written, created or renamed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done: "read", "write", "create"…
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// An image that cannot be decoded or encoded.
    #[error("cannot {action} image {}: {error}", path.display())]
    Image {
        /// What was being done: "decode", "encode"…
        action: &'static str,
        /// The image file.
        path: PathBuf,
        /// The decoder's or encoder's error.
        error: image::ImageError,
    },
    /// A file that is readable but not what it should be (weights, config, checkpoint, JSON).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A setting, argument or model layout outside what is supported.
    #[error("{0}")]
    Invalid(String),
    /// The compute backend is missing or failed.
    #[error("{0}")]
    Backend(String),
    /// Training stopped (non-finite loss, empty data set, a resume that does not fit).
    #[error("{0}")]
    Training(String),
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O failure on `path` while trying to `action` it ("read", "write", "create"…).
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            error: source,
        }
    }

    /// `path` holds something other than what was expected.
    pub fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// A setting or argument out of its domain.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }
}

/// A problem with one input file, naming where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {place}{}{message}", file.display(), field_label(field))]
#[non_exhaustive]
pub struct DataError {
    /// The input file.
    pub file: PathBuf,
    /// `"annotation 12 (image 2092): "`, `"item2: "` or empty for file-level problems.
    pub place: String,
    /// The field's name in the file's format.
    pub field: String,
    /// What is wrong with the field.
    pub message: String,
}

/// `field `x`: ` for a named field; nothing for the placeholders of file-level problems (`-`,
/// `(json)`, …), whose message says what is wrong.
fn field_label(field: &str) -> String {
    if field.is_empty() || field == "-" || field.starts_with('(') {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

impl DataError {
    pub(crate) fn new(
        file: &Path,
        place: impl Into<String>,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            place: place.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `return Err(Error::Invalid(format!(…)))`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;
