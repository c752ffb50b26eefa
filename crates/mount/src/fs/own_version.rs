//! A mount never conflicts with itself: every change this mount makes on
//! the server gives the file a new version (the server's version covers
//! ctime, which a rename, a link, an unlink of another name, a chmod, a
//! utimens or an xattr change all move, and every upload), and the cache
//! entry's base must follow it, or the next upload of this mount's own
//! file would be refused as "changed by another writer".
//!
//! The base is moved only right after this mount's own change, so another
//! writer's change is still caught, except one that landed on the server
//! between this mount's last look and its own rename/link/attribute
//! change: that one is folded into the new base (an attribute change on
//! the server is not an upload, and is not refused for it either).

use log::{debug, warn};
use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, FileKind, Meta, RelPath, Version};

use super::RemoteFs;
use crate::data_cache::open_data;

impl<R: Remote> RemoteFs<R> {
    /// This mount's own change made the server's file at `path` `meta`,
    /// with the content unchanged: the cached copy (clean or dirty) is
    /// based on that version now.
    pub(super) fn own_change_new_version(&self, path: &RelPath, meta: &Meta) {
        if meta.kind != FileKind::File {
            return;
        }
        let Some(e) = self.cache.entry(path) else {
            return;
        };
        let r = if e.dirty {
            self.cache.rebase(path, meta.version)
        } else if e.version.is_some() {
            self.cache.mark_clean(path, meta.version, e.size)
        } else {
            Ok(())
        };
        if let Err(err) = r {
            warn!("{path}: recording the version after this mount's change: {err}");
        }
    }

    /// As [`Self::own_change_new_version`] where the server's answer did
    /// not carry the attributes (an xattr change, the unlink of another
    /// name): asks for them, only when a cached copy needs them. Returns
    /// the attributes it got.
    pub(super) fn refresh_own_version(&self, path: &RelPath) -> Option<Meta> {
        self.cache.entry(path)?;
        match self.remote.stat(path) {
            Ok(meta) => {
                self.own_change_new_version(path, &meta);
                Some(meta)
            }
            // Without the new version the next open revalidates; a clean
            // copy is fetched again, a dirty one's upload may be kept aside.
            Err(e) => {
                debug!("{path}: version after this mount's change unknown: {e}");
                None
            }
        }
    }

    /// The base an upload replacing `path` whole (`O_TRUNC`) starts from
    /// when the mount knows none: the server's current version, or none
    /// when it has no such file (a new name).
    pub(super) fn server_base(&self, path: &RelPath) -> Option<Version> {
        match self.remote.stat(path) {
            Ok(m) if m.kind == FileKind::File => Some(m.version),
            Ok(_) => None,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
            Err(e) => {
                debug!("{path}: base version unknown, uploading as a new name: {e}");
                None
            }
        }
    }

    /// This mount truncated the clean file `path` on the server to
    /// `meta.size`: the cached copy gets the same cut and the new version,
    /// so that descriptors still open read what the server has and a
    /// writer opened next starts from the new version. A copy still being
    /// fetched is dropped instead.
    pub(super) fn truncated_on_server(&self, ino: u64, path: &RelPath, meta: &Meta) {
        let Some(e) = self.cache.entry(path).filter(|e| !e.dirty) else {
            return;
        };
        let state = self.files.lock().get(&ino).cloned();
        let fetching = state
            .as_ref()
            .and_then(|s| s.stream.lock().clone())
            .is_some_and(|s| s.is_live());
        if fetching || e.version.is_none() {
            self.cache.remove(path);
            return;
        }
        let cut = open_data(&self.cache.data_path(path), true)
            .and_then(|f| f.set_len(meta.size))
            .and_then(|()| self.cache.mark_clean(path, meta.version, meta.size));
        if let Err(err) = cut {
            warn!("{path}: truncating the cached copy: {err}; dropping it");
            self.cache.remove(path);
        }
        if let Some(s) = state {
            *s.kernel_version.lock() = Some(meta.version);
        }
    }
}
