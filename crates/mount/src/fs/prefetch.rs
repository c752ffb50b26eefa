//! Prefetch: a program that reads a directory's small files one after the
//! other (`tar c`, `cat *`, `grep -r`) would wait one round trip per file.
//! After it opens one, the next few small files in listing order are
//! fetched ahead, concurrently (pipelined on the one connection), so their
//! opens find them fetched or on their way.
//!
//! A program that has just been served by a prefetch is walking a tree
//! (`tar c`, `cp -r`, `grep -r`): while it is ([`WALK_WINDOW`]), listing a
//! directory (readdir) fetches that directory's first small files ahead
//! too, so the first open in each directory finds its file on its way
//! instead of costing a round trip of its own. A program that only lists
//! (`ls -lR`, `find`) never gets a prefetch used, so it fetches nothing.
//! Under server callbacks the walk's readdir also lists the directory's
//! first subdirectories ahead ([`MAX_LISTS`] at a time): a listing
//! answered under a callback is current until the server says otherwise,
//! so the walker's `opendir` of each of them needs no round trip. One that
//! an invalidation may have overtaken is dropped, never stored.
//!
//! Bounded: at most [`MAX_FILES`] fetches and [`MAX_BYTES`] in flight, only
//! files of at most [`MAX_FILE_SIZE`], only from a listing still fresh. A
//! prefetched copy is an ordinary clean cache entry: unused, it is evicted
//! like any other; it is served without a round trip only while
//! `RemoteFs::content_trusted` says so, else the open revalidates it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use log::debug;
use parking_lot::{Condvar, Mutex};
use rfmount_client::Remote;
use rfmount_proto::{FileKind, RelPath};

use super::RemoteFs;
use super::stream::Stream;
use crate::meta_cache::Listing;
use rfmount_proto::DirEntry;

/// Prefetches in flight at most.
pub const MAX_FILES: usize = 16;
/// Bytes of prefetches in flight at most.
pub const MAX_BYTES: u64 = 8 << 20;
/// Larger files are not prefetched: a single open streams them anyway.
pub const MAX_FILE_SIZE: u64 = 1 << 20;
/// Listings fetched ahead in flight at most.
pub const MAX_LISTS: usize = 4;
/// How long after an open served by a prefetch a readdir counts as part
/// of the same walk: the time a walker takes to finish the directory it
/// is in and enter the next one, even through a slow link.
pub const WALK_WINDOW: Duration = Duration::from_secs(2);

/// What prefetches are in flight, and counts for `rfmount status`.
#[derive(Default)]
pub struct Prefetcher {
    flight: Mutex<(usize, u64)>,
    started: AtomicU64,
    used: AtomicU64,
    /// When an open was last served by a prefetch.
    last_used: Mutex<Option<Instant>>,
    /// Listings being fetched ahead, by directory: an `opendir` of one
    /// waits for it rather than asking again.
    lists: Arc<Mutex<HashMap<RelPath, Arc<ListAhead>>>>,
    /// How far the last walk looked into the listing it prefetched from.
    cursor: Mutex<Option<Cursor>>,
}

/// What [`RemoteFs::prefetch_one`] made of an entry.
enum Step {
    /// Fetched ahead now, or needs no fetch ahead (not a small file, open,
    /// being fetched, current in the cache).
    Done,
    /// Not to be fetched yet (the kernel has not read its name, it is
    /// being uploaded): a later call looks at it again.
    NotYet,
    /// The bounds are reached: look no further.
    Full,
}

/// How far prefetches have looked into one listing.
struct Cursor {
    dir: RelPath,
    /// Which listing: a new one (relisted, changed) starts over. Weak, so
    /// that the cursor neither keeps the listing nor is fooled by another
    /// one at its address.
    listing: Weak<Listing>,
    /// Where the last window started.
    from: usize,
    /// Entries before this index were looked at.
    next: usize,
}

impl Cursor {
    /// A window from `from` of `listing` (of `dir`) goes on from this one.
    fn follows(&self, dir: &RelPath, listing: &Arc<Listing>, from: usize) -> bool {
        from >= self.from
            && self.dir == *dir
            && std::ptr::eq(self.listing.as_ptr(), Arc::as_ptr(listing))
    }
}

