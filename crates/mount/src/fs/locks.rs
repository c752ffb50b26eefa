//! Locks across mounts: `fcntl` and `flock` requests from the kernel go to
//! the server, which grants them per session. Around them, the rules that
//! let programs that coordinate with locks (sqlite, `flock`-guarded
//! scripts) see each other's writes, as on NFS:
//!
//! - taking a lock revalidates the file: a newer version on the server is
//!   fetched into the cache (also under descriptors that stay open across
//!   transactions, as sqlite's do) and the kernel's pages are dropped;
//! - releasing or downgrading one uploads unsent changes first, so the next
//!   holder reads them.
//!
//! The mount remembers the locks it holds so that, after a server restart
//! lost them, it can take them again (non-blocking) when it reconnects.
//!
//! fuser 0.18 does not pass `lk_flags` (`FUSE_LK_FLOCK`), so a `flock(2)`
//! arrives as a whole-file lock of its open file and is sent as a POSIX
//! lock, as the Linux NFS client emulates `flock`: it conflicts with other
//! mounts' `flock` and whole-file `fcntl` locks alike. Nor does fuser pass
//! `FUSE_INTERRUPT` on; a waiting request watches its caller's pending
//! signals instead (see [`signal_pending`]).

use std::collections::HashMap;

use log::{info, warn};
use parking_lot::Mutex;
use rfmount_client::{LockRequest, Remote, RemoteError};
use rfmount_proto::{LockFlavor, LockHolder, LockKind, RelPath};

use super::RemoteFs;
use super::files::Why;

/// How long a lock grant waits for the kernel to be told of changes pushed
/// before it (see `RemoteFs::kernel_told`).
const NOTES_BEFORE_GRANT: std::time::Duration = std::time::Duration::from_millis(500);
use crate::data_cache::open_data;
use crate::error::{FsError, FsResult};

/// One byte range this mount holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    kind: LockKind,
    start: u64,
    end: u64,
    pid: u32,
}

/// The locks this mount holds on the server, per inode and lock owner: a
/// mirror of the server's ranges (split on unlock like the server's) kept
/// only to take them again after the server lost them.
#[derive(Default)]
pub(crate) struct HeldLocks {
    map: Mutex<HashMap<(u64, u64), Vec<Range>>>,
}

impl HeldLocks {
    fn apply(&self, ino: u64, owner: u64, r: Range) {
        let mut map = self.map.lock();
        let list = map.entry((ino, owner)).or_default();
        let mut out = Vec::with_capacity(list.len() + 2);
        for h in list.drain(..) {
            if h.end < r.start || h.start > r.end {
                out.push(h);
                continue;
            }
            if h.start < r.start {
                out.push(Range {
                    end: r.start - 1,
                    ..h
                });
            }
            if h.end > r.end {
                out.push(Range {
                    start: r.end + 1,
                    ..h
                });
            }
        }
        if r.kind != LockKind::Unlock {
            out.push(r);
        }
        if out.is_empty() {
            map.remove(&(ino, owner));
        } else {
            *list = out;
        }
    }

    fn holds(&self, ino: u64, owner: u64) -> bool {
        self.map.lock().contains_key(&(ino, owner))
    }

    fn forget(&self, ino: u64, owner: u64) {
        self.map.lock().remove(&(ino, owner));
    }

    fn snapshot(&self) -> Vec<((u64, u64), Vec<Range>)> {
        self.map
            .lock()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }
}

/// A lock as the kernel describes it (`struct fuse_file_lock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLock {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive (`OFFSET_MAX` to the end).
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: i32,
    /// The process.
    pub pid: u32,
}

fn kind_of(typ: i32) -> FsResult<LockKind> {
    match typ {
        libc::F_RDLCK => Ok(LockKind::Read),
        libc::F_WRLCK => Ok(LockKind::Write),
        libc::F_UNLCK => Ok(LockKind::Unlock),
        _ => Err(FsError::Errno {
            errno: libc::EINVAL,
            what: "unknown lock type",
        }),
    }
}

fn typ_of(kind: LockKind) -> i32 {
    match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
        LockKind::Unlock => libc::F_UNLCK,
    }
}

/// The kernel's "to the end of the file" (`OFFSET_MAX`) is the wire's
/// `u64::MAX`.
fn wire_end(end: u64) -> u64 {
    if end >= i64::MAX as u64 {
        u64::MAX
    } else {
        end
    }
}

fn kernel_end(end: u64) -> u64 {
    end.min(i64::MAX as u64)
}

