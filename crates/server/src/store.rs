//! The `Store` trait: everything a session may do to the exported tree.
//!
//! Sessions, framing and policy (read-only, limits, authentication) live
//! above this line and know nothing of where bytes are kept; a store knows
//! nothing of connections. A second store (an S3-compatible bucket, say)
//! implements this trait and plugs into [`crate::Server`] unchanged.
//!
//! Errors are [`WireError`]s because they travel to the client as they are:
//! a store decides which [`rfmount_proto::ErrorCode`] describes a failure,
//! since only it knows what its backend's failures mean.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rfmount_proto::{
    Checksum, DirEntry, FileId, FileKind, Meta, Owner, PutExt, RelPath, SetAttr, StatFs, Timestamp,
    WireError,
};

/// The outcome of a store operation.
pub type StoreResult<T> = Result<T, WireError>;

/// A directory's entries, produced lazily so that listing a huge directory
/// needs memory for one listing part, not for the whole directory.
pub type Listing = Box<dyn Iterator<Item = StoreResult<DirEntry>> + Send>;

/// A file's content, read sequentially once.
pub type Content = Box<dyn ContentRead>;

/// What a download reads: the bytes in order and, where the store knows
/// them, the holes (runs of zeros it does not store), so that a sparse
/// `GET` sends those as `DataHole` instead of zeros.
pub trait ContentRead: Read + Send {
    /// The next run of stored data at or after `pos` (the position the
    /// caller has read up to): `(start, end)`, with the read position moved
    /// to `start`. When no data follows, `start == end ==` the content's
    /// current length. A store that knows no holes reports everything from
    /// `pos` on as data.
    ///
    /// # Errors
    /// The backend cannot tell.
    fn data_run(&mut self, pos: u64) -> io::Result<(u64, u64)> {
        Ok((pos, u64::MAX))
    }
}

/// What the server ties to a file's identity beyond the store (its locks)
/// and must keep with the file when an upload replaces it by a new object
/// (a new [`FileId`]): to its holders the new content is the same file.
pub trait Succession: Send + Sync {
    /// Runs `rename`, which gives the upload's file (`new`) the name of the
    /// file it replaces and returns that file's id (`None` when the name was
    /// free or held no regular file), so that nothing that resolves the name
    /// to an id can act in between.
    ///
    /// # Errors
    /// Those of `rename`.
    fn replace(
        &self,
        new: FileId,
        rename: &mut dyn FnMut() -> std::io::Result<Option<FileId>>,
    ) -> std::io::Result<()>;
}

/// An upload in progress: bytes written to it are invisible to everyone
/// until [`PendingPut::commit`] puts them in place in one step.
///
/// Dropping it without committing must discard everything written, leaving
/// the old file (if any) untouched; sessions rely on that to clean up after
/// a client that disappears mid-upload.
pub trait PendingPut: Write + Send {
    /// Checks the content against the client's checksum of it before the
    /// commit. `streamed` is the checksum of the bytes written in order,
    /// which is the content itself unless the upload was built from a
    /// layout (then the store checks what it built).
    ///
    /// # Errors
    /// A mismatch (`Io`), or a failure to read back what was built.
    fn verify(&mut self, streamed: Checksum, expected: Checksum) -> StoreResult<()> {
        if streamed == expected {
            Ok(())
        } else {
            Err(WireError::new(
                rfmount_proto::ErrorCode::Io,
                "checksum mismatch: data corrupted in transit; the old file is unchanged",
            ))
        }
    }

    /// Makes the written content durable and atomically replaces the target
    /// with it. `mode` defaults to the old file's permission bits, else
    /// `0o644`; `mtime` defaults to the time of the commit.
    ///
    /// # Errors
    /// Any failure leaves the old file in place and discards the upload.
    fn commit(self: Box<Self>, mode: Option<u32>, mtime: Option<Timestamp>) -> StoreResult<Meta>;

    /// Whom to tell when the commit replaces an existing file by a new
    /// object. A store whose uploads keep the file's identity (they write
    /// in place) has nothing to tell and may ignore it.
    fn set_succession(&mut self, succession: Arc<dyn Succession>) {
        let _ = succession;
    }
}

