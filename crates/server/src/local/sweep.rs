//! Removing upload temporaries that a dead server left behind.
//!
//! Why this exists: an upload lives in a hidden `.rfput-*.tmp` file beside
//! its target until it is committed, and a session that ends for any reason
//! deletes its temporary. A server that is killed outright (SIGKILL, the OOM
//! killer, a power cut) never gets to, and since listings hide those names
//! no client ever sees them to delete them: they would stay forever. So
//! every start walks the export once, on a background thread, and removes
//! the ones that predate it; and listings remove the stale ones they skip,
//! so a directory in use is clean even before the walk reaches it.
//!
//! Stale means: a regular file with the temporary prefix whose mtime *and*
//! ctime are older than the moment the store opened, and that is not one of
//! this store's uploads in progress. The ctime matters because a commit sets
//! the client's mtime, which may be years old, on the temporary before
//! renaming it into place; nobody can set a ctime back. The start time is
//! read from the coarse clock the kernel stamps files with, so a file created
//! after it never looks older. The register of live uploads makes "never
//! touch our own uploads" hold even where file times come from another
//! machine's clock (a network filesystem): a name is registered before the
//! file is created and unregistered only after it is renamed or deleted.
//!
//! The walk never leaves the root and never follows a symlink: each
//! directory is opened relative to its parent's descriptor with `openat2`
//! and `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`, so a
//! directory swapped for a symlink is refused by the kernel, and mount points
//! (of other filesystems or bind mounts) are not entered. It is depth-first
//! with one open stream per level and at most [`MAX_DEPTH`] levels, so its
//! memory and descriptors are bounded whatever the tree; deeper directories
//! are left to the listings. It stops when the store is dropped.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::{TEMP_PREFIX, sys};

/// Directory levels the walk descends (each holds a descriptor and a
/// `readdir` buffer while open).
const MAX_DEPTH: usize = 64;

/// What tells a stale temporary from a live one; shared by the store, its
/// uploads, its listings and the walk.
pub(super) struct Temps {
    /// When the store opened, as (seconds, nanoseconds).
    opened: (i64, i64),
    /// Names of this store's temporaries that exist or are being created.
    live: Mutex<HashSet<CString>>,
}

impl Temps {
    /// Marks now as the store's start.
    pub(super) fn new() -> Temps {
        Temps {
            opened: sys::coarse_now(),
            live: Mutex::new(HashSet::new()),
        }
    }

    /// Registers `name` as an upload of this store until the guard drops.
    /// Call it before creating the file.
    pub(super) fn hold(self: &Arc<Self>, name: CString) -> LiveTemp {
        self.live.lock().insert(name.clone());
        LiveTemp {
            temps: Arc::clone(self),
            name,
        }
    }

    /// A register whose start is `secs` seconds after the epoch.
    #[cfg(test)]
    pub(super) fn started_at(secs: i64) -> Temps {
        Temps {
            opened: (secs, 0),
            live: Mutex::new(HashSet::new()),
        }
    }

    /// How many temporaries are registered.
    #[cfg(test)]
    pub(super) fn live_count(&self) -> usize {
        self.live.lock().len()
    }

    fn predates_start(&self, st: &libc::stat) -> bool {
        (st.st_mtime, st.st_mtime_nsec) < self.opened
            && (st.st_ctime, st.st_ctime_nsec) < self.opened
    }

    /// Unlinks `name` in `dir` if it is a stale temporary (see the module
    /// documentation); true if it did. The caller has checked the prefix.
    pub(super) fn remove_if_stale(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
        if self.live.lock().contains(name) {
            return Ok(false);
        }
        let gone = |e: io::Error| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(false)
            } else {
                Err(e)
            }
        };
        let st = match sys::lstatat(dir, name) {
            Ok(st) => st,
            Err(e) => return gone(e),
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || !self.predates_start(&st) {
            return Ok(false);
        }
        sys::unlinkat(dir, name, 0).map(|()| true).or_else(gone)
    }
}

/// A registered temporary name; see [`Temps::hold`].
pub(super) struct LiveTemp {
    temps: Arc<Temps>,
    name: CString,
}

