//! Symlinks, hard links and special files in the mount: created on the
//! server at once (they have no content to cache), noted in the metadata
//! cache like a `mkdir`, and read back from it.

use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, FileKind, Meta, Owner, RelPath, SetAttr};

use super::{Attr, RemoteFs};
use crate::error::{FsError, FsResult};

impl<R: Remote> RemoteFs<R> {
    /// Creates a symlink holding `target` (opaque text for the server; the
    /// kernel of whoever follows it interprets it).
    ///
    /// # Errors
    /// `EROFS`, bad names, remote errors (`EEXIST`, ...).
    pub fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        owner: Option<Owner>,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        let meta = self.remote.symlink(&path, target, owner)?;
        self.noted_new(&path, meta)
    }

    /// The target of the symlink `ino`: from the attributes already known
    /// (every listing and `STAT` carries it), else one `READLINK`.
    ///
    /// # Errors
    /// `EINVAL` for a non-link, remote errors.
    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        let path = self.path(ino)?;
        let meta = self.meta_of(&path)?;
        if meta.kind != FileKind::Symlink {
            return Err(FsError::Errno {
                errno: libc::EINVAL,
                what: "not a symbolic link",
            });
        }
        if let Some(t) = meta.target {
            return Ok(t);
        }
        match self.remote.readlink(&path) {
            Ok(t) => Ok(t),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Err(FsError::enoent()),
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the owner of `path` on the server. A file with changes not
    /// yet uploaded may not exist there yet, so it is uploaded first: the
    /// owner is applied to the real file, or the server's refusal (EPERM)
    /// reported, and never merely recorded.
    pub(super) fn chown(
        &self,
        ino: u64,
        path: &RelPath,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> FsResult<Attr> {
        if self.cache.entry(path).is_some_and(|e| e.dirty) {
            let state = self.file_state(ino);
            self.upload(ino, &state)?;
        }
        let attr = SetAttr {
            uid,
            gid,
            ..SetAttr::default()
        };
        let meta = match self.remote.setattr(path, attr) {
            Ok(m) => m,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return Err(FsError::enoent()),
            Err(e) => return Err(e.into()),
        };
        self.meta.lock().put_attr(path, meta.clone());
        Ok(Attr { ino, meta })
    }

    /// Records a just-created object at `path` and counts the kernel's
    /// reference to it.
    fn noted_new(&self, path: &RelPath, meta: Meta) -> FsResult<Attr> {
        self.meta.lock().note_entry(path, meta.clone());
        let ino = self.inodes.lock().lookup(path);
        Ok(Attr { ino, meta })
    }
}
