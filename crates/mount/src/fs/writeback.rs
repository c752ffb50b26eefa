//! Write-back mode (`-o writeback`): `close(2)` returns once the file is
//! durable in the local cache, and a bounded pool of uploaders sends it to
//! the server in the background.
//!
//! The queue holds paths, not inodes: the kernel may forget a closed file's
//! inode long before its upload runs. Paths are taken in close order; a
//! path queued again while it waits keeps its place (its upload reads the
//! content as it is when it starts), and one queued while its upload runs
//! is queued again once that upload is done, so the last content closed is
//! the last one sent. Uploads of one file never overlap (the per-file
//! upload lock), so an older version never lands after a newer one.
//!
//! Uploads hold off while closes keep coming (see [`QUIET`]): a burst of
//! closes (`cp -r`, `tar x`, a build) runs on both cores without the
//! uploads and rfserve competing with it for them, and a file renamed or
//! removed within the burst is uploaded under its final name, or not at
//! all. The hold is bounded ([`HOLD_MAX`]) and lifted while anyone waits
//! for the uploads (`rfmount sync`, unmount).
//!
//! A failed upload is retried with back-off (logged, and listed by
//! `rfmount status`). Nothing depends on the queue surviving: the cache's
//! dirty set is the record of what is owed to the server, and the periodic
//! retry loop (and the next mount) queues whatever is dirty again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};
use rfmount_client::Remote;
use rfmount_proto::RelPath;

use super::RemoteFs;
use super::files::Why;
use crate::error::FsResult;

/// First pause before a failed upload is tried again; doubled per failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest pause between tries of one upload.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The queue's uploads wait until no close has been queued for this long.
const QUIET: Duration = Duration::from_millis(50);
/// ... but never longer than this after the first of the burst was queued
/// (so a steady stream of closes is still uploaded as it goes).
const HOLD_MAX: Duration = Duration::from_secs(1);
/// How long a wait for the uploads lifts the hold: a little longer than
/// one round of `rfmount sync`'s wait (100 ms), so the hold returns soon
/// after the wait ends (the bench's next row starts right after its
/// `rfmount sync`).
const HURRY_FOR: Duration = Duration::from_millis(250);

/// An upload that failed and waits for its next try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedUpload {
    /// The file, as the mount shows it (`/dir/name`).
    pub path: String,
    /// Failed tries so far.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it last failed.
    pub at: SystemTime,
}

#[derive(Default)]
struct State {
    /// Paths ready to upload, oldest close first.
    ready: VecDeque<RelPath>,
    /// Paths waiting out a back-off, with when they may run again.
    delayed: Vec<(Instant, RelPath)>,
    /// Every path in `ready` or `delayed`.
    queued: HashSet<RelPath>,
    running: HashSet<RelPath>,
    /// Queued again while running: queued once the run ends.
    again: HashSet<RelPath>,
    failed: HashMap<RelPath, FailedUpload>,
    /// When each queued or running path was first queued (a count of
    /// pushes), for what must land before a directory's attributes.
    since: HashMap<RelPath, u64>,
    pushes: u64,
    hold: Hold,
}

/// When the uploads of a burst of closes may start.
#[derive(Default)]
struct Hold {
    /// The last push.
    last_push: Option<Instant>,
    /// When `ready` last turned non-empty.
    since: Option<Instant>,
    /// Someone waits for the uploads until then: no holding.
    hurry_until: Option<Instant>,
}

impl Hold {
    fn pushed(&mut self, now: Instant, was_idle: bool) {
        self.last_push = Some(now);
        if was_idle || self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// How much longer the uploads wait, if at all.
    fn left(&self, now: Instant) -> Option<Duration> {
        if self.hurry_until.is_some_and(|t| t > now) {
            return None;
        }
        let quiet = QUIET.checked_sub(now.duration_since(self.last_push?))?;
        let bound = HOLD_MAX.checked_sub(now.duration_since(self.since?))?;
        Some(quiet.min(bound)).filter(|d| !d.is_zero())
    }
}

/// The queue of a write-back mount.
#[derive(Default)]
pub(crate) struct UploadQueue {
    state: Mutex<State>,
    /// Signalled when work is queued, and when an upload ends.
    changed: Condvar,
}

impl UploadQueue {
    /// Queues `path` for upload (a no-op when it is already queued).
    pub(crate) fn push(&self, path: RelPath) {
        let mut st = self.state.lock();
        st.pushes += 1;
        let at = st.pushes;
        st.since.entry(path.clone()).or_insert(at);
        if st.running.contains(&path) {
            st.again.insert(path);
            return;
        }
        if st.queued.insert(path.clone()) {
            let was_idle = st.ready.is_empty();
            st.hold.pushed(Instant::now(), was_idle);
            st.ready.push_back(path);
            drop(st);
            self.changed.notify_all();
        }
    }

