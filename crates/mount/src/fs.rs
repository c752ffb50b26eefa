//! The filesystem core: every FUSE operation as a plain method over a
//! [`Remote`], returning plain structs. The FUSE adapter (`fuse.rs`) only
//! unpacks arguments and replies; tests drive this core directly with an
//! in-memory remote.
//!
//! Semantics are close-to-open: `open` revalidates the file with one `GET`
//! naming the cached version (answered `NotModified` when current), reads
//! and writes go to the cache file, and `flush`/`fsync` upload a dirty file
//! with one whole-file `PUT`, so `close(2)` reports the upload's error.
//!
//! Locks: `inodes`, `meta`, `files`, `handles` and `dirs` are each held only
//! for a map operation and never while another of them is taken, and never
//! across network I/O. The one lock held across a `PUT` is the per-file
//! `FileState::upload`, which serialises uploads of that file alone.

mod acl;
mod allocate;
mod backing_refresh;
mod carried_xattrs;
mod conflict;
mod dir;
mod dir_attrs;
mod echo;
mod fetch_workers;
mod files;
mod kernel_writes;
mod landed;
mod links;
mod locks;
mod offline;
mod own_version;
mod partial;
mod passthrough;
mod prefetch;
mod pushed;
mod recent_chunks;
mod shown_ctime;
mod stream;
mod unsent_parents;
mod unsent_rename;
mod unwritten_seal;
mod upload_stream;
mod writeback;
mod xattr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use log::debug;
use parking_lot::{Mutex, RwLock};
use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, FileKind, Meta, Owner, RelPath, Timestamp};

use crate::activity::Activity;
use crate::data_cache::DataCache;
use crate::error::{FsError, FsResult};
use crate::inodes::InodeTable;
use crate::meta_cache::MetaCache;
use crate::options::MountConfig;
use crate::trust::Trust;

pub use acl::NewMode;
pub use dir::DirSink;
use dir::DirSnapshot;
pub use echo::{Echoes, Removal};
use files::{FileState, Handle};
pub use locks::KernelLock;
pub(crate) use locks::signal_pending;
pub use passthrough::{Backer, Backing, KernelIo};
pub use prefetch::Prefetcher;
pub use pushed::{KernelNote, KernelNotes, PushSink};
pub use recent_chunks::ReadBuf;
pub use writeback::FailedUpload;
use writeback::UploadQueue;

/// An inode number with its attributes, as replied to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// FUSE inode number.
    pub ino: u64,
    /// Attributes.
    pub meta: Meta,
}

/// A file opened by `open` or `create`.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The handle for later calls.
    pub fh: u64,
    /// The kernel's cached pages of this file are still valid.
    pub keep_cache: bool,
    /// How the kernel is to do this handle's I/O.
    pub io: KernelIo,
}

/// Called with an inode whose kernel-cached attributes and pages are stale.
pub type Invalidator = Box<dyn Fn(u64) + Send + Sync>;

/// The filesystem over one remote export.
pub struct RemoteFs<R: Remote> {
    remote: Arc<R>,
    cfg: MountConfig,
    cache: Arc<DataCache>,
    inodes: Mutex<InodeTable>,
    /// Shared with prefetches, which note the attributes the server gave.
    meta: Arc<Mutex<MetaCache>>,
    /// Per-inode state of regular files that are or were open.
    files: Mutex<HashMap<u64, Arc<FileState>>>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    dirs: RwLock<HashMap<u64, Arc<DirSnapshot>>>,
    next_fh: AtomicU64,
    invalidator: OnceLock<Invalidator>,
    /// What may be served without asking (callbacks).
    trust: Arc<Trust>,
    /// Where pushed changes are told to the kernel.
    kernel_notes: OnceLock<KernelNotes>,
    /// Pushed removals being echoed to this mount's watchers.
    echoes: Arc<echo::Echoes>,
    /// Owners of files created here and not yet uploaded: their first PUT
    /// creates them on the server with the creator's ids.
    creators: Mutex<HashMap<RelPath, Owner>>,
    /// The ctime shown for files this mount uploaded (see `shown_ctime`).
    shown_ctimes: shown_ctime::ShownCtimes,
    /// Attribute names of recently asked files (see `xattr`).
    xattr_names: Mutex<xattr::XattrNames>,
    /// Access times set on files with unsent changes, carried by their
    /// upload (in memory only: an atime is not worth a cache record).
    atimes: Mutex<HashMap<RelPath, Timestamp>>,
    /// When the mount started (shown for directories known only from the
    /// cache).
    started: Timestamp,
    activity: Activity,
    prefetcher: Arc<Prefetcher>,
    /// Uploads of a write-back mount (`-o writeback`), started at close.
    uploads: UploadQueue,
    /// Directory attribute changes of a write-back mount, sent after the
    /// uploads into the directory.
    dir_attrs: dir_attrs::DirAttrs,
    /// Directories holding files created here and not uploaded yet, on a
    /// write-back mount: shown without a STAT meanwhile.
    unsent_parents: unsent_parents::UnsentParents,
    /// Locks held on the server, to take again after it lost them.
    held_locks: locks::HeldLocks,
}

