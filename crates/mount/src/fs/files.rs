//! Regular files: open, read, write, flush, release, create, setattr, and
//! the uploads that make local changes visible on the server.

use std::fs::File;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use log::{info, warn};
use parking_lot::{Mutex, RwLock};
use rfmount_client::{GetOutcome, PutOptions, Remote, Uploaded};
use rfmount_proto::{
    ErrorCode, FileKind, Meta, Owner, RelPath, SetAttr, SetTime, Timestamp, Version,
};

use super::kernel_writes::{self, Landed};
use super::passthrough::{Backer, InodeIo, Mode};
use super::stream::{Answer, Stream};
use super::upload_stream::{self, InOrder};
use super::{Attr, Opened, ReadBuf, RemoteFs, conflict};
use crate::data_cache::{EntryInfo, open_data};
use crate::error::{FsError, FsResult};

/// Per-inode state shared by all handles of one file.
#[derive(Default)]
pub(crate) struct FileState {
    /// Bumped by every local change; an upload only marks the file clean if
    /// no change happened while it ran.
    pub(super) write_gen: AtomicU64,
    /// Held across fetches and uploads of this file (never across anything
    /// else), so that they do not interleave.
    pub(super) upload: Mutex<()>,
    /// Shared by local changes (from their record in the cache until they
    /// have landed), exclusive while an upload seals the content it sends
    /// or marks it clean: a change is either in what was sealed, or it
    /// marks the file as being written again after the seal. Always taken
    /// after `upload`, never before.
    pub(super) seal: RwLock<()>,
    open: AtomicU32,
    pub(super) writers: AtomicU32,
    /// Writers in passthrough: the kernel writes the cache file for them.
    kernel_writers: AtomicU32,
    /// Content version whose pages the kernel may hold.
    pub(super) kernel_version: Mutex<Option<Version>>,
    /// Attributes at the moment the file was unlinked or replaced while
    /// open; its descriptors go on answering fstat from these.
    detached: Mutex<Option<Meta>>,
    /// The last fetch of this file (running, or ended), which new readers
    /// share while it runs.
    pub(super) stream: Mutex<Option<Arc<Stream>>>,
    /// How the kernel does the I/O of the open handles (passthrough).
    pub(super) io: InodeIo,
    /// Bumped by every pushed change of the file (see `pushed.rs`).
    pub(super) pushed: AtomicU64,
    /// The file is being written in order, and its upload may be
    /// streaming (see `upload_stream.rs`).
    pub(super) in_order: Mutex<Option<InOrder>>,
    /// The last upload made while a passthrough writer was open, when
    /// the cache file is known to have been left as it sent it.
    kernel_landed: Mutex<Option<Landed>>,
}

impl FileState {
    pub(crate) fn open_count(&self) -> u32 {
        self.open.load(Ordering::SeqCst)
    }
}

/// Why an upload runs; it decides whether the content becomes a *sealed*
/// version, one that may be uploaded after a crash too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// A `close(2)` of one descriptor. Not a seal: the kernel also flushes
    /// when a dup is closed or a child process execs, while the writer goes
    /// on writing.
    Flush,
    /// `fsync(2)`: the application declares this content.
    Fsync,
    /// The last close of a handle: a seal once no handle writes the file.
    Release,
    /// The retry loop: only sealed content that no handle is writing.
    Retry,
    /// A write-back upload queued at close: as a retry, but a first try.
    Background,
}

/// An open file.
pub(crate) struct Handle {
    pub(super) ino: u64,
    /// Replaced when taking a lock brings a newer version into the cache
    /// while the file is open (`fs/locks.rs`).
    file: RwLock<File>,
    /// `file` is no longer the one the handle's fetch writes: the fetch's
    /// chunks in memory are not its content.
    replaced: AtomicBool,
    pub(super) writable: bool,
    state: Arc<FileState>,
    /// The fetch this handle's content is still arriving from.
    stream: Option<Arc<Stream>>,
    mode: Mode,
    /// The file's `pushed` count this handle's copy reflects.
    pub(super) seen_pushed: AtomicU64,
    /// A newer copy fetched after a pushed change (reads use it).
    pub(super) fresh: Mutex<Option<Arc<File>>>,
}

impl Handle {
    pub(super) fn ino(&self) -> u64 {
        self.ino
    }

    pub(super) fn writable(&self) -> bool {
        self.writable
    }

    /// The cache file this handle reads and writes.
    pub(super) fn file(&self) -> parking_lot::RwLockReadGuard<'_, File> {
        self.file.read()
    }

    pub(super) fn state(&self) -> &FileState {
        &self.state
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// Points the handle at a new cache file of the same content path.
    pub(super) fn replace_file(&self, file: File) {
        let mut current = self.file.write();
        self.replaced.store(true, Ordering::SeqCst);
        *current = file;
    }
}

