//! Error codes on the wire. Each maps one-to-one onto an errno so that the
//! mount can hand the server's verdict straight to the kernel.

use serde::{Deserialize, Serialize};

/// What went wrong, as the peer sees it. Append-only: the variant index is
/// the wire value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// ENOENT: no such file or directory.
    NotFound,
    /// EEXIST: the target exists.
    Exists,
    /// ENOTDIR: a path component is not a directory.
    NotDir,
    /// EISDIR: the target is a directory.
    IsDir,
    /// ENOTEMPTY: the directory is not empty.
    NotEmpty,
    /// EACCES: permission denied, including paths that escape the export and
    /// failed authentication.
    Access,
    /// EROFS: the export is read-only.
    ReadOnly,
    /// ENOSPC: the server's disk is full.
    NoSpace,
    /// ENAMETOOLONG: a name or path exceeds the limits.
    NameTooLong,
    /// EINVAL: the request is malformed or not allowed.
    Invalid,
    /// EIO: anything else; the message says what.
    Io,
    /// EPERM: the operation is not permitted.
    Perm,
    /// EXDEV: a rename across filesystems on the server.
    CrossDevice,
    /// EBUSY: the target is in use.
    Busy,
    /// EPROTO: protocol violation or version mismatch.
    Protocol,
    /// EFBIG: the file is too large.
    TooBig,
    /// EDQUOT: the disk quota is exceeded.
    Quota,
    /// ENODATA: no such extended attribute.
    NoData,
    /// EOPNOTSUPP: the server's filesystem does not support this (an
    /// extended attribute namespace, for instance).
    NotSupported,
    /// ERANGE: a value or list is larger than the caller allows.
    Range,
    /// The file is not the version the request expected (another writer
    /// replaced it first): nothing was changed.
    Conflict,
    /// EAGAIN: the lock is held by another owner.
    WouldBlock,
    /// EDEADLK: waiting for this lock would deadlock.
    Deadlock,
    /// ENOLCK: the server's lock table is full, or locks are unavailable.
    NoLocks,
    /// EINTR: the request was cancelled while it waited.
    Interrupted,
}

impl ErrorCode {
    /// The errno this code stands for.
    pub fn errno(self) -> i32 {
        match self {
            ErrorCode::NotFound => libc::ENOENT,
            ErrorCode::Exists => libc::EEXIST,
            ErrorCode::NotDir => libc::ENOTDIR,
            ErrorCode::IsDir => libc::EISDIR,
            ErrorCode::NotEmpty => libc::ENOTEMPTY,
            ErrorCode::Access => libc::EACCES,
            ErrorCode::ReadOnly => libc::EROFS,
            ErrorCode::NoSpace => libc::ENOSPC,
            ErrorCode::NameTooLong => libc::ENAMETOOLONG,
            ErrorCode::Invalid => libc::EINVAL,
            ErrorCode::Io => libc::EIO,
            ErrorCode::Perm => libc::EPERM,
            ErrorCode::CrossDevice => libc::EXDEV,
            ErrorCode::Busy => libc::EBUSY,
            ErrorCode::Protocol => libc::EPROTO,
            ErrorCode::TooBig => libc::EFBIG,
            ErrorCode::Quota => libc::EDQUOT,
            ErrorCode::NoData => libc::ENODATA,
            ErrorCode::NotSupported => libc::EOPNOTSUPP,
            ErrorCode::Range => libc::ERANGE,
            ErrorCode::Conflict => libc::EIO,
            ErrorCode::WouldBlock => libc::EAGAIN,
            ErrorCode::Deadlock => libc::EDEADLK,
            ErrorCode::NoLocks => libc::ENOLCK,
            ErrorCode::Interrupted => libc::EINTR,
        }
    }

