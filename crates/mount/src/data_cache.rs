//! The whole-file data cache on disk.
//!
//! Layout: `<cache_dir>/<export id>/v1/<k0k1>/<key>` holds a file's content
//! and `<cache_dir>/<export id>/v1/index.journal` the index: per path, which
//! version the content is, whether it is dirty or still being written, and
//! any mode or mtime to apply on upload; see [`files`], [`index`] and
//! [`journal`]. `key` is a hash of the path; `v1` is the layout version, so
//! an incompatible layout never misreads an old one.
//!
//! Invariants:
//! - content lands through a temporary file and a rename, so a fetch cut
//!   short never leaves a truncated file under a valid entry;
//! - a local change is recorded as *writing* before it lands, and the mark
//!   is cleared only by an fsync or the last close of the file
//!   ([`DataCache::seal`]); at startup an entry still marked writing was
//!   open when rfmount died and is moved to a `NAME.recovered-…` sibling
//!   instead of being uploaded over `NAME` (see [`startup`], [`recovery`]);
//! - a record is appended before the change it announces, and a removal
//!   record before the data is deleted, so a crash leaves at worst an
//!   orphan data file, never a record vouching for other content;
//! - a write-back close seals with a record not flushed to disk, marked
//!   with the boot it was written in, until the flusher has flushed the
//!   data ([`flush`]); after a restart of the machine such an entry is
//!   recovered aside like one still being written;
//! - dirty entries are never evicted, and survive restarts: they are found
//!   again at startup and uploaded;
//! - the limit counts what the data files store, not their apparent size:
//!   a sparse file counts its allocation (never more than its size), so a
//!   byte written at 2 GiB costs a block, not 2 GiB;
//! - the limit is hard for local changes: a write that would take the
//!   cache past it first evicts clean entries, then waits (bounded) for
//!   uploads to free space, then fails with `ENOSPC`;
//! - fetches evict clean entries as their bytes arrive; one that cannot
//!   make room (the rest is dirty or open) still completes, so a file larger
//!   than the limit can be read, and the cache shrinks back once it closes;
//! - clean entries are evicted least-recently-used first, except while a
//!   handle has them open (pinned);
//! - the cache directory is private (0700); it is never wiped at mount.

mod changes;
mod files;
mod flush;
mod in_place;
mod index;
mod journal;
pub(crate) mod recovery;
mod startup;

use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use parking_lot::{Condvar, Mutex};
use rfmount_proto::{RelPath, Timestamp, Version, XattrValue};
use tempfile::NamedTempFile;

pub use changes::Changes;
pub(crate) use files::open_data;
use files::{Layout, key_of};
pub use flush::FLUSH_INTERVAL;
pub use index::EntryInfo;
use index::Index;

const LAYOUT: &str = "v1";

/// How long a write waits for uploads to free space before `ENOSPC`.
pub const DEFAULT_SPACE_WAIT: Duration = Duration::from_secs(5);

/// The on-disk whole-file cache of one export.
pub struct DataCache {
    files: Layout,
    limit: u64,
    space_wait: Mutex<Duration>,
    /// Held while a record is appended, so that the journal and the
    /// entries in memory change in the same order.
    index: Mutex<Index>,
    /// Signalled whenever space is freed or becomes evictable.
    freed: Condvar,
    /// Where content recovered at this start went (`NAME.recovered-…`).
    recovered: Vec<RelPath>,
    /// This boot of the machine (`None` when it cannot be told: then a
    /// write-back close flushes its file itself).
    boot: Option<index::BootId>,
    /// Set when an entry may be sealed but not yet flushed to disk.
    unsynced: std::sync::atomic::AtomicBool,
}

/// Content being fetched into the cache: a temporary file whose bytes count
/// toward the limit as they arrive. Dropped without
/// [`DataCache::finish_fetch`], it is deleted and its bytes released.
pub struct Fetch<'a> {
    cache: &'a DataCache,
    /// `None` only once [`DataCache::finish_fetch`] has taken it.
    tmp: Option<NamedTempFile>,
    reserved: u64,
}