/// Up to `len` bytes at `offset` (fewer at the end of the file), read
/// straight into the reply's buffer: zeroing it first cost a tenth of a
/// cold read's CPU.
fn read_full_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let got = buf.len();
        let at = libc::off_t::try_from(offset + got as u64)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: the destination is the vector's spare capacity (len - got
        // bytes from its end); pread writes at most that many bytes.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(got).cast(),
                len - got,
                at,
            )
        };
        match usize::try_from(n) {
            Ok(0) => break,
            // SAFETY: pread initialised exactly n more bytes.
            Ok(n) => unsafe { buf.set_len(got + n) },
            Err(_) => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

pub(super) fn discard_stream(state: &FileState) {
    if let Some(s) = state.stream.lock().take() {
        s.discard();
    }
}

fn ebadf() -> FsError {
    FsError::Errno {
        errno: libc::EBADF,
        what: "unknown or read-only file handle",
    }
}

impl<R: Remote> RemoteFs<R> {
    pub(super) fn file_state(&self, ino: u64) -> Arc<FileState> {
        self.files.lock().entry(ino).or_default().clone()
    }

    pub(super) fn handle(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.handles.read().get(&fh).cloned().ok_or_else(ebadf)
    }

    /// Opens a file. Reading: fetch the current version into the cache
    /// unless the cached copy is current. Writing with `O_TRUNC`: start from
    /// an empty local copy without a transfer.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`, `EROFS`, remote and cache errors.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        self.open_with(ino, flags, None)
    }

    /// [`RemoteFs::open`], where `backer` registers a backing file for FUSE
    /// passthrough (`None`: the kernel or the mount has none); see
    /// [`super::passthrough`].
    ///
    /// # Errors
    /// As [`RemoteFs::open`].
    pub fn open_with(&self, ino: u64, flags: i32, backer: Option<Backer<'_>>) -> FsResult<Opened> {
        let path = self.path(ino)?;
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = writable && flags & libc::O_TRUNC != 0;
        if writable {
            self.check_writable()?;
        }
        let state = self.file_state(ino);
        // Before the content is looked at: a change pushed meanwhile makes
        // it stale, never one it does not have.
        let pushed = state.pushed.load(Ordering::SeqCst);
        // Pinned before the fetch: content larger than the cache limit must
        // survive until the handle has it open.
        self.cache.pin(&path);
        let (file, keep_cache, stream) = match self.open_cached(ino, &path, &state, writable, trunc)
        {
            Ok(v) => v,
            Err(e) => {
                self.cache.unpin(&path);
                return Err(e);
            }
        };
        if !writable {
            self.prefetch_after(&path);
        }
        // Complete and clean, and nobody writes it: the kernel may read the
        // cache file itself. A pushed change or a lock's new version is
        // then copied into that file (`backing_refresh.rs`).
        let eligible = !writable
            && stream.is_none()
            && state.writers.load(Ordering::SeqCst) == 0
            && self.cache.entry(&path).is_some_and(|e| !e.dirty);
        let (mode, io) = state.io.choose(&file, eligible, backer, pushed);
        log::debug!("open {path}: kernel I/O {io:?}");
        if writable && mode == Mode::Passthrough {
            if let Err(e) = self.cache.note_change(&path) {
                state.io.release(mode);
                self.cache.unpin(&path);
                return Err(FsError::cache(format!("recording a write to {path}"), e));
            }
            // Its writes are never seen here: which bytes changed is
            // unknown, and a partial upload would be refused.
            self.cache.note_written(&path, 0, u64::MAX);
            *state.kernel_landed.lock() = None;
            state.kernel_writers.fetch_add(1, Ordering::SeqCst);
        }
        let fh = self.register_handle(ino, file, writable, state, stream, mode);
        Ok(Opened { fh, keep_cache, io })
    }

    /// Counts a new open of `ino` and returns its file handle.
    fn register_handle(
        &self,
        ino: u64,
        file: File,
        writable: bool,
        state: Arc<FileState>,
        stream: Option<Arc<Stream>>,
        mode: Mode,
    ) -> u64 {
        state.open.fetch_add(1, Ordering::SeqCst);
        if writable {
            state.writers.fetch_add(1, Ordering::SeqCst);
        }
        let fh = self.next_fh();
        self.handles.write().insert(
            fh,
            Arc::new(Handle {
                ino,
                file: RwLock::new(file),
                replaced: AtomicBool::new(false),
                writable,
                seen_pushed: AtomicU64::new(state.pushed.load(Ordering::SeqCst)),
                state,
                stream,
                mode,
                fresh: Mutex::new(None),
            }),
        );
        fh
    }

    /// Brings the cache copy of `path` to the state `open` needs and opens
    /// it; returns the file, whether the kernel may keep its pages, and the
    /// fetch the content is still arriving from.
    fn open_cached(
        &self,
        ino: u64,
        path: &RelPath,
        state: &FileState,
        writable: bool,
        trunc: bool,
    ) -> FsResult<(File, bool, Option<Arc<Stream>>)> {
        // Unsent local content needs no fetch, so no wait for an upload of
        // it in flight (a write-back upload to a slow server).
        let mut entry = self.cache.entry(path);
        let mut _guard = None;
        if !entry.as_ref().is_some_and(|e| e.dirty) {
            _guard = Some(state.upload.lock());
            // The kernel reads this inode's cache file itself: what the
            // server pushed since goes into that very file.
            self.refresh_backing(ino, path, state, false)?;
            entry = self.cache.entry(path);
        }
        let running = state.stream.lock().clone();
        let mut confirmed = None;
        if let Some(s) = running {
            if s.is_live() && !writable {
                // Two readers of one file share one fetch.
                if s.prefetch {
                    self.prefetcher.note_used();
                }
                return self.follow(ino, path, state, &s);
            }
            // A writer starts from the whole content; an abandoned fetch
            // may still be putting its content in place.
            s.wait_end();
            // Only a prefetch's answer stands in for the open's own GET:
            // an open after another open still asks (close-to-open).
            if s.prefetch {
                confirmed = s.confirmed().map(|c| (c, s.clone()));
            }
            *state.stream.lock() = None;
            entry = self.cache.entry(path);
        }
        let keep_cache = if entry.as_ref().is_some_and(|e| e.dirty) {
            // Unsent local changes are the newest content there is.
            if trunc {
                self.truncate_local(path, state, 0, false)?;
            }
            !trunc
        } else if trunc {
            // The writer replaces the version it knows: the cached one, or
            // the one its lookup saw.
            let base = match entry.as_ref().and_then(|e| e.version) {
                Some(v) => Some(v),
                None => {
                    let known = self.meta.lock().attr_any(path).map(|m| m.version);
                    known.or_else(|| self.server_base(path))
                }
            };
            self.cache
                .create_empty_from(path, None, base)
                .map_err(|e| FsError::cache(format!("creating {path}"), e))?;
            state.write_gen.fetch_add(1, Ordering::SeqCst);
            false
        } else if entry.is_some() && state.open_count() > 0 {
            // All descriptors of a file in one mount share one local copy,
            // as on a local disk. A fetch now would put a new cache file in
            // place while the open handles write to the old one, and their
            // writes would never be uploaded.
            true
        } else if let Some(meta) = self.trusted_copy(path, entry.as_ref().and_then(|e| e.version)) {
            // Under a callback the cached copy is current: no round trip,
            // ahead of any prefetch or stream.
            self.settle_version(ino, state, meta.version)
        } else if let Some(((v, _), s)) = confirmed
            .filter(|((v, _), _)| entry.as_ref().and_then(|e| e.version) == Some(*v))
            .filter(|((v, at), _)| self.content_trusted(path, *v, *at))
        {
            self.prefetcher.note_used();
            // A prefetch answered under a callback still in force: later
            // opens need no round trip either.
            if self.trust.granted(s.ticket)
                && let Some(meta) = s.answer().filter(|m| m.version == v)
            {
                self.meta.lock().put_attr_as(path, meta, true);
            }
            self.settle_version(ino, state, v)
        } else if !writable {
            let have = entry.as_ref().and_then(|e| e.version);
            let ticket = self.trust.ticket();
            match Stream::start(
                self.remote.clone(),
                self.cache.clone(),
                path.clone(),
                have,
                None,
                None,
                ticket,
            ) {
                Ok(s) => {
                    *state.stream.lock() = Some(s.clone());
                    return self.follow(ino, path, state, &s);
                }
                Err(e) => {
                    warn!("{path}: {e}; fetching it whole first");
                    let meta = self.fetch(path, entry.as_ref())?;
                    self.settle_version(ino, state, meta.version)
                }
            }
        } else {
            let meta = self.fetch(path, entry.as_ref())?;
            self.settle_version(ino, state, meta.version)
        };
        let file = open_data(&self.cache.data_path(path), writable)
            .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
        Ok((file, keep_cache, None))
    }

    /// Whether content the server said at `answered` was current at
    /// version `v` may be served without asking it again: for as long as
    /// the mount trusts attributes (the attribute timeout), no longer, and
    /// only while no fresher attributes say otherwise. The one place that
    /// decides it, so that a server callback can extend it.
    pub(super) fn content_trusted(&self, path: &RelPath, v: Version, answered: Instant) -> bool {
        if self.trusted_copy(path, Some(v)).is_some() {
            // Under a callback: current until the server says otherwise.
            return true;
        }
        if answered.elapsed() >= self.cfg.attr_timeout {
            return false;
        }
        let mc = self.meta.lock();
        let fresh = mc.attr(path).or_else(|| {
            let listing = mc.listing(&path.parent()?)?;
            let name = path.file_name()?;
            (!listing.is_stale(name))
                .then(|| listing.get(name).map(|e| e.meta.clone()))
                .flatten()
        });
        fresh.is_none_or(|m| m.version == v && m.kind == FileKind::File)
    }

    /// The kernel is about to see version `v` of `ino`; true when its
    /// cached pages are of that version already.
    pub(super) fn settle_version(&self, ino: u64, state: &FileState, v: Version) -> bool {
        let mut kv = state.kernel_version.lock();
        let same = *kv == Some(v);
        if kv.is_some() && !same {
            // The kernel may hold attributes (size) and pages of the old
            // content; without this a grown file reads truncated until
            // the attribute timeout.
            if let Some(inval) = self.invalidator.get() {
                inval(ino);
            }
        }
        *kv = Some(v);
        same
    }

    /// Opens `path` through the fetch `s`: waits for the server's answer
    /// only, not for the content.
    fn follow(
        &self,
        ino: u64,
        path: &RelPath,
        state: &FileState,
        s: &Arc<Stream>,
    ) -> FsResult<(File, bool, Option<Arc<Stream>>)> {
        let have = self.cache.entry(path).and_then(|e| e.version);
        // As in `fetch`: the answer becomes a callback unless an
        // invalidation arrived since the GET was sent.
        let trusted = |fs: &Self| fs.trust.granted(s.ticket);
        match s.attach() {
            Ok(Answer::Content(meta, file)) => {
                let t = trusted(self);
                self.meta.lock().put_attr_as(path, meta.clone(), t);
                let keep = self.settle_version(ino, state, meta.version);
                Ok((file, keep, Some(s.clone())))
            }
            Ok(Answer::NotModified(meta)) => {
                let t = trusted(self);
                self.meta.lock().put_attr_as(path, meta.clone(), t);
                let keep = self.settle_version(ino, state, meta.version);
                let file = open_data(&self.cache.data_path(path), false)
                    .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
                Ok((file, keep, None))
            }
            Err(e) => {
                *state.stream.lock() = None;
                let meta = self.fetch_failed(path, have, e)?;
                let keep = self.settle_version(ino, state, meta.version);
                let file = open_data(&self.cache.data_path(path), false)
                    .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
                Ok((file, keep, None))
            }
        }
    }

    /// Brings the cache up to date with the server: one `GET` naming the
    /// cached version. When the server is unreachable a cached clean copy is
    /// served as it is (reads keep working offline).
    pub(super) fn fetch(&self, path: &RelPath, entry: Option<&EntryInfo>) -> FsResult<Meta> {
        let have = entry.and_then(|e| e.version);
        let ticket = self.trust.ticket();
        let mut tmp = self
            .cache
            .begin_fetch(path)
            .map_err(|e| FsError::cache(format!("preparing to fetch {path}"), e))?;
        // Unbuffered: data arrives in whole chunks, and holes land as holes.
        let outcome = self
            .remote
            .get_sparse(path, have, &mut |_| {}, &mut tmp)
            .map_err(FsError::from);
        match outcome {
            Ok(GetOutcome::NotModified(meta)) => {
                let trusted = self.trust.granted(ticket);
                self.meta.lock().put_attr_as(path, meta.clone(), trusted);
                Ok(meta)
            }
            Ok(GetOutcome::Fetched(meta)) => {
                let size = tmp
                    .received()
                    .map_err(|e| FsError::cache(format!("fetching {path}"), e))?;
                self.cache
                    .finish_fetch(path, tmp, meta.version, size)
                    .map_err(|e| FsError::cache(format!("storing {path}"), e))?;
                let meta = Meta { size, ..meta };
                let trusted = self.trust.granted(ticket);
                self.meta.lock().put_attr_as(path, meta.clone(), trusted);
                Ok(meta)
            }
            Err(e) => self.fetch_failed(path, have, e),
        }
    }

    /// What a failed fetch of `path` (`have`: the cached version) leaves
    /// the opener: `ENOENT` for a file gone from the server, the cached
    /// copy while the server is unreachable, else the error.
    pub(super) fn fetch_failed(
        &self,
        path: &RelPath,
        have: Option<Version>,
        e: FsError,
    ) -> FsResult<Meta> {
        match e {
            FsError::Remote(e) if e.code() == Some(ErrorCode::NotFound) => {
                self.meta.lock().invalidate(path);
                self.cache.remove(path);
                Err(FsError::enoent())
            }
            FsError::Remote(e) if e.is_transport() && have.is_some() => {
                warn!("{path}: server unreachable, serving the cached copy: {e}");
                let size = self.cache.entry(path).map_or(0, |e| e.size);
                let old = self.meta.lock().attr(path);
                Ok(old.unwrap_or(Meta {
                    kind: FileKind::File,
                    size,
                    mode: 0o644,
                    version: have.unwrap_or(0),
                    nlink: 1,
                    ..Meta::default()
                }))
            }
            e => Err(e),
        }
    }

    /// Creates and opens a new file; it reaches the server at `close`.
    ///
    /// # Errors
    /// `EROFS`, bad names, cache errors.
    pub fn create(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        umask: u32,
        owner: Option<Owner>,
    ) -> FsResult<(Attr, Opened)> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        if let Some(o) = owner {
            self.creators.lock().insert(path.clone(), o);
        }
        // A new name: its upload must not replace a file another mount
        // created meanwhile.
        let file = self
            .cache
            .create_empty_open(&path, Some(mode & !umask & 0o7777), None)
            .map_err(|e| FsError::cache(format!("creating {path}"), e))?;
        let ino = self.inodes.lock().lookup(&path);
        let state = self.file_state(ino);
        state.write_gen.fetch_add(1, Ordering::SeqCst);
        *state.kernel_version.lock() = None;
        let meta = self.local_meta(&path).ok_or_else(FsError::enoent)?;
        if let Some(dir) = path.parent() {
            self.note_unsent_child(&dir);
        }
        self.meta.lock().note_entry(&path, meta.clone());
        // A file made here has no attributes until this mount sets some: the
        // kernel's `security.capability` question before each write needs
        // no LISTXATTR (a pushed change of the name forgets this).
        self.note_no_xattrs(&path);
        self.cache.pin(&path);
        let (mode, io) = state.io.choose(&file, false, None, 0);
        if mode == Mode::Passthrough {
            // Recorded as being written by `create_empty` above.
            state.kernel_writers.fetch_add(1, Ordering::SeqCst);
        }
        let fh = self.register_handle(ino, file, true, state, None, mode);
        Ok((
            Attr { ino, meta },
            Opened {
                fh,
                keep_cache: false,
                io,
            },
        ))
    }

    /// Reads from the cache file.
    ///
    /// # Errors
    /// `EBADF`, cache I/O errors.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<ReadBuf> {
        let h = self.handle(fh)?;
        let fresh = self.followed(&h, &h.state)?;
        if fresh.is_none()
            && let Some(s) = &h.stream
        {
            s.wait_for(offset.saturating_add(u64::from(size)))?;
            let current = h.file.read();
            if !h.replaced.load(Ordering::SeqCst)
                && let Some(data) = s.recent(offset, size as usize)
            {
                return Ok(data);
            }
            drop(current);
        }
        let current = h.file.read();
        let file = fresh.as_deref().unwrap_or(&*current);
        read_full_at(file, offset, size as usize)
            .map(ReadBuf::Owned)
            .map_err(|e| FsError::cache("reading cached file", e))
    }

    /// Writes to the cache file; the file becomes dirty, and is recorded as
    /// being written (not to be uploaded after a crash) before the data
    /// lands.
    ///
    /// # Errors
    /// `EBADF` for a read-only handle; `ENOSPC` when the cache is full of
    /// unsent data (after a bounded wait for uploads) or its disk is full.
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Err(ebadf());
        }
        let path = self.inodes.lock().path(h.ino);
        let _changing = h.state.seal.read();
        // An unlinked file's writes go to its descriptors only.
        if let Some(path) = &path {
            self.cache
                .note_change(path)
                .map_err(|e| FsError::cache(format!("recording a write to {path}"), e))?;
            self.cache
                .reserve_write(path, offset, data.len() as u64)
                .map_err(|e| FsError::cache(format!("cache full of unsent data: {path}"), e))?;
        }
        let file = h.file.read();
        file.write_all_at(data, offset)
            .map_err(|e| FsError::cache("writing cached file", e))?;
        if let Some(path) = &path {
            self.cache.note_written(path, offset, data.len() as u64);
            self.note_stored(path, &file);
        }
        drop(file);
        let generation = h.state.write_gen.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(path) = &path {
            self.note_in_order(&h, path, offset, data.len() as u64, generation);
        }
        Ok(data.len() as u32)
    }

    /// `close(2)` of one descriptor: uploads the file if this handle may
    /// have changed it and it has unsent changes.
    ///
    /// # Errors
    /// The upload's error (`EIO`, `ENOSPC`, `EROFS`, ...); the changes stay
    /// in the cache and are retried.
    pub fn flush(&self, fh: u64) -> FsResult<()> {
        self.flush_unless_written_on(fh, |_| false)
    }

    /// [`RemoteFs::flush`], where `still_written(ino)` tells whether the
    /// closing process still holds the file open for writing through
    /// another descriptor. An empty file it goes on writing (a shell's
    /// `> f` closes its first descriptor before the data) is uploaded by
    /// that descriptor's close, not also empty now.
    ///
    /// # Errors
    /// As [`RemoteFs::flush`].
    pub fn flush_unless_written_on(
        &self,
        fh: u64,
        still_written: impl FnOnce(u64) -> bool,
    ) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.writable {
            return Ok(());
        }
        self.note_kernel_writes(&h)?;
        if self.cfg.writeback {
            // An unlinked file's changes go nowhere.
            let Some(path) = self.inodes.lock().path(h.ino) else {
                return Ok(());
            };
            // Sealed at every close, as a synchronous mount uploads at
            // every close: what a close returned for is what a crash
            // delivers, and a later write marks the file as being written
            // again before it lands.
            return self.close_locally(&path, &h.file.read(), &h.state, true, false);
        }
        if self.empty_and_dirty(&h) && still_written(h.ino) {
            return Ok(());
        }
        self.upload(h.ino, &h.state, Why::Flush)
    }

    /// The handle's file has unsent changes and is empty.
    fn empty_and_dirty(&self, h: &Handle) -> bool {
        let dirty = self
            .inodes
            .lock()
            .path(h.ino)
            .is_some_and(|p| self.cache.entry(&p).is_some_and(|e| e.dirty));
        dirty && h.file.read().metadata().is_ok_and(|m| m.len() == 0)
    }

    /// `fsync(2)`: uploads as a flush does (also in write-back mode: it
    /// waits for the file's upload), and seals the content: after a crash
    /// it is uploaded, not recovered aside.
    ///
    /// # Errors
    /// As [`RemoteFs::flush`].
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.writable {
            // `sync FILE` fsyncs a read-only descriptor: in write-back mode
            // that, too, asks for the file's pending upload.
            if self.cfg.writeback {
                return self.upload(h.ino, &h.state, Why::Background);
            }
            return Ok(());
        }
        self.note_kernel_writes(&h)?;
        self.upload(h.ino, &h.state, Why::Fsync)
    }

    /// Last close of a handle. An upload still pending is tried once more;
    /// if it fails the file stays dirty in the cache for the retry loop.
    pub fn release(&self, fh: u64) {
        let Some(h) = self.handles.write().remove(&fh) else {
            return;
        };
        let kernel_wrote = if h.writable {
            let r = self.note_kernel_writes(&h);
            if h.mode == Mode::Passthrough {
                // Closed in the kernel: every write of it is in the file.
                h.state.kernel_writers.fetch_sub(1, Ordering::SeqCst);
            }
            r
        } else {
            Ok(())
        };
        if let Err(e) = &kernel_wrote {
            crate::activity::note_failure("close", e);
            warn!("recording a passthrough writer's close: {e}");
        }
        if h.writable && self.cfg.writeback {
            let path = self.inodes.lock().path(h.ino);
            // Writes may arrive after the last flush (pages of a mapping
            // written back at munmap).
            let last = h.state.writers.load(Ordering::SeqCst) <= 1;
            h.state.writers.fetch_sub(1, Ordering::SeqCst);
            // After the count dropped: an uploader that skipped the file
            // because this handle still wrote it finds it queued again.
            if let Some(path) = path {
                // Then a change made while the count still held this
                // handle (a truncate by name) is sealed by one of them.
                let r = self
                    .close_locally(&path, &h.file.read(), &h.state, last, true)
                    .and_then(|()| self.seal_unwritten(h.ino, &path, &h.state));
                if let Err(e) = r {
                    crate::activity::note_failure("close", &e);
                    warn!("{path}: recording the close: {e}");
                }
            }
        } else if h.writable {
            if let Err(e) = self.upload(h.ino, &h.state, Why::Release) {
                crate::activity::note_failure("upload at close", &e);
                warn!("upload at close failed, kept for retry: {e}");
            }
            if h.state.writers.fetch_sub(1, Ordering::SeqCst) == 1 {
                upload_stream::abandon(&h.state);
            }
            // A change made while the upload ran (a truncate by name) is
            // not in what it sent, and no close of it follows.
            let path = self.inodes.lock().path(h.ino);
            if let Some(path) = path
                && let Err(e) = self.seal_unwritten(h.ino, &path, &h.state)
            {
                crate::activity::note_failure("close", &e);
                warn!("{path}: recording the close: {e}");
            }
        }
        if let Some(s) = &h.stream {
            s.detach();
        }
        h.state.io.release(h.mode);
        h.state.open.fetch_sub(1, Ordering::SeqCst);
        if let Some(path) = self.inodes.lock().path(h.ino) {
            self.cache.unpin(&path);
        }
    }

    /// Uploads `ino`'s cached content if it is dirty. For an fsync or the
    /// last release the content is first sealed: it is then a version that
    /// the next mount uploads if this one crashes. The retry loop sends
    /// only sealed content.
    pub(super) fn upload(&self, ino: u64, state: &FileState, why: Why) -> FsResult<()> {
        let _guard = state.upload.lock();
        // An unlinked file's changes go nowhere, as on a local disk.
        let Some(path) = self.inodes.lock().path(ino) else {
            return Ok(());
        };
        let Some(entry) = self.cache.entry(&path).filter(|e| e.dirty) else {
            return Ok(());
        };
        let started_gen = {
            let _sealing = state.seal.write();
            let writers = state.writers.load(Ordering::SeqCst);
            if matches!(why, Why::Retry | Why::Background) && (writers > 0 || entry.writing) {
                // Opened for writing since the retry loop looked (its
                // close uploads it), or never sealed: only a close or an
                // fsync makes content safe to send unasked.
                return Ok(());
            }
            let seal = match why {
                Why::Flush | Why::Retry | Why::Background => false,
                // `writers` still counts the handle being released.
                Why::Release => writers <= 1,
                Why::Fsync => true,
            };
            if seal {
                self.cache
                    .seal(&path)
                    .map_err(|e| FsError::cache(format!("recording the close of {path}"), e))?;
            }
            state.write_gen.load(Ordering::SeqCst)
        };
        {
            // A passthrough writer's close with nothing written since its
            // last upload: the server has this content already.
            let _sealing = state.seal.write();
            if let Some(landed) = self.kernel_unchanged(&path, state) {
                if state.kernel_writers.load(Ordering::SeqCst) == 0 {
                    self.cache
                        .mark_clean(&path, landed.version, landed.stamp.len())
                        .map_err(|e| FsError::cache(format!("recording upload of {path}"), e))?;
                    *state.kernel_landed.lock() = None;
                }
                return Ok(());
            }
        }
        // Taken before the upload reads the file: a write through the
        // kernel meanwhile changes it.
        let before = (state.kernel_writers.load(Ordering::SeqCst) > 0)
            .then(|| kernel_writes::settled_stamp(&self.cache.data_path(&path)))
            .flatten();
        if why == Why::Retry {
            self.activity.note_retry();
        }
        // The ctime of what is sent (see `shown_ctime`).
        let local_ctime = self.dirty_ctime(&path);
        let sent = match self.put_cached(&path, &entry, state) {
            Err(e) if conflict::is_conflict(&e) => match self.server_has_it(&path) {
                // Nothing to keep aside: the server's file is this content.
                Some(meta) => Ok(Uploaded {
                    meta,
                    parents: Vec::new(),
                }),
                None => match self.on_conflict(ino, state, &path, &entry, e) {
                    Ok(()) => return Ok(()),
                    Err(e) => Err(e),
                },
            },
            r => r,
        };
        let Uploaded { meta, parents } = match sent {
            Ok(up) => up,
            Err(e) => {
                // Until the upload succeeds the local copy is the only one
                // of what the application closed.
                if matches!(why, Why::Flush | Why::Fsync | Why::Release)
                    && let Err(se) = self.cache.keep_durably(&path)
                {
                    warn!("{path}: flushing the local copy to disk: {se}");
                }
                return Err(e);
            }
        };
        // Before the entry turns clean: a stat in between shows the
        // server's attributes, with the ctime already decided.
        if let Some(local) = local_ctime {
            self.shown_ctimes.landed(ino, &meta, local);
        }
        {
            let _sealing = state.seal.write();
            // A writer in passthrough may be writing right now, unseen.
            if state.write_gen.load(Ordering::SeqCst) == started_gen
                && state.kernel_writers.load(Ordering::SeqCst) == 0
            {
                self.cache
                    .mark_clean(&path, meta.version, meta.size)
                    .map_err(|e| FsError::cache(format!("recording upload of {path}"), e))?;
            } else {
                // Written on meanwhile (another descriptor, a write-back
                // close): still dirty, but based on what just landed.
                self.cache
                    .rebase(&path, meta.version)
                    .map_err(|e| FsError::cache(format!("recording upload of {path}"), e))?;
            }
            // Still as sent: a later close that finds it so sends nothing.
            let as_sent = before.filter(|b| {
                state.write_gen.load(Ordering::SeqCst) == started_gen
                    && kernel_writes::stamp(&self.cache.data_path(&path)) == Some(*b)
            });
            *state.kernel_landed.lock() = as_sent.map(|stamp| Landed {
                stamp,
                write_gen: started_gen,
                version: meta.version,
            });
        }
        *state.kernel_version.lock() = Some(meta.version);
        // Every name of a hard-linked file now has these attributes.
        let names = self.inodes.lock().names(ino);
        let mut mc = self.meta.lock();
        for p in names.iter().filter(|p| **p != path) {
            mc.note_entry(p, meta.clone());
        }
        // The reply carries the parent's new attributes: no STAT for them.
        mc.note_entry_in(&path, meta, parents.into_iter().next());
        drop(mc);
        // The upload gave the file its name on the server, which changed
        // the directory's mtime; the kernel may hold the old one, cached
        // since the create.
        let parent = path.parent().and_then(|d| self.inodes.lock().ino(&d));
        if let (Some(pino), Some(inval)) = (parent, self.invalidator.get()) {
            inval(pino);
        }
        Ok(())
    }

    /// A writer in passthrough may have written anything through the
    /// kernel: its close uploads as if it had.
    fn note_kernel_writes(&self, h: &Handle) -> FsResult<()> {
        if h.mode != Mode::Passthrough {
            return Ok(());
        }
        let Some(path) = self.inodes.lock().path(h.ino) else {
            return Ok(());
        };
        let _changing = h.state.seal.read();
        if self.kernel_unchanged(&path, &h.state).is_some() {
            return Ok(());
        }
        *h.state.kernel_landed.lock() = None;
        self.cache
            .note_change(&path)
            .map_err(|e| FsError::cache(format!("recording a write to {path}"), e))?;
        self.cache.note_written(&path, 0, u64::MAX);
        h.state.write_gen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The upload that left the cache file of `path` as it is now, when
    /// one made while a passthrough writer was open did and nothing was
    /// changed since (no write seen here, no write through the kernel).
    fn kernel_unchanged(&self, path: &RelPath, state: &FileState) -> Option<Landed> {
        let landed = (*state.kernel_landed.lock())?;
        let now = kernel_writes::stamp(&self.cache.data_path(path))?;
        let version = self.cache.entry(path)?.version?;
        (now == landed.stamp
            && landed.write_gen == state.write_gen.load(Ordering::SeqCst)
            && landed.version == version)
            .then_some(landed)
    }

    fn put_cached(
        &self,
        path: &RelPath,
        entry: &EntryInfo,
        state: &FileState,
    ) -> FsResult<Uploaded> {
        let up = self.put_carrying(path, entry.xattrs.clone(), &|xattrs| {
            self.put_cached_with(path, entry, state, xattrs)
        })?;
        self.creators.lock().remove(path);
        self.atimes.lock().remove(path);
        Ok(up)
    }

    fn put_cached_with(
        &self,
        path: &RelPath,
        entry: &EntryInfo,
        state: &FileState,
        xattrs: Vec<rfmount_proto::XattrValue>,
    ) -> FsResult<Uploaded> {
        let f = File::open(self.cache.data_path(path))
            .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
        let md = f
            .metadata()
            .map_err(|e| FsError::cache(format!("{path}"), e))?;
        let size = md.len();
        // Until the upload the kernel is shown the local copy's mtime
        // (`local_meta`); the server keeps that one, or a stat right after
        // the close (cached in the kernel) and one after the next change
        // on the server would disagree about a time nothing changed.
        let shown = md.modified().ok().map(Timestamp::from_system);
        let opts = PutOptions {
            mode: entry.mode,
            mtime: entry.mtime.or(shown),
            owner: self.creators.lock().get(path).copied(),
            expect: self.put_expectation(entry),
            // A write moves mtime and ctime, not atime: a new version of an
            // existing file keeps the access time it had.
            atime: self.atimes.lock().get(path).copied().or_else(|| {
                entry.version?;
                self.meta.lock().attr_any(path).map(|m| m.atime)
            }),
            xattrs,
        };
        if let Some(up) = self.land_stream(path, state, size, entry, &opts)? {
            return Ok(up);
        }
        if let Some(meta) = self.put_by_layout(path, &f, size, entry, opts.clone())? {
            return Ok(meta);
        }
        let buffered = BufReader::with_capacity(256 * 1024, f);
        let mut src = self.activity.track(path.to_string(), size, buffered);
        Ok(self.remote.put(path, &mut src, size, opts)?)
    }

    /// `by_name`: a truncate(2), not through a descriptor. A file with a
    /// sealed unsent version stays sealed then: that was whole, and the
    /// truncate changes it at once, so nothing is being written, and a
    /// close that returned before it keeps `rfmount sync` waiting for
    /// the file (see `unwritten_seal.rs`).
    fn truncate_local(
        &self,
        path: &RelPath,
        state: &FileState,
        size: u64,
        by_name: bool,
    ) -> FsResult<()> {
        let f = open_data(&self.cache.data_path(path), true)
            .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
        if !by_name {
            let _changing = state.seal.read();
            return self.resize_cached(path, state, &f, size);
        }
        // Exclusive: no write lands between the look and the seal.
        let _sealing = state.seal.write();
        let sealed = self
            .cache
            .entry(path)
            .is_some_and(|e| e.dirty && !e.writing);
        self.resize_cached(path, state, &f, size)?;
        if sealed {
            self.seal_entry(path, &f)?;
        }
        Ok(())
    }

    fn resize_cached(
        &self,
        path: &RelPath,
        state: &FileState,
        f: &File,
        size: u64,
    ) -> FsResult<()> {
        self.cache
            .note_change(path)
            .map_err(|e| FsError::cache(format!("recording a truncate of {path}"), e))?;
        f.set_len(size)
            .map_err(|e| FsError::cache(format!("truncating {path}"), e))?;
        self.cache.resize(path, size);
        self.cache.note_truncated(path, size);
        self.note_stored(path, f);
        state.write_gen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Changes attributes. A file with unsent changes (or open for writing,
    /// for a truncate) is changed locally and carries the change in its
    /// upload; anything else is changed on the server at once.
    ///
    /// # Errors
    /// `EROFS`, remote and cache errors.
    pub fn setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        atime: Option<SetTime>,
        mtime: Option<SetTime>,
        owner: (Option<u32>, Option<u32>),
    ) -> FsResult<Attr> {
        let chown = owner.0.is_some() || owner.1.is_some();
        if !chown && mode.is_none() && size.is_none() && atime.is_none() && mtime.is_none() {
            return self.getattr(ino);
        }
        self.check_writable()?;
        let Some(path) = self.inodes.lock().path(ino) else {
            if chown {
                // Its server file is gone: there is no owner left to change.
                return Err(FsError::Errno {
                    errno: libc::EPERM,
                    what: "cannot change the owner of an unlinked file",
                });
            }
            return self.setattr_detached(ino, mode, size, mtime);
        };
        if chown {
            let a = self.chown(ino, &path, owner.0, owner.1)?;
            if mode.is_none() && size.is_none() && atime.is_none() && mtime.is_none() {
                return Ok(a);
            }
        }
        let state = self.files.lock().get(&ino).cloned();
        let dirty = self.cache.entry(&path).is_some_and(|e| e.dirty);
        let writing = state
            .as_ref()
            .is_some_and(|s| s.writers.load(Ordering::SeqCst) > 0);
        if dirty || (writing && size.is_some()) {
            let state = state.unwrap_or_else(|| self.file_state(ino));
            if let Some(sz) = size {
                self.truncate_local(&path, &state, sz, true)?;
            }
            let resolve = |t: SetTime| match t {
                SetTime::Now => Timestamp::from_system(SystemTime::now()),
                SetTime::At(t) => t,
            };
            let mtime_at = mtime.map(resolve);
            if let Some(t) = atime.map(resolve) {
                self.atimes.lock().insert(path.clone(), t);
            }
            let kept = {
                // An upload in flight sealed the old attributes: this change
                // must keep the file dirty after it, or it is lost. One that
                // landed since `dirty` was read left the file clean: the
                // override would be dropped with no upload to carry it (and
                // no local attributes to answer with), so the server takes
                // the change, as for any clean file. The answer is read
                // while no upload can mark the file clean.
                let _changing = state.seal.read();
                let still = self.cache.entry(&path).is_some_and(|e| e.dirty);
                if still {
                    self.cache
                        .set_overrides(&path, mode.map(|m| m & 0o7777), mtime_at)
                        .map_err(|e| {
                            FsError::cache(format!("recording attributes of {path}"), e)
                        })?;
                    if mode.is_some() || mtime.is_some() || atime.is_some() {
                        super::shown_ctime::touch(&self.cache.data_path(&path)).map_err(|e| {
                            FsError::cache(format!("changing the ctime of {path}"), e)
                        })?;
                    }
                    state.write_gen.fetch_add(1, Ordering::SeqCst);
                    self.local_meta(&path)
                } else {
                    None
                }
            };
            // A truncate or attribute change by name has no close to seal
            // and send it.
            self.seal_unwritten(ino, &path, &state)?;
            if let Some(meta) = kept {
                return Ok(Attr { ino, meta });
            }
        }
        let attr = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            size,
            atime,
            mtime,
            ..SetAttr::default()
        };
        if let Some(a) = self.defer_dir_attrs(ino, &path, &attr)? {
            return Ok(a);
        }
        let meta = self.remote.setattr(&path, attr)?;
        if size.is_none() {
            self.same_content_new_version(&path, &meta);
        } else {
            self.truncated_on_server(ino, &path, &meta);
        }
        self.meta.lock().note_attr(&path, meta.clone());
        let meta = self.dir_attrs.also_applied(&path, &attr, meta);
        Ok(Attr { ino, meta })
    }

    /// `path` is about to move away: a fetch still running for it records
    /// nothing under the old name.
    pub(super) fn forget_stream(&self, path: &RelPath) {
        let ino = self.inodes.lock().ino(path);
        let state = ino.and_then(|i| self.files.lock().get(&i).cloned());
        if let Some(state) = state {
            discard_stream(&state);
        }
    }

    /// An attribute change on the server (mode, times, owner) gave the
    /// unchanged content a new version (it covers ctime): a clean cached
    /// copy is that version now, or its next upload would conflict with
    /// this mount's own change.
    pub(super) fn same_content_new_version(&self, path: &RelPath, meta: &Meta) {
        self.own_change_new_version(path, meta);
    }

    /// Before `path` is unlinked or replaced: if it is open, keep its
    /// attributes for the descriptors that outlive the name; a fetch still
    /// running for it records nothing under the name.
    pub(super) fn remember_if_open(&self, path: &RelPath) {
        let Some(ino) = self.inodes.lock().ino(path) else {
            return;
        };
        let Some(state) = self.files.lock().get(&ino).cloned() else {
            return;
        };
        discard_stream(&state);
        if state.open_count() == 0 {
            return;
        }
        let meta = self
            .local_meta(path)
            .or_else(|| self.meta.lock().attr_any(path));
        *state.detached.lock() = meta;
    }

    fn detached_handle(&self, ino: u64, writable: bool) -> Option<Arc<Handle>> {
        self.handles
            .read()
            .values()
            .find(|h| h.ino == ino && (h.writable || !writable))
            .cloned()
    }

    /// Attributes of an unlinked file that is still open.
    pub(super) fn detached_meta(&self, ino: u64) -> FsResult<Meta> {
        let h = self
            .detached_handle(ino, false)
            .ok_or_else(FsError::enoent)?;
        let md = h
            .file
            .read()
            .metadata()
            .map_err(|e| FsError::cache("fstat of an unlinked file", e))?;
        let known = h.state.detached.lock().clone();
        let mtime = md
            .modified()
            .map(Timestamp::from_system)
            .unwrap_or_default();
        Ok(Meta {
            kind: FileKind::File,
            size: md.len(),
            mode: known.as_ref().map_or(0o644, |m| m.mode),
            mtime: known
                .as_ref()
                .filter(|m| m.size == md.len())
                .map_or(mtime, |m| m.mtime),
            version: 0,
            // No name is left, as fstat of an unlinked file says locally.
            nlink: 0,
            ..known.unwrap_or_default()
        })
    }

    /// ftruncate/fchmod/futimens of an unlinked file that is still open:
    /// applied to the local copy only; it will never be uploaded.
    fn setattr_detached(
        &self,
        ino: u64,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<SetTime>,
    ) -> FsResult<Attr> {
        if let Some(sz) = size {
            let h = self
                .detached_handle(ino, true)
                .ok_or_else(FsError::enoent)?;
            h.file
                .read()
                .set_len(sz)
                .map_err(|e| FsError::cache("truncating an unlinked file", e))?;
        }
        let h = self
            .detached_handle(ino, false)
            .ok_or_else(FsError::enoent)?;
        {
            let mut d = h.state.detached.lock();
            let mut m = d.clone().unwrap_or(Meta {
                kind: FileKind::File,
                mode: 0o644,
                nlink: 1,
                ..Meta::default()
            });
            if let Some(mode) = mode {
                m.mode = mode & 0o7777;
            }
            if let Some(t) = mtime {
                m.mtime = match t {
                    SetTime::Now => Timestamp::from_system(SystemTime::now()),
                    SetTime::At(t) => t,
                };
            }
            *d = Some(m);
        }
        Ok(Attr {
            ino,
            meta: self.detached_meta(ino)?,
        })
    }

    /// Uploads files whose earlier upload failed (or that a previous mount
    /// left dirty), skipping files open for writing: their close uploads
    /// them. Returns how many are still dirty.
    pub fn retry_dirty(&self) -> usize {
        let dirty = self.cache.dirty_paths();
        if self.cfg.writeback {
            // The uploaders retry what failed; this only catches what no
            // close queued (a file left dirty by a failed sync-mode path).
            let n = dirty.len();
            for p in dirty {
                self.uploads.push(p);
            }
            return n;
        }
        let mut left = 0;
        for path in dirty {
            let ino = self.inodes.lock().peek(&path);
            let state = self.file_state(ino);
            let unsealed = self.cache.entry(&path).is_some_and(|e| e.writing);
            if state.writers.load(Ordering::SeqCst) > 0 || unsealed {
                left += 1;
                continue;
            }
            match self.upload(ino, &state, Why::Retry) {
                Ok(()) => info!("uploaded {path} (retry)"),
                Err(e) => {
                    left += 1;
                    log::debug!("retry of {path} failed: {e}");
                }
            }
        }
        left
    }
}
