//! The FUSE adapter: unpacks kernel requests, calls the core in `fs.rs`, and
//! replies. Every failure leaves through [`reply_error`], which logs it at
//! the right level and replies with its errno.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use log::{debug, warn};
use rfmount_client::Remote;
use rfmount_proto::{FileKind, Meta, Owner, SetTime, Timestamp};

use crate::error::FsError;
use crate::fs::signal_pending;
use crate::fs::{
    Attr, Backer, Backing, DirSink, Echoes, KernelIo, KernelLock, KernelNote, KernelNotes, Opened,
    RemoteFs, Removal,
};
use crate::idmap::{IdMap, IdMapMode};
use crate::inodes::ROOT;
use crate::setgid_rule::{self, Caller};
use crate::through_mount::MountRoot;

/// `fuser::Filesystem` over the core.
pub struct FuseFs<R: Remote> {
    fs: Arc<RemoteFs<R>>,
    ttl: Duration,
    ids: IdMap,
    /// The kernel agreed to FUSE passthrough, the mount wants it, and no
    /// registration has failed yet.
    passthrough: AtomicBool,
    /// This mount's ID, once mounted (see [`FuseFs::mount_id`]).
    mount_id: Arc<OnceLock<u64>>,
}

impl<R: Remote> FuseFs<R> {
    /// Wraps the core; owners appear as `-o idmap`, `uid` and `gid` say.
    pub fn new(fs: Arc<RemoteFs<R>>) -> Self {
        let cfg = fs.config();
        let ttl = cfg.attr_timeout;
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let local = Owner { uid, gid };
        let remote = if cfg.idmap == IdMapMode::User {
            match fs.getattr(ROOT) {
                Ok(a) => Owner {
                    uid: a.meta.uid,
                    gid: a.meta.gid,
                },
                Err(e) => {
                    warn!("idmap=user: cannot read the export root's owner, mapping nothing: {e}");
                    local
                }
            }
        } else {
            local
        };
        let ids = IdMap::new(cfg.idmap, remote, local, cfg.uid, cfg.gid);
        FuseFs {
            fs,
            ttl,
            ids,
            passthrough: AtomicBool::new(false),
            mount_id: Arc::default(),
        }
    }

    /// Where to record this mount's ID once the kernel has mounted it: a
    /// close can then tell whether its caller still writes the file
    /// through another descriptor (`caller_fds`).
    pub fn mount_id(&self) -> Arc<OnceLock<u64>> {
        self.mount_id.clone()
    }

    /// How long the kernel may keep what it is told: the configured
    /// timeout while callbacks are live (changes are pushed), else at most
    /// the short one of a broken connection.
    fn ttl(&self) -> Duration {
        if self.fs.callbacks_live() {
            self.ttl
        } else {
            self.ttl.min(crate::meta_cache::BROKEN_TTL)
        }
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        let mut fa = to_file_attr(a.ino, &a.meta, &self.ids);
        fa.ctime = shown_ctime(&self.fs, a.ino, &a.meta, fa.ctime);
        // 0 links usually marks a placeholder, shown as 1; but a file
        // unlinked while open really has none left, and fstat must say so
        // (the kernel's own count is replaced by this reply).
        if a.meta.nlink == 0 && self.fs.is_unlinked(a.ino) {
            fa.nlink = 0;
        }
        fa
    }

    /// The mode `ino` must get when the caller of `req` writes, truncates
    /// or chowns it (`mode`: the one the kernel sends along): setgid
    /// cleared where a local filesystem clears it and FUSE's kernel side
    /// did not (`setgid_rule`). `None` when there is nothing to clear.
    fn setgid_cleared(&self, req: &Request, ino: u64, mode: Option<u32>) -> Option<u32> {
        let a = self.fs.known_attr(ino)?;
        if a.meta.kind != FileKind::File {
            return None;
        }
        let now = libc::S_IFREG | (mode.unwrap_or(a.meta.mode) & 0o7777);
        if !setgid_rule::may_clear(now) {
            return None;
        }
        let caller = Caller::of(req.pid(), req.uid(), req.gid());
        caller
            .clears_setgid(now, self.attr(&a).gid)
            .then_some(now & 0o7777 & !libc::S_ISGID)
    }