impl Fetch<'_> {
    fn tmp(&mut self) -> io::Result<&mut NamedTempFile> {
        self.tmp
            .as_mut()
            .ok_or_else(|| io::Error::other("fetch already finished"))
    }

    /// Size of what has arrived so far.
    ///
    /// # Errors
    /// The temporary file cannot be stat'ed.
    pub fn received(&mut self) -> io::Result<u64> {
        Ok(self.tmp()?.as_file().metadata()?.len())
    }

    /// A second descriptor of the file the content lands in, for reading
    /// it while it arrives; it stays valid after the content is put in
    /// place (the same file, renamed) or discarded (then unlinked).
    ///
    /// # Errors
    /// The descriptor cannot be duplicated.
    pub fn reader(&mut self) -> io::Result<std::fs::File> {
        self.tmp()?.as_file().try_clone()
    }
}

impl Fetch<'_> {
    /// The next `len` bytes are a hole of the server's file: the file
    /// grows by them without storing anything, so a sparse file stays
    /// sparse in the cache, and they take no room in it.
    ///
    /// # Errors
    /// The temporary file cannot be extended.
    pub fn hole(&mut self, len: u64) -> io::Result<()> {
        let f = self.tmp()?.as_file_mut();
        // Content only ever lands at the end, so the position is the length.
        let end = f
            .stream_position()?
            .checked_add(len)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        f.set_len(end)?;
        f.seek(io::SeekFrom::Start(end))?;
        Ok(())
    }
}

impl rfmount_client::GetSink for Fetch<'_> {
    fn hole(&mut self, len: u64) -> io::Result<()> {
        Fetch::hole(self, len)
    }
}

impl Write for Fetch<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cache.reserve_fetch(buf.len() as u64);
        self.reserved += buf.len() as u64;
        self.tmp()?.as_file_mut().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp()?.as_file_mut().flush()
    }
}

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        if self.reserved > 0 {
            self.cache.index.lock().sub_fetching(self.reserved);
            self.cache.freed.notify_all();
        }
    }
}

