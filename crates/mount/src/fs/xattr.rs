//! Extended attributes in the mount: the `user.`, `trusted.` and
//! `security.` namespaces and the POSIX ACLs (`system.posix_acl_access`,
//! `system.posix_acl_default`) live on the server, which stores them on its
//! files (and keeps them across uploads and renames).
//!
//! The kernel asks for `security.capability` before every `write(2)`, and
//! almost always the answer is "none"; so `security.` names (and ACLs) are
//! answered from the file's list of attribute names, fetched with one
//! `LISTXATTR` and kept for the attribute timeout (as long as attributes
//! themselves): only a name that is in the list costs a `GETXATTR`.
//! ACLs are carried only with `-o acl`: `ls -l` asks for the ACL of every
//! file it lists, and even one `LISTXATTR` per file would turn the one
//! round trip of `ls -l` in a large directory into thousands. `user.` and
//! `trusted.` are always asked, so what a program reads is the server's
//! current value.
//!
//! A name that is not carried (ACLs without `-o acl`, `security.selinux`,
//! other `system.` names) is answered EOPNOTSUPP for every operation, as a
//! local filesystem mounted `noacl` or without labels answers: `ls -l`
//! and `file_has_acl` then stop asking for the rest of the directory.
//! Answering ENODATA instead ("supported, none here") made a warm `ls -l`
//! of 10,000 files cost 20,000 trips through the kernel to this daemon,
//! five times the time of the listing itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, RelPath};

use super::RemoteFs;
use super::files::Why;
use crate::error::{FsError, FsResult};

/// POSIX ACLs, carried as the attributes the kernel names them by.
const ACL_NAMES: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// The client kernel's own security label: `ls -l` asks for it on every
/// file, and a label from the server's policy means nothing to this
/// machine's (as with NFS without labelled NFS).
const LOCAL_LABEL: &str = "security.selinux";

/// What the kernel asks before each write, to clear it.
const CAPABILITY: &str = "security.capability";

/// Names carried to the server; ACLs only with `-o acl`.
fn carried(name: &str, acl: bool) -> bool {
    asked_always(name)
        || (name.starts_with("security.") && name != LOCAL_LABEL)
        || (acl && ACL_NAMES.contains(&name))
}

/// Names whose value is always asked of the server.
fn asked_always(name: &str) -> bool {
    name.starts_with("user.") || name.starts_with("trusted.")
}

/// Names asked only when the file's cached name list has them.
fn listed_first(name: &str) -> bool {
    name.starts_with("security.") || ACL_NAMES.contains(&name)
}

/// Most files whose name lists are kept; the cache starts over beyond.
const MAX_LISTS: usize = 4096;

/// Attribute names of recently asked files, by path.
#[derive(Default)]
pub(crate) struct XattrNames {
    lists: HashMap<RelPath, (Instant, Arc<Vec<String>>)>,
}

impl XattrNames {
    fn get(&self, path: &RelPath, ttl: std::time::Duration) -> Option<Arc<Vec<String>>> {
        let (at, names) = self.lists.get(path)?;
        (at.elapsed() < ttl).then(|| Arc::clone(names))
    }

    fn put(&mut self, path: RelPath, names: Arc<Vec<String>>) {
        if self.lists.len() >= MAX_LISTS {
            self.lists.clear();
        }
        self.lists.insert(path, (Instant::now(), names));
    }

    pub(crate) fn forget(&mut self, path: &RelPath) {
        self.lists.remove(path);
    }
}

fn no_data() -> FsError {
    FsError::Errno {
        errno: libc::ENODATA,
        what: "no such attribute",
    }
}

fn not_supported() -> FsError {
    FsError::Errno {
        errno: libc::EOPNOTSUPP,
        what: "not carried: only user., trusted., security. (not security.selinux) and, with -o acl, POSIX ACLs",
    }
}

impl<R: Remote> RemoteFs<R> {
    fn xattr_path(&self, ino: u64) -> FsResult<RelPath> {
        self.path(ino)
    }

    fn remote_err(e: rfmount_client::RemoteError) -> FsError {
        match e.code() {
            Some(ErrorCode::NotFound) => FsError::enoent(),
            _ => e.into(),
        }
    }

