//! Every message that crosses the wire.
//!
//! bincode encodes an enum variant by its index and a struct by its field
//! order, so **every enum and struct here is append-only**: add variants and
//! fields at the end only, and bump [`PROTOCOL_VERSION`] when doing so. The
//! golden-bytes tests in `tests.rs` fail when an edit changes the encoding.
//! Variant 0 of both top-level enums (`Hello`) and the first two fields of the
//! hello structs (`magic`, `version`) are frozen forever, so that peers of
//! different versions can always tell each other what they speak.

use serde::{Deserialize, Serialize};

use crate::auth::Nonce;
use crate::checksum::Checksum;
use crate::error::WireError;
use crate::path::RelPath;

/// First bytes of both hellos.
pub const MAGIC: [u8; 4] = *b"RFMT";
/// The protocol version this build speaks. Peers must match exactly.
pub const PROTOCOL_VERSION: u32 = 2;

/// A file's content version: changes whenever its content may have changed.
pub type Version = u64;

/// Seconds and nanoseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Whole seconds (negative before 1970).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// Converts from a system time, saturating far outside the `i64` range.
    pub fn from_system(t: std::time::SystemTime) -> Self {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                if d.subsec_nanos() == 0 {
                    Timestamp {
                        secs: -(d.as_secs() as i64),
                        nanos: 0,
                    }
                } else {
                    Timestamp {
                        secs: -(d.as_secs() as i64) - 1,
                        nanos: 1_000_000_000 - d.subsec_nanos(),
                    }
                }
            }
        }
    }

    /// Converts to a system time.
    pub fn to_system(self) -> std::time::SystemTime {
        let nanos = std::time::Duration::from_nanos(u64::from(self.nanos.min(999_999_999)));
        if self.secs >= 0 {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.secs as u64) + nanos
        } else {
            std::time::UNIX_EPOCH - std::time::Duration::from_secs(self.secs.unsigned_abs()) + nanos
        }
    }
}

/// What kind of object a directory entry is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A symbolic link (listed, never followed out of the export).
    Symlink,
    /// An object of a kind this protocol does not name.
    Other,
    /// A named pipe.
    Fifo,
    /// A character device (`Meta::rdev` says which).
    CharDev,
    /// A block device (`Meta::rdev` says which).
    BlockDev,
    /// A unix-domain socket.
    Socket,
}

impl FileKind {
    /// True for the kinds whose content is never served: devices, FIFOs,
    /// sockets and unknown objects. Opening them can block or have side
    /// effects on the server.
    pub fn is_special(self) -> bool {
        !matches!(self, FileKind::File | FileKind::Dir | FileKind::Symlink)
    }
}

/// The owner to give a new object (the caller's ids on the client side);
/// applied only when the server may (it runs as root), else ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Attributes of one object (`lstat` semantics: a symlink is described
/// itself, with its target).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// File, directory, ...
    pub kind: FileKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o7777` part of `st_mode`).
    pub mode: u32,
    /// Last modification.
    pub mtime: Timestamp,
    /// Content version (see [`Version`]).
    pub version: Version,
    /// Owner's user id as the server has it.
    pub uid: u32,
    /// Owner's group id as the server has it.
    pub gid: u32,
    /// Number of names (hard links) of the object.
    pub nlink: u64,
    /// The object's identity on the server: names with equal `file_id`
    /// are hard links of one object.
    pub file_id: FileId,
    /// Last access.
    pub atime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Device number of a character or block device (`st_rdev`), else 0.
    pub rdev: u64,
    /// For a symlink, its target text, never interpreted by the server.
    pub target: Option<String>,
    /// Space the server's filesystem has allocated for it, in 512-byte
    /// blocks (`st_blocks`): less than `size` for a sparse file.
    pub blocks: u64,
}

/// Which object on the server a name refers to (`st_dev`, `st_ino`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    /// The server's device number of the filesystem holding it.
    pub dev: u64,
    /// Its inode number there.
    pub ino: u64,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry's name (one component).
    pub name: String,
    /// Its attributes.
    pub meta: Meta,
}

/// A time to set: the server's clock now, or a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetTime {
    /// The server's current time.
    Now,
    /// This instant.
    At(Timestamp),
}

/// Attribute changes; `None` leaves a field alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// Truncate or extend to this size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// New owner user id (`chown`); refused with `Perm` when the server
    /// cannot apply it, never silently dropped.
    pub uid: Option<u32>,
    /// New owner group id.
    pub gid: Option<u32>,
}

/// Filesystem statistics of the export, as `statvfs` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatFs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size (the unit of `blocks`).
    pub frsize: u32,
}

/// The server's limits, announced in its [`Welcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest frame payload the server accepts or sends.
    pub max_frame: u32,
    /// Data chunk size the server sends and expects at most.
    pub chunk_size: u32,
    /// Requests one connection may have in flight at once.
    pub max_in_flight: u32,
    /// Seconds of silence after which the server closes a connection.
    pub idle_timeout_secs: u32,
}

