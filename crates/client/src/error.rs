//! Client errors, split by what the caller should do about them.

use rfmount_proto::{ErrorCode, FrameError, WireError};

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with an error: the operation is refused for a
    /// reason any store can give (not found, exists, read-only, no space).
    #[error("{}", service_text(.0))]
    Service(WireError),
    /// The server could not be reached or the connection broke. Nothing is
    /// known about whether a mutating request was applied; data should be
    /// kept and the operation retried once the server is back.
    #[error("{0}")]
    Transport(String),
    /// The server spoke something this client does not understand, including
    /// a different protocol version.
    #[error("{0}")]
    Protocol(String),
    /// The server refused our credentials, or wants some we do not have.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A local file we read from or wrote to failed.
    // Not `#[source]`: the message already ends with the I/O error, and a
    // chain printer would say it twice.
    #[error("{context}: {error}")]
    Local {
        /// What we were doing.
        context: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

impl RemoteError {
    /// The errno a filesystem should report for this error.
    pub fn errno(&self) -> i32 {
        match self {
            RemoteError::Service(e) => e.code.errno(),
            RemoteError::Transport(_) => libc::EIO,
            RemoteError::Protocol(_) => libc::EPROTO,
            RemoteError::Auth(_) => libc::EACCES,
            RemoteError::Local { error, .. } => error.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            RemoteError::Service(e) => Some(e.code),
            _ => None,
        }
    }

    /// True when the server was not reached or the link broke.
    pub fn is_transport(&self) -> bool {
        matches!(self, RemoteError::Transport(_))
    }

    pub(crate) fn local(context: impl Into<String>, source: std::io::Error) -> Self {
        RemoteError::Local {
            context: context.into(),
            error: source,
        }
    }

    pub(crate) fn from_frame(err: FrameError, addr: &str) -> Self {
        if err.is_transport() {
            RemoteError::Transport(format!("connection to {addr} lost: {err}"))
        } else {
            RemoteError::Protocol(format!("bad frame from {addr}: {err}"))
        }
    }
}

/// The server's verdict for a user. A message that merely repeats the code
/// as the server's own I/O error (`/x: No such file or directory (os error
/// 2)`) adds nothing but a second copy of the reason, and the caller names
/// the path already, so only the code's description is kept.
fn service_text(e: &WireError) -> String {
    if e.message.is_empty() || e.message.contains("(os error ") {
        e.code.describe().to_owned()
    } else {
        e.to_string()
    }
}

impl From<WireError> for RemoteError {
    fn from(e: WireError) -> Self {
        RemoteError::Service(e)
    }
}