    /// The value of attribute `name` of `ino`.
    ///
    /// # Errors
    /// `ENODATA` when absent, `EOPNOTSUPP` for names not carried, remote
    /// errors.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if !carried(name, self.cfg.acl) {
            return Err(not_supported());
        }
        let path = self.xattr_path(ino)?;
        if let Some(held) = self.carried_value(&path, name) {
            return held;
        }
        if name == CAPABILITY
            && self.cache.entry(&path).is_some_and(|e| e.dirty)
            && self
                .xattr_names
                .lock()
                .get(&path, self.cfg.attr_timeout)
                .is_none()
        {
            // The kernel's write path asks this before every write(2); a
            // file with unsent changes is being written here, possibly not
            // on the server at all yet, and asking would cost a round
            // trip per write.
            return Err(no_data());
        }
        if listed_first(name) && !self.names_of(&path)?.iter().any(|n| n == name) {
            return Err(no_data());
        }
        self.remote.getxattr(&path, name).map_err(Self::remote_err)
    }

    /// Records that `path` has no extended attributes (a file just
    /// created by this mount).
    pub(super) fn note_no_xattrs(&self, path: &RelPath) {
        self.xattr_names
            .lock()
            .put(path.clone(), Arc::new(Vec::new()));
    }

    /// Forgets what is known of `path`'s attribute names (a pushed change).
    pub(super) fn forget_xattrs(&self, path: &RelPath) {
        self.xattr_names.lock().forget(path);
    }

    /// The attribute names of `path` on the server, from the cache while
    /// fresh.
    fn names_of(&self, path: &RelPath) -> FsResult<Arc<Vec<String>>> {
        if let Some(names) = self.xattr_names.lock().get(path, self.cfg.attr_timeout) {
            return Ok(names);
        }
        let names = match self.remote.listxattr(path) {
            Ok(n) => Arc::new(n),
            Err(e) if e.code() == Some(ErrorCode::NotSupported) => Arc::new(Vec::new()),
            // Created here and not uploaded yet: it has none so far. Not
            // kept, so that once the upload is there (with what it
            // inherited, a default ACL's entries say) it is asked for.
            Err(e)
                if e.code() == Some(ErrorCode::NotFound)
                    && self
                        .cache
                        .entry(path)
                        .is_some_and(|c| c.dirty && c.version.is_none()) =>
            {
                return Ok(Arc::new(Vec::new()));
            }
            Err(e) => return Err(Self::remote_err(e)),
        };
        self.xattr_names
            .lock()
            .put(path.clone(), Arc::clone(&names));
        Ok(names)
    }

    /// The names of `ino`'s carried attributes, each NUL-terminated, as
    /// listxattr(2) returns them.
    ///
    /// # Errors
    /// Remote errors.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let path = self.xattr_path(ino)?;
        // Always fresh: this is what a program listing attributes sees.
        self.xattr_names.lock().forget(&path);
        let held = self.carried_names(&path);
        let names = match &held {
            Some((_, false)) => Arc::new(Vec::new()),
            _ => self.names_of(&path)?,
        };
        let held = held.map(|(h, _)| h).unwrap_or_default();
        let extra = held.iter().filter(|h| !names.contains(h));
        let mut out = Vec::new();
        for n in names
            .iter()
            .chain(extra)
            .filter(|n| carried(n, self.cfg.acl))
        {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Sets attribute `name`; a file with unsent changes is uploaded first
    /// so that the attribute lands on the real file.
    ///
    /// # Errors
    /// `EOPNOTSUPP` for names not carried, `EROFS`, remote errors
    /// (`EEXIST`/`ENODATA` for the create/replace flags).
    pub fn setxattr(&self, ino: u64, name: &str, value: &[u8], flags: u32) -> FsResult<()> {
        if !carried(name, self.cfg.acl) {
            return Err(not_supported());
        }
        self.check_writable()?;
        let path = self.xattr_path(ino)?;
        if self.set_carried(ino, &path, name, value, flags)? {
            return Ok(());
        }
        if self.cache.entry(&path).is_some_and(|e| e.dirty) {
            let state = self.file_state(ino);
            self.upload(ino, &state, Why::Flush)?;
        }
        let result = self
            .remote
            .setxattr(&path, name, value, flags)
            .map_err(Self::remote_err);
        self.xattr_names.lock().forget(&path);
        result?;
        // ctime moved on the server, so the file's version.
        self.meta.lock().invalidate(&path);
        self.refresh_own_version(&path);
        Ok(())
    }

    /// Removes attribute `name`.
    ///
    /// # Errors
    /// `ENODATA` when absent, `EOPNOTSUPP` for names not carried, `EROFS`,
    /// remote errors.
    pub fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        if !carried(name, self.cfg.acl) {
            return Err(not_supported());
        }
        self.check_writable()?;
        let path = self.xattr_path(ino)?;
        let held = self.remove_carried(ino, &path, name)?;
        if held == Some(true) {
            return Ok(());
        }
        let result = match self.remote.removexattr(&path, name) {
            Err(e) if held.is_some() && e.code() == Some(ErrorCode::NoData) => Ok(()),
            r => r.map_err(Self::remote_err),
        };
        self.xattr_names.lock().forget(&path);
        result?;
        self.meta.lock().invalidate(&path);
        self.refresh_own_version(&path);
        Ok(())
    }
}