/// What a data file counts toward the limit: the bytes it stores (its
/// allocation), but never more than its size, so small files count their
/// bytes and not whole blocks.
pub(crate) fn allocated(md: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    md.len().min(md.blocks().saturating_mul(512))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl DataCache {
    /// This process is done with the cache: another rfmount may open it
    /// from now on, before this one has finished exiting (its threads'
    /// exit, slow under load, would otherwise hold the lock a while after
    /// the unmount). Only once nothing here writes to the cache any more.
    pub fn release(&self) {
        self.files.unlock();
    }

    /// Opens (creating if needed) the cache of `export_id` under `dir`,
    /// loads the entries a previous mount left, and moves content that was
    /// still being written when that mount died to `NAME.recovered-…`
    /// siblings (logged, one line per file).
    ///
    /// # Errors
    /// The cache directory cannot be created or read.
    pub fn open(dir: &Path, export_id: &str, limit: u64) -> io::Result<Self> {
        Self::open_in_boot(dir, export_id, limit, flush::boot_id())
    }

    /// [`DataCache::open`], as if the machine's boot were `boot`.
    fn open_in_boot(
        dir: &Path,
        export_id: &str,
        limit: u64,
        boot: Option<index::BootId>,
    ) -> io::Result<Self> {
        let safe_id: String = export_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut cache = DataCache {
            files: Layout::open(dir.join(safe_id).join(LAYOUT))?,
            limit,
            space_wait: Mutex::new(DEFAULT_SPACE_WAIT),
            index: Mutex::new(Index::default()),
            freed: Condvar::new(),
            recovered: Vec::new(),
            boot,
            unsynced: std::sync::atomic::AtomicBool::new(false),
        };
        cache.load()?;
        cache.recovered = cache
            .recover(&recovery::hostname(), SystemTime::now())
            .into_iter()
            .filter_map(|(_, target)| target)
            .collect();
        Ok(cache)
    }

    /// How long a write waits for uploads to free space before `ENOSPC`.
    pub fn set_space_wait(&self, d: Duration) {
        *self.space_wait.lock() = d;
    }

    /// Files recovered when this cache was opened: content a crashed
    /// mount left half-written, kept under `NAME.recovered-HOST-STAMP`.
    pub fn recovered(&self) -> &[RelPath] {
        &self.recovered
    }

    /// The bound of the cache in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The directory this cache keeps its files in (for records beside
    /// them, like the mount's shown ctimes).
    pub fn root(&self) -> &Path {
        &self.files.root
    }

    /// Where the content of `path` lives (whether or not it is cached).
    pub fn data_path(&self, path: &RelPath) -> PathBuf {
        self.files.data(path)
    }

    /// The entry for `path`, if cached. Counts as a use for LRU.
    pub fn entry(&self, path: &RelPath) -> Option<EntryInfo> {
        let mut ix = self.index.lock();
        let tick = ix.touch();
        ix.entries.get_mut(path).map(|e| {
            e.last_use = tick;
            e.info.clone()
        })
    }

    /// A temporary file to fetch `path` into; see [`DataCache::finish_fetch`].
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn begin_fetch(&self, path: &RelPath) -> io::Result<Fetch<'_>> {
        Ok(Fetch {
            cache: self,
            tmp: Some(self.files.temp_for(path)?),
            reserved: 0,
        })
    }

    /// `n` more fetched bytes are about to land: evict clean entries to make
    /// room. A fetch is never refused: the handle that asked for it needs
    /// the content, and writes are what the limit holds back.
    fn reserve_fetch(&self, n: u64) {
        let victims = {
            let mut ix = self.index.lock();
            let v = ix.evict_for(n, self.limit);
            ix.add_fetching(n);
            v
        };
        self.delete(victims);
    }

    /// Puts fetched content in place as the clean copy of `version`.
    ///
    /// # Errors
    /// The rename or the record write failed.
    pub fn finish_fetch(
        &self,
        path: &RelPath,
        mut fetch: Fetch<'_>,
        version: Version,
        size: u64,
    ) -> io::Result<()> {
        let info = EntryInfo {
            version: Some(version),
            dirty: false,
            writing: false,
            size,
            mode: None,
            mtime: None,
            changes: Some(Changes::clean(size)),
            xattrs: Vec::new(),
            unsynced: None,
        };
        let key = key_of(path);
        let mut ix = self.index.lock();
        let tmp = fetch
            .tmp
            .take()
            .ok_or_else(|| io::Error::other("fetch already finished"))?;
        let stored = allocated(&tmp.as_file().metadata()?);
        tmp.persist(self.data_path(path)).map_err(|e| e.error)?;
        ix.sub_fetching(fetch.reserved);
        fetch.reserved = 0;
        // A new data file: whatever the old entry took is gone with it.
        ix.take(path);
        ix.record(path, key, info, false)?;
        ix.set_alloc(path, stored);
        drop(ix);
        self.evict();
        Ok(())
    }

    /// Makes `path` an empty file being written (a create or an open with
    /// `O_TRUNC`), keeping upload overrides given.
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn create_empty(&self, path: &RelPath, mode: Option<u32>) -> io::Result<()> {
        let base = self.entry(path).and_then(|o| o.version);
        self.create_empty_from(path, mode, base)
    }

    /// As [`DataCache::create_empty`], recording `base` as the server
    /// version the new content replaces (`None`: a new name), which its
    /// upload names as its condition.
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn create_empty_from(
        &self,
        path: &RelPath,
        mode: Option<u32>,
        base: Option<Version>,
    ) -> io::Result<()> {
        self.create_empty_open(path, mode, base).map(drop)
    }

    /// As [`DataCache::create_empty_from`], returning the new cache file
    /// opened for reading and writing (a create's handle: one open of the
    /// cache file, not two).
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn create_empty_open(
        &self,
        path: &RelPath,
        mode: Option<u32>,
        base: Option<Version>,
    ) -> io::Result<std::fs::File> {
        let old = self.entry(path);
        let info = EntryInfo {
            version: base,
            dirty: true,
            writing: true,
            size: 0,
            mode: mode.or(old.as_ref().and_then(|o| o.mode)),
            mtime: None,
            // Emptied: whatever follows is uploaded whole.
            changes: None,
            // The file's attributes, not its content's.
            xattrs: old.map(|o| o.xattrs).unwrap_or_default(),
            unsynced: None,
        };
        // Recorded first: a crash between the two must not leave a clean or
        // a closed record over emptied content.
        self.store(path, info, false)?;
        let file = self.files.create_empty(path)?;
        self.index.lock().set_alloc(path, 0);
        self.freed.notify_all();
        Ok(file)
    }

    /// A local change to `path` is about to land: records it as dirty and
    /// being written (on disk, before the change). Cheap when it already is.
    ///
    /// # Errors
    /// The record write failed.
    pub fn note_change(&self, path: &RelPath) -> io::Result<()> {
        let mut ix = self.index.lock();
        let info = match ix.entries.get(path) {
            Some(e) if e.info.writing && e.info.mtime.is_none() => return Ok(()),
            // A write after an explicit utimens makes the mtime "now"
            // again, as on a local disk: the override is dropped.
            Some(e) => EntryInfo {
                mtime: None,
                ..e.info.changing()
            },
            None => EntryInfo {
                version: None,
                dirty: true,
                writing: true,
                size: 0,
                mode: None,
                mtime: None,
                changes: None,
                xattrs: Vec::new(),
                unsynced: None,
            },
        };
        self.store_locked(&mut ix, path, info, false)
    }

    /// Bytes `[offset, offset + len)` of `path` were written locally
    /// (in memory: the next record of the entry carries it; see
    /// [`changes`]).
    pub fn note_written(&self, path: &RelPath, offset: u64, len: u64) {
        let mut ix = self.index.lock();
        if let Some(c) = ix
            .entries
            .get_mut(path)
            .and_then(|e| e.info.changes.as_mut())
        {
            c.write(offset, len);
        }
    }

    /// `path` was truncated (or extended) locally to `size`.
    pub fn note_truncated(&self, path: &RelPath, size: u64) {
        let mut ix = self.index.lock();
        if let Some(c) = ix
            .entries
            .get_mut(path)
            .and_then(|e| e.info.changes.as_mut())
        {
            c.truncate(size);
        }
    }

    /// `len` bytes are about to be written at `offset` of `path` (or
    /// allocated there by `fallocate`): the apparent size grows to cover
    /// them, and the space they may newly take is reserved. That is the
    /// part past the current end, and for a sparse file (one that stores
    /// less than its size) all of it, since it may fill a hole. Clean
    /// entries are evicted for it; if the rest is unsent data, this waits
    /// up to the space wait for uploads to free some, then fails.
    /// [`DataCache::note_stored`] then counts what the file really takes.
    ///
    /// # Errors
    /// `ENOSPC` when the cache is full of data that cannot be evicted.
    pub fn reserve_write(&self, path: &RelPath, offset: u64, len: u64) -> io::Result<()> {
        let deadline = Instant::now() + *self.space_wait.lock();
        let end = offset.saturating_add(len);
        let mut ix = self.index.lock();
        let mut last_try = false;
        loop {
            let Some((cur, alloc)) = ix.entries.get(path).map(|e| (e.info.size, e.alloc)) else {
                return Ok(());
            };
            let beyond = end.saturating_sub(offset.max(cur));
            let need = if alloc < cur { len } else { beyond };
            if need == 0 || ix.bytes() + need <= self.limit {
                ix.set_size(path, cur.max(end));
                ix.set_alloc(path, alloc + need);
                return Ok(());
            }
            let victims = ix.evict_for(need, self.limit);
            if !victims.is_empty() {
                drop(ix);
                self.delete(victims);
                ix = self.index.lock();
                continue;
            }
            if last_try {
                info!(
                    "cache full ({} of {} bytes, the rest unsent or open): refusing {need} more bytes for {path}",
                    ix.bytes(),
                    self.limit
                );
                return Err(enospc());
            }
            last_try = self.freed.wait_until(&mut ix, deadline).timed_out();
        }
    }

    /// `path` was truncated (or extended, which stores nothing) to `size`:
    /// a shrink frees its space at once.
    pub fn resize(&self, path: &RelPath, size: u64) {
        let mut ix = self.index.lock();
        let Some(alloc) = ix.alloc(path) else {
            return;
        };
        ix.set_size(path, size);
        if size < alloc {
            ix.set_alloc(path, size);
            drop(ix);
            self.freed.notify_all();
        }
    }

    /// The data file of `path` changed (`md`: its attributes now): counts
    /// what it really stores from here on, replacing the reservations of
    /// the writes that led there.
    pub fn note_stored(&self, path: &RelPath, md: &std::fs::Metadata) {
        let stored = allocated(md);
        let mut ix = self.index.lock();
        let Some(old) = ix.alloc(path) else {
            return;
        };
        ix.set_alloc(path, stored);
        ix.set_size(path, md.len());
        drop(ix);
        if stored < old {
            self.freed.notify_all();
        }
    }

    /// An application closed or fsynced `path`: its local content is a
    /// whole version again, safe to upload after a crash.
    ///
    /// # Errors
    /// The record write failed.
    pub fn seal(&self, path: &RelPath) -> io::Result<()> {
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path).filter(|e| e.info.writing) else {
            return Ok(());
        };
        let info = EntryInfo {
            writing: false,
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, false)
    }

    /// As [`DataCache::seal`], with the record on stable storage when this
    /// returns (write-back close: the caller flushed the data first).
    ///
    /// # Errors
    /// The record write failed.
    pub fn seal_durably(&self, path: &RelPath) -> io::Result<()> {
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path).filter(|e| e.info.writing) else {
            return Ok(());
        };
        let info = EntryInfo {
            writing: false,
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, true)
    }

    /// The local copy of `path` is now the only one (its upload failed):
    /// flushes its content and record to stable storage, so that a power
    /// loss keeps what the application closed.
    ///
    /// # Errors
    /// An fsync failed.
    pub fn keep_durably(&self, path: &RelPath) -> io::Result<()> {
        let stamp = self.index.lock().entries.get(path).map(|e| e.stamp);
        self.files.sync_data(path)?;
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path) else {
            return Ok(());
        };
        // Sealed again meanwhile: that content is the flusher's to flush.
        let unsynced = e.info.unsynced.filter(|_| Some(e.stamp) != stamp);
        let info = EntryInfo {
            unsynced,
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, true)
    }

    /// Records overrides to apply at the next upload of a dirty file.
    ///
    /// # Errors
    /// The record write failed.
    pub fn set_overrides(
        &self,
        path: &RelPath,
        mode: Option<u32>,
        mtime: Option<Timestamp>,
    ) -> io::Result<()> {
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path) else {
            return Ok(());
        };
        let info = EntryInfo {
            mode: mode.or(e.info.mode),
            mtime: mtime.or(e.info.mtime),
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, false)
    }

    /// Sets (`Some`) or removes (`None`) the extended attribute `name` that
    /// the next upload of the dirty `path` carries; false when `path` is
    /// not cached.
    ///
    /// # Errors
    /// The record write failed.
    pub fn set_carried_xattr(
        &self,
        path: &RelPath,
        name: &str,
        value: Option<Vec<u8>>,
    ) -> io::Result<bool> {
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path) else {
            return Ok(false);
        };
        let mut xattrs = e.info.xattrs.clone();
        let at = xattrs.binary_search_by(|x| x.name.as_str().cmp(name));
        match (at, value) {
            (Ok(i), Some(v)) => xattrs[i].value = v,
            (Err(i), Some(v)) => xattrs.insert(
                i,
                XattrValue {
                    name: name.to_owned(),
                    value: v,
                },
            ),
            (Ok(i), None) => {
                xattrs.remove(i);
            }
            (Err(_), None) => return Ok(true),
        }
        let info = EntryInfo {
            xattrs,
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, false)?;
        Ok(true)
    }

    /// The content now on the server is `version`: the entry is clean.
    ///
    /// # Errors
    /// The record write failed.
    pub fn mark_clean(&self, path: &RelPath, version: Version, size: u64) -> io::Result<()> {
        let info = EntryInfo {
            version: Some(version),
            dirty: false,
            writing: false,
            size,
            mode: None,
            mtime: None,
            changes: Some(Changes::clean(size)),
            xattrs: Vec::new(),
            unsynced: None,
        };
        self.store(path, info, false)?;
        self.freed.notify_all();
        self.evict();
        Ok(())
    }

    /// The server's file is now `version` by this mount's own doing (an
    /// upload that landed while the file was written on, or a rename, link
    /// or attribute change, which move its ctime), while the local content
    /// stays as it is, dirty or not: the next upload names `version` as its
    /// base, or it would conflict with this mount's own change. What
    /// changed since the old base is kept: it covers every difference from
    /// the new one too.
    ///
    /// # Errors
    /// The record write failed.
    pub fn rebase(&self, path: &RelPath, version: Version) -> io::Result<()> {
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path) else {
            return Ok(());
        };
        if e.info.version == Some(version) {
            return Ok(());
        }
        let info = EntryInfo {
            version: Some(version),
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, false)
    }

    /// Drops `path`'s entry and content.
    pub fn remove(&self, path: &RelPath) {
        let removed = self.index.lock().forget(path);
        if let Some(e) = removed {
            self.files.remove_key(&e.key);
            self.freed.notify_all();
        }
    }

    /// Moves the entries of `from` and everything beneath it to `to`,
    /// replacing what was cached at the targets.
    pub fn rename(&self, from: &RelPath, to: &RelPath) {
        let moving: Vec<RelPath> = {
            let ix = self.index.lock();
            ix.entries
                .keys()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect()
        };
        self.remove(to);
        for old in moving {
            let Some(new) = old.rebase(from, to) else {
                continue;
            };
            self.remove(&new);
            let mut ix = self.index.lock();
            let Some(e) = ix.take(&old) else { continue };
            let alloc = e.alloc;
            if let Err(err) = self.files.rename(&old, &new) {
                warn!("cache: moving {old} to {new}: {err}");
                ix.note_gone(&old);
                self.files.remove_key(&e.key);
                continue;
            }
            // The new record first: a crash in between leaves both, and
            // the stale one is dropped at load (its data file is gone).
            if let Err(err) = self.store_locked(&mut ix, &new, e.info, false) {
                warn!("cache: recording {new}: {err}");
            }
            ix.set_alloc(&new, alloc);
            ix.note_gone(&old);
            // Open handles follow the file to its new name.
            if let Some(n) = ix.pins.remove(&old) {
                *ix.pins.entry(new).or_default() += n;
            }
        }
    }

    /// A handle is about to open `path`: never evict it until unpinned.
    /// Pin before fetching, so the fetched content cannot be evicted before
    /// the handle opens it.
    pub fn pin(&self, path: &RelPath) {
        *self.index.lock().pins.entry(path.clone()).or_default() += 1;
    }

    /// The handle is closed.
    pub fn unpin(&self, path: &RelPath) {
        {
            let mut ix = self.index.lock();
            if let Some(n) = ix.pins.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    ix.pins.remove(path);
                }
            }
        }
        self.freed.notify_all();
        self.evict();
    }

    /// Paths changed locally and not yet uploaded.
    pub fn dirty_paths(&self) -> Vec<RelPath> {
        self.index
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.info.dirty)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every cached path with what the cache knows about it.
    pub fn entries(&self) -> Vec<(RelPath, EntryInfo)> {
        let ix = self.index.lock();
        ix.entries
            .iter()
            .map(|(p, e)| (p.clone(), e.info.clone()))
            .collect()
    }

    /// Bytes the cached content stores (clean and dirty; a sparse file
    /// counts its allocation).
    pub fn total_size(&self) -> u64 {
        self.index.lock().bytes()
    }

    fn store(&self, path: &RelPath, info: EntryInfo, durable: bool) -> io::Result<()> {
        let mut ix = self.index.lock();
        self.store_locked(&mut ix, path, info, durable)
    }

    fn store_locked(
        &self,
        ix: &mut Index,
        path: &RelPath,
        info: EntryInfo,
        durable: bool,
    ) -> io::Result<()> {
        ix.record(path, key_of(path), info, durable)
    }

    fn evict(&self) {
        let victims = self.index.lock().evict_for(0, self.limit);
        self.delete(victims);
    }

    fn delete(&self, victims: Vec<String>) {
        for key in victims {
            debug!("cache: evicting {key}");
            self.files.remove_key(&key);
        }
    }
}

#[cfg(test)]
#[path = "data_cache/tests.rs"]
mod tests;
