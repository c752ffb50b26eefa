//! The `Remote` API: everything the mount and `rf` can ask of an export.

use std::fs::File;
use std::io::{self, Read, Write};

use rfmount_proto::{
    DirEntry, ErrorCode, FileKind, LockFlavor, LockHolder, LockKind, Meta, Owner, PutExpect,
    PutLayout, RelPath, SetAttr, StatFs, Timestamp, Version, WireError, XattrValue,
};

use crate::error::RemoteError;

/// Where a sparse download lands: the data through [`Write`], and the runs
/// of zeros the server's file does not store (holes) through
/// [`GetSink::hole`], so that the sink can keep them as holes.
pub trait GetSink: Write {
    /// The next `len` bytes of the content are zeros that the server does
    /// not store.
    ///
    /// # Errors
    /// The sink cannot extend itself.
    fn hole(&mut self, len: u64) -> io::Result<()>;

    /// The next chunk of the content, handed over whole: a sink that keeps
    /// recent chunks (to answer reads from memory while the file is still
    /// arriving) takes the buffer instead of copying it.
    ///
    /// # Errors
    /// The sink's write error.
    fn chunk(&mut self, data: Vec<u8>) -> io::Result<()> {
        self.write_all(&data)
    }
}

/// Writes `len` zeros to `sink`: a hole for a sink that cannot keep holes.
///
/// # Errors
/// The sink's write error.
pub fn write_zeros(sink: &mut dyn Write, mut len: u64) -> io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        sink.write_all(&ZEROS[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// What the server said about its export in the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    /// Stable identity of the export; keys the client's cache.
    pub export_id: String,
    /// Every change will be refused.
    pub read_only: bool,
}

/// Result of a [`Remote::get`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetOutcome {
    /// The version the caller named is current; nothing was written.
    NotModified(Meta),
    /// The whole content was written to the sink and its checksum verified.
    Fetched(Meta),
}

impl GetOutcome {
    /// The file's attributes either way.
    pub fn meta(&self) -> Meta {
        match self {
            GetOutcome::NotModified(m) | GetOutcome::Fetched(m) => m.clone(),
        }
    }
}

/// What an upload left: the file's attributes, and those of its parent
/// directory (its mtime moved), which the server sends along so that
/// nobody needs a STAT after it (empty when the server could not stat it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The uploaded file.
    pub meta: Meta,
    /// Its parent directory after the upload, when known.
    pub parents: Vec<Meta>,
}

/// Optional attributes of an uploaded file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Permission bits (default: keep the old file's, or 0644).
    pub mode: Option<u32>,
    /// Modification time (default: the server's now).
    pub mtime: Option<Timestamp>,
    /// Owner of a new file, where the server can give files away (a
    /// replaced file keeps its owner).
    pub owner: Option<Owner>,
    /// Access time (default: the server's now).
    pub atime: Option<Timestamp>,
    /// What the server's file must be for the upload to replace it
    /// (default: anything, last upload wins); otherwise the answer is
    /// `Service(Conflict)` and nothing changes.
    pub expect: PutExpect,
    /// Extended attributes the new file has before it appears under its
    /// name (on top of those a replaced file keeps).
    pub xattrs: Vec<XattrValue>,
}

/// A lock to take, change or release ([`Remote::lock`]), or to test
/// ([`Remote::test_lock`], where `wait` and `pid` do not matter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRequest {
    /// The client's lock owner; one owner's locks never conflict.
    pub owner: u64,
    /// POSIX byte range or whole-file `flock`.
    pub flavor: LockFlavor,
    /// Shared, exclusive or release.
    pub kind: LockKind,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `u64::MAX` to the end of the file.
    pub end: u64,
    /// Wait until it can be granted.
    pub wait: bool,
    /// The locking process, reported to testers.
    pub pid: u32,
}

fn no_locks() -> RemoteError {
    RemoteError::Service(WireError::new(
        ErrorCode::NoLocks,
        "this remote does not grant locks",
    ))
}