    /// The code for an errno; anything without its own code becomes
    /// [`ErrorCode::Io`], the documented fallback.
    pub fn from_errno(errno: i32) -> ErrorCode {
        match errno {
            libc::ENOENT => ErrorCode::NotFound,
            libc::EEXIST => ErrorCode::Exists,
            libc::ENOTDIR | libc::ELOOP => ErrorCode::NotDir,
            libc::EISDIR => ErrorCode::IsDir,
            libc::ENOTEMPTY => ErrorCode::NotEmpty,
            libc::EACCES => ErrorCode::Access,
            libc::EROFS => ErrorCode::ReadOnly,
            libc::ENOSPC => ErrorCode::NoSpace,
            libc::ENAMETOOLONG => ErrorCode::NameTooLong,
            libc::EINVAL => ErrorCode::Invalid,
            libc::EPERM => ErrorCode::Perm,
            libc::EXDEV => ErrorCode::CrossDevice,
            libc::EBUSY | libc::ETXTBSY => ErrorCode::Busy,
            libc::EPROTO => ErrorCode::Protocol,
            libc::EFBIG => ErrorCode::TooBig,
            libc::EDQUOT => ErrorCode::Quota,
            libc::ENODATA => ErrorCode::NoData,
            libc::EOPNOTSUPP => ErrorCode::NotSupported,
            libc::ERANGE => ErrorCode::Range,
            libc::EAGAIN => ErrorCode::WouldBlock,
            libc::EDEADLK => ErrorCode::Deadlock,
            libc::ENOLCK => ErrorCode::NoLocks,
            libc::EINTR => ErrorCode::Interrupted,
            _ => ErrorCode::Io,
        }
    }

    /// Short human text, as `strerror` would put it.
    pub fn describe(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "no such file or directory",
            ErrorCode::Exists => "file exists",
            ErrorCode::NotDir => "not a directory",
            ErrorCode::IsDir => "is a directory",
            ErrorCode::NotEmpty => "directory not empty",
            ErrorCode::Access => "permission denied",
            ErrorCode::ReadOnly => "read-only export",
            ErrorCode::NoSpace => "no space left on server",
            ErrorCode::NameTooLong => "file name too long",
            ErrorCode::Invalid => "invalid argument",
            ErrorCode::Io => "input/output error",
            ErrorCode::Perm => "operation not permitted",
            ErrorCode::CrossDevice => "cross-device rename",
            ErrorCode::Busy => "resource busy",
            ErrorCode::Protocol => "protocol error",
            ErrorCode::TooBig => "file too large",
            ErrorCode::Quota => "disk quota exceeded",
            ErrorCode::NoData => "no such attribute",
            ErrorCode::NotSupported => "operation not supported",
            ErrorCode::Range => "result too large",
            ErrorCode::Conflict => "changed by another writer",
            ErrorCode::WouldBlock => "lock held by another owner",
            ErrorCode::Deadlock => "lock wait would deadlock",
            ErrorCode::NoLocks => "no locks available",
            ErrorCode::Interrupted => "interrupted",
        }
    }
}

/// An error as sent on the wire: a code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.describe())]
pub struct WireError {
    /// The errno-equivalent code.
    pub code: ErrorCode,
    /// Context for a human: which path, what was expected.
    pub message: String,
}

impl WireError {
    /// Builds an error from a code and context.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }

    /// Maps an I/O error by its errno, keeping the context.
    pub fn from_io(err: &std::io::Error, context: impl std::fmt::Display) -> Self {
        let code = err
            .raw_os_error()
            .map_or(ErrorCode::Io, ErrorCode::from_errno);
        WireError::new(code, format!("{context}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `Conflict` is left out: it has no errno of its own (the mount
    // resolves it; where it must surface it is EIO).
    const ALL: [ErrorCode; 24] = [
        ErrorCode::NotFound,
        ErrorCode::Exists,
        ErrorCode::NotDir,
        ErrorCode::IsDir,
        ErrorCode::NotEmpty,
        ErrorCode::Access,
        ErrorCode::ReadOnly,
        ErrorCode::NoSpace,
        ErrorCode::NameTooLong,
        ErrorCode::Invalid,
        ErrorCode::Io,
        ErrorCode::Perm,
        ErrorCode::CrossDevice,
        ErrorCode::Busy,
        ErrorCode::Protocol,
        ErrorCode::TooBig,
        ErrorCode::Quota,
        ErrorCode::NoData,
        ErrorCode::NotSupported,
        ErrorCode::Range,
        ErrorCode::WouldBlock,
        ErrorCode::Deadlock,
        ErrorCode::NoLocks,
        ErrorCode::Interrupted,
    ];

    #[test]
    fn every_code_round_trips_through_its_errno() {
        for code in ALL {
            assert_eq!(ErrorCode::from_errno(code.errno()), code, "{code:?}");
        }
    }

    #[test]
    fn unknown_errno_falls_back_to_eio() {
        assert_eq!(ErrorCode::from_errno(libc::ENOMEDIUM), ErrorCode::Io);
    }
}
