//! A new version of a file that the kernel reads itself (FUSE passthrough),
//! copied into its backing file: while any passthrough handle of an inode
//! is open the kernel lets no other file back it, so the next `open` (and
//! the open handles, as `tail -f` needs) can only see a pushed change there.
//! Local changes not yet uploaded are the newest content and are left
//! alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use log::warn;
use rfmount_client::{GetOutcome, Remote};
use rfmount_proto::RelPath;

use super::RemoteFs;
use super::files::FileState;
use crate::error::{FsError, FsResult};

impl<R: Remote> RemoteFs<R> {
    /// If `ino` is in passthrough and the server pushed a change of it
    /// since its backing file was filled (`force`: whatever was pushed),
    /// brings that file up to the server's version. The caller holds
    /// `state.upload`.
    ///
    /// # Errors
    /// Remote and cache errors; `ENOENT` when the file is gone.
    pub(super) fn refresh_backing(
        &self,
        ino: u64,
        path: &RelPath,
        state: &FileState,
        force: bool,
    ) -> FsResult<()> {
        let pushed = state.pushed.load(Ordering::SeqCst);
        let backing = if force {
            state.io.backing_file()
        } else {
            state.io.stale(pushed)
        };
        let Some(backing) = backing else {
            return Ok(());
        };
        let entry = self.cache.entry(path);
        if entry.as_ref().is_none_or(|e| e.dirty) || state.writers.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let have = entry.as_ref().and_then(|e| e.version);
        let ticket = self.trust.ticket();
        let mut tmp = self
            .cache
            .begin_fetch(path)
            .map_err(|e| FsError::cache(format!("preparing to fetch {path}"), e))?;
        let meta = match self
            .remote
            .get_sparse(path, have, &mut |_| {}, &mut tmp)
            .map_err(FsError::from)
        {
            Ok(GetOutcome::NotModified(meta)) => meta,
            Ok(GetOutcome::Fetched(meta)) => {
                let size = tmp
                    .received()
                    .map_err(|e| FsError::cache(format!("fetching {path}"), e))?;
                self.cache
                    .finish_fetch_into(path, tmp, meta.version, size, &backing)
                    .map_err(|e| FsError::cache(format!("storing {path} in place"), e))?;
                rfmount_proto::Meta { size, ..meta }
            }
            Err(e) => {
                drop(tmp);
                self.fetch_failed(path, have, e)?
            }
        };
        let trusted = self.trust.granted(ticket);
        self.meta.lock().put_attr_as(path, meta.clone(), trusted);
        state.io.refreshed(pushed);
        // The kernel's size and pages of the old content.
        self.settle_version(ino, state, meta.version);
        Ok(())
    }

    /// After a pushed change of `ino`: refreshes its backing file on a
    /// thread of its own (the push arrives on the connection's reader,
    /// which the fetch needs), so that open passthrough readers see it.
    pub(super) fn refresh_backing_soon(self: &Arc<Self>, ino: u64) {
        let Some(state) = self.files.lock().get(&ino).cloned() else {
            return;
        };
        if state.io.backing_file().is_none() {
            return;
        }
        let fs = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("rf-refresh".into())
            .spawn(move || {
                let Some(fs) = fs.upgrade() else { return };
                let Some(path) = fs.inodes.lock().path(ino) else {
                    return;
                };
                let _guard = state.upload.lock();
                if let Err(e) = fs.refresh_backing(ino, &path, &state, false) {
                    warn!("{path}: refreshing the passthrough copy: {e}");
                }
            });
        if let Err(e) = spawned {
            warn!("no thread to refresh a passthrough copy: {e}");
        }
    }
}
