//! The attributes of a directory that holds files created here and not
//! on the server yet, on a write-back mount.
//!
//! Why: creating a file makes its directory's cached attributes stale
//! (the upload's rename will move its mtime on the server), and the next
//! look at them was a STAT. On a write-back mount the upload lands in the
//! background, so `tar x`'s `fstatat` of each directory it finished
//! (before it sets the directory's times) waited one round trip for
//! attributes the server had not changed yet. Until the last of those
//! files leaves the dirty set, the mount answers from what it knew of the
//! directory before, with mtime and ctime moved to the time of the last
//! create here, as a local directory would show them; the reply of the
//! upload that lands (it carries the directory's attributes) replaces
//! them, as any STAT after that would.
//!
//! Kept in memory only: after a restart the directory is asked for again.
//! Only what would otherwise be a STAT is answered from here, so fresh
//! attributes from the server come first; attributes it gave after the
//! last create (a subdirectory's MKDIR, an upload's reply) are shown, of
//! any age, while files wait, since nothing changed the directory on the
//! server since but this mount (a pushed change forgets what was kept).

use std::collections::HashMap;
use std::time::SystemTime;

use parking_lot::Mutex;
use rfmount_client::Remote;
use rfmount_proto::{Meta, RelPath, Timestamp};

use super::RemoteFs;

/// Directories with files created here not yet uploaded, and what the
/// mount shows for each meanwhile.
#[derive(Default)]
pub(crate) struct UnsentParents {
    shown: Mutex<HashMap<RelPath, Meta>>,
}

impl UnsentParents {
    /// Forgets `dir` and everything beneath it (renamed or removed).
    pub(crate) fn forget_beneath(&self, dir: &RelPath) {
        self.shown.lock().retain(|p, _| !p.starts_with(dir));
    }

    /// The server pushed a change of `path` (made elsewhere): what was
    /// kept for it and for its directory is out of date.
    pub(crate) fn forget_pushed(&self, path: &RelPath, tree: bool) {
        let mut shown = self.shown.lock();
        if tree {
            shown.retain(|p, _| !p.starts_with(path));
        } else {
            shown.remove(path);
        }
        if let Some(dir) = path.parent() {
            shown.remove(&dir);
        }
    }
}

impl<R: Remote> RemoteFs<R> {
    /// A file is about to be created in `dir` on a write-back mount: keeps
    /// the directory's attributes as known now, with the create's time.
    /// Called before the create marks them stale.
    pub(super) fn note_unsent_child(&self, dir: &RelPath) {
        if !self.cfg.writeback {
            return;
        }
        let (server, listed) = {
            let mc = self.meta.lock();
            let listed = dir
                .file_name()
                .zip(dir.parent())
                .and_then(|(name, parent)| {
                    let listing = mc.listing_any(&parent)?;
                    listing.get(name).map(|e| e.meta.clone())
                });
            (mc.attr_any(dir), listed)
        };
        // Not under the metadata lock (a rename takes that one first).
        let mut shown = self.unsent_parents.shown.lock();
        // The server's attributes when there are any (they are newer than
        // an earlier create's), else the ones shown since that create, else
        // the parent's listing.
        let known = server.or_else(|| shown.get(dir).cloned()).or(listed);
        let Some(mut meta) = known else {
            return;
        };
        let now = Timestamp::from_system(SystemTime::now());
        meta.mtime = now;
        meta.ctime = now;
        shown.insert(dir.clone(), meta);
    }

    /// What to show for `dir` instead of asking the server: the attributes
    /// kept at the last create in it, while a file created there is still
    /// not uploaded.
    pub(super) fn unsent_parent_meta(&self, dir: &RelPath) -> Option<Meta> {
        if !self.cfg.writeback {
            return None;
        }
        let meta = self.unsent_parents.shown.lock().get(dir).cloned()?;
        let unsent = self
            .cache
            .dirty_paths()
            .iter()
            .any(|p| p.parent().as_ref() == Some(dir));
        if unsent {
            // Attributes the server gave since the last create here (a
            // subdirectory's MKDIR, an upload's reply) are newer, however
            // old they are by now: nothing was pushed since.
            return Some(self.meta.lock().attr_any(dir).unwrap_or(meta));
        }
        // All landed: the server's attributes from now on.
        self.unsent_parents.shown.lock().remove(dir);
        None
    }
}