    /// Someone waits for the uploads: they start now, without holding off
    /// for more closes.
    fn hurry(&self) {
        let mut st = self.state.lock();
        st.hold.hurry_until = Some(Instant::now() + HURRY_FOR);
        drop(st);
        self.changed.notify_all();
    }

    /// `from` (and everything beneath it) is now `to`: its queued uploads
    /// follow it.
    pub(crate) fn rename(&self, from: &RelPath, to: &RelPath) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let moved = |p: &RelPath| p.rebase(from, to).unwrap_or_else(|| p.clone());
        for p in st.ready.iter_mut() {
            *p = moved(p);
        }
        for (_, p) in st.delayed.iter_mut() {
            *p = moved(p);
        }
        st.queued = st.queued.iter().map(moved).collect();
        st.again = st.again.iter().map(moved).collect();
        // A running upload ends under its old name, where `again` would
        // not find it: the new name is queued now (its upload waits for
        // the running one on the file's upload lock).
        let renamed: Vec<RelPath> = st
            .running
            .iter()
            .filter_map(|p| p.rebase(from, to))
            .collect();
        for p in renamed {
            st.again.remove(&p);
            if st.queued.insert(p.clone()) {
                st.ready.push_back(p);
            }
        }
        st.since = st.since.drain().map(|(p, n)| (moved(&p), n)).collect();
        st.failed = st
            .failed
            .drain()
            .map(|(p, mut f)| {
                let to = moved(&p);
                f.path = to.to_string();
                (to, f)
            })
            .collect();
    }

    /// Waits for the next path to upload; `None` once `stop` says so.
    fn next(&self, stop: &dyn Fn() -> bool) -> Option<RelPath> {
        let mut st = self.state.lock();
        loop {
            if stop() {
                return None;
            }
            let now = Instant::now();
            if let Some(i) = st.delayed.iter().position(|(t, _)| *t <= now) {
                let (_, p) = st.delayed.swap_remove(i);
                st.ready.push_back(p);
            }
            if !st.ready.is_empty()
                && let Some(left) = st.hold.left(now)
            {
                self.changed.wait_until(&mut st, now + left);
                continue;
            }
            if let Some(p) = st.ready.pop_front() {
                st.queued.remove(&p);
                st.running.insert(p.clone());
                if st.ready.is_empty() {
                    st.hold.since = None;
                }
                return Some(p);
            }
            let wake = st
                .delayed
                .iter()
                .map(|(t, _)| *t)
                .min()
                .unwrap_or(now + Duration::from_millis(500))
                .min(now + Duration::from_millis(500));
            self.changed.wait_until(&mut st, wake);
        }
    }