/// The client's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The client's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The client's half of the authentication challenge.
    pub client_nonce: Nonce,
    /// Confine the session to this directory of the export (version 2):
    /// every path of the session is then relative to it and nothing outside
    /// it can be reached. `None` (or the root) is the whole export.
    pub subdir: Option<RelPath>,
    /// A random id the client keeps for its lifetime (one mount process),
    /// the same across its reconnects: a session that reconnects within
    /// the server's grace period with the same id takes over the locks of
    /// its previous connection. `None`: nothing to take over.
    pub client_id: Option<[u8; 16]>,
}

/// The server's answer to [`ClientHello`]. Since version 2 it says nothing
/// about the export: that comes in [`Welcome`], after authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    /// Always [`MAGIC`].
    pub magic: [u8; 4],
    /// The server's [`PROTOCOL_VERSION`]. On a mismatch the server closes the
    /// connection after this frame and both sides report the two versions.
    pub version: u32,
    /// `Some(nonce)` when the client must authenticate before any request.
    pub auth_challenge: Option<Nonce>,
}

/// The last frame of the handshake: the session's export, sent only once
/// the client has authenticated (when a token is configured) and its
/// subdirectory has been opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Stable identity of the exported tree the session sees (same root and
    /// subdirectory, same id across restarts; another subdirectory, another id).
    pub export_id: String,
    /// True when every change will be refused with `ReadOnly`.
    pub read_only: bool,
    /// The server's limits.
    pub limits: Limits,
    /// True when the server keeps callbacks for this session and will send
    /// [`ServerMsg::Invalidate`] when an object the session has read changes.
    pub callbacks: bool,
    /// True when the server still held state (locks) of an earlier
    /// connection with the same [`ClientHello::client_id`] and this session
    /// has taken it over; false when any such state is gone.
    pub resumed: bool,
}

