//! Extended attributes in the mount: the `user.` and `trusted.`
//! namespaces live on the server (one request each, nothing cached).
//!
//! `security.` and `system.` (POSIX ACLs) are answered here without a
//! request: the kernel asks for `security.capability` before writes and
//! `ls -l` asks for `system.posix_acl_access` on every file, and a round
//! trip for each would make those slow; such attributes are not carried.

use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, RelPath};

use super::RemoteFs;
use super::files::Why;
use crate::error::{FsError, FsResult};

/// Namespaces carried to the server.
fn carried(name: &str) -> bool {
    name.starts_with("user.") || name.starts_with("trusted.")
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
        what: "only user. and trusted. attributes are carried",
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
    /// `ENODATA` when absent, remote errors.
    pub fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if !carried(name) {
            return Err(no_data());
        }
        let path = self.xattr_path(ino)?;
        self.remote.getxattr(&path, name).map_err(Self::remote_err)
    }

    /// The names of `ino`'s carried attributes, each NUL-terminated, as
    /// listxattr(2) returns them.
    ///
    /// # Errors
    /// Remote errors.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let path = self.xattr_path(ino)?;
        let names = match self.remote.listxattr(&path) {
            Ok(n) => n,
            Err(e) if e.code() == Some(ErrorCode::NotSupported) => Vec::new(),
            Err(e) => return Err(Self::remote_err(e)),
        };
        let mut out = Vec::new();
        for n in names.iter().filter(|n| carried(n)) {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// Sets attribute `name`; a file with unsent changes is uploaded first
    /// so that the attribute lands on the real file.
    ///
    /// # Errors
    /// `EOPNOTSUPP` outside `user.`/`trusted.`, `EROFS`, remote errors
    /// (`EEXIST`/`ENODATA` for the create/replace flags).
    pub fn setxattr(&self, ino: u64, name: &str, value: &[u8], flags: u32) -> FsResult<()> {
        if !carried(name) {
            return Err(not_supported());
        }
        self.check_writable()?;
        let path = self.xattr_path(ino)?;
        if self.cache.entry(&path).is_some_and(|e| e.dirty) {
            let state = self.file_state(ino);
            self.upload(ino, &state, Why::Flush)?;
        }
        self.remote
            .setxattr(&path, name, value, flags)
            .map_err(Self::remote_err)?;
        // ctime moved on the server.
        self.meta.lock().invalidate(&path);
        Ok(())
    }

    /// Removes attribute `name`.
    ///
    /// # Errors
    /// `ENODATA` when absent, `EROFS`, remote errors.
    pub fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        if !carried(name) {
            return Err(no_data());
        }
        self.check_writable()?;
        let path = self.xattr_path(ino)?;
        self.remote
            .removexattr(&path, name)
            .map_err(Self::remote_err)?;
        self.meta.lock().invalidate(&path);
        Ok(())
    }
}