/// A server that cannot be reached grants no locks: `ENOLCK` at once
/// rather than an error the caller might retry forever.
fn lock_error(e: RemoteError) -> FsError {
    if e.is_transport() {
        warn!("lock refused with ENOLCK, the server is unreachable: {e}");
        return FsError::Errno {
            errno: libc::ENOLCK,
            what: "no locks while the server is unreachable",
        };
    }
    FsError::Remote(e)
}

impl<R: Remote> RemoteFs<R> {
    /// `F_GETLK`: the lock of another owner (of any mount) that would block
    /// `lk`, or `F_UNLCK` when there is none.
    ///
    /// # Errors
    /// `ENOENT`, `ENOLCK` when the server is unreachable.
    pub fn getlk(&self, ino: u64, owner: u64, lk: KernelLock) -> FsResult<KernelLock> {
        let path = self.path(ino)?;
        let kind = kind_of(lk.typ)?;
        let req = LockRequest {
            owner,
            flavor: LockFlavor::Posix,
            kind,
            start: lk.start,
            end: wire_end(lk.end),
            wait: false,
            pid: lk.pid,
        };
        let holder = self.remote.test_lock(&path, &req).map_err(lock_error)?;
        Ok(match holder {
            Some(LockHolder {
                kind,
                start,
                end,
                pid,
            }) => KernelLock {
                start,
                end: kernel_end(end),
                typ: typ_of(kind),
                pid,
            },
            None => KernelLock {
                typ: libc::F_UNLCK,
                ..lk
            },
        })
    }

    /// `F_SETLK`/`F_SETLKW` (and `flock`): takes, changes or releases a
    /// lock on the server. `cancelled` is asked while a waiting request
    /// waits.
    ///
    /// # Errors
    /// `EAGAIN` when another owner holds a conflicting lock (not waiting),
    /// `EDEADLK`, `EINTR` when cancelled, `ENOLCK` when the server is
    /// unreachable.
    pub fn setlk(
        &self,
        ino: u64,
        owner: u64,
        lk: KernelLock,
        wait: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> FsResult<()> {
        let path = self.path(ino)?;
        let kind = kind_of(lk.typ)?;
        if kind != LockKind::Write {
            // Unlock or downgrade: the next holder must read what we wrote.
            self.upload_before_unlock(ino, &path);
        }
        let req = LockRequest {
            owner,
            flavor: LockFlavor::Posix,
            kind,
            start: lk.start,
            end: wire_end(lk.end),
            wait: wait && kind != LockKind::Unlock,
            pid: lk.pid,
        };
        self.remote
            .lock(&path, &req, cancelled)
            .map_err(lock_error)?;
        self.held_locks.apply(
            ino,
            owner,
            Range {
                kind,
                start: req.start,
                end: req.end,
                pid: lk.pid,
            },
        );
        if kind != LockKind::Unlock {
            self.revalidate(ino, &path);
            self.kernel_told(NOTES_BEFORE_GRANT);
        }
        Ok(())
    }

    /// A descriptor of `owner` was closed (`flush`) or the last reference
    /// to an open file went (`release` of a `flock` owner): its locks on
    /// `ino` go, after unsent changes are uploaded. Costs nothing when the
    /// owner holds no lock.
    pub fn release_locks(&self, ino: u64, owner: u64) {
        if !self.held_locks.holds(ino, owner) {
            return;
        }
        let Ok(path) = self.path(ino) else {
            self.held_locks.forget(ino, owner);
            return;
        };
        self.upload_before_unlock(ino, &path);
        let req = LockRequest {
            owner,
            flavor: LockFlavor::Posix,
            kind: LockKind::Unlock,
            start: 0,
            end: u64::MAX,
            wait: false,
            pid: 0,
        };
        // Forgotten either way: if the server is unreachable it releases
        // the session's locks itself when the grace period runs out.
        self.held_locks.forget(ino, owner);
        if let Err(e) = self.remote.lock(&path, &req, &|| false) {
            warn!("{path}: releasing locks at close failed: {e}");
        }
    }

    /// True while this mount holds any lock on the server.
    pub fn holds_locks(&self) -> bool {
        !self.held_locks.map.lock().is_empty()
    }

    /// After a reconnect: nothing to do when the server kept this mount's
    /// locks (`resumed`); otherwise (the server restarted, or the grace
    /// period ran out) each lock is taken again without waiting, and each
    /// one that cannot be is logged, since its holder no longer has it.
    pub fn reacquire_locks(&self, resumed: bool) {
        let held = self.held_locks.snapshot();
        if held.is_empty() {
            return;
        }
        if resumed {
            info!("the server kept this mount's locks across the reconnect");
            return;
        }
        let (mut ok, mut lost) = (0, 0);
        for ((ino, owner), ranges) in held {
            let path = self.inodes.lock().path(ino);
            for r in ranges {
                let req = LockRequest {
                    owner,
                    flavor: LockFlavor::Posix,
                    kind: r.kind,
                    start: r.start,
                    end: r.end,
                    wait: false,
                    pid: r.pid,
                };
                let result = match &path {
                    Some(p) => self.remote.lock(p, &req, &|| false),
                    None => Ok(()),
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        lost += 1;
                        let name = path.as_ref().map_or("(unlinked)".into(), |p| p.to_string());
                        warn!(
                            "LOCK LOST: {name} bytes {}-{} ({:?}, pid {}) was held before the server \
                             lost this mount's locks and cannot be taken again: {e}",
                            r.start, r.end, r.kind, r.pid
                        );
                        self.held_locks.apply(
                            ino,
                            owner,
                            Range {
                                kind: LockKind::Unlock,
                                ..r
                            },
                        );
                    }
                }
            }
        }
        if lost == 0 {
            info!("the server lost this mount's locks; took all {ok} again");
        } else {
            warn!("the server lost this mount's locks; took {ok} again, {lost} lost");
        }
    }

