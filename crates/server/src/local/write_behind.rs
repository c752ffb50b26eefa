//! Writeback of an upload's data started while it still arrives, so that
//! the `fsync` of its commit finds little left to write: a 1 GiB upload
//! otherwise leaves a gigabyte of dirty pages for the close to wait on.
//!
//! Every [`START_EVERY`] bytes written, writeback of them is started
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait); data
//! older than [`KEEP_DIRTY`] is waited for, which bounds what the commit
//! waits for and the dirty pages one upload holds. This is only a head
//! start: durability still comes from the commit's `fsync`, which also
//! reports any write error, so failures here are ignored.

use std::os::fd::{AsRawFd, BorrowedFd};

/// How much new data starts a writeback.
const START_EVERY: u64 = 8 << 20;
/// How much written data may still be in flight to the disk.
const KEEP_DIRTY: u64 = 64 << 20;

/// The writeback state of one upload's file.
#[derive(Default)]
pub(super) struct WriteBehind {
    /// Writeback was started for everything below this offset.
    started: u64,
    /// Everything below this offset has reached the disk.
    waited: u64,
    /// The file was written out of order or the call is unsupported:
    /// leave it all to the commit's `fsync`.
    off: bool,
}

impl WriteBehind {
    /// Data was just written in order up to `end`.
    pub(super) fn wrote_to(&mut self, fd: BorrowedFd<'_>, end: u64) {
        if self.off || end < self.started + START_EVERY {
            return;
        }
        if !range(
            fd,
            self.started,
            end - self.started,
            libc::SYNC_FILE_RANGE_WRITE,
        ) {
            self.off = true;
            return;
        }
        self.started = end;
        let settled = end.saturating_sub(KEEP_DIRTY);
        if settled > self.waited {
            let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            if !range(fd, self.waited, settled - self.waited, flags) {
                self.off = true;
                return;
            }
            self.waited = settled;
        }
    }
}

fn range(fd: BorrowedFd<'_>, offset: u64, len: u64, flags: libc::c_uint) -> bool {
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return false;
    };
    // SAFETY: sync_file_range only acts on the descriptor's file.
    unsafe { libc::sync_file_range(fd.as_raw_fd(), offset, len, flags) == 0 }
}