    /// After a write, `fallocate` or truncating open by the caller of
    /// `req`: clears setgid as [`FuseFs::setgid_cleared`] says. The change
    /// itself has happened, so a failure here is logged, not returned.
    fn clear_setgid_after(&self, req: &Request, ino: u64) {
        if let Some(mode) = self.setgid_cleared(req, ino, None) {
            if let Err(e) = self
                .fs
                .setattr(ino, Some(mode), None, None, None, (None, None))
            {
                warn!("clearing setgid of inode {ino}: {e}");
            }
        }
    }

    /// The server owner for an object the caller of `req` creates.
    fn creator(&self, req: &Request) -> Option<Owner> {
        Some(self.ids.owner_to_remote(req.uid(), req.gid()))
    }
}

/// The kernel's file type for a protocol kind.
pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
        FileKind::Socket => FileType::Socket,
        FileKind::File | FileKind::Other => FileType::RegularFile,
    }
}

/// Kernel attributes from protocol attributes.
pub fn to_file_attr(ino: u64, m: &Meta, ids: &IdMap) -> FileAttr {
    let kind = file_type(m.kind);
    let (uid, gid) = ids.to_local(m.uid, m.gid);
    // Attributes a peer did not fill in (local placeholders) say 0 links.
    let nlink = match (m.nlink, m.kind) {
        (0, FileKind::Dir) => 2,
        (0, _) => 1,
        (n, _) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let mtime = m.mtime.to_system();
    let or_mtime = |t: Timestamp| {
        if t == Timestamp::default() {
            mtime
        } else {
            t.to_system()
        }
    };
    FileAttr {
        ino: INodeNo(ino),
        size: m.size,
        blocks: m.blocks,
        atime: or_mtime(m.atime),
        mtime,
        ctime: or_mtime(m.ctime),
        crtime: mtime,
        kind,
        perm: (m.mode & 0o7777) as u16,
        nlink,
        uid,
        gid,
        rdev: u32::try_from(m.rdev).unwrap_or(0),
        blksize: 128 * 1024,
        flags: 0,
    }
}

fn reply_error(op: &str, e: &FsError) -> Errno {
    let errno = e.errno();
    // An unreachable server is reported once when it goes down; one
    // warning per operation during an outage would bury the log.
    let unreachable = matches!(e, FsError::Remote(r) if r.is_transport());
    // The kernel and ls ask for attributes that are not there
    // (security.capability on every write): ordinary answers, like ENOENT.
    let xattr_answer =
        op.ends_with("xattr") && matches!(errno, libc::ENODATA | libc::EOPNOTSUPP | libc::ERANGE);
    // A missing name or attribute is an answer, not a failure.
    if errno != libc::ENOENT && !xattr_answer {
        crate::activity::note_failure(op, e);
    }
    if errno == libc::ENOENT || unreachable || xattr_answer {
        debug!("{op}: {e}");
    } else {
        warn!("{op}: {e}");
    }
    Errno::from_i32(errno)
}

/// Refusals of a lock are answers (another owner has it, the caller was
/// interrupted), not failures to warn about.
fn lock_reply_error(e: &FsError) -> Errno {
    let errno = e.errno();
    match errno {
        libc::EAGAIN | libc::EINTR => {
            debug!("setlk: {e}");
            Errno::from_i32(errno)
        }
        _ => reply_error("setlk", e),
    }
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::from_i32(libc::EINVAL))
}

