//! Local durability of write-back closes, amortised.
//!
//! A write-back `close` seals the file with one record appended to the
//! journal, not flushed: the data and the record sit in the kernel's page
//! cache, which a crash of rfmount (kill -9) does not touch, so the next
//! mount uploads the file under its name. A crash of the machine can lose
//! pages in any order, so the record says in which boot it was written
//! while its content was not on disk yet ([`EntryInfo::unsynced`]); the
//! flusher ([`DataCache::flush_unsynced`], every [`FLUSH_INTERVAL`]) then
//! `fdatasync`s the data files sealed since its last round, appends one
//! record per file saying they are flushed, and flushes the journal once.
//! A mount that finds a record still unsynced from another boot cannot
//! trust the content behind it and recovers it aside
//! (`NAME.recovered-…`) instead of uploading it over `NAME`: a power loss
//! loses no more than a local disk without fsync does (the closes of the
//! last few seconds), and never replaces a good file with a torn one.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use log::warn;
use rfmount_proto::RelPath;

use super::DataCache;
use super::index::{BootId, EntryInfo};
use super::journal::Record;

/// How often the flusher runs: a write-back close is on the cache disk at
/// most about this long after it returned.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Read instead of the kernel's boot id when set (tests: a mount that
/// looks like the first after a reboot).
const BOOT_ID_ENV: &str = "RFMOUNT_BOOT_ID";

/// This boot of the machine, from `/proc/sys/kernel/random/boot_id` (a
/// UUID); `None` when it cannot be read.
pub(super) fn boot_id() -> Option<BootId> {
    let text = std::env::var(BOOT_ID_ENV)
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())?;
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    BootId::from_str_radix(&hex, 16).ok()
}

impl DataCache {
    /// A write-back close of `path` (whose data went through `file`): its
    /// content becomes a sealed version, safe against a crash of rfmount
    /// when this returns, and on the cache disk once the flusher has run.
    /// Where the boot cannot be told, the data and the record are flushed
    /// here instead.
    ///
    /// # Errors
    /// The record write (or the flush) failed.
    pub fn seal_locally(&self, path: &RelPath, file: &std::fs::File) -> io::Result<()> {
        let Some(boot) = self.boot else {
            // The data before the record that vouches for it.
            file.sync_data()?;
            return self.seal_durably(path);
        };
        let mut ix = self.index.lock();
        let Some(e) = ix.entries.get(path).filter(|e| e.info.writing) else {
            return Ok(());
        };
        let info = EntryInfo {
            writing: false,
            unsynced: Some(boot),
            ..e.info.clone()
        };
        self.store_locked(&mut ix, path, info, false)?;
        self.unsynced.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Flushes to the cache disk every sealed file not flushed yet and
    /// every journal record appended since the last round. Holds the index
    /// only to pick the files and to append the records, never during an
    /// `fdatasync`, so closes do not wait for the disk. Returns how many
    /// files it flushed.
    ///
    /// # Errors
    /// The journal could not be written or flushed (files whose data could
    /// not be flushed are logged and tried again at the next round).
    pub fn flush_unsynced(&self) -> io::Result<usize> {
        let todo: Vec<(RelPath, u64)> = if self.unsynced.swap(false, Ordering::SeqCst) {
            let ix = self.index.lock();
            ix.entries
                .iter()
                .filter(|(_, e)| e.info.dirty && !e.info.writing && e.info.unsynced.is_some())
                .map(|(p, e)| (p.clone(), e.stamp))
                .collect()
        } else {
            Vec::new()
        };
        let mut flushed = Vec::with_capacity(todo.len());
        for (path, stamp) in todo {
            match self.files.sync_data(&path) {
                Ok(()) => flushed.push((path, stamp)),
                Err(e) => {
                    // Renamed or removed meanwhile (a rename keeps the
                    // mark, found again next round), or a disk error.
                    if e.kind() != io::ErrorKind::NotFound {
                        warn!("cache: flushing {path} to disk: {e}; tried again");
                    }
                    self.unsynced.store(true, Ordering::SeqCst);
                }
            }
        }
        let journal = {
            let mut ix = self.index.lock();
            let mut recs = Vec::new();
            for (path, stamp) in &flushed {
                let Some(e) = ix.entries.get(path) else {
                    continue;
                };
                if e.stamp != *stamp {
                    // Changed since (sealed again, renamed onto): if it is
                    // still unsynced, the next round takes it.
                    if e.info.unsynced.is_some() {
                        self.unsynced.store(true, Ordering::SeqCst);
                    }
                    continue;
                }
                let info = EntryInfo {
                    unsynced: None,
                    ..e.info.clone()
                };
                recs.push((path.clone(), e.key.clone(), info));
            }
            if let Some(j) = ix.journal.as_mut()
                && !recs.is_empty()
            {
                let puts: Vec<Record> = recs
                    .iter()
                    .map(|(p, _, info)| Record::Put(p.clone(), info.clone()))
                    .collect();
                j.append_all(&puts)?;
            }
            for (path, key, info) in recs {
                ix.put(path, key, info);
            }
            match ix.journal.as_mut() {
                Some(j) => j.take_for_flush()?,
                None => None,
            }
        };
        if let Some(f) = journal
            && let Err(e) = f.sync_data()
        {
            if let Some(j) = self.index.lock().journal.as_mut() {
                j.flush_failed();
            }
            return Err(e);
        }
        Ok(flushed.len())
    }
}
