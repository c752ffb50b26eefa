//! Server-pushed invalidations: what the mount drops when the server says
//! an object changed, what the kernel is told (so its attribute, entry and
//! page caches and inotify watchers on the mount follow), and the reads of
//! an open file that must see content appended elsewhere (`tail -f`).
//!
//! The sink runs on the connection's reader thread: it only edits in-memory
//! tables and queues kernel notes; a thread of the FUSE adapter sends those,
//! since a notification can wait on the kernel, which may be waiting on a
//! request that needs this very reader.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use rfmount_client::Remote;
use rfmount_client::callbacks::CallbackSink;
use rfmount_proto::{Change, Invalidation, Meta, RelPath};

use super::RemoteFs;
use super::echo::Removal;
use super::files::{FileState, Handle};
use crate::error::{FsError, FsResult};

/// What the kernel must be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelNote {
    /// Drop the inode's cached attributes and pages.
    Inode(u64),
    /// Drop the cached name `name` in directory `parent`.
    Entry(u64, String),
    /// Name `name` of `child` in `parent` is gone (inotify's delete).
    Delete(u64, u64, String),
    /// As `Delete`, echoed through the mount point first, so that the VFS
    /// tells inotify watchers (see `echo.rs`); `Delete` if that fails.
    Echo(Removal),
    /// Every note queued before this one has been sent: signal it.
    Barrier(NoteBarrier),
}

/// Signalled by the notes thread when it reaches it (see
/// [`RemoteFs::kernel_told`]).
#[derive(Clone, Default)]
pub struct NoteBarrier(Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>);

impl NoteBarrier {
    /// The notes before it are sent.
    pub fn reached(&self) {
        *self.0.0.lock() = true;
        self.0.1.notify_all();
    }

    fn wait(&self, within: std::time::Duration) -> bool {
        let mut done = self.0.0.lock();
        let deadline = std::time::Instant::now() + within;
        while !*done {
            if self.0.1.wait_until(&mut done, deadline).timed_out() {
                return *done;
            }
        }
        true
    }
}

impl PartialEq for NoteBarrier {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for NoteBarrier {}

impl std::fmt::Debug for NoteBarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoteBarrier")
    }
}

/// Sends kernel notes (installed by the FUSE adapter).
pub type KernelNotes = Box<dyn Fn(KernelNote) + Send + Sync>;

impl<R: Remote> RemoteFs<R> {
    /// Installs where kernel notes go.
    pub fn set_kernel_notes(&self, f: KernelNotes) {
        let _ = self.kernel_notes.set(f);
    }

    /// True while the server pushes invalidations on a live connection.
    pub fn callbacks_live(&self) -> bool {
        self.trust.live()
    }

    /// Waits, at most `within`, until the kernel has been told everything
    /// queued so far. A lock grant does, before it returns: the holder that
    /// just unlocked may have removed a name this kernel still caches (a
    /// sqlite journal), and the new holder must not find it there. Bounded,
    /// because a note can wait on the kernel, which can wait on a request.
    pub(super) fn kernel_told(&self, within: std::time::Duration) {
        if self.kernel_notes.get().is_none() {
            return;
        }
        let b = NoteBarrier::default();
        self.note(KernelNote::Barrier(b.clone()));
        if !b.wait(within) {
            log::debug!("the kernel's notes took longer than {within:?}; going on");
        }
    }

    fn note(&self, n: KernelNote) {
        if let Some(f) = self.kernel_notes.get() {
            f(n);
        }
    }

    /// Attributes of `path` held under a callback whose version matches the
    /// clean cached copy: the content can be served with no round trip.
    /// Only once every invalidation already sent is applied, so that a
    /// close another mount has seen return is never read past.
    pub(super) fn trusted_copy(&self, path: &RelPath, version: Option<u64>) -> Option<Meta> {
        let m = self.meta.lock().attr_trusted(path)?;
        if Some(m.version) != version || !self.trust.live() || !self.remote.settled() {
            return None;
        }
        // Settling may have applied an invalidation of this very file.
        let again = self.meta.lock().attr_trusted(path)?;
        (again.version == m.version && self.trust.live()).then_some(m)
    }