/// A request's operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// List a directory: answered by one or more [`Reply::Entries`].
    List {
        /// The directory.
        path: RelPath,
    },
    /// Attributes of one object: [`Reply::Meta`].
    Stat {
        /// The object.
        path: RelPath,
    },
    /// Fetch a whole file: [`Reply::NotModified`] when `have` is current,
    /// otherwise [`Reply::Get`] followed by [`ServerMsg::Data`] chunks and a
    /// [`ServerMsg::DataEnd`].
    Get {
        /// The file.
        path: RelPath,
        /// The version the client already holds, if any.
        have: Option<Version>,
        /// True when the client accepts [`ServerMsg::DataHole`] for runs of
        /// zeros the server's file does not store (holes).
        sparse: bool,
    },
    /// Replace a whole file: the client follows with [`ClientMsg::PutData`]
    /// chunks and a [`ClientMsg::PutEnd`]; the server answers [`Reply::Meta`]
    /// once the new content is durable and in place.
    Put {
        /// The file to create or replace.
        path: RelPath,
        /// Exact number of bytes that will follow.
        size: u64,
        /// Permission bits for the file (default: keep the old file's, or 0644).
        mode: Option<u32>,
        /// Modification time to set (default: now).
        mtime: Option<Timestamp>,
        /// Owner of a new file (a replaced file keeps its owner).
        owner: Option<Owner>,
        /// Conditions, layout and further attributes of the upload.
        ext: PutExt,
    },
    /// Remove a file (not a directory): [`Reply::Done`].
    Remove {
        /// The file.
        path: RelPath,
    },
    /// Rename, replacing a target as `rename(2)` does: [`Reply::Done`].
    Rename {
        /// The current path.
        from: RelPath,
        /// The new path.
        to: RelPath,
        /// `renameat2(2)` flags: [`RENAME_NOREPLACE`], [`RENAME_EXCHANGE`]
        /// or 0; other bits answer `Invalid`.
        flags: u32,
    },
    /// Create a directory: [`Reply::Meta`].
    Mkdir {
        /// The new directory.
        path: RelPath,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: Option<Owner>,
    },
    /// Remove an empty directory: [`Reply::Done`].
    Rmdir {
        /// The directory.
        path: RelPath,
    },
    /// Change attributes: [`Reply::Meta`] with the result.
    SetAttr {
        /// The object.
        path: RelPath,
        /// What to change.
        attr: SetAttr,
    },
    /// Filesystem statistics: [`Reply::StatFs`].
    StatFs,
    /// Keep-alive: [`Reply::Done`].
    Ping,
    /// Create a symbolic link holding `target`: [`Reply::Meta`] of the link.
    Symlink {
        /// The new link.
        path: RelPath,
        /// Its target text: opaque to the server, never followed by it.
        target: String,
        /// Its owner.
        owner: Option<Owner>,
    },
    /// Read a symbolic link's target: [`Reply::Target`].
    ReadLink {
        /// The link.
        path: RelPath,
    },
    /// Make `to` a new name (hard link) of the object at `from`, which is
    /// not followed if it is a symlink: [`Reply::Meta`] of the object.
    Link {
        /// An existing name.
        from: RelPath,
        /// The new name.
        to: RelPath,
    },
    /// Create a FIFO, socket or device node: [`Reply::Meta`].
    Mknod {
        /// The new node.
        path: RelPath,
        /// `Fifo`, `Socket`, `CharDev` or `BlockDev`; others answer `Invalid`.
        kind: FileKind,
        /// Its permission bits.
        mode: u32,
        /// The device number for `CharDev`/`BlockDev`.
        rdev: u64,
        /// Its owner.
        owner: Option<Owner>,
    },
    /// An extended attribute's value: [`Reply::Xattr`].
    GetXattr {
        /// The object itself (a final symlink is not followed).
        path: RelPath,
        /// Full name with namespace, e.g. `user.comment`.
        name: String,
    },
    /// Names of an object's extended attributes: [`Reply::XattrNames`].
    ListXattr {
        /// The object itself.
        path: RelPath,
    },
    /// Sets an extended attribute: [`Reply::Done`].
    SetXattr {
        /// The object itself.
        path: RelPath,
        /// Full name with namespace.
        name: String,
        /// The value (at most 64 KiB, as Linux allows).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// [`XATTR_CREATE`], [`XATTR_REPLACE`] or 0.
        flags: u32,
    },
    /// Removes an extended attribute: [`Reply::Done`].
    RemoveXattr {
        /// The object itself.
        path: RelPath,
        /// Full name with namespace.
        name: String,
    },
    /// Take, change or release a lock: [`Reply::Done`] once granted or
    /// released. A lock that conflicts with another session's answers
    /// `WouldBlock` at once unless `wait` is set; with `wait`, the answer
    /// comes when the lock is granted, or `Interrupted` after a `Cancel`.
    Lock {
        /// The locked file (the lock belongs to the object, not the name).
        path: RelPath,
        /// The client's lock owner (FUSE `lock_owner`): locks of one owner
        /// never conflict with each other and merge as `fcntl(2)` says.
        owner: u64,
        /// POSIX byte-range (`fcntl`, also OFD) or whole-file `flock`.
        flavor: LockFlavor,
        /// Shared, exclusive, or release.
        kind: LockKind,
        /// First byte of the range (ignored for `Flock`).
        start: u64,
        /// Last byte of the range, inclusive; `u64::MAX` means to the end
        /// of the file, however long it grows (ignored for `Flock`).
        end: u64,
        /// Wait for a conflicting lock to go away (`F_SETLKW`, `LOCK_EX`
        /// without `LOCK_NB`).
        wait: bool,
        /// The locking process as the client knows it, reported by `TestLock`.
        pid: u32,
    },
    /// Who would block this lock (`F_GETLK`): [`Reply::Lock`].
    TestLock {
        /// The file.
        path: RelPath,
        /// The asking lock owner (its own locks never conflict).
        owner: u64,
        /// POSIX or flock.
        flavor: LockFlavor,
        /// `Read` or `Write` (as `l_type`).
        kind: LockKind,
        /// First byte.
        start: u64,
        /// Last byte, inclusive (`u64::MAX`: to the end).
        end: u64,
    },
}

