//! Echoes of pushed removals, so that inotify watchers of this mount see a
//! name removed through another mount or on the server (`IN_DELETE`).
//!
//! The kernel's own way, `FUSE_NOTIFY_DELETE`, ends in `d_delete()`, which
//! no longer notifies anyone since fsnotify's hook moved out of it (Linux
//! 5.3) into the VFS's unlink and rmdir. So the mount removes the name the
//! way a program would: a thread of its own (never a FUSE request thread)
//! calls `unlinkat(2)`/`rmdir` through its own mount point, after
//! registering the removal here as an *echo*. The kernel then sends the
//! lookup (if its entry aged out) and the `UNLINK`/`RMDIR` for that name
//! from that thread; both are answered here, from what the mount already
//! knows, and never reach the server, which has removed the name already.
//! On success the VFS drops its entry and notifies every watcher.
//!
//! An echo is answered only for the thread that makes echoes, only for the
//! registered parent and name, and only while that name still leads to the
//! inode that was removed: a name looked up again since (a file re-created
//! there) is refused and stays. A file with writers or unsent changes is
//! never echoed (its data would be dropped); nor is a directory holding
//! unsent files. Whatever cannot be echoed (refused by the kernel:
//! permissions, a read-only mount, a busy mount point) falls back to
//! `FUSE_NOTIFY_DELETE`, which at least drops the kernel's entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;
use rfmount_client::Remote;
use rfmount_proto::{FileKind, Meta, RelPath};

use super::{Attr, RemoteFs, not_empty};
use crate::error::{FsError, FsResult};

/// A removal the server pushed, of a name the kernel knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The directory's inode.
    pub parent: u64,
    /// The removed object's inode.
    pub child: u64,
    /// The removed name.
    pub name: String,
    /// The removed path, relative to the mount's root.
    pub path: RelPath,
    /// A directory (`rmdir`), else `unlink`.
    pub dir: bool,
}

struct Pending {
    ino: u64,
    meta: Meta,
}

/// The echoes registered and not yet answered, and the thread that makes
/// them.
#[derive(Default)]
pub struct Echoes {
    /// Thread id of the echo thread; 0 while there is none.
    tid: AtomicU32,
    /// Set when the mount goes away: no echo is started after.
    stopped: AtomicBool,
    pending: Mutex<HashMap<(u64, String), Pending>>,
}

/// More than this many unanswered echoes means they are not being made:
/// the rest fall back to `FUSE_NOTIFY_DELETE`.
const MAX_PENDING: usize = 4096;

impl Echoes {
    /// The calling thread makes the echoes from now on.
    pub fn serve_from_this_thread(&self) {
        // SAFETY: gettid has no preconditions and cannot fail.
        let tid = unsafe { libc::gettid() };
        self.tid
            .store(u32::try_from(tid).unwrap_or(0), Ordering::SeqCst);
    }

    /// No echo may start any more (the mount is going away).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.pending.lock().clear();
    }

    /// True while echoes are made.
    pub fn running(&self) -> bool {
        self.tid.load(Ordering::SeqCst) != 0 && !self.stopped.load(Ordering::SeqCst)
    }

    /// The echo of `r` is over (done, refused or not made): it is not
    /// answered any more.
    pub fn finished(&self, r: &Removal) {
        self.pending.lock().remove(&(r.parent, r.name.clone()));
    }

    fn is_echo_thread(&self, caller: u32) -> bool {
        caller != 0 && caller == self.tid.load(Ordering::SeqCst) && self.running()
    }

    fn register(&self, r: &Removal, meta: Meta) -> bool {
        let mut p = self.pending.lock();
        if p.len() >= MAX_PENDING {
            return false;
        }
        p.insert((r.parent, r.name.clone()), Pending { ino: r.child, meta });
        true
    }
}

impl<R: Remote> RemoteFs<R> {
    /// The echo table, shared with the thread that makes the echoes.
    pub fn echoes(&self) -> &std::sync::Arc<Echoes> {
        &self.echoes
    }