    /// Applies pushed invalidations; returns the inodes whose content may
    /// have changed.
    fn on_invalidated(&self, items: &[Invalidation]) -> Vec<u64> {
        self.trust.invalidated();
        let mut notes = Vec::new();
        let mut changed = Vec::new();
        // Deepest first: a removed tree's files are echoed before their
        // directory, whose removal would take their names away unseen.
        let mut items: Vec<&Invalidation> = items.iter().collect();
        items.sort_by_key(|i| std::cmp::Reverse(depth(&i.path)));
        // What was known of the removed objects, before any item of the
        // batch (another change of the same name, say) drops it.
        let known: Vec<Option<Meta>> = items
            .iter()
            .map(|inv| {
                (inv.change == Change::Removed)
                    .then(|| self.known_meta(&inv.path))
                    .flatten()
            })
            .collect();
        for (inv, before) in items.into_iter().zip(known) {
            let path = &inv.path;
            let tree = matches!(inv.change, Change::Removed | Change::All);
            log::debug!("pushed: {path} {:?}", inv.change);
            self.meta.lock().pushed(path, tree);
            self.unsent_parents.forget_pushed(path, tree);
            self.forget_xattrs(path);
            if inv.change == Change::All {
                // Everything at or below: every inode we know there.
                let known = self.inodes.lock().known_beneath(path);
                for (ino, _) in known {
                    self.bump_pushed(ino);
                    changed.push(ino);
                    notes.push(KernelNote::Inode(ino));
                }
                continue;
            }
            let (ino, parent) = {
                let inodes = self.inodes.lock();
                (inodes.ino(path), path.parent().and_then(|p| inodes.ino(&p)))
            };
            if let Some(ino) = ino {
                self.bump_pushed(ino);
                changed.push(ino);
            }
            // The delete first: it finds the kernel's entry still linked to
            // the inode, which it needs to tell inotify watchers.
            let Some(name) = path.file_name() else {
                if let Some(ino) = ino {
                    notes.push(KernelNote::Inode(ino));
                }
                continue;
            };
            if let Some(pino) = parent {
                match (inv.change, ino) {
                    (Change::Removed, Some(ino)) => {
                        notes.push(match self.echo_of(path, pino, ino, before) {
                            Some(r) => KernelNote::Echo(r),
                            None => KernelNote::Delete(pino, ino, name.to_owned()),
                        });
                    }
                    (Change::Removed | Change::Created, _) => {
                        notes.push(KernelNote::Entry(pino, name.to_owned()));
                    }
                    _ => {}
                }
                notes.push(KernelNote::Inode(pino));
            }
            if let Some(ino) = ino {
                notes.push(KernelNote::Inode(ino));
            }
        }
        for n in notes {
            self.note(n);
        }
        changed
    }

    /// The attributes last known of `path`, however old.
    fn known_meta(&self, path: &RelPath) -> Option<Meta> {
        let mc = self.meta.lock();
        if let Some(m) = mc.attr_any(path) {
            return Some(m);
        }
        let listing = mc.listing_any(&path.parent()?)?;
        listing.get(path.file_name()?).map(|e| e.meta.clone())
    }

    fn bump_pushed(&self, ino: u64) {
        if let Some(f) = self.files.lock().get(&ino) {
            f.pushed.fetch_add(1, Ordering::SeqCst);
            // A fetch (a prefetch above all) from before the change must
            // neither be shared by a new open nor stand in for its GET.
            super::files::discard_stream(f);
        }
    }

    fn on_broken(&self) {
        self.trust.broken();
        self.meta.lock().distrust_all();
        // The kernel may hold attributes for the long timeouts callbacks
        // allow: make it ask again, so the short-lived answers apply.
        self.note_every_inode();
    }

    fn on_connected(&self, callbacks: bool) {
        if self.trust.connected(callbacks) {
            // Whatever was read before the break may have changed unseen.
            self.meta.lock().clear();
            let known = self.inodes.lock().known_beneath(&RelPath::root());
            for (ino, _) in known {
                self.bump_pushed(ino);
            }
            self.note_every_inode();
        }
    }

    fn note_every_inode(&self) {
        let known = self.inodes.lock().known_beneath(&RelPath::root());
        for (ino, _) in known {
            self.note(KernelNote::Inode(ino));
        }
    }

    /// The file a read of handle `h` should use, after a pushed change of
    /// its content since it was opened: the handle's copy is re-fetched so
    /// that a reader following the file (`tail -f`) sees what another mount
    /// appended. Only for a clean file with no writer here: with local
    /// changes, the local copy is the newest content.
    pub(super) fn followed(&self, h: &Handle, state: &FileState) -> FsResult<Option<Arc<File>>> {
        let pushed = state.pushed.load(Ordering::SeqCst);
        if h.seen_pushed.swap(pushed, Ordering::SeqCst) == pushed
            || h.writable
            || state.writers.load(Ordering::SeqCst) > 0
        {
            return Ok(h.fresh.lock().clone());
        }
        let Some(path) = self.inodes.lock().path(h.ino) else {
            return Ok(h.fresh.lock().clone());
        };
        let entry = self.cache.entry(&path);
        if entry.as_ref().is_some_and(|e| e.dirty) {
            return Ok(h.fresh.lock().clone());
        }
        let meta = {
            let _guard = state.upload.lock();
            self.fetch(&path, entry.as_ref())?
        };
        let file = File::open(self.cache.data_path(&path))
            .map_err(|e| FsError::cache(format!("reopening cached {path}"), e))?;
        *state.kernel_version.lock() = Some(meta.version);
        let file = Arc::new(file);
        *h.fresh.lock() = Some(Arc::clone(&file));
        Ok(Some(file))
    }
}

fn depth(p: &RelPath) -> usize {
    p.as_str().split('/').count()
}

/// The mount's [`CallbackSink`].
pub struct PushSink<R: Remote>(pub Weak<RemoteFs<R>>);

impl<R: Remote> CallbackSink for PushSink<R> {
    fn invalidated(&self, items: &[Invalidation]) {
        if let Some(fs) = self.0.upgrade() {
            log::debug!("server invalidated {} object(s)", items.len());
            for ino in fs.on_invalidated(items) {
                fs.refresh_backing_soon(ino);
            }
        }
    }

    fn connected(&self, callbacks: bool) {
        if let Some(fs) = self.0.upgrade() {
            fs.on_connected(callbacks);
        }
    }

    fn broken(&self) {
        if let Some(fs) = self.0.upgrade() {
            fs.on_broken();
        }
    }
}
