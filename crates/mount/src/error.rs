//! Errors of the filesystem core and their errno at the FUSE boundary.

use rfmount_client::RemoteError;
use rfmount_proto::PathError;

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The server refused, or could not be reached.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The local cache failed (disk full, permissions of the cache dir).
    #[error("cache: {context}: {source}")]
    Cache {
        /// What the cache was doing.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A name the protocol cannot carry (too long, not UTF-8, NUL).
    #[error("bad name: {0}")]
    Name(#[from] PathError),
    /// A decision of the filesystem itself, with its errno.
    #[error("{what}")]
    Errno {
        /// The errno to report.
        errno: i32,
        /// Why.
        what: &'static str,
    },
}

impl FsError {
    /// The errno the kernel should see.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Remote(e) => e.errno(),
            FsError::Cache { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Name(PathError::TooLong(_)) => libc::ENAMETOOLONG,
            FsError::Name(_) => libc::EINVAL,
            FsError::Errno { errno, .. } => *errno,
        }
    }

    pub(crate) fn cache(context: impl Into<String>, source: std::io::Error) -> Self {
        FsError::Cache {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn enoent() -> Self {
        FsError::Errno {
            errno: libc::ENOENT,
            what: "no such inode",
        }
    }
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;
