//! The export watch: inotify on the directories sessions hold callbacks in,
//! so that a change made on the server machine by another process (an
//! editor, a build, `cp` into the export) is pushed like one made through a
//! session. Plain libc: inotify is a handful of calls and a fixed record
//! layout, not worth a dependency.
//!
//! Watches are added as callbacks are registered and kept until the kernel
//! drops them (the directory is removed or moved); their number is capped,
//! and past the cap changes in unwatched directories are only seen when a
//! session makes them. A queue overflow means events were lost:
//! `Change::All` tells every session to drop everything.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use rfmount_proto::{Change, FileId, RelPath};

use crate::callbacks::{Callbacks, Changed};

/// Watched directories at most (each costs the kernel about 1 KiB).
const MAX_WATCHES: usize = 8192;

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

pub(crate) struct Watcher {
    fd: Arc<OwnedFd>,
    root: PathBuf,
    dirs: Arc<Mutex<Dirs>>,
}

#[derive(Default)]
struct Dirs {
    by_wd: HashMap<i32, RelPath>,
    by_path: HashMap<RelPath, i32>,
    full_logged: bool,
}

impl Watcher {
    /// Starts watching (nothing yet) beneath `root`; reports go to `table`.
    /// `None` when inotify is unavailable: sessions then see only each
    /// other's changes, which is logged.
    pub(crate) fn start(root: PathBuf, table: Weak<Callbacks>) -> Option<Watcher> {
        // SAFETY: plain system call; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            log::warn!(
                "cannot watch the export for local changes (inotify: {}); \
                 changes made on the server machine reach mounts only by revalidation",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let dirs = Arc::new(Mutex::new(Dirs::default()));
        let (rfd, rdirs, rroot) = (Arc::clone(&fd), Arc::clone(&dirs), root.clone());
        let spawned = std::thread::Builder::new()
            .name("rfserve-watch".into())
            .spawn(move || read_events(&rfd, &rdirs, &table, &rroot));
        if let Err(e) = spawned {
            log::warn!("cannot start the export watch: {e}");
            return None;
        }
        Some(Watcher { fd, root, dirs })
    }

    /// Watches directory `dir` (export-relative) unless it already is.
    pub(crate) fn watch(&self, dir: &RelPath) {
        let mut dirs = self.dirs.lock();
        if dirs.by_path.contains_key(dir) {
            return;
        }
        if dirs.by_path.len() >= MAX_WATCHES {
            if !dirs.full_logged {
                dirs.full_logged = true;
                log::warn!(
                    "watching {MAX_WATCHES} directories of the export; changes made on the \
                     server machine in others are not pushed to mounts"
                );
            }
            return;
        }
        let full = if dir.is_root() {
            self.root.clone()
        } else {
            self.root.join(dir.as_str())
        };
        let Ok(c) = CString::new(full.as_os_str().as_bytes()) else {
            return;
        };
        // IN_DONT_FOLLOW: a symlink in the export must not make us watch
        // something outside it.
        // SAFETY: `c` is a valid C string; the descriptor is live.
        let wd = unsafe {
            libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK | libc::IN_DONT_FOLLOW)
        };
        if wd < 0 {
            // Gone already, or not a directory: nothing there to watch.
            log::debug!(
                "cannot watch {}: {}",
                full.display(),
                std::io::Error::last_os_error()
            );
            return;
        }
        // The same directory under two names (a hard-linked path cannot be
        // a directory, but a bind mount can) gets the same wd: keep one.
        if let Some(old) = dirs.by_wd.insert(wd, dir.clone()) {
            dirs.by_path.remove(&old);
        }
        dirs.by_path.insert(dir.clone(), wd);
    }
}

/// Names the store itself uses while an upload is in progress: not the
/// user's changes.
/// The kernel names an `O_TMPFILE` file `#INODE` in the events of its
/// directory: an upload being written, not a name anyone can see. A real
/// file of that name exists; the temporary one does not.
fn is_unnamed_tmpfile(root: &std::path::Path, dir: &RelPath, name: &str) -> bool {
    let Some(digits) = name.strip_prefix('#') else {
        return false;
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let path = root.join(dir.as_str()).join(name);
    std::fs::symlink_metadata(path).is_err()
}

fn is_upload_temp(name: &str) -> bool {
    name.starts_with(".rfserve-upload-") && name.ends_with(".tmp")
}

fn read_events(fd: &OwnedFd, dirs: &Mutex<Dirs>, table: &Weak<Callbacks>, root: &std::path::Path) {
    let mut buf = vec![0u8; 64 * 1024];
    let header = std::mem::size_of::<libc::inotify_event>();
    loop {
        // SAFETY: `buf` is writable for its length; the descriptor is live.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!("export watch stopped: {e}");
            return;
        }
        let Some(table) = table.upgrade() else { return };
        let n = n as usize;
        let mut changes = Vec::new();
        let mut off = 0;
        while off + header <= n {
            // SAFETY: the kernel wrote a whole record here; read_unaligned
            // because the buffer has no alignment guarantee.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let name_bytes = &buf[off + header..(off + header + ev.len as usize).min(n)];
            off += header + ev.len as usize;
            let name_end = name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len());
            let name = String::from_utf8_lossy(&name_bytes[..name_end]).into_owned();
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                changes.push(Changed {
                    path: RelPath::root(),
                    file_id: FileId::default(),
                    change: Change::All,
                });
                continue;
            }
            let mut d = dirs.lock();
            if ev.mask & libc::IN_IGNORED != 0 {
                if let Some(p) = d.by_wd.remove(&ev.wd) {
                    d.by_path.remove(&p);
                }
                continue;
            }
            let Some(dir) = d.by_wd.get(&ev.wd).cloned() else {
                continue;
            };
            if ev.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                // The name is gone (its parent's watch, if any, says so
                // too): `Removed` first, so that a mount that knew the
                // directory still knows it when told (to echo the removal
                // to its inotify watchers), then `All` for the callbacks
                // beneath it.
                d.by_wd.remove(&ev.wd);
                d.by_path.remove(&dir);
                drop(d);
                changes.push(Changed {
                    path: dir.clone(),
                    file_id: FileId::default(),
                    change: Change::Removed,
                });
                changes.push(Changed {
                    path: dir,
                    file_id: FileId::default(),
                    change: Change::All,
                });
                continue;
            }
            drop(d);
            let path = if name.is_empty() {
                dir
            } else if is_upload_temp(&name) || is_unnamed_tmpfile(root, &dir, &name) {
                continue;
            } else {
                match dir.join(&name) {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            };
            let change = if ev.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                Change::Created
            } else if ev.mask & (libc::IN_DELETE | libc::IN_MOVED_FROM) != 0 {
                Change::Removed
            } else if ev.mask & (libc::IN_MODIFY | libc::IN_CLOSE_WRITE) != 0 {
                Change::Content
            } else if ev.mask & libc::IN_ATTRIB != 0 {
                Change::Attr
            } else {
                continue;
            };
            changes.push(Changed {
                path,
                file_id: FileId::default(),
                change,
            });
        }
        if !changes.is_empty() {
            table.changed(None, &changes);
        }
    }
}
