//! What the mount is doing and what went wrong, for `rfmount status`:
//! uploads in progress with the bytes sent so far, how many uploads the
//! retry loop has attempted, and the operations that failed since the
//! mount started (a count and the last few messages).
//!
//! Failures are kept per process: they are noted where the FUSE adapter
//! turns an error into an errno, which has no handle on the filesystem,
//! and one rfmount process serves exactly one mount.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

/// How many failure messages are kept.
const KEEP_ERRORS: usize = 5;

/// Uploads in progress and retry counts of one filesystem.
#[derive(Default)]
pub struct Activity {
    uploads: Mutex<BTreeMap<u64, Upload>>,
    next: AtomicU64,
    retries: AtomicU64,
}

struct Upload {
    path: String,
    size: u64,
    sent: Arc<AtomicU64>,
}

/// One upload in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// The file, as the mount shows it (`/dir/name`).
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Bytes read from the cache and handed to the connection so far.
    pub sent: u64,
}

impl UploadProgress {
    /// Percent done, 100 for an empty file.
    pub fn percent(&self) -> u64 {
        (self.sent.min(self.size) * 100)
            .checked_div(self.size)
            .unwrap_or(100)
    }
}

impl Activity {
    /// Wraps the source of an upload of `path` (`size` bytes) so that its
    /// progress shows until the returned reader is dropped.
    pub(crate) fn track<R: Read>(&self, path: String, size: u64, inner: R) -> Tracked<'_, R> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::new(AtomicU64::new(0));
        self.uploads.lock().insert(
            id,
            Upload {
                path,
                size,
                sent: sent.clone(),
            },
        );
        Tracked {
            activity: self,
            id,
            sent,
            inner,
        }
    }

    /// Counts one upload attempted by the retry loop.
    pub(crate) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Uploads attempted by the retry loop so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Uploads in progress, oldest first.
    pub fn uploads(&self) -> Vec<UploadProgress> {
        self.uploads
            .lock()
            .values()
            .map(|u| UploadProgress {
                path: u.path.clone(),
                size: u.size,
                sent: u.sent.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// An upload's source that counts what was read from it.
pub(crate) struct Tracked<'a, R> {
    activity: &'a Activity,
    id: u64,
    sent: Arc<AtomicU64>,
    inner: R,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R> Drop for Tracked<'_, R> {
    fn drop(&mut self) {
        self.activity.uploads.lock().remove(&self.id);
    }
}

struct Failures {
    count: u64,
    recent: VecDeque<(SystemTime, String)>,
}

static FAILURES: Mutex<Failures> = Mutex::new(Failures {
    count: 0,
    recent: VecDeque::new(),
});

/// Records a failed operation or upload (`what: error`).
pub(crate) fn note_failure(what: &str, err: &dyn std::fmt::Display) {
    let mut f = FAILURES.lock();
    f.count += 1;
    if f.recent.len() == KEEP_ERRORS {
        f.recent.pop_front();
    }
    f.recent
        .push_back((SystemTime::now(), format!("{what}: {err}")));
}

/// Failures since the process started, and the last few, oldest first.
pub fn failures() -> (u64, Vec<(SystemTime, String)>) {
    let f = FAILURES.lock();
    (f.count, f.recent.iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_shows_its_progress_until_its_source_is_dropped() {
        let a = Activity::default();
        let data = vec![7u8; 1000];
        let mut src = a.track("/f".into(), 1000, &data[..]);
        let mut buf = [0u8; 250];
        src.read_exact(&mut buf).unwrap();
        let up = a.uploads();
        assert_eq!(up.len(), 1);
        assert_eq!((up[0].sent, up[0].percent()), (250, 25));
        drop(src);
        assert!(a.uploads().is_empty());
    }

    #[test]
    fn failures_keep_a_count_and_the_last_few_messages() {
        let (before, _) = failures();
        for i in 0..KEEP_ERRORS + 2 {
            note_failure("op", &format!("failure {i}"));
        }
        let (after, recent) = failures();
        assert!(after >= before + KEEP_ERRORS as u64 + 2);
        assert_eq!(recent.len(), KEEP_ERRORS);
    }
}