/// The name as UTF-8, or an `EINVAL` reply and return: names the protocol
/// cannot carry are refused at the boundary.
macro_rules! name_or_reply {
    ($name:expr, $reply:expr) => {
        match name_str($name) {
            Ok(n) => n,
            Err(e) => return $reply.error(e),
        }
    };
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(Timestamp::from_system(s)),
    })
}

/// getxattr/listxattr's protocol: size 0 asks for the length, a buffer too
/// small is ERANGE.
fn reply_xattr(reply: fuser::ReplyXattr, value: &[u8], size: u32) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}

fn open_flags(o: &Opened) -> FopenFlags {
    // The kernel refuses a passthrough open with any flag besides direct
    // I/O, parallel writes and no-flush; the page cache is the backing
    // file's then.
    if o.keep_cache && !matches!(o.io, KernelIo::Passthrough(_)) {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

const GEN: Generation = Generation(0);

struct PlainSink<'a>(&'a mut ReplyDirectory);

impl DirSink for PlainSink<'_> {
    fn add(&mut self, ino: u64, offset: u64, name: &str, meta: &Meta) -> bool {
        self.0.add(INodeNo(ino), offset, file_type(meta.kind), name)
    }
}

/// The ctime of `ino` as the kernel is to see it (`converted`: from its
/// attributes as they are).
fn shown_ctime<R: Remote>(
    fs: &RemoteFs<R>,
    ino: u64,
    meta: &Meta,
    converted: SystemTime,
) -> SystemTime {
    if meta.ctime == Timestamp::default() {
        return converted;
    }
    fs.shown_ctime(ino, meta).to_system()
}

struct PlusSink<'a, R: Remote> {
    reply: &'a mut ReplyDirectoryPlus,
    ttl: Duration,
    ids: IdMap,
    fs: &'a RemoteFs<R>,
}

impl<R: Remote> DirSink for PlusSink<'_, R> {
    fn add(&mut self, ino: u64, offset: u64, name: &str, meta: &Meta) -> bool {
        let mut attr = to_file_attr(ino, meta, &self.ids);
        attr.ctime = shown_ctime(self.fs, ino, meta, attr.ctime);
        self.reply
            .add(INodeNo(ino), offset, name, &self.ttl, &attr, GEN)
    }
}

