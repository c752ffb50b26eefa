//! Group commit of directories: uploads that finish at the same time in one
//! directory share the `fsync` that makes their new names durable.
//!
//! An upload is durable once its data is synced (its own `fsync`) and its
//! name is in a synced directory. The first committer that needs a
//! directory synced becomes the leader: it notes how many renames are in
//! the directory by then, syncs it, and marks all of them durable. Those
//! who finish their rename while it syncs wait, and the next leader's one
//! `fsync` covers all of them. Nobody is told "durable" by an `fsync` that
//! started before its rename: a ticket is taken only after the rename, and
//! a sync covers the tickets issued before it started.
//!
//! A failed `fsync` marks nothing durable: the leader reports its error,
//! and each waiter it would have covered tries again itself, so every
//! committer gets the answer of an `fsync` that ran after its own rename.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};

use super::sys;

/// The directories being synced, by (device, inode), shared by every
/// session of an export (and its confined subdirectory stores).
#[derive(Default)]
pub(crate) struct DirSyncs {
    dirs: Mutex<HashMap<(u64, u64), Arc<DirState>>>,
    /// Directory fsyncs done, for tests and the log.
    fsyncs: AtomicU64,
}

#[derive(Default)]
struct DirState {
    tickets: Mutex<Tickets>,
    done: Condvar,
}

#[derive(Default)]
struct Tickets {
    /// Renames that asked for a sync so far.
    issued: u64,
    /// Every ticket up to this one is durable.
    durable: u64,
    /// A leader is syncing right now.
    syncing: bool,
}

impl DirSyncs {
    /// Makes every name created in `dir` before this call durable: returns
    /// once an `fsync` of `dir` that started after the call has succeeded.
    ///
    /// # Errors
    /// The error of the `fsync` that ran on this caller's behalf.
    pub(crate) fn sync(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        let st = sys::fstat(dir)?;
        let key = (st.st_dev, st.st_ino);
        let state = Arc::clone(self.dirs.lock().entry(key).or_default());
        let result = self.sync_in(&state, dir);
        let mut dirs = self.dirs.lock();
        // Only the map and this caller hold it: nobody else is waiting.
        if Arc::strong_count(&state) == 2 {
            dirs.remove(&key);
        }
        result
    }

    fn sync_in(&self, state: &DirState, dir: BorrowedFd<'_>) -> io::Result<()> {
        let mut t = state.tickets.lock();
        t.issued += 1;
        let mine = t.issued;
        loop {
            if t.durable >= mine {
                return Ok(());
            }
            if t.syncing {
                state.done.wait(&mut t);
                continue;
            }
            t.syncing = true;
            let covers = t.issued;
            drop(t);
            let result = fsync_dir(dir);
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            t = state.tickets.lock();
            t.syncing = false;
            if result.is_ok() {
                t.durable = t.durable.max(covers);
            }
            state.done.notify_all();
            // Success covers this caller too; failure is this caller's own
            // answer (the others it would have covered try again).
            result?;
        }
    }

    /// Directory fsyncs done so far.
    #[cfg(test)]
    pub(crate) fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }
}

fn fsync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    File::from(dir.try_clone_to_owned()?).sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn concurrent_syncs_of_one_directory_share_fsyncs_and_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let syncs = Arc::new(DirSyncs::default());
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (syncs, path) = (Arc::clone(&syncs), tmp.path().to_owned());
                std::thread::spawn(move || {
                    for j in 0..25 {
                        std::fs::write(path.join(format!("f{i}-{j}")), b"x").unwrap();
                        let dir = File::open(&path).unwrap();
                        syncs.sync(dir.as_fd()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(syncs.fsyncs() >= 1);
        assert!(
            syncs.dirs.lock().is_empty(),
            "idle directories are forgotten"
        );
    }

    #[test]
    fn renames_that_wait_for_a_running_sync_share_the_next_one() {
        let tmp = tempfile::tempdir().unwrap();
        let syncs = Arc::new(DirSyncs::default());
        let state = Arc::new(DirState::default());
        // A leader is busy syncing for someone else.
        state.tickets.lock().syncing = true;
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (syncs, state) = (Arc::clone(&syncs), Arc::clone(&state));
                let path = tmp.path().to_owned();
                std::thread::spawn(move || {
                    let dir = File::open(&path).unwrap();
                    syncs.sync_in(&state, dir.as_fd()).unwrap();
                })
            })
            .collect();
        while state.tickets.lock().issued < 3 {
            std::thread::yield_now();
        }
        // That sync ends without covering them (it started before their
        // tickets): one more fsync covers all three.
        state.tickets.lock().syncing = false;
        state.done.notify_all();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(syncs.fsyncs(), 1);
        assert_eq!(state.tickets.lock().durable, 3);
    }
}
