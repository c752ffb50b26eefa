//! Prefetch: a program that reads a directory's small files one after the
//! other (`tar c`, `cat *`, `grep -r`) would wait one round trip per file.
//! After it opens one, the next few small files in listing order are
//! fetched ahead, concurrently (pipelined on the one connection), so their
//! opens find them fetched or on their way.
//!
//! Bounded: at most [`MAX_FILES`] fetches and [`MAX_BYTES`] in flight, only
//! files of at most [`MAX_FILE_SIZE`], only from a listing still fresh. A
//! prefetched copy is an ordinary clean cache entry: unused, it is evicted
//! like any other; it is served without a round trip only while
//! `RemoteFs::content_trusted` says so, else the open revalidates it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use log::debug;
use parking_lot::Mutex;
use rfmount_client::Remote;
use rfmount_proto::{FileKind, RelPath};

use super::RemoteFs;
use super::stream::Stream;

/// Prefetches in flight at most.
pub const MAX_FILES: usize = 16;
/// Bytes of prefetches in flight at most.
pub const MAX_BYTES: u64 = 8 << 20;
/// Larger files are not prefetched: a single open streams them anyway.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// What prefetches are in flight, and counts for `rfmount status`.
#[derive(Default)]
pub struct Prefetcher {
    flight: Mutex<(usize, u64)>,
    started: AtomicU64,
    used: AtomicU64,
}

impl Prefetcher {
    /// Prefetches started so far.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Opens served by a prefetch (finished, or joined while running).
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn note_used(&self) {
        self.used.fetch_add(1, Ordering::Relaxed);
    }

    fn reserve(&self, size: u64) -> bool {
        let mut f = self.flight.lock();
        if f.0 >= MAX_FILES || f.1 + size > MAX_BYTES {
            return false;
        }
        f.0 += 1;
        f.1 += size;
        true
    }

    fn release(&self, size: u64) {
        let mut f = self.flight.lock();
        f.0 = f.0.saturating_sub(1);
        f.1 = f.1.saturating_sub(size);
    }
}

impl<R: Remote> RemoteFs<R> {
    /// `path` was just opened for reading: fetch the small files after it
    /// in its directory's listing ahead.
    pub(super) fn prefetch_after(&self, path: &RelPath) {
        if !self.cfg.prefetch {
            return;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        // Any age: it only says which names to try; what is fetched is
        // the server's answer, trusted by `content_trusted` alone.
        let Some(listing) = self.meta.lock().listing_any(&dir) else {
            return;
        };
        let Some(at) = listing.index_of(name) else {
            return;
        };
        let next = listing.entries.iter().skip(at + 1).take(MAX_FILES);
        for e in next.filter(|e| e.meta.kind == FileKind::File && e.meta.size <= MAX_FILE_SIZE) {
            let Ok(p) = dir.join(&e.name) else { continue };
            // Only names the kernel knows (readdirplus looked them up), and
            // only a file's own name: hard links share another's copy.
            let Some(ino) = self.inodes.lock().ino(&p) else {
                continue;
            };
            if self.inodes.lock().path(ino).as_ref() != Some(&p) {
                continue;
            }
            let state = self.file_state(ino);
            let Some(_guard) = state.upload.try_lock() else {
                continue;
            };
            if state.open_count() > 0 {
                continue;
            }
            let current = state.stream.lock().clone();
            if let Some(s) = current
                && (s.is_running()
                    || s.confirmed()
                        .is_some_and(|(v, at)| self.content_trusted(&p, v, at)))
            {
                continue;
            }
            let entry = self.cache.entry(&p);
            if entry.as_ref().is_some_and(|c| c.dirty) {
                continue;
            }
            // Under a callback the cached copy is current already.
            if self
                .trusted_copy(&p, entry.as_ref().and_then(|c| c.version))
                .is_some()
            {
                continue;
            }
            let size = e.meta.size;
            if !self.prefetcher.reserve(size) {
                break;
            }
            let pf = Arc::clone(&self.prefetcher);
            let done = Box::new(move || pf.release(size));
            let ticket = self.trust.ticket();
            match Stream::start(
                self.remote.clone(),
                self.cache.clone(),
                p.clone(),
                entry.and_then(|c| c.version),
                Some(done),
                Some(Arc::clone(&self.meta)),
                ticket,
            ) {
                Ok(s) => {
                    self.prefetcher.started.fetch_add(1, Ordering::Relaxed);
                    *state.stream.lock() = Some(s);
                }
                Err(err) => {
                    debug!("prefetch of {p}: {err}");
                    break;
                }
            }
        }
    }
}