/// A remote export. Implemented over TCP by [`crate::TcpRemote`] and in
/// memory by the `mock` feature's `MemRemote`. Implementations are shared
/// between threads, and calls may run concurrently.
pub trait Remote: Send + Sync + 'static {
    /// Handshake facts about the export.
    fn export(&self) -> ExportInfo;

    /// All entries of a directory, with attributes.
    ///
    /// # Errors
    /// `Service(NotFound | NotDir | ...)` or a transport error.
    fn list(&self, dir: &RelPath) -> Result<Vec<DirEntry>, RemoteError>;

    /// Attributes of one object.
    ///
    /// # Errors
    /// As [`Remote::list`].
    fn stat(&self, path: &RelPath) -> Result<Meta, RemoteError>;

    /// Streams a whole file into `sink` unless `have` names the current
    /// version. On error the sink holds partial data: the caller must discard
    /// it (write to a temporary file and rename on success).
    ///
    /// # Errors
    /// Service errors, transport errors, a checksum mismatch (`Protocol`), or
    /// the sink's write error (`Local`).
    fn get(
        &self,
        path: &RelPath,
        have: Option<Version>,
        sink: &mut dyn Write,
    ) -> Result<GetOutcome, RemoteError> {
        self.get_streamed(path, have, &mut |_| {}, sink)
    }

    /// As [`Remote::get`], and `started` is called with the attributes as
    /// soon as the server has said that the content follows, before any of
    /// it reaches the sink: a reader can start on the first bytes while the
    /// rest streams. Not called for `NotModified` or an error.
    ///
    /// # Errors
    /// As [`Remote::get`].
    fn get_streamed(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn Write,
    ) -> Result<GetOutcome, RemoteError>;

    /// As [`Remote::get_streamed`], asking the server to send holes as
    /// holes (`Get.sparse`): they reach `sink` through [`GetSink::hole`],
    /// never as zeros on the wire. A remote that cannot tell holes writes
    /// everything as data.
    ///
    /// # Errors
    /// As [`Remote::get`].
    fn get_sparse(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn GetSink,
    ) -> Result<GetOutcome, RemoteError> {
        self.get_streamed(path, have, started, sink)
    }

    /// Replaces a whole file with exactly `size` bytes read from `src`. The
    /// server makes the new content visible atomically, or not at all.
    ///
    /// # Errors
    /// Service errors (`ReadOnly`, `NoSpace`, ...), transport errors, or the
    /// source's read error / short read (`Local`).
    fn put(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        size: u64,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError>;

    /// Replaces a whole file with whatever `src` yields until it reports
    /// the end (`Ok(0)`), sent while it is still being produced: an
    /// open-ended `Put` (`PutExt.open_ended`). `src` may block until more
    /// bytes exist; an error from it cancels the upload, and the server's
    /// file stays as it was. The answer is the server's durable reply, as
    /// for [`Remote::put`]. A remote that cannot stream answers
    /// `Service(NotSupported)` before reading anything; the caller then
    /// uploads the finished file as usual.
    ///
    /// # Errors
    /// As [`Remote::put`].
    fn put_open_ended(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
        let _ = (src, opts);
        Err(RemoteError::Service(WireError::new(
            ErrorCode::NotSupported,
            format!("{path}: this remote takes uploads of a known size only"),
        )))
    }

    /// Replaces a whole file with the `size` bytes of `src`, sending only
    /// `layout.extents` of it: the other bytes are the server's current
    /// file's (which must be version `layout.base`, else the service error
    /// `Conflict` and nothing changes) or, without a base, holes. The
    /// checksum sent covers the whole content, so the server verifies what
    /// it built. A remote without partial uploads sends the whole file.
    ///
    /// # Errors
    /// As [`Remote::put`]; `Conflict` when the base is not current.
    fn put_layout(
        &self,
        path: &RelPath,
        src: &File,
        size: u64,
        layout: PutLayout,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
        let _ = layout;
        let mut reader = crate::layout::AtReader::new(src);
        self.put(path, &mut reader, size, opts)
    }

    /// Removes a file.
    ///
    /// # Errors
    /// Service or transport errors.
    fn remove(&self, path: &RelPath) -> Result<(), RemoteError>;

    /// Renames, replacing the target as `rename(2)` does, or as
    /// `renameat2(2)` with `flags` (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`).
    ///
    /// # Errors
    /// Service or transport errors.
    fn rename(&self, from: &RelPath, to: &RelPath, flags: u32) -> Result<(), RemoteError>;

    /// As [`Remote::rename`], returning the object's attributes under its
    /// new name when the server said them (its version moves with the
    /// rename's ctime); `None` from servers that answer `Done`.
    ///
    /// # Errors
    /// Service or transport errors.
    fn rename_changed(
        &self,
        from: &RelPath,
        to: &RelPath,
        flags: u32,
    ) -> Result<Option<Meta>, RemoteError> {
        self.rename(from, to, flags).map(|()| None)
    }

    /// True once every invalidation the server has sent so far has been
    /// applied (see `Connection::settled`); false when that is not sure
    /// within a few milliseconds, or there is no connection. A remote that
    /// pushes no invalidations is always settled.
    fn settled(&self) -> bool {
        true
    }

    /// Creates a directory, owned by `owner` where the server can.
    ///
    /// # Errors
    /// Service or transport errors.
    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> Result<Meta, RemoteError>;

    /// As [`Remote::mkdir`], with the parent directory's attributes after
    /// the change when the server said them (as [`Uploaded`] has them for
    /// a file), so that the parent's cached entries stay usable.
    ///
    /// # Errors
    /// Service or transport errors.
    fn mkdir_changed(
        &self,
        path: &RelPath,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<Uploaded, RemoteError> {
        self.mkdir(path, mode, owner).map(|meta| Uploaded {
            meta,
            parents: Vec::new(),
        })
    }

    /// Removes an empty directory.
    ///
    /// # Errors
    /// Service or transport errors.
    fn rmdir(&self, path: &RelPath) -> Result<(), RemoteError>;

    /// Changes attributes and returns the result.
    ///
    /// # Errors
    /// Service or transport errors.
    fn setattr(&self, path: &RelPath, attr: SetAttr) -> Result<Meta, RemoteError>;

    /// Filesystem statistics of the export.
    ///
    /// # Errors
    /// Service or transport errors.
    fn statfs(&self) -> Result<StatFs, RemoteError>;

    /// Creates a symlink holding `target` (opaque text).
    ///
    /// # Errors
    /// Service or transport errors.
    fn symlink(
        &self,
        path: &RelPath,
        target: &str,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError>;

    /// The target of a symlink.
    ///
    /// # Errors
    /// Service (`Invalid` for a non-link) or transport errors.
    fn readlink(&self, path: &RelPath) -> Result<String, RemoteError>;

    /// Makes `to` another name of the object at `from`; its attributes.
    ///
    /// # Errors
    /// Service or transport errors.
    fn link(&self, from: &RelPath, to: &RelPath) -> Result<Meta, RemoteError>;

    /// An extended attribute's value.
    ///
    /// # Errors
    /// Service (`NoData` when absent, `NotSupported`) or transport errors.
    fn getxattr(&self, path: &RelPath, name: &str) -> Result<Vec<u8>, RemoteError>;

    /// The names of an object's extended attributes.
    ///
    /// # Errors
    /// Service or transport errors.
    fn listxattr(&self, path: &RelPath) -> Result<Vec<String>, RemoteError>;

    /// Sets an extended attribute (`flags`: `XATTR_CREATE`, `XATTR_REPLACE`).
    ///
    /// # Errors
    /// Service (`Exists`, `NoData`, `NotSupported`, ...) or transport errors.
    fn setxattr(
        &self,
        path: &RelPath,
        name: &str,
        value: &[u8],
        flags: u32,
    ) -> Result<(), RemoteError>;

    /// Removes an extended attribute.
    ///
    /// # Errors
    /// Service (`NoData`) or transport errors.
    fn removexattr(&self, path: &RelPath, name: &str) -> Result<(), RemoteError>;

    /// Creates a FIFO, socket or device node.
    ///
    /// # Errors
    /// Service (`Perm` when the server may not) or transport errors.
    fn mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError>;

    /// Takes, changes or releases a lock on the file at `path`, held by
    /// this client's session on the server. A waiting request (`wait`)
    /// returns once granted; when `cancelled` turns true while it waits,
    /// the server is asked to give up and its answer (usually
    /// `Interrupted`) is returned.
    ///
    /// # Errors
    /// `Service(WouldBlock | Deadlock | Interrupted | NoLocks)`, transport
    /// errors.
    fn lock(
        &self,
        path: &RelPath,
        req: &LockRequest,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), RemoteError> {
        let _ = (path, req, cancelled);
        Err(no_locks())
    }

    /// The lock of another owner that would block `req`, if any.
    ///
    /// # Errors
    /// `Service(NoLocks)`, transport errors.
    fn test_lock(
        &self,
        path: &RelPath,
        req: &LockRequest,
    ) -> Result<Option<LockHolder>, RemoteError> {
        let _ = (path, req);
        Err(no_locks())
    }
}