    /// The removal to echo for a pushed removal of `path` (inode `ino` in
    /// directory `parent`), registered; `None` when it is not to be echoed.
    /// `before` is what the mount knew of the object before the push.
    pub(super) fn echo_of(
        &self,
        path: &RelPath,
        parent: u64,
        ino: u64,
        before: Option<Meta>,
    ) -> Option<Removal> {
        if !self.echoes.running() {
            return None;
        }
        let meta = before?;
        let name = path.file_name()?.to_owned();
        // Only a name the kernel holds: anything else it looks up afresh.
        if self.inodes.lock().lookups(ino) == 0 {
            return None;
        }
        let dir = meta.kind == FileKind::Dir;
        if !self.safe_to_forget(path, ino, dir) {
            return None;
        }
        let r = Removal {
            parent,
            child: ino,
            name,
            path: path.clone(),
            dir,
        };
        self.echoes.register(&r, meta).then_some(r)
    }

    /// Nothing of this mount's would be lost by forgetting `path`: no
    /// writer, no unsent change (beneath it, for a directory).
    fn safe_to_forget(&self, path: &RelPath, ino: u64, dir: bool) -> bool {
        if dir {
            return !self.has_unsent_beneath(path);
        }
        let writing = self
            .files
            .lock()
            .get(&ino)
            .is_some_and(|f| f.writers.load(Ordering::SeqCst) > 0);
        !writing && !self.cache.entry(path).is_some_and(|e| e.dirty)
    }

    /// A lookup by the echo thread of a name it is removing: the inode the
    /// kernel had, so that the removal reaches this mount (never the
    /// server, where the name is gone). `None` for any other lookup.
    pub fn echo_lookup(&self, caller: u32, parent: u64, name: &str) -> Option<Attr> {
        if !self.echoes.is_echo_thread(caller) {
            return None;
        }
        let (ino, meta) = {
            let p = self.echoes.pending.lock();
            let e = p.get(&(parent, name.to_owned()))?;
            (e.ino, e.meta.clone())
        };
        let path = self.child(parent, name).ok()?;
        let mut inodes = self.inodes.lock();
        if inodes.ino(&path) != Some(ino) {
            return None;
        }
        inodes.lookup(&path);
        Some(Attr { ino, meta })
    }

    /// An `unlink` (or, with `dir`, `rmdir`) of `name` in `parent`: when it
    /// is the echo thread's, answered here (`Some`) without the server;
    /// `None` for any other, which goes the usual way.
    pub fn echo_remove(
        &self,
        caller: u32,
        parent: u64,
        name: &str,
        dir: bool,
    ) -> Option<FsResult<()>> {
        if !self.echoes.is_echo_thread(caller) {
            return None;
        }
        let pending = self
            .echoes
            .pending
            .lock()
            .remove(&(parent, name.to_owned()));
        let Some(pending) = pending else {
            // The echo thread removes nothing but its echoes.
            return Some(Err(stale("no such echo")));
        };
        let path = match self.child(parent, name) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        if self.inodes.lock().ino(&path) != Some(pending.ino) {
            return Some(Err(stale("the name leads elsewhere now")));
        }
        if (pending.meta.kind == FileKind::Dir) != dir {
            return Some(Err(stale("the name is of another kind now")));
        }
        if !self.safe_to_forget(&path, pending.ino, dir) {
            return Some(Err(if dir {
                not_empty()
            } else {
                FsError::Errno {
                    errno: libc::EBUSY,
                    what: "changed here since the removal elsewhere",
                }
            }));
        }
        if dir {
            self.rmdir_done(&path, false);
        } else {
            self.unlink_done(&path, false);
        }
        log::debug!("{path}: removed elsewhere; echoed to this mount's watchers");
        Some(Ok(()))
    }
}

fn stale(what: &'static str) -> FsError {
    FsError::Errno {
        errno: libc::ESTALE,
        what,
    }
}

#[cfg(test)]
#[path = "echo_tests.rs"]
mod tests;
