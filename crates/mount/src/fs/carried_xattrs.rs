//! Extended attributes of a file that exists only in this mount so far
//! (created here, not uploaded yet): they are kept with its cache entry and
//! carried in the upload's `PutExt::xattrs`, so that `setfattr` between
//! create and close, `cp --preserve=all` and `rsync -aX` cost no SETXATTR
//! of their own, and the file appears on the server with them.
//!
//! Only `user.` names are kept here: they are the user's own, and any file
//! on a filesystem with user attributes takes them. `trusted.` and
//! `security.` depend on the server's privileges and policy, so they are
//! asked of the server at once (after an upload of the file). A set that
//! would make a file carry more than [`CARRIED_MAX`] bytes goes to the
//! server too: some filesystems (ext4) hold all of a file's attributes in
//! one block, and a larger set is likelier to be refused there.
//!
//! Kept only while the local copy is the newer one anyway: while a handle
//! writes the file (its close uploads it), or in write-back mode (the
//! queued upload carries it, and a set after the close queues it). A
//! synchronous mount's closed file sends an attribute at once, so that a
//! returned `setxattr` is on the server as a returned `close` is.
//!
//! If the server refuses an upload that carries attributes (a filesystem
//! without user attributes, say), the file is uploaded without them and
//! each is then set on its own; one refused there is logged and reported
//! in the status view, and the data is not held back for it.

use std::sync::atomic::Ordering;

use log::warn;
use rfmount_client::{Remote, RemoteError, Uploaded};
use rfmount_proto::{ErrorCode, RelPath, XATTR_CREATE, XATTR_REPLACE, XattrValue};

use super::RemoteFs;
use crate::data_cache::EntryInfo;
use crate::error::{FsError, FsResult};

/// Most bytes (names and values) of attributes one file carries to its
/// upload; a set beyond goes to the server at once.
pub(super) const CARRIED_MAX: usize = 4096;

fn kept_here(name: &str) -> bool {
    name.starts_with("user.")
}

/// Names the server is asked for as it has them (see `xattr.rs`), which
/// a file that is not on the server yet cannot have there.
fn only_on_server(name: &str) -> bool {
    name.starts_with("user.") || name.starts_with("trusted.")
}

fn errno(errno: i32, what: &'static str) -> FsError {
    FsError::Errno { errno, what }
}

/// The entry of a file this mount created and has not uploaded yet.
fn only_here(entry: Option<EntryInfo>) -> Option<EntryInfo> {
    entry.filter(|e| e.dirty && e.version.is_none())
}

/// True when the server's refusal of an upload may be about the
/// attributes it carries rather than its data.
fn refusal_of_attributes(e: &FsError) -> bool {
    matches!(
        e,
        FsError::Remote(RemoteError::Service(w)) if matches!(
            w.code,
            ErrorCode::NotSupported
                | ErrorCode::Perm
                | ErrorCode::Access
                | ErrorCode::Range
                | ErrorCode::Invalid
                | ErrorCode::NoSpace
                | ErrorCode::Quota
        )
    )
}