/// One listing being fetched ahead: done once its answer is stored (or
/// dropped).
#[derive(Default)]
struct ListAhead {
    done: Mutex<bool>,
    ended: Condvar,
}

/// Marks a listing fetched ahead as ended when dropped.
struct AheadEnded {
    lists: Arc<Mutex<HashMap<RelPath, Arc<ListAhead>>>>,
    dir: RelPath,
    ahead: Arc<ListAhead>,
}

impl Drop for AheadEnded {
    fn drop(&mut self) {
        self.lists.lock().remove(&self.dir);
        *self.ahead.done.lock() = true;
        self.ahead.ended.notify_all();
    }
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
        *self.last_used.lock() = Some(Instant::now());
    }

    /// A program is walking a tree: an open was served by a prefetch
    /// within [`WALK_WINDOW`].
    fn walking(&self) -> bool {
        self.last_used
            .lock()
            .is_some_and(|at| at.elapsed() < WALK_WINDOW)
    }

    /// Entries of `listing` (of `dir`) before the index returned were
    /// looked at already by this walk (0: none known). A window that starts
    /// before the last one is a new walk (the same program again, another
    /// one): it looks at everything afresh.
    fn looked_at(&self, dir: &RelPath, listing: &Arc<Listing>, from: usize) -> usize {
        match &*self.cursor.lock() {
            Some(c) if c.follows(dir, listing, from) => c.next,
            _ => 0,
        }
    }

    /// Entries of `listing` (of `dir`) before `next` were looked at, by a
    /// window from `from`.
    fn note_looked_at(&self, dir: &RelPath, listing: &Arc<Listing>, from: usize, next: usize) {
        let mut cur = self.cursor.lock();
        match &mut *cur {
            Some(c) if c.follows(dir, listing, from) => {
                c.next = c.next.max(next);
                c.from = from;
            }
            _ => {
                *cur = Some(Cursor {
                    dir: dir.clone(),
                    listing: Arc::downgrade(listing),
                    from,
                    next,
                });
            }
        }
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
        self.prefetch_from(&dir, &listing, at + 1);
    }

    /// The kernel has just read the entries of `dir` from index `from` of
    /// its listing (readdirplus: it knows their names now): while a
    /// program walks a tree, fetch the small files among them ahead.
    pub(super) fn prefetch_listed(&self, dir: &RelPath, from: usize) {
        if !self.cfg.prefetch || !self.prefetcher.walking() {
            return;
        }
        let Some(listing) = self.meta.lock().listing_any(dir) else {
            return;
        };
        self.prefetch_from(dir, &listing, from);
        self.prefetch_lists(dir, &listing, from);
    }

    /// Under callbacks, lists the subdirectories among the [`MAX_FILES`]
    /// entries of `listing` from `from` on ahead, while [`MAX_LISTS`] let.
    fn prefetch_lists(&self, dir: &RelPath, listing: &Listing, from: usize) {
        if !self.trust.live() {
            // Without a callback opendir lists afresh anyway.
            return;
        }
        let subdirs = listing.entries.iter().skip(from).take(MAX_FILES);
        for e in subdirs.filter(|e| e.meta.kind == FileKind::Dir) {
            let Ok(sub) = dir.join(&e.name) else { continue };
            if self.meta.lock().listing_trusted(&sub).is_some() {
                continue;
            }
            let ahead = Arc::new(ListAhead::default());
            {
                let mut lists = self.prefetcher.lists.lock();
                if lists.contains_key(&sub) {
                    continue;
                }
                if lists.len() >= MAX_LISTS {
                    break;
                }
                lists.insert(sub.clone(), Arc::clone(&ahead));
            }
            let lists = Arc::clone(&self.prefetcher.lists);
            let (remote, meta, trust) = (
                Arc::clone(&self.remote),
                Arc::clone(&self.meta),
                Arc::clone(&self.trust),
            );
            let ticket = trust.ticket();
            let name = sub.clone();
            // Ends the wait of an opendir that joined it however the fetch
            // ends: a panic, or no thread to run it at all.
            let ended = AheadEnded {
                lists,
                dir: sub.clone(),
                ahead,
            };
            let spawned = std::thread::Builder::new()
                .name("rf-list-ahead".into())
                .spawn(move || {
                    let _ended = ended;
                    match remote.list(&sub) {
                        // Stored only if no invalidation came since the
                        // request went out: then it is current.
                        Ok(entries) if trust.granted(ticket) => {
                            let listing = Arc::new(Listing::new(entries));
                            let mut mc = meta.lock();
                            if trust.granted(ticket) {
                                mc.put_listing_as(&sub, listing, true);
                            }
                        }
                        Ok(_) => {}
                        Err(err) => debug!("listing {sub} ahead: {err}"),
                    }
                });
            if let Err(err) = spawned {
                debug!("listing ahead: {err}");
                self.prefetcher.lists.lock().remove(&name);
                break;
            }
        }
    }

    /// `dir`'s listing held under a callback, once a fetch of it ahead
    /// that is on its way has ended (`None`: there is none, or it was not
    /// kept).
    pub(super) fn listed_ahead(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        let ahead = self.prefetcher.lists.lock().get(dir).cloned()?;
        let mut done = ahead.done.lock();
        while !*done {
            ahead.ended.wait(&mut done);
        }
        drop(done);
        self.meta
            .lock()
            .listing_trusted(dir)
            .filter(|l| !l.has_stale())
    }

    /// Starts fetches of the small files among the [`MAX_FILES`] entries
    /// of `listing` (of `dir`) from index `from` on, while the bounds let.
    /// Entries an earlier window of the same walk already looked at (every
    /// open asks for the window after it, which overlaps the last one but
    /// for one entry) are not looked at again: that made the walk's cost
    /// per file grow with the window.
    fn prefetch_from(&self, dir: &RelPath, listing: &Arc<Listing>, from: usize) {
        let from = from.min(listing.entries.len());
        let end = from.saturating_add(MAX_FILES).min(listing.entries.len());
        let start = self
            .prefetcher
            .looked_at(dir, listing, from)
            .clamp(from, end);
        let mut reached = start;
        let mut held = false;
        for e in &listing.entries[start..end] {
            match self.prefetch_one(dir, e) {
                Step::Done => {
                    if !held {
                        reached += 1;
                    }
                }
                Step::NotYet => held = true,
                Step::Full => break,
            }
        }
        self.prefetcher.note_looked_at(dir, listing, from, reached);
    }

    /// Starts the fetch of one entry of `dir` if it is a small file that
    /// needs one.
    fn prefetch_one(&self, dir: &RelPath, e: &DirEntry) -> Step {
        if e.meta.kind != FileKind::File || e.meta.size > MAX_FILE_SIZE {
            return Step::Done;
        }
        let Ok(p) = dir.join(&e.name) else {
            return Step::Done;
        };
        // Only names the kernel knows (readdirplus looked them up), and
        // only a file's own name: hard links share another's copy.
        let Some(ino) = self.inodes.lock().ino(&p) else {
            return Step::NotYet;
        };
        if self.inodes.lock().path(ino).as_ref() != Some(&p) {
            return Step::Done;
        }
        let state = self.file_state(ino);
        let Some(_guard) = state.upload.try_lock() else {
            return Step::NotYet;
        };
        if state.open_count() > 0 {
            return Step::Done;
        }
        let current = state.stream.lock().clone();
        if let Some(s) = current
            && (s.is_running()
                || s.confirmed()
                    .is_some_and(|(v, at)| self.content_trusted(&p, v, at)))
        {
            return Step::Done;
        }
        let entry = self.cache.entry(&p);
        if entry.as_ref().is_some_and(|c| c.dirty) {
            return Step::Done;
        }
        // Under a callback the cached copy is current already.
        if self
            .trusted_copy(&p, entry.as_ref().and_then(|c| c.version))
            .is_some()
        {
            return Step::Done;
        }
        let size = e.meta.size;
        if !self.prefetcher.reserve(size) {
            return Step::Full;
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
                Step::Done
            }
            Err(err) => {
                debug!("prefetch of {p}: {err}");
                Step::Full
            }
        }
    }
}