/// The optional parts of a [`Op::Put`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutExt {
    /// Access time to set (default: now).
    pub atime: Option<Timestamp>,
    /// What the server's file must be for the upload to replace it;
    /// otherwise the answer is `Conflict` and nothing changes.
    pub expect: PutExpect,
    /// Which bytes follow; `None`: all `size` bytes, in order.
    pub layout: Option<PutLayout>,
    /// True when the size is not known yet (the client streams the file
    /// while it is being written): `size` is ignored and the content is
    /// whatever arrives up to `PutEnd`.
    pub open_ended: bool,
    /// Extended attributes to give the new file, set before it appears
    /// under its name.
    pub xattrs: Vec<XattrValue>,
}

/// One extended attribute, name and value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XattrValue {
    /// Full name with namespace.
    pub name: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// The condition of a [`Op::Put`] (no silent lost update).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PutExpect {
    /// Replace whatever is there (last close wins).
    #[default]
    Any,
    /// Only if no object has the name (a new file).
    Absent,
    /// Only if the file there has this version (the one the writer started
    /// from).
    Version(Version),
}

/// A partial or sparse upload: the data that follows covers only
/// `extents`; every other byte up to `size` comes from the current file
/// (when `base` is set) or is a hole (reads as zeros).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutLayout {
    /// Build on the server's current file, which must have this version
    /// (else `Conflict`).
    pub base: Option<Version>,
    /// Byte ranges whose data follows, in this order; sorted, disjoint,
    /// within `size`.
    pub extents: Vec<Extent>,
}

/// A byte range of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
}

/// Which kind of lock [`Op::Lock`] takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockFlavor {
    /// `fcntl(2)` record locks (process-associated and OFD).
    #[default]
    Posix,
    /// `flock(2)`: whole file, per open file description.
    Flock,
}

/// The mode of a lock request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockKind {
    /// Shared (`F_RDLCK`, `LOCK_SH`).
    #[default]
    Read,
    /// Exclusive (`F_WRLCK`, `LOCK_EX`).
    Write,
    /// Release (`F_UNLCK`, `LOCK_UN`).
    Unlock,
}

/// A lock held by another owner, as [`Op::TestLock`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// `Read` or `Write`.
    pub kind: LockKind,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive (`u64::MAX`: to the end).
    pub end: u64,
    /// The holder's process id as its client reported it.
    pub pid: u32,
}

/// One pushed change ([`ServerMsg::Invalidate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// The name the session read the object under (session-relative).
    pub path: RelPath,
    /// The object's identity when known (zero when not).
    pub file_id: FileId,
    /// What changed.
    pub change: Change,
}

/// What an [`Invalidation`] says changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// The content (and so size, times, version) changed.
    Content,
    /// Only attributes changed (mode, owner, times, link count, xattrs).
    Attr,
    /// The name no longer refers to the object (removed or renamed away);
    /// its parent's listing changed.
    Removed,
    /// The name now exists or refers to another object (created, renamed
    /// or linked there); its parent's listing changed.
    Created,
    /// Nothing known changed, but the server no longer holds the callback
    /// (its per-session bound): revalidate before trusting it again.
    Dropped,
    /// Anything at or below `path` may have changed (the server lost track,
    /// e.g. its watch queue overflowed): drop everything cached there.
    All,
}