    fn upload_before_unlock(&self, ino: u64, path: &RelPath) {
        let state = self.file_state(ino);
        if let Err(e) = self.upload(ino, &state, Why::Flush) {
            // Still released: the changes stay in the cache for the retry
            // loop, and a lock must not outlive its owner's wish.
            warn!("{path}: uploading before releasing a lock failed, kept for retry: {e}");
        }
    }

    /// Brings the cache up to the server's version of a file just locked,
    /// also under the descriptors already open on it, and drops the
    /// kernel's pages when the content changed. Unsent local changes are
    /// the newest content and are left alone.
    fn revalidate(&self, ino: u64, path: &RelPath) {
        let state = self.file_state(ino);
        let _guard = state.upload.lock();
        let Some(entry) = self.cache.entry(path) else {
            // Nothing cached: the next open fetches.
            return;
        };
        if entry.dirty {
            return;
        }
        if state.io.backing_file().is_some() {
            // The kernel reads the cache file itself: no new file can take
            // its place, the new version goes into it.
            if let Err(e) = self.refresh_backing(ino, path, &state, true) {
                warn!("{path}: cannot revalidate after locking: {e}");
            }
            return;
        }
        let meta = match self.fetch(path, Some(&entry)) {
            Ok(m) => m,
            Err(e) => {
                warn!("{path}: cannot revalidate after locking: {e}");
                return;
            }
        };
        if entry.version == Some(meta.version) {
            return;
        }
        let handles: Vec<_> = self
            .handles
            .read()
            .values()
            .filter(|h| h.ino() == ino)
            .cloned()
            .collect();
        let data = self.cache.data_path(path);
        for h in handles {
            match open_data(&data, h.writable()) {
                Ok(f) => h.replace_file(f),
                Err(e) => {
                    warn!("{path}: cannot reopen the new version for an open descriptor: {e}")
                }
            }
        }
        *state.kernel_version.lock() = Some(meta.version);
        if let Some(inval) = self.invalidator.get() {
            inval(ino);
        }
    }
}

/// True when thread `tid` has a signal pending that it does not block, or
/// is gone: the kernel would have sent `FUSE_INTERRUPT` for it, which
/// fuser 0.18 does not pass on. A killed process waiting in `F_SETLKW`
/// stays in the kernel until the request is answered, with the signal
/// pending, so this is what lets it die.
pub(crate) fn signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = field("SigPnd:") | field("ShdPnd:");
    pending & !field("SigBlk:") & !field("SigIgn:") != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_splits_ranges_like_the_server() {
        let h = HeldLocks::default();
        let r = |kind, start, end| Range {
            kind,
            start,
            end,
            pid: 1,
        };
        h.apply(1, 9, r(LockKind::Write, 0, 99));
        h.apply(1, 9, r(LockKind::Unlock, 10, 19));
        let snap = h.snapshot();
        assert_eq!(snap.len(), 1);
        let mut ranges: Vec<_> = snap[0].1.iter().map(|r| (r.start, r.end)).collect();
        ranges.sort_unstable();
        assert_eq!(ranges, vec![(0, 9), (20, 99)]);
        h.apply(1, 9, r(LockKind::Unlock, 0, u64::MAX));
        assert!(!h.holds(1, 9));
    }

    #[test]
    fn a_thread_without_pending_signals_is_not_cancelled() {
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(!signal_pending(tid));
        assert!(signal_pending(u32::MAX - 1), "a thread that does not exist");
    }
}