/// An exported tree. Every path is relative to the export's root and a store
/// must never act on anything outside it, whatever symlinks it contains.
pub trait Store: Send + Sync + 'static {
    /// Stable identity of the export: the same for the same tree across
    /// restarts, different for different trees. Clients key caches by it.
    fn export_id(&self) -> String;

    /// The entries of directory `dir`, in no particular order, without `.`
    /// and `..`. Symlinks are reported as such, never followed.
    fn list(&self, dir: &RelPath) -> StoreResult<Listing>;

    /// Attributes of `path` itself (a symlink is reported, not followed).
    fn stat(&self, path: &RelPath) -> StoreResult<Meta>;

    /// Opens a regular file for reading: its attributes at open time and a
    /// reader of its content. A directory is [`rfmount_proto::ErrorCode::IsDir`].
    fn open_read(&self, path: &RelPath) -> StoreResult<(Meta, Content)>;

    /// Starts replacing (or creating) the file at `path` with `size` bytes
    /// that the caller is about to write. A new file gets `owner` where the
    /// store can give it; a replaced one keeps its owner.
    fn begin_put(
        &self,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
    ) -> StoreResult<Box<dyn PendingPut>> {
        self.begin_put_ext(path, size, owner, &PutExt::default())
    }

    /// [`Store::begin_put`] with the request's extensions: the condition
    /// (`expect`, answered `Conflict` when the target is not what it names,
    /// both now and atomically at the commit) and the access time.
    fn begin_put_ext(
        &self,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
        ext: &PutExt,
    ) -> StoreResult<Box<dyn PendingPut>>;

    /// Starts a partial or sparse upload of `path` ([`PutLayout`]): only
    /// the layout's extents will be written, in order; the other bytes come
    /// from the current file (which must have the layout's base version,
    /// else `Conflict`) or are holes.
    ///
    /// # Errors
    /// As [`Store::begin_put`]; `NotSupported` from a store without it.
    fn begin_layout_put(
        &self,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
        ext: &PutExt,
    ) -> StoreResult<Box<dyn PendingPut>> {
        let _ = (size, owner, ext);
        Err(WireError::new(
            rfmount_proto::ErrorCode::NotSupported,
            format!("{path}: this store takes whole uploads only"),
        ))
    }

    /// Removes a file (not a directory).
    fn remove(&self, path: &RelPath) -> StoreResult<()>;

    /// Renames `from` to `to`, replacing `to` as `rename(2)` does, or as
    /// `renameat2(2)` does with `flags` (`RENAME_NOREPLACE`,
    /// `RENAME_EXCHANGE`).
    fn rename(&self, from: &RelPath, to: &RelPath, flags: u32) -> StoreResult<()>;

    /// Creates a directory with permission bits `mode`, owned by `owner`
    /// where the store can.
    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> StoreResult<Meta>;

    /// Removes an empty directory.
    fn rmdir(&self, path: &RelPath) -> StoreResult<()>;

    /// Changes permission bits, size or times; returns the new attributes.
    fn setattr(&self, path: &RelPath, attr: &SetAttr) -> StoreResult<Meta>;

    /// Capacity figures of the export.
    fn statfs(&self) -> StoreResult<StatFs>;

    /// Creates a symlink at `path` holding `target`, which the store stores
    /// as text and never follows.
    fn symlink(&self, path: &RelPath, target: &str, owner: Option<Owner>) -> StoreResult<Meta>;

    /// The target text of the symlink at `path`.
    fn readlink(&self, path: &RelPath) -> StoreResult<String>;

    /// Makes `to` another name of the object at `from` (not following a
    /// symlink there); returns the object's attributes.
    fn link(&self, from: &RelPath, to: &RelPath) -> StoreResult<Meta>;

    /// The value of extended attribute `name` of `path` itself.
    fn getxattr(&self, path: &RelPath, name: &str) -> StoreResult<Vec<u8>>;

    /// The names of `path`'s extended attributes.
    fn listxattr(&self, path: &RelPath) -> StoreResult<Vec<String>>;

    /// Sets extended attribute `name` (flags: `XATTR_CREATE`,
    /// `XATTR_REPLACE`).
    fn setxattr(&self, path: &RelPath, name: &str, value: &[u8], flags: u32) -> StoreResult<()>;

    /// Removes extended attribute `name`.
    fn removexattr(&self, path: &RelPath, name: &str) -> StoreResult<()>;

    /// Creates a FIFO, socket or device node.
    fn mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> StoreResult<Meta>;

    /// The same export confined to directory `dir`: every path given to the
    /// result is relative to `dir`, and nothing outside `dir` is reachable
    /// through it, whatever symlinks either contains. Its export id differs
    /// from this one's (clients key caches by it).
    ///
    /// # Errors
    /// When `dir` is missing, not a directory, or leaves the export.
    fn confine(&self, dir: &RelPath) -> StoreResult<Arc<dyn Store>>;

    /// The local directory holding the tree, when there is one: the server
    /// watches it for changes made by other processes and pushes them to
    /// sessions. `None` (the default) for a store that is not a local
    /// directory.
    fn local_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
}