impl<R: Remote> RemoteFs<R> {
    /// Sets `name` on `path` (`ino`) in its cache entry when it is kept
    /// here (see the module documentation); false when it is the server's
    /// to set.
    ///
    /// # Errors
    /// `EEXIST`/`ENODATA` for the create/replace flags, `EINVAL` for
    /// unknown flags, cache errors.
    pub(super) fn set_carried(
        &self,
        ino: u64,
        path: &RelPath,
        name: &str,
        value: &[u8],
        flags: u32,
    ) -> FsResult<bool> {
        if !kept_here(name) {
            return Ok(false);
        }
        let Some(entry) = only_here(self.cache.entry(path)) else {
            return Ok(false);
        };
        let state = self.file_state(ino);
        if !self.cfg.writeback && state.writers.load(Ordering::SeqCst) == 0 {
            return Ok(false);
        }
        let others: usize = entry
            .xattrs
            .iter()
            .filter(|x| x.name != name)
            .map(|x| x.name.len() + x.value.len())
            .sum();
        if others + name.len() + value.len() > CARRIED_MAX {
            return Ok(false);
        }
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(errno(libc::EINVAL, "unknown xattr flags"));
        }
        let exists = entry.xattrs.iter().any(|x| x.name == name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(errno(libc::EEXIST, "attribute exists"));
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(errno(libc::ENODATA, "no such attribute"));
        }
        {
            // An upload in flight carries the old set: this change keeps
            // the file dirty after it (as a chmod does). One that landed
            // since the entry was read made the file the server's.
            let _changing = state.seal.read();
            if only_here(self.cache.entry(path)).is_none() {
                return Ok(false);
            }
            self.cache
                .set_carried_xattr(path, name, Some(value.to_vec()))
                .map_err(|e| FsError::cache(format!("recording an attribute of {path}"), e))?;
            super::shown_ctime::touch(&self.cache.data_path(path))
                .map_err(|e| FsError::cache(format!("changing the ctime of {path}"), e))?;
            state.write_gen.fetch_add(1, Ordering::SeqCst);
        }
        self.queue_carried(path);
        Ok(true)
    }

    /// In write-back mode a closed file's upload may have run already:
    /// queue it again so that the attribute reaches the server.
    fn queue_carried(&self, path: &RelPath) {
        if self.cfg.writeback && self.cache.entry(path).is_some_and(|e| !e.writing) {
            self.uploads.push(path.clone());
        }
    }

    /// The value of `name` as this mount has it for a file with unsent
    /// attributes; `None`: the server's answer is the one.
    pub(super) fn carried_value(&self, path: &RelPath, name: &str) -> Option<FsResult<Vec<u8>>> {
        let entry = self.cache.entry(path).filter(|e| e.dirty)?;
        if let Some(x) = entry.xattrs.iter().find(|x| x.name == name) {
            return Some(Ok(x.value.clone()));
        }
        // Not on the server yet: there is nothing there to ask.
        (entry.version.is_none() && only_on_server(name))
            .then(|| Err(errno(libc::ENODATA, "no such attribute")))
    }

    /// The names `path` has that the server does not know of yet, and
    /// whether the server has the file at all (`false`: these are all).
    pub(super) fn carried_names(&self, path: &RelPath) -> Option<(Vec<String>, bool)> {
        let entry = self.cache.entry(path).filter(|e| e.dirty)?;
        if entry.xattrs.is_empty() && entry.version.is_some() {
            return None;
        }
        let names = entry.xattrs.iter().map(|x| x.name.clone()).collect();
        Some((names, entry.version.is_some()))
    }

    /// Removes `name` from the attributes `path` carries: `None` when it
    /// carries no such name; `Some(true)` when that is all there is to do
    /// (the server never had it); `Some(false)` when an upload carrying it
    /// may have landed, so the server's copy goes too (and its absence
    /// there is no error).
    ///
    /// # Errors
    /// `ENODATA` for a name that a file only this mount has does not have;
    /// cache errors.
    pub(super) fn remove_carried(
        &self,
        ino: u64,
        path: &RelPath,
        name: &str,
    ) -> FsResult<Option<bool>> {
        let Some(entry) = self.cache.entry(path).filter(|e| e.dirty) else {
            return Ok(None);
        };
        if !entry.xattrs.iter().any(|x| x.name == name) {
            if entry.version.is_none() && only_on_server(name) {
                return Err(errno(libc::ENODATA, "no such attribute"));
            }
            return Ok(None);
        }
        let state = self.file_state(ino);
        // An upload in flight may be carrying it: once it has landed, the
        // server has the attribute too.
        let _quiet = state.upload.lock();
        {
            let _changing = state.seal.read();
            self.cache
                .set_carried_xattr(path, name, None)
                .map_err(|e| FsError::cache(format!("recording an attribute of {path}"), e))?;
            super::shown_ctime::touch(&self.cache.data_path(path))
                .map_err(|e| FsError::cache(format!("changing the ctime of {path}"), e))?;
            state.write_gen.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Some(only_here(self.cache.entry(path)).is_some()))
    }

    /// Uploads with `send`, carrying `xattrs`; an upload refused with them
    /// is sent again without, and each attribute then set on its own.
    pub(super) fn put_carrying(
        &self,
        path: &RelPath,
        xattrs: Vec<XattrValue>,
        send: &dyn Fn(Vec<XattrValue>) -> FsResult<Uploaded>,
    ) -> FsResult<Uploaded> {
        if xattrs.is_empty() {
            return send(xattrs);
        }
        let e = match send(xattrs.clone()) {
            Err(e) if refusal_of_attributes(&e) => e,
            r => return r,
        };
        warn!(
            "{path}: the server refused the upload with its attributes ({e}); sending it without"
        );
        let mut up = send(Vec::new())?;
        let mut set_any = false;
        for x in &xattrs {
            match self.remote.setxattr(path, &x.name, &x.value, 0) {
                Ok(()) => set_any = true,
                Err(e) => {
                    let e = format!("{path}: attribute {} not kept by the server: {e}", x.name);
                    crate::activity::note_failure("setxattr", &e);
                    warn!("{e}");
                }
            }
        }
        if set_any {
            // Each set moved the file's ctime, so its version.
            up.meta = self.remote.stat(path)?;
        }
        Ok(up)
    }
}
