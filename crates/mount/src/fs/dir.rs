//! Directory handles and readdir.
//!
//! readdir's traps, and what we do about each:
//! 1. The kernel reads a directory in several calls with offsets; if the
//!    listing changed between calls, entries would be skipped or repeated.
//!    The listing is snapshotted at `opendir` and offsets index into it.
//! 2. Local files created but not yet uploaded are not in the server's
//!    listing; they are merged into the snapshot so `ls` shows them.
//! 3. With readdirplus the kernel takes a reference on every entry it
//!    accepts, except `.` and `..`; we count a lookup exactly for those
//!    entries the reply buffer accepted.

use std::sync::Arc;

use rfmount_client::Remote;
use rfmount_proto::{FileKind, Meta, RelPath};

use super::RemoteFs;
use crate::error::{FsError, FsResult};

/// Where readdir puts entries; returns `true` when the reply is full and the
/// entry was **not** added.
pub trait DirSink {
    /// Adds one entry at `offset` (the offset of the *next* entry).
    fn add(&mut self, ino: u64, offset: u64, name: &str, meta: &Meta) -> bool;
}

pub(crate) struct DirSnapshot {
    dir: RelPath,
    ino: u64,
    parent_ino: u64,
    self_meta: Meta,
    entries: Vec<(String, Meta)>,
}

impl<R: Remote> RemoteFs<R> {
    /// Opens a directory: takes the snapshot that readdir serves.
    ///
    /// # Errors
    /// `ENOTDIR`, remote errors.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let dir = self.path(ino)?;
        let self_meta = self.meta_of(&dir)?;
        if self_meta.kind != FileKind::Dir {
            return Err(FsError::Errno {
                errno: libc::ENOTDIR,
                what: "not a directory",
            });
        }
        // A fresh LIST at every opendir: directories follow close-to-open
        // like files; the listing cache serves the lookups that follow.
        // Except under a callback: the cached listing is current.
        let trusted = self
            .meta
            .lock()
            .listing_trusted(&dir)
            .filter(|l| !l.has_stale());
        // A walk's fetch of it ahead is on its way: the same answer.
        let trusted = trusted.or_else(|| self.listed_ahead(&dir));
        let ticket = self.trust.ticket();
        let fetched = match trusted {
            Some(l) => Ok(l),
            None => self.remote.list(&dir).map(|entries| {
                let listing = Arc::new(crate::meta_cache::Listing::new(entries));
                let granted = self.trust.granted(ticket);
                self.meta
                    .lock()
                    .put_listing_as(&dir, listing.clone(), granted);
                listing
            }),
        };
        let listing = match fetched {
            Ok(l) => l,
            // Server unreachable: the last listing, however old, beats EIO;
            // without one, what the cache holds (not stored as a listing:
            // it does not say which names are absent).
            Err(e) if e.is_transport() => match self.meta.lock().listing_any(&dir) {
                Some(l) => l,
                None if self.cached_meta(&dir).is_some() => {
                    Arc::new(crate::meta_cache::Listing::new(self.cached_listing(&dir)))
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        let mut entries: Vec<(String, Meta)> = listing
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.meta.clone()))
            .collect();
        // Files with unsent changes: the local copy's attributes, never the
        // server's (readdirplus hands them to the kernel, and a stale size
        // there would make the next append land inside the file).
        for p in self.cache.dirty_paths() {
            if p.parent().as_ref() != Some(&dir) {
                continue;
            }
            let Some(m) = self.local_meta(&p) else {
                continue;
            };
            let name = p.file_name().unwrap_or_default().to_owned();
            match listing.index_of(&name) {
                Some(i) => entries[i].1 = m,
                None => entries.push((name, m)),
            }
        }
        for (name, m) in self.dir_attrs.shown_in(&dir) {
            if let Some(i) = listing.index_of(&name) {
                entries[i].1 = m;
            }
        }
        let parent_ino = match dir.parent() {
            Some(pp) => self.inodes.lock().peek(&pp),
            None => ino,
        };
        let fh = self.next_fh();
        let snap = DirSnapshot {
            dir,
            ino,
            parent_ino,
            self_meta,
            entries,
        };
        self.dirs.write().insert(fh, Arc::new(snap));
        Ok(fh)
    }

    /// Serves entries from offset `offset` of the snapshot. With `plus`,
    /// every accepted entry (but `.` and `..`) counts a kernel lookup.
    ///
    /// # Errors
    /// `EBADF` for an unknown handle.
    pub fn readdir(
        &self,
        fh: u64,
        offset: u64,
        plus: bool,
        sink: &mut dyn DirSink,
    ) -> FsResult<()> {
        let snap = self.dirs.read().get(&fh).cloned().ok_or(FsError::Errno {
            errno: libc::EBADF,
            what: "unknown directory handle",
        })?;
        let total = snap.entries.len() as u64 + 2;
        for off in offset..total {
            let full = match off {
                0 => sink.add(snap.ino, 1, ".", &snap.self_meta),
                1 => sink.add(snap.parent_ino, 2, "..", &snap.self_meta),
                _ => {
                    let (name, meta) = &snap.entries[(off - 2) as usize];
                    let Ok(path) = snap.dir.join(name) else {
                        continue;
                    };
                    let file = super::linked(meta);
                    let id = super::known_id(meta);
                    let ino = if plus {
                        self.inodes.lock().lookup_linked(&path, file, id)
                    } else {
                        self.inodes.lock().peek_linked(&path, file, id)
                    };
                    // Another name of a file with unsent changes: the
                    // local copy's attributes, as for the name itself.
                    let primary = self.inodes.lock().path(ino);
                    let local = primary
                        .filter(|p| *p != path)
                        .and_then(|p| self.local_meta(&p));
                    let full = sink.add(ino, off + 1, name, local.as_ref().unwrap_or(meta));
                    if full && plus {
                        self.inodes.lock().forget(ino, 1);
                    }
                    full
                }
            };
            if full {
                break;
            }
        }
        if plus {
            // Only now does the kernel know these names (prefetch needs
            // their inodes).
            let from = usize::try_from(offset.saturating_sub(2)).unwrap_or(usize::MAX);
            self.prefetch_listed(&snap.dir, from);
        }
        Ok(())
    }

    /// Drops a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.dirs.write().remove(&fh);
    }
}