impl LiveTemp {
    pub(super) fn name(&self) -> &CStr {
        &self.name
    }
}

impl Drop for LiveTemp {
    fn drop(&mut self) {
        self.temps.live.lock().remove(&self.name);
    }
}

/// Starts the walk beneath `root` on its own thread and returns at once,
/// with the thread's handle (which yields the count removed) if it started.
/// Failures are logged at debug level: a missed temporary costs only space.
pub(super) fn spawn(root: BorrowedFd<'_>, temps: &Arc<Temps>) -> Option<JoinHandle<usize>> {
    let top = match sys::openat2(root, c".", libc::O_RDONLY | libc::O_DIRECTORY, sys::BENEATH)
        .and_then(sys::Dir::new)
    {
        Ok(dir) => dir,
        Err(e) => {
            log::debug!("cannot sweep stale upload temp files: {e}");
            return None;
        }
    };
    let temps = Arc::downgrade(temps);
    let spawned = std::thread::Builder::new()
        .name("rfserve-sweep".into())
        .spawn(move || {
            let removed = walk(top, &temps);
            if removed > 0 {
                log::info!("removed {removed} stale upload temp files");
            } else {
                log::debug!("removed {removed} stale upload temp files");
            }
            removed
        });
    spawned
        .inspect_err(|e| log::debug!("cannot start the sweep of stale upload temp files: {e}"))
        .ok()
}

/// Opens directory `name` in `dir` for reading, refusing symlinks and mount
/// points.
fn open_subdir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<sys::Dir> {
    let resolve = sys::BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    sys::openat2(dir, name, flags, resolve).and_then(sys::Dir::new)
}

fn is_dir(dir: BorrowedFd<'_>, name: &CStr, kind: u8) -> bool {
    match kind {
        libc::DT_DIR => true,
        libc::DT_UNKNOWN => {
            sys::lstatat(dir, name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        }
        _ => false,
    }
}

/// Depth-first walk from `top`; returns how many temporaries it removed.
fn walk(top: sys::Dir, temps: &Weak<Temps>) -> usize {
    let mut removed = 0;
    // One open stream per level, and the path of the deepest, for logs.
    let mut stack = vec![(top, 0)];
    let mut path = Vec::<u8>::new();
    loop {
        let depth = stack.len();
        let Some((dir, _)) = stack.last_mut() else {
            break;
        };
        let Some(temps) = temps.upgrade() else {
            log::debug!("store closed; stopping the sweep of stale upload temp files");
            break;
        };
        let shown = |name: &CStr| {
            format!(
                "{}/{}",
                String::from_utf8_lossy(&path),
                name.to_string_lossy()
            )
        };
        let ent = match dir.next_entry() {
            Some(Ok(ent)) => ent,
            end => {
                if let Some(Err(e)) = end {
                    log::debug!(
                        "sweep: cannot read {}/: {e}",
                        String::from_utf8_lossy(&path)
                    );
                }
                if let Some((_, len)) = stack.pop() {
                    path.truncate(len);
                }
                continue;
            }
        };
        let bytes = ent.name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        if bytes.starts_with(TEMP_PREFIX.as_bytes()) {
            match temps.remove_if_stale(ent.dir, ent.name) {
                Ok(true) => {
                    log::debug!("sweep: removed {}", shown(ent.name));
                    removed += 1;
                    continue;
                }
                Ok(false) => {}
                Err(e) => log::debug!("sweep: cannot remove {}: {e}", shown(ent.name)),
            }
        }
        if !is_dir(ent.dir, ent.name, ent.kind) {
            continue;
        }
        if depth >= MAX_DEPTH {
            log::debug!("sweep: not descending into {}: too deep", shown(ent.name));
            continue;
        }
        match open_subdir(ent.dir, ent.name) {
            Ok(sub) => {
                let len = path.len();
                path.push(b'/');
                path.extend_from_slice(bytes);
                stack.push((sub, len));
            }
            // A mount point, or a directory replaced by a symlink or
            // removed since readdir: not ours to enter.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::ELOOP | libc::ENOENT)
                ) => {}
            Err(e) => log::debug!("sweep: cannot open {}: {e}", shown(ent.name)),
        }
    }
    removed
}