impl<R: Remote> Filesystem for FuseFs<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // readdirplus: `ls -l` gets every attribute from the listing, with
        // no lookup per entry. Atomic O_TRUNC: `open(O_TRUNC)` arrives as
        // one request, so a truncating open needs no fetch.
        // POSIX and flock locks: without these the kernel keeps locks on
        // this machine and other mounts never see them.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_POSIX_LOCKS
            | InitFlags::FUSE_FLOCK_LOCKS;
        if let Err(missing) = config.add_capabilities(wanted) {
            debug!("kernel lacks capabilities {missing:?}");
        }
        // -o acl: the kernel checks permissions with the ACLs too, and hands
        // the umask to the mount (DONT_MASK), which applies it or the
        // parent's default ACL (`create_mode`), as a local create does.
        if self.fs.config().acl {
            let acl = InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK;
            if let Err(missing) = config.add_capabilities(acl) {
                warn!("-o acl: the kernel lacks {missing:?}; ACLs are stored but not enforced");
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        // Passthrough: backing files may not themselves be on a stacked
        // filesystem (depth 1), so this mount can still sit under one.
        if self.fs.config().passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.store(true, Ordering::SeqCst);
        } else {
            debug!("no FUSE passthrough: every read comes through rfmount");
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.fs.echoes().stop();
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name_or_reply!(name, reply);
        if let Some(a) = self.fs.echo_lookup(req.pid(), parent.0, name) {
            // Only for the removal about to follow: never kept.
            return reply.entry(&Duration::ZERO, &self.attr(&a), GEN);
        }
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&self.ttl(), &self.attr(&a), GEN),
            Err(e) => reply.error(reply_error("lookup", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(a) => reply.attr(&self.ttl(), &self.attr(&a)),
            Err(e) => reply.error(reply_error("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let owner = (
            uid.map(|u| self.ids.uid_to_remote(u)),
            gid.map(|g| self.ids.gid_to_remote(g)),
        );
        // truncate and chown clear setgid like a write (chown: after the
        // owner changes, as the server applies the two).
        let changes_privs = size.is_some() || uid.is_some() || gid.is_some();
        let mode = match changes_privs {
            true => self.setgid_cleared(req, ino.0, mode).or(mode),
            false => mode,
        };
        match self
            .fs
            .setattr(ino.0, mode, size, set_time(atime), set_time(mtime), owner)
        {
            Ok(a) => reply.attr(&self.ttl(), &self.attr(&a)),
            Err(e) => reply.error(reply_error("setattr", &e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name_or_reply!(name, reply);
        let new = match self.fs.create_mode(parent.0, mode, umask) {
            Ok(m) => m,
            Err(e) => return reply.error(reply_error("mkdir", &e)),
        };
        match self.fs.mkdir(parent.0, name, new.mode, self.creator(req)) {
            Ok(a) => {
                if new.inherits {
                    self.fs.inherited_acl(a.ino);
                }
                reply.entry(&self.ttl(), &self.attr(&a), GEN);
            }
            Err(e) => reply.error(reply_error("mkdir", &e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_or_reply!(name, reply);
        if let Some(r) = self.fs.echo_remove(req.pid(), parent.0, name, false) {
            return match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(reply_error("unlink (echo)", &e)),
            };
        }
        match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("unlink", &e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_or_reply!(name, reply);
        if let Some(r) = self.fs.echo_remove(req.pid(), parent.0, name, true) {
            return match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(reply_error("rmdir (echo)", &e)),
            };
        }
        match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("rmdir", &e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        match self
            .fs
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("rename", &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let register = |f: &std::fs::File| -> std::io::Result<Backing> {
            match reply.open_backing(f) {
                Ok(id) => Ok(Arc::new(id)),
                Err(e) => {
                    // Refused once (no privilege, a stacked cache
                    // filesystem), refused always: stop asking.
                    self.passthrough.store(false, Ordering::SeqCst);
                    Err(e)
                }
            }
        };
        let backer: Option<Backer<'_>> =
            self.passthrough.load(Ordering::SeqCst).then_some(&register);
        let opened = self.fs.open_with(ino.0, flags.0, backer);
        if opened.is_ok() && flags.0 & libc::O_TRUNC != 0 {
            self.clear_setgid_after(req, ino.0);
        }
        match opened {
            Ok(o) => match &o.io {
                KernelIo::Passthrough(b) => match b.downcast_ref::<BackingId>() {
                    Some(id) => reply.opened_passthrough(FileHandle(o.fh), open_flags(&o), id),
                    // Only this adapter makes backings; never reached.
                    None => reply.error(Errno::from_i32(libc::EIO)),
                },
                KernelIo::Cached => reply.opened(FileHandle(o.fh), open_flags(&o)),
            },
            Err(e) => reply.error(reply_error("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(reply_error("read", &e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => {
                self.clear_setgid_after(req, ino.0);
                reply.written(n);
            }
            Err(e) => reply.error(reply_error("write", &e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.fs.fallocate(fh.0, offset, length, mode) {
            Ok(()) => {
                self.clear_setgid_after(req, ino.0);
                reply.ok();
            }
            Err(e) => reply.error(reply_error("fallocate", &e)),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let pid = req.pid();
        let uploaded = self.fs.flush_unless_written_on(fh.0, |ino| {
            self.mount_id
                .get()
                .is_some_and(|&m| crate::caller_fds::holds_writer(pid, m, ino))
        });
        // close(2) drops the POSIX locks of the closing process.
        self.fs.release_locks(ino.0, lock_owner.0);
        match uploaded {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("flush (upload)", &e)),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The last close of an open file drops its flock lock.
        if let Some(owner) = lock_owner {
            self.fs.release_locks(ino.0, owner.0);
        }
        self.fs.release(fh.0);
        reply.ok();
    }

    fn getlk(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let lk = KernelLock {
            start,
            end,
            typ,
            pid,
        };
        match self.fs.getlk(ino.0, lock_owner.0, lk) {
            Ok(l) => reply.locked(l.start, l.end, l.typ, l.pid),
            Err(e) => reply.error(reply_error("getlk", &e)),
        }
    }

    fn setlk(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let lk = KernelLock {
            start,
            end,
            typ,
            pid,
        };
        let fs = Arc::clone(&self.fs);
        let tid = req.pid();
        let run = move || {
            let cancelled = || signal_pending(tid);
            match fs.setlk(ino.0, lock_owner.0, lk, sleep, &cancelled) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(lock_reply_error(&e)),
            }
        };
        if !sleep {
            run();
            return;
        }
        // A wait may be long: it must not hold one of the few FUSE threads.
        if let Err(e) = std::thread::Builder::new()
            .name("rfmount-lockwait".into())
            .spawn(run)
        {
            warn!("cannot start a thread for a waiting lock: {e}");
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("fsync (upload)", &e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(reply_error("opendir", &e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self
            .fs
            .readdir(fh.0, offset, false, &mut PlainSink(&mut reply))
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("readdir", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let mut sink = PlusSink {
            reply: &mut reply,
            ttl: self.ttl(),
            ids: self.ids,
            fs: &self.fs,
        };
        match self.fs.readdir(fh.0, offset, true, &mut sink) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("readdirplus", &e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every directory change is applied on the server synchronously.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(reply_error("statfs", &e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions) or the
        // server's; access(2) itself always succeeds here.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name_or_reply!(name, reply);
        let new = match self.fs.create_mode(parent.0, mode, umask) {
            Ok(m) => m,
            Err(e) => return reply.error(reply_error("create", &e)),
        };
        let created = self
            .fs
            .create(parent.0, name, new.mode, 0, self.creator(req));
        if let (Ok((a, _)), true) = (&created, new.inherits) {
            self.fs.inherited_acl(a.ino);
        }
        match created {
            Ok((a, o)) => match &o.io {
                // The inode is in passthrough for a handle still open.
                KernelIo::Passthrough(b) => match b.downcast_ref::<BackingId>() {
                    Some(id) => reply.created_passthrough(
                        &self.ttl(),
                        &self.attr(&a),
                        GEN,
                        FileHandle(o.fh),
                        open_flags(&o),
                        id,
                    ),
                    None => reply.error(Errno::from_i32(libc::EIO)),
                },
                KernelIo::Cached => reply.created(
                    &self.ttl(),
                    &self.attr(&a),
                    GEN,
                    FileHandle(o.fh),
                    open_flags(&o),
                ),
            },
            Err(e) => reply.error(reply_error("create", &e)),
        }
    }

    fn getxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: fuser::ReplyXattr,
    ) {
        let name = name_or_reply!(name, reply);
        match self.fs.getxattr(ino.0, name) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(reply_error("getxattr", &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(reply_error("listxattr", &e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = name_or_reply!(name, reply);
        let flags = u32::try_from(flags).unwrap_or(u32::MAX);
        match self.fs.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("setxattr", &e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name_or_reply!(name, reply);
        match self.fs.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(reply_error("removexattr", &e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let name = name_or_reply!(link_name, reply);
        let target = name_or_reply!(target.as_os_str(), reply);
        match self.fs.symlink(parent.0, name, target, self.creator(req)) {
            Ok(a) => reply.entry(&self.ttl(), &self.attr(&a), GEN),
            Err(e) => reply.error(reply_error("symlink", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(t.as_bytes()),
            Err(e) => reply.error(reply_error("readlink", &e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let name = name_or_reply!(newname, reply);
        match self.fs.link(ino.0, newparent.0, name) {
            Ok(a) => reply.entry(&self.ttl(), &self.attr(&a), GEN),
            Err(e) => reply.error(reply_error("link", &e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name_or_reply!(name, reply);
        let new = match self.fs.create_mode(parent.0, mode, umask) {
            Ok(m) => m,
            Err(e) => return reply.error(reply_error("mknod", &e)),
        };
        let mode = (mode & libc::S_IFMT) | (new.mode & 0o7777);
        match self
            .fs
            .mknod(parent.0, name, mode, u64::from(rdev), self.creator(req))
        {
            Ok(a) => {
                if new.inherits {
                    self.fs.inherited_acl(a.ino);
                }
                reply.entry(&self.ttl(), &self.attr(&a), GEN);
            }
            Err(e) => reply.error(reply_error("mknod", &e)),
        }
    }
}

/// A sender of [`KernelNote`]s to the kernel on a thread of its own: a
/// notification may wait on the kernel, which may be waiting on a request
/// that needs the connection's reader, where the notes come from. The same
/// thread makes the echoes of removals through `root` (see `fs/echo.rs`):
/// it is no FUSE request thread, so the requests its removals cause are
/// served meanwhile.
///
/// # Errors
/// When the thread cannot be started.
pub fn kernel_notes(
    notifier: fuser::Notifier,
    echo: Option<(MountRoot, Arc<Echoes>)>,
) -> std::io::Result<KernelNotes> {
    let (tx, rx) = std::sync::mpsc::channel::<KernelNote>();
    std::thread::Builder::new()
        .name("rfmount-notes".into())
        .spawn(move || {
            if let Some((_, echoes)) = &echo {
                echoes.serve_from_this_thread();
            }
            for note in rx {
                log::debug!("telling the kernel {note:?}");
                let r = match &note {
                    KernelNote::Inode(ino) => notifier.inval_inode(INodeNo(*ino), 0, 0),
                    KernelNote::Entry(parent, name) => {
                        notifier.inval_entry(INodeNo(*parent), OsStr::new(name))
                    }
                    KernelNote::Delete(parent, child, name) => {
                        notifier.delete(INodeNo(*parent), INodeNo(*child), OsStr::new(name))
                    }
                    KernelNote::Barrier(b) => {
                        b.reached();
                        Ok(())
                    }
                    KernelNote::Echo(r) => match &echo {
                        Some((root, echoes)) => echo_removal(&notifier, root, echoes, r),
                        None => notifier.delete(
                            INodeNo(r.parent),
                            INodeNo(r.child),
                            OsStr::new(&r.name),
                        ),
                    },
                };
                // ENOENT: the kernel did not hold it; nothing to drop.
                if let Err(e) = r {
                    log::debug!("telling the kernel {note:?}: {e}");
                }
            }
        })?;
    let tx = parking_lot::Mutex::new(tx);
    Ok(Box::new(move |n| {
        let _ = tx.lock().send(n);
    }))
}

/// Removes `r` through the mount point, so that watchers are told; when
/// that cannot be done, only drops the kernel's entry.
fn echo_removal(
    notifier: &fuser::Notifier,
    root: &MountRoot,
    echoes: &Echoes,
    r: &Removal,
) -> std::io::Result<()> {
    let echoed = if echoes.running() {
        root.remove(&r.path, r.dir)
    } else {
        Err(std::io::Error::other("the mount is going away"))
    };
    echoes.finished(r);
    match echoed {
        Ok(()) => Ok(()),
        Err(e) => {
            debug!(
                "{}: removal not echoed ({e}); dropping the kernel's entry",
                r.path
            );
            notifier.delete(INodeNo(r.parent), INodeNo(r.child), OsStr::new(&r.name))
        }
    }
}