/// [`Op::SetXattr`] flag: fail with `Exists` if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// [`Op::SetXattr`] flag: fail with `NoData` unless the attribute exists.
pub const XATTR_REPLACE: u32 = 2;

/// [`Op::Rename`] flag: fail with `Exists` rather than replace the target.
pub const RENAME_NOREPLACE: u32 = 1;
/// [`Op::Rename`] flag: swap the two names atomically; both must exist.
pub const RENAME_EXCHANGE: u32 = 2;

/// A successful answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Part of a listing; `more` is false on the last part.
    Entries {
        /// Entries in this part.
        entries: Vec<DirEntry>,
        /// True when further parts follow.
        more: bool,
    },
    /// Attributes.
    Meta(Meta),
    /// The file is about to be streamed; its attributes at open time.
    Get(Meta),
    /// The client's copy is current.
    NotModified(Meta),
    /// Done, nothing to report.
    Done,
    /// Filesystem statistics.
    StatFs(StatFs),
    /// A symbolic link's target text.
    Target(String),
    /// An extended attribute's value.
    Xattr(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Names of extended attributes.
    XattrNames(Vec<String>),
    /// A change is done: the object's attributes after it (`None` when it
    /// is gone) and those of the parent directory of each path the request
    /// named, in the request's order (one for most, two for `Rename`).
    Changed {
        /// The object (for `Rename`, under its new name).
        meta: Option<Meta>,
        /// The parent directories after the change.
        parents: Vec<Meta>,
    },
    /// The answer to `TestLock`: the conflicting lock, or `None`.
    Lock(Option<LockHolder>),
}

/// Client-to-server frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// The first frame of a connection.
    Hello(ClientHello),
    /// Answer to the server's challenge.
    Auth {
        /// `AuthKey::proof(server_nonce, client_nonce)`.
        proof: [u8; 32],
    },
    /// A request; `id` is chosen by the client and unique among its
    /// requests in flight.
    Request {
        /// Request id, echoed in every frame of the answer.
        id: u64,
        /// The operation.
        op: Op,
    },
    /// A chunk of a `Put`'s content.
    PutData {
        /// The `Put` request's id.
        id: u64,
        /// At most `limits.chunk_size` bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End of a `Put`'s content with its checksum.
    PutEnd {
        /// The `Put` request's id.
        id: u64,
        /// BLAKE3 of the whole content.
        checksum: Checksum,
    },
    /// Abandon a request in flight (a `Put` is discarded, a `Get` stops).
    Cancel {
        /// The request's id.
        id: u64,
    },
}

/// Server-to-client frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The answer to [`ClientHello`].
    Hello(ServerHello),
    /// Outcome of authentication; on `Err` the server closes the connection,
    /// on `Ok` a [`ServerMsg::Welcome`] follows.
    AuthResult(Result<(), WireError>),
    /// The answer to a request (for `List`, possibly one of several).
    Reply {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<Reply, WireError>,
    },
    /// A chunk of a `Get`'s content.
    Data {
        /// The `Get` request's id.
        id: u64,
        /// At most `limits.chunk_size` bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End of a `Get`'s content: the checksum, or the error that cut it short.
    DataEnd {
        /// The `Get` request's id.
        id: u64,
        /// BLAKE3 of everything sent, or why the stream stopped.
        result: Result<Checksum, WireError>,
    },
    /// A connection-level error (bad frame, timeout); the server closes the
    /// connection after sending it.
    Fatal(WireError),
    /// The end of the handshake (version 2): requests may follow.
    Welcome(Welcome),
    /// Unsolicited: objects this session holds callbacks on have changed;
    /// the callbacks are gone. Never answers a request; sent as soon as the
    /// change is known, between the chunks of any transfer in progress.
    Invalidate(Vec<Invalidation>),
    /// A run of `len` zero bytes of a `Get`'s content that the server's file
    /// does not store (a hole); only when the `Get` set `sparse`. Counts
    /// toward the checksum as zeros.
    DataHole {
        /// The `Get` request's id.
        id: u64,
        /// Number of zero bytes.
        len: u64,
    },
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
