//! A local change that no close will seal: a truncate(2) by name of a file
//! with unsent changes (or one racing the last writer's release). The
//! change is made in the cache, as the server's copy is older, and marks
//! the file as being written. A writer's release would seal it and send
//! it; with no writer left, nothing would. The uploads skip a file being
//! written and `rfmount sync` does not wait for one, so the change, and
//! every unsent one before it, would never reach the server.
//!
//! Whoever finds the file unwritten seals it: the setattr after its change
//! and every release after its writer count dropped. The check runs with
//! the seal lock held exclusively, and a change records itself under the
//! same lock: either the change comes first and the release after it
//! sees it, or the release comes first and the change sees no writer.

use std::fs::File;
use std::sync::atomic::Ordering;

use log::warn;
use rfmount_client::Remote;
use rfmount_proto::RelPath;

use super::RemoteFs;
use super::files::{FileState, Why};
use crate::data_cache::open_data;
use crate::error::{FsError, FsResult};

impl<R: Remote> RemoteFs<R> {
    /// Seals `path`'s unsent local change when no handle writes it, and
    /// sends it as a close would: queued in write-back mode (also when it
    /// was sealed already: an upload in flight did not send the change),
    /// uploaded at once otherwise (a failure there leaves it dirty and
    /// sealed, for the retry loop, as a failed upload at close does).
    ///
    /// # Errors
    /// The seal could not be recorded in the cache.
    pub(super) fn seal_unwritten(
        &self,
        ino: u64,
        path: &RelPath,
        state: &FileState,
    ) -> FsResult<()> {
        let sealed_here = {
            let _sealing = state.seal.write();
            if state.writers.load(Ordering::SeqCst) > 0 {
                // Its release comes after this, and seals and sends it.
                return Ok(());
            }
            let Some(entry) = self.cache.entry(path).filter(|e| e.dirty) else {
                return Ok(());
            };
            if entry.writing {
                let f = open_data(&self.cache.data_path(path), false)
                    .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
                self.seal_entry(path, &f)?;
            }
            entry.writing
        };
        if self.cfg.writeback {
            self.uploads.push(path.clone());
        } else if sealed_here && let Err(e) = self.upload(ino, state, Why::Background) {
            crate::activity::note_failure("upload of a change", &e);
            warn!("{path}: upload of a change failed, kept for retry: {e}");
        }
        Ok(())
    }

    /// Seals `path` (its cache file `f`) as a close would; the caller
    /// holds the file's seal lock exclusively.
    pub(super) fn seal_entry(&self, path: &RelPath, f: &File) -> FsResult<()> {
        if self.cfg.writeback {
            // As a write-back close: durable once the flusher runs.
            self.cache.seal_locally(path, f)
        } else {
            self.cache.seal(path)
        }
        .map_err(|e| FsError::cache(format!("recording a change of {path}"), e))
    }
}