impl<R: Remote> RemoteFs<R> {
    /// A filesystem over `remote`, caching data in `cache`.
    pub fn new(remote: Arc<R>, cfg: MountConfig, cache: Arc<DataCache>) -> Self {
        let meta = MetaCache::new(cfg.attr_timeout, cfg.dir_timeout);
        let shown_ctimes = shown_ctime::ShownCtimes::open(cache.root().join("shown-ctimes"));
        RemoteFs {
            remote,
            cfg,
            cache,
            inodes: Mutex::new(InodeTable::default()),
            meta: Arc::new(Mutex::new(meta)),
            files: Mutex::new(HashMap::new()),
            handles: RwLock::new(HashMap::new()),
            dirs: RwLock::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            invalidator: OnceLock::new(),
            trust: Arc::default(),
            kernel_notes: OnceLock::new(),
            echoes: Arc::default(),
            creators: Mutex::new(HashMap::new()),
            shown_ctimes,
            xattr_names: Mutex::default(),
            atimes: Mutex::new(HashMap::new()),
            started: offline::now(),
            activity: Activity::default(),
            prefetcher: Arc::default(),
            uploads: UploadQueue::default(),
            dir_attrs: dir_attrs::DirAttrs::default(),
            unsent_parents: unsent_parents::UnsentParents::default(),
            held_locks: locks::HeldLocks::default(),
        }
    }

    /// Installs the hook that tells the kernel to drop cached attributes and
    /// pages of an inode (set once the FUSE session exists).
    pub fn set_invalidator(&self, f: Invalidator) {
        let _ = self.invalidator.set(f);
    }

    /// The mount configuration.
    pub fn config(&self) -> &MountConfig {
        &self.cfg
    }

    /// Uploads in progress and retries, for `rfmount status`.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Prefetches started and used, for `rfmount status`.
    pub fn prefetcher(&self) -> &Prefetcher {
        &self.prefetcher
    }

    /// The data cache.
    pub fn cache(&self) -> &Arc<DataCache> {
        &self.cache
    }

    fn path(&self, ino: u64) -> FsResult<RelPath> {
        self.inodes.lock().path(ino).ok_or_else(FsError::enoent)
    }

    fn child(&self, parent: u64, name: &str) -> FsResult<RelPath> {
        Ok(self.path(parent)?.join(name)?)
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.cfg.read_only || self.remote.export().read_only {
            return Err(FsError::Errno {
                errno: libc::EROFS,
                what: "read-only mount",
            });
        }
        Ok(())
    }