    /// The upload of `path` ended with `result`.
    fn done(&self, path: RelPath, result: &FsResult<()>) {
        let mut st = self.state.lock();
        st.running.remove(&path);
        match result {
            Ok(()) => {
                st.failed.remove(&path);
            }
            Err(e) => {
                let f = st.failed.entry(path.clone()).or_insert(FailedUpload {
                    path: path.to_string(),
                    attempts: 0,
                    error: String::new(),
                    at: SystemTime::now(),
                });
                f.attempts += 1;
                f.error = e.to_string();
                f.at = SystemTime::now();
                let pause = BACKOFF_START
                    .saturating_mul(1 << (f.attempts - 1).min(16))
                    .min(BACKOFF_MAX);
                if st.queued.insert(path.clone()) {
                    st.delayed.push((Instant::now() + pause, path.clone()));
                }
            }
        }
        if st.again.remove(&path) && st.queued.insert(path.clone()) {
            st.ready.push_back(path.clone());
        }
        if !st.queued.contains(&path) {
            st.since.remove(&path);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Pushes so far: uploads queued from now on come after this mark.
    pub(crate) fn mark(&self) -> u64 {
        self.state.lock().pushes
    }

    /// True while an upload beneath `dir` that was queued by `mark` is
    /// queued, waiting out a back-off, or running.
    pub(crate) fn busy_beneath(&self, dir: &RelPath, mark: u64) -> bool {
        let st = self.state.lock();
        st.since
            .iter()
            .any(|(p, n)| *n <= mark && p != dir && p.starts_with(dir))
    }

    /// Uploads queued, waiting out a back-off, or running.
    fn len(&self) -> usize {
        let st = self.state.lock();
        st.queued.len() + st.running.len()
    }

    /// True when the last upload of `path` failed.
    fn has_failed(&self, path: &RelPath) -> bool {
        self.state.lock().failed.contains_key(path)
    }

    /// Uploads that failed and wait for their next try, by path.
    pub(crate) fn failed(&self) -> Vec<FailedUpload> {
        let mut v: Vec<FailedUpload> = self.state.lock().failed.values().cloned().collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Waits until an upload ends or `timeout` passes (and lifts the hold
    /// meanwhile: the caller waits for the uploads).
    pub(crate) fn wait_change(&self, timeout: Duration) {
        self.hurry();
        let mut st = self.state.lock();
        self.changed.wait_for(&mut st, timeout);
    }
}

impl<R: Remote + 'static> RemoteFs<R> {
    /// Starts the uploaders of a write-back mount and the flusher that puts
    /// its closed files on the cache disk, and queues what the cache holds
    /// dirty (a previous mount's unsent files, in path order).
    ///
    /// # Errors
    /// A thread cannot be started.
    pub fn start_uploaders(self: &Arc<Self>) -> std::io::Result<()> {
        let mut dirty = self.cache.dirty_paths();
        dirty.sort();
        if !dirty.is_empty() {
            info!(
                "{} file(s) left unsent by an earlier mount: uploading them",
                dirty.len()
            );
        }
        for p in dirty {
            self.uploads.push(p);
        }
        let fs = self.clone();
        std::thread::Builder::new()
            .name("rf-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(fs.cfg.flush_interval);
                    match fs.cache.flush_unsynced() {
                        Ok(0) => {}
                        Ok(n) => debug!("flushed {n} closed file(s) to the cache disk"),
                        Err(e) => warn!("cache: flushing closed files to the cache disk: {e}"),
                    }
                }
            })?;
        for i in 0..self.cfg.upload_workers.max(1) {
            let fs = self.clone();
            std::thread::Builder::new()
                .name(format!("rf-upload-{i}"))
                .spawn(move || fs.upload_worker())?;
        }
        Ok(())
    }

    fn upload_worker(&self) {
        let stop = || false;
        while let Some(path) = self.uploads.next(&stop) {
            let result = self.upload_path(&path);
            match &result {
                Ok(()) => {}
                Err(e) => {
                    crate::activity::note_failure("background upload", e);
                    warn!("upload of {path} failed, will retry: {e}");
                }
            }
            self.uploads.done(path, &result);
        }
    }

    fn upload_path(&self, path: &RelPath) -> FsResult<()> {
        let ino = self.inodes.lock().peek(path);
        let state = self.file_state(ino);
        let retry = self.uploads.has_failed(path);
        let r = self.upload(
            ino,
            &state,
            if retry { Why::Retry } else { Why::Background },
        );
        if r.is_ok() && retry && self.cache.entry(path).is_some_and(|e| !e.dirty) {
            info!("uploaded {path} (retry)");
        }
        r
    }

    /// A writable handle of `path` was closed (`seal`: its content becomes
    /// a sealed version, durable in the cache) or released (`queue`: its
    /// upload is queued; only then, as an upload skips a file that a
    /// handle still writes).
    pub(super) fn close_locally(
        &self,
        path: &RelPath,
        file: &std::fs::File,
        state: &super::files::FileState,
        seal: bool,
        queue: bool,
    ) -> FsResult<()> {
        let Some(entry) = self.cache.entry(path).filter(|e| e.dirty) else {
            return Ok(());
        };
        if entry.writing && seal {
            let _sealing = state.seal.write();
            self.cache.seal_locally(path, file).map_err(|e| {
                crate::error::FsError::cache(format!("recording the close of {path}"), e)
            })?;
        }
        if queue {
            self.uploads.push(path.clone());
        }
        Ok(())
    }

    /// Files owed to the server: dirty in the cache and not being written
    /// (what `rfmount sync` and unmount wait for).
    pub fn pending_uploads(&self) -> usize {
        self.cache
            .entries()
            .iter()
            .filter(|(_, e)| e.dirty && !e.writing)
            .count()
            + self.dir_attrs.len()
    }

    /// Uploads queued or running (write-back mode).
    pub fn queued_uploads(&self) -> usize {
        self.uploads.len() + self.dir_attrs.len()
    }

    /// Uploads that failed and wait for their next try.
    pub fn failed_uploads(&self) -> Vec<FailedUpload> {
        let mut v = self.uploads.failed();
        v.extend(self.dir_attrs.failed());
        v
    }

    /// Waits up to `timeout` for an upload to end.
    pub fn wait_uploads(&self, timeout: Duration) {
        self.uploads.wait_change(timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn paths_come_out_in_close_order_once_each() {
        let q = UploadQueue::default();
        q.push(p("a"));
        q.push(p("b"));
        q.push(p("a"));
        let stop = || false;
        assert_eq!(q.next(&stop), Some(p("a")));
        // Closed again while its upload runs: it runs again afterwards.
        q.push(p("a"));
        assert_eq!(q.next(&stop), Some(p("b")));
        q.done(p("b"), &Ok(()));
        assert_eq!(q.len(), 1);
        q.done(p("a"), &Ok(()));
        assert_eq!(q.next(&stop), Some(p("a")));
        q.done(p("a"), &Ok(()));
        assert_eq!(q.len(), 0);
        assert_eq!(q.next(&|| true), None);
    }

    #[test]
    fn a_file_renamed_while_its_upload_runs_is_queued_under_its_new_name() {
        let q = UploadQueue::default();
        q.push(p("d/a"));
        let stop = || false;
        assert_eq!(q.next(&stop), Some(p("d/a")));
        // Closed again while running, then renamed before the run ends.
        q.push(p("d/a"));
        q.rename(&p("d"), &p("e"));
        q.done(p("d/a"), &Ok(()));
        assert_eq!(q.len(), 1, "the renamed file is queued again");
        assert_eq!(q.next(&stop), Some(p("e/a")));
        q.done(p("e/a"), &Ok(()));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_burst_is_held_until_closes_pause_and_a_wait_lifts_the_hold() {
        let q = UploadQueue::default();
        let stop = || false;
        let started = Instant::now();
        q.push(p("a"));
        assert_eq!(q.next(&stop), Some(p("a")));
        assert!(started.elapsed() >= QUIET);
        q.done(p("a"), &Ok(()));
        // Someone waits for the uploads: the next one starts at once.
        q.wait_change(Duration::ZERO);
        q.push(p("b"));
        let mut st = q.state.lock();
        assert_eq!(st.hold.left(Instant::now()), None);
        st.hold.hurry_until = None;
        assert!(st.hold.left(Instant::now()).is_some());
        // The hold never outlasts HOLD_MAX, however many closes follow.
        let later = Instant::now() + HOLD_MAX;
        st.hold.last_push = Some(later);
        assert_eq!(st.hold.left(later), None);
    }

    #[test]
    fn a_failure_is_kept_retried_after_a_pause_and_follows_a_rename() {
        let q = UploadQueue::default();
        q.push(p("d/f"));
        let stop = || false;
        let f = q.next(&stop).unwrap();
        let err = crate::error::FsError::enoent();
        q.done(f, &Err(err));
        let failed = q.failed();
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].path.as_str(), failed[0].attempts), ("/d/f", 1));
        q.rename(&p("d"), &p("e"));
        assert_eq!(q.failed()[0].path, "/e/f");
        assert!(q.has_failed(&p("e/f")));
        let started = Instant::now();
        assert_eq!(q.next(&stop), Some(p("e/f")));
        assert!(started.elapsed() >= BACKOFF_START - Duration::from_millis(50));
        q.done(p("e/f"), &Ok(()));
        assert!(q.failed().is_empty());
        assert_eq!(q.len(), 0);
    }
}
