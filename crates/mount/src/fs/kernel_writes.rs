//! What rfmount knows of the writes a passthrough writer made: none of
//! them reach this process (the kernel writes the cache file itself), so
//! whether anything was written since an upload is read off the cache
//! file's attributes, and which bytes changed is not known at all.
//!
//! An upload made while such a writer is open takes a *stamp* of the cache
//! file first (size, mtime, ctime, inode) at a moment when any later write
//! must move its ctime, and keeps it if the file still has it after the
//! upload: the server then holds exactly that content. A later close of
//! the writer, or its release, that finds the same stamp wrote nothing and
//! uploads nothing. Without this the release uploaded again, and a change
//! another mount closed in between became a conflict.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use rfmount_proto::Version;

/// The cache file's attributes that every write changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
    ino: u64,
    len: u64,
    mtime: i128,
    ctime: i128,
}

impl Stamp {
    pub(super) fn len(&self) -> u64 {
        self.len
    }
}

/// An upload of content with this stamp landed as `version`, while the
/// file's change count was `write_gen`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Landed {
    pub(super) stamp: Stamp,
    pub(super) write_gen: u64,
    pub(super) version: Version,
}

fn ns(secs: i64, nsec: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsec)
}

/// The clock file times are taken from (unless the file system refines
/// them on demand, which only makes them later).
fn coarse_now() -> i128 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) };
    ns(t.tv_sec, t.tv_nsec)
}

/// The current stamp of `path`.
pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    let md = fs::metadata(path).ok()?;
    Some(Stamp {
        ino: md.ino(),
        len: md.len(),
        mtime: ns(md.mtime(), md.mtime_nsec()),
        ctime: ns(md.ctime(), md.ctime_nsec()),
    })
}

/// A stamp of `path` that any later write changes: one whose ctime is
/// older than the clock, so that a write's new ctime cannot equal it. A
/// write in the same clock tick as the last one may leave the ctime as it
/// is, so this waits out the tick (a few milliseconds). `None` where that
/// cannot be told: a file system with whole-second times (a zero
/// nanosecond part), or a file written on all along.
pub(super) fn settled_stamp(path: &Path) -> Option<Stamp> {
    // A page of a shared mapping that is dirty and writable takes more
    // writes with no fault, so with no new ctime; written back, it is
    // write-protected again, and its next write moves the ctime.
    let f = fs::File::open(path).ok()?;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range on a descriptor `f` keeps open.
    if unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, flags) } != 0 {
        return None;
    }
    for _ in 0..50 {
        let now = coarse_now();
        let s = stamp(path)?;
        if s.ctime % 1_000_000_000 == 0 {
            return None;
        }
        if s.ctime < now {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}