    /// Looks `name` up in `parent`, counting one kernel reference.
    ///
    /// # Errors
    /// `ENOENT` when absent; remote errors.
    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let path = self.child(parent, name)?;
        let meta = self.meta_of(&path)?;
        let ino = self
            .inodes
            .lock()
            .lookup_linked(&path, linked(&meta), known_id(&meta));
        // A second name of a file known here: the first name's attributes
        // (it may have changes not yet uploaded).
        let primary = self.inodes.lock().path(ino);
        if let Some(m) = primary
            .filter(|p| *p != path)
            .and_then(|p| self.local_meta(&p))
        {
            return Ok(Attr { ino, meta: m });
        }
        Ok(Attr { ino, meta })
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        // A file with an upload pending or running keeps its inode, and so
        // its `FileState`, whose lock serialises the file's uploads: a new
        // lookup of the name must find the same one, or a second upload
        // could start from the same base beside the first and be refused
        // as another writer's (after a pushed invalidation or memory
        // pressure made the kernel forget the inode mid-upload).
        let path = self.inodes.lock().path(ino);
        let dirty = path.is_some_and(|p| self.cache.entry(&p).is_some_and(|e| e.dirty));
        let uploading = self
            .files
            .lock()
            .get(&ino)
            .is_some_and(|f| f.upload.try_lock().is_none());
        let mut inodes = self.inodes.lock();
        if dirty || uploading {
            inodes.release_lookups(ino, n);
            return;
        }
        let remembered = inodes.forget(ino, n);
        if inodes.path(ino).is_none() {
            drop(inodes);
            let mut files = self.files.lock();
            if files.get(&ino).is_some_and(|f| f.open_count() == 0) {
                files.remove(&ino);
            } else if files.contains_key(&ino) {
                drop(files);
                if let Some(p) = remembered {
                    self.inodes.lock().never_reuse(&p);
                }
            }
        }
    }

    /// True when `ino` has no name left: unlinked (or replaced) while
    /// open.
    pub fn is_unlinked(&self, ino: u64) -> bool {
        self.inodes.lock().path(ino).is_none()
    }

    /// Attributes of `ino`.
    ///
    /// # Errors
    /// `ENOENT` for a detached inode; remote errors.
    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let path = self.inodes.lock().path(ino);
        match path {
            Some(path) => {
                let meta = self.meta_of(&path)?;
                self.inodes.lock().set_id(ino, known_id(&meta));
                Ok(Attr { ino, meta })
            }
            // Unlinked (or replaced) while open: fstat on its descriptors
            // keeps working, as on a local disk.
            None => Ok(Attr {
                ino,
                meta: self.detached_meta(ino)?,
            }),
        }
    }

    /// Attributes of `ino` as this mount last knew them, with no request
    /// (cached ones of any age): enough to tell whether a write may have to
    /// clear setgid (`setgid_rule`). `None` for a detached or unknown inode.
    pub fn known_attr(&self, ino: u64) -> Option<Attr> {
        let path = self.inodes.lock().path(ino)?;
        let meta = self
            .local_meta(&path)
            .or_else(|| self.meta.lock().attr_any(&path))?;
        Some(Attr { ino, meta })
    }

    /// Attributes of `path`: the local copy while it has unsent changes,
    /// else cached attributes, else the parent's cached listing, else `STAT`.
    fn meta_of(&self, path: &RelPath) -> FsResult<Meta> {
        if let Some(m) = self.local_meta(path) {
            return Ok(m);
        }
        if let Some(m) = self.meta.lock().attr(path) {
            return Ok(m);
        }
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            let listing = self.meta.lock().listing(&parent);
            // A name whose attributes this mount made stale exists, but
            // its attributes are asked for.
            if let Some(l) = listing
                && !l.is_stale(name)
            {
                return l
                    .get(name)
                    .map(|e| e.meta.clone())
                    .ok_or_else(FsError::enoent);
            }
        }
        if self.meta.lock().known_absent(path) {
            return Err(FsError::enoent());
        }
        if let Some(m) = self.unsent_parent_meta(path) {
            return Ok(m);
        }
        let ticket = self.trust.ticket();
        match self.remote.stat(path) {
            Ok(m) => {
                let trusted = self.trust.granted(ticket);
                self.meta.lock().put_attr_as(path, m.clone(), trusted);
                Ok(m)
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                self.meta.lock().put_absent(path);
                Err(FsError::enoent())
            }
            Err(e) if e.is_transport() => self
                .offline_meta(path)
                .or_else(|| self.cached_meta(path).map(Ok))
                .unwrap_or(Err(e.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// While the server is unreachable, the last known attributes (from a
    /// STAT or the parent's listing, however old) answer instead, so that
    /// cached files stay readable and new files can be written locally;
    /// their upload then fails at close and is retried.
    fn offline_meta(&self, path: &RelPath) -> Option<FsResult<Meta>> {
        let mc = self.meta.lock();
        if let Some(m) = mc.attr_any(path) {
            return Some(Ok(m));
        }
        let listing = mc.listing_any(&path.parent()?)?;
        let name = path.file_name()?;
        debug!("{path}: server unreachable, answering from the last listing");
        Some(
            listing
                .get(name)
                .map(|e| e.meta.clone())
                .ok_or_else(FsError::enoent),
        )
    }

    /// Attributes of a file with changes not yet uploaded, from the cache
    /// file itself: the server's are stale until the upload.
    fn local_meta(&self, path: &RelPath) -> Option<Meta> {
        let Some(entry) = self.cache.entry(path).filter(|e| e.dirty) else {
            return self.dir_attrs.shown(path);
        };
        let md = std::fs::metadata(self.cache.data_path(path)).ok()?;
        // Any age will do: only the mode is taken, and nothing but this
        // mount's own chmod (recorded in the entry) changes it meanwhile.
        let server = self.meta.lock().attr_any(path);
        let mode = entry
            .mode
            .or(server.as_ref().map(|m| m.mode))
            .unwrap_or(0o644);
        let mtime = entry.mtime.unwrap_or_else(|| {
            md.modified()
                .map(Timestamp::from_system)
                .unwrap_or_else(|_| Timestamp::from_system(SystemTime::now()))
        });
        let mut meta = Meta {
            kind: FileKind::File,
            size: md.len(),
            // What the cache file stores: `du` sees the local copy's
            // holes until the upload gives them to the server.
            blocks: std::os::unix::fs::MetadataExt::blocks(&md),
            mode,
            mtime,
            version: entry.version.unwrap_or(0),
            nlink: 1,
            ctime: local_ctime(&md, server.as_ref()),
            ..server.unwrap_or_default()
        };
        // Created here and not uploaded yet: it belongs to its creator, so
        // that the kernel's permission checks let them chmod it meanwhile.
        if let Some(o) = self.creators.lock().get(path) {
            meta.uid = o.uid;
            meta.gid = o.gid;
        }
        Some(meta)
    }

    /// The ctime of the dirty `path` as it is now (see [`local_ctime`]).
    fn dirty_ctime(&self, path: &RelPath) -> Option<Timestamp> {
        let md = std::fs::metadata(self.cache.data_path(path)).ok()?;
        Some(local_ctime(&md, self.meta.lock().attr_any(path).as_ref()))
    }

    /// The ctime the kernel is to be shown for `ino` with attributes
    /// `meta`.
    pub fn shown_ctime(&self, ino: u64, meta: &Meta) -> Timestamp {
        self.shown_ctimes.ctime(ino, meta)
    }

    fn next_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    /// Creates a directory.
    ///
    /// # Errors
    /// Remote errors (`EEXIST`, `EROFS`, ...).
    pub fn mkdir(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        owner: Option<Owner>,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        let ticket = self.trust.ticket();
        let made = self.remote.mkdir_changed(&path, mode & 0o7777, owner)?;
        // rfserve holds a listing callback on a directory its session
        // created (and says so with an invalidation before this reply if
        // the directory was not empty by then): the empty listing and the
        // attributes stay valid until pushed otherwise, so names created in
        // it later are known absent without a round trip.
        let granted = self.trust.granted(ticket);
        let meta = made.meta;
        let mut mc = self.meta.lock();
        mc.note_entry_in_as(
            &path,
            meta.clone(),
            made.parents.into_iter().next(),
            granted,
        );
        if granted {
            mc.put_attr_as(&path, meta.clone(), true);
        }
        mc.note_empty_dir_as(&path, granted);
        drop(mc);
        let ino = self.inodes.lock().lookup_object(&path, known_id(&meta));
        Ok(Attr { ino, meta })
    }

    /// Removes a file.
    ///
    /// # Errors
    /// Remote errors.
    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        // An upload of this file in flight would land after the removal
        // and bring the file back.
        let states = self.states_of(&[&path]);
        let _quiet: Vec<_> = states.iter().map(|s| s.upload.lock()).collect();
        let local_only = self
            .cache
            .entry(&path)
            .is_some_and(|e| e.dirty && e.version.is_none());
        match self.remote.remove(&path) {
            Ok(()) => {}
            // Created here and never uploaded: it only ever existed locally.
            Err(e) if local_only && e.code() == Some(ErrorCode::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.unlink_done(&path, true);
        Ok(())
    }

    /// What this mount forgets once `path` (not a directory) is removed on
    /// the server: by this mount (`here`), or elsewhere, when a listing
    /// read since may already show a new file of that name.
    fn unlink_done(&self, path: &RelPath, here: bool) {
        let ino = self.inodes.lock().ino(path);
        let others = ino.map(|i| self.inodes.lock().names(i)).unwrap_or_default();
        if others.len() <= 1 {
            self.remember_if_open(path);
        }
        if here {
            self.meta.lock().note_removed(path);
        } else {
            self.meta.lock().pushed(path, false);
        }
        match self.inodes.lock().detach(path) {
            // Another name of the same file now carries its inode: its
            // cached copy (and open descriptors' writes) go with it.
            Some(heir) => self.cache.rename(path, &heir),
            None => self.cache.remove(path),
        }
        // One link fewer moved the file's ctime, so its version: the name
        // its cached copy is kept under needs the new one.
        let fresh: Vec<_> = others
            .iter()
            .filter(|p| **p != *path)
            .map(|p| (p, self.refresh_own_version(p)))
            .collect();
        // The remaining names' link count dropped: their attributes are
        // the ones just asked for, or unknown. Their directories' listings
        // still hold (git links every object to its name and unlinks the
        // temporary one: dropping the listing sent the next object's
        // negative lookups to the server).
        let mut mc = self.meta.lock();
        for (p, meta) in fresh {
            match meta {
                Some(meta) => mc.note_attr(p, meta),
                None => mc.attrs_changed(p),
            }
        }
        drop(mc);
        self.creators.lock().remove(path);
        self.atimes.lock().remove(path);
    }

    /// Removes an empty directory.
    ///
    /// # Errors
    /// Remote errors (`ENOTEMPTY`, ...).
    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        if self.has_unsent_beneath(&path) {
            return Err(not_empty());
        }
        self.dir_attrs_across_rmdir(&path, || Ok(self.remote.rmdir(&path)?))?;
        self.rmdir_done(&path, true);
        Ok(())
    }

    /// As [`RemoteFs::unlink_done`] for a directory. Removed elsewhere, it
    /// may have held names this mount knows: they are gone with it.
    fn rmdir_done(&self, path: &RelPath, here: bool) {
        self.unsent_parents.forget_beneath(path);
        if here {
            self.meta.lock().note_removed(path);
            self.inodes.lock().detach(path);
            return;
        }
        self.meta.lock().pushed(path, true);
        let mut inodes = self.inodes.lock();
        let mut beneath = inodes.known_beneath(path);
        // Deepest first, the directory itself last.
        beneath.sort_by(|a, b| b.1.cmp(&a.1));
        for (_, p) in beneath {
            inodes.detach(&p);
        }
    }

    /// Renames; flags other than 0 are refused with `EINVAL` so that tools
    /// fall back to a plain rename.
    ///
    /// # Errors
    /// Remote errors.
    pub fn rename(
        &self,
        parent: u64,
        name: &str,
        newparent: u64,
        newname: &str,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        match flags {
            0 => {}
            libc::RENAME_NOREPLACE => {
                // Also a file that exists only here, not yet uploaded.
                if self.meta_of(&to).is_ok() {
                    return Err(FsError::Errno {
                        errno: libc::EEXIST,
                        what: "rename target exists",
                    });
                }
            }
            libc::RENAME_EXCHANGE => return self.exchange(&from, &to),
            _ => {
                return Err(FsError::Errno {
                    errno: libc::EINVAL,
                    what: "unsupported rename flags",
                });
            }
        }
        if self.has_unsent_beneath(&to) {
            return Err(not_empty());
        }
        // Uploads in flight of either file would land under the old name
        // (bringing it back) or over the renamed file.
        let states = self.states_of(&[&from, &to]);
        let _quiet: Vec<_> = states.iter().map(|s| s.upload.lock()).collect();
        let entry = self.cache.entry(&from);
        let local_only = entry
            .as_ref()
            .is_some_and(|e| e.dirty && e.version.is_none());
        let dirty = entry.is_some_and(|e| e.dirty);
        // The replaced file loses a link: its other names' link count and
        // ctime change.
        let replaced: Vec<RelPath> = {
            let inodes = self.inodes.lock();
            inodes
                .ino(&to)
                .map(|i| inodes.names(i))
                .unwrap_or_default()
                .into_iter()
                .filter(|p| *p != to)
                .collect()
        };
        let replaces = local_only && self.server_may_have(&to);
        let moved_meta = self.dir_attrs_across_rename(&from, &to, || {
            match self.remote.rename_changed(&from, &to, flags) {
                Ok(m) => Ok(m),
                Err(e) if local_only && e.code() == Some(ErrorCode::NotFound) => {
                    if replaces {
                        self.replace_with_unsent(&to)?;
                    }
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })?;
        {
            let mut mc = self.meta.lock();
            let moved = mc.attr_any(&from);
            mc.invalidate_tree(&from);
            mc.invalidate_tree(&to);
            self.unsent_parents.forget_beneath(&from);
            self.unsent_parents.forget_beneath(&to);
            for dir in [from.parent(), to.parent()].into_iter().flatten() {
                mc.dir_changed(&dir);
            }
            for p in &replaced {
                mc.invalidate(p);
            }
            // rename(2) keeps the mode; a file with unsent changes takes
            // its mode from here until it is uploaded. Any other object is
            // asked for again: the server's rename changed its ctime.
            if let Some(mut m) = moved.filter(|_| dirty) {
                m.ctime = Timestamp::from_system(SystemTime::now());
                mc.put_attr(&to, m);
            }
        }
        self.remember_if_open(&to);
        self.forget_stream(&from);
        self.inodes.lock().rename(&from, &to);
        self.cache.rename(&from, &to);
        // The server's rename moved the file's ctime, so its version.
        if let Some(m) = &moved_meta {
            self.own_change_new_version(&to, m);
        }
        self.uploads.rename(&from, &to);
        let mut creators = self.creators.lock();
        if let Some(o) = creators.remove(&from) {
            creators.insert(to.clone(), o);
        }
        drop(creators);
        let mut atimes = self.atimes.lock();
        if let Some(t) = atimes.remove(&from) {
            atimes.insert(to, t);
        }
        Ok(())
    }

    /// The per-file states of `paths` that exist, in inode order (the order
    /// their upload locks are taken in when several are).
    fn states_of(&self, paths: &[&RelPath]) -> Vec<Arc<FileState>> {
        let mut inos: Vec<u64> = {
            let inodes = self.inodes.lock();
            paths.iter().filter_map(|p| inodes.ino(p)).collect()
        };
        inos.sort_unstable();
        inos.dedup();
        let files = self.files.lock();
        inos.iter().filter_map(|i| files.get(i).cloned()).collect()
    }

    /// True when files created or changed here, not yet uploaded, live
    /// beneath `dir`: the server's copy of `dir` may look empty, but it is
    /// not.
    fn has_unsent_beneath(&self, dir: &RelPath) -> bool {
        self.cache
            .dirty_paths()
            .iter()
            .any(|p| p != dir && p.starts_with(dir))
    }

    /// Filesystem statistics of the export.
    ///
    /// # Errors
    /// Remote errors.
    pub fn statfs(&self) -> FsResult<rfmount_proto::StatFs> {
        Ok(self.remote.statfs()?)
    }
}

impl<R: Remote> Drop for RemoteFs<R> {
    /// Fetches still running hold the cache; a new mount of the same cache
    /// may start the moment this one is gone.
    fn drop(&mut self) {
        self.stop_fetches();
    }
}

impl<R: Remote> RemoteFs<R> {
    /// Lets every fetch still running end (a short rest is finished and
    /// cached, as at a last close) or stop: at unmount, before the process
    /// exits with the threads (the filesystem itself is never dropped
    /// there).
    pub fn stop_fetches(&self) {
        let states: Vec<_> = self.files.lock().values().cloned().collect();
        for s in states.iter().filter_map(|st| st.stream.lock().clone()) {
            s.stop();
        }
    }
}

/// The server object `meta` describes, when the server said (placeholders
/// made locally have none).
pub(crate) fn known_id(meta: &Meta) -> Option<rfmount_proto::FileId> {
    (meta.file_id != rfmount_proto::FileId::default()).then_some(meta.file_id)
}

/// The server object a name is, when it has several names (hard links
/// share one inode); directories never join.
pub(crate) fn linked(meta: &Meta) -> Option<rfmount_proto::FileId> {
    (meta.kind != FileKind::Dir && meta.nlink > 1).then_some(meta.file_id)
}

fn not_empty() -> FsError {
    FsError::Errno {
        errno: libc::ENOTEMPTY,
        what: "directory holds files not yet uploaded",
    }
}

#[cfg(test)]
#[path = "fs/tests.rs"]
mod tests;

/// The ctime of a file with unsent changes, from its cache file `md`: every
/// local write, truncate and recorded attribute change moves that one. Its
/// server attributes `server` (when known) count when later: a chown, link
/// or rename of it is made on the server and moves only the server's.
fn local_ctime(md: &std::fs::Metadata, server: Option<&Meta>) -> Timestamp {
    let local = shown_ctime::ctime_of(md);
    server.map_or(local, |m| local.max(m.ctime))
}
