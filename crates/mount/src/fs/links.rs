//! Symlinks, hard links and special files in the mount: created on the
//! server at once (they have no content to cache), noted in the metadata
//! cache like a `mkdir`, and read back from it.

use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, FileKind, Meta, Owner, RelPath, SetAttr};

use super::files::Why;
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

    /// Makes `newname` in `newparent` another name of `ino`. The file must
    /// exist on the server for that, so unsent changes are uploaded first;
    /// both names then share `ino` and its one cached copy.
    ///
    /// # Errors
    /// `EROFS`, remote errors (`EEXIST`, `EPERM` for a directory, ...).
    pub fn link(&self, ino: u64, newparent: u64, newname: &str) -> FsResult<Attr> {
        self.check_writable()?;
        let from = self.path(ino)?;
        let to = self.child(newparent, newname)?;
        if self.cache.entry(&from).is_some_and(|e| e.dirty) {
            let state = self.file_state(ino);
            self.upload(ino, &state, Why::Flush)?;
        }
        let meta = self.remote.link(&from, &to)?;
        // The new name moved the file's ctime, so its version.
        self.own_change_new_version(&from, &meta);
        let names = {
            let mut inodes = self.inodes.lock();
            inodes.mark_linked(ino, meta.file_id);
            let new = inodes.lookup_linked(&to, Some(meta.file_id), Some(meta.file_id));
            debug_assert_eq!(new, ino);
            inodes.names(ino)
        };
        let mut mc = self.meta.lock();
        for p in &names {
            mc.note_entry(p, meta.clone());
        }
        drop(mc);
        Ok(Attr { ino, meta })
    }

    /// Creates a FIFO, socket or device node (`mode` carries the type bits,
    /// as mknod(2) has them), or an empty regular file.
    ///
    /// # Errors
    /// `EROFS`, `EINVAL` for an unknown type, remote errors (`EPERM` for a
    /// device when rfserve is not root).
    pub fn mknod(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let path = self.child(parent, name)?;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            0 | libc::S_IFREG => {
                let opts = rfmount_client::PutOptions {
                    mode: Some(mode & 0o7777),
                    owner,
                    // Exclusive on the server too: never replace a file
                    // another mount created meanwhile.
                    expect: rfmount_proto::PutExpect::Absent,
                    ..Default::default()
                };
                // mknod fails on an existing name; a PUT would replace it.
                if self.meta_of(&path).is_ok() {
                    return Err(FsError::Errno {
                        errno: libc::EEXIST,
                        what: "file exists",
                    });
                }
                let meta = match self.remote.put(&path, &mut std::io::empty(), 0, opts) {
                    Err(e) if e.code() == Some(rfmount_proto::ErrorCode::Conflict) => {
                        return Err(FsError::Errno {
                            errno: libc::EEXIST,
                            what: "file exists",
                        });
                    }
                    r => r?.meta,
                };
                return self.noted_new(&path, meta);
            }
            _ => {
                return Err(FsError::Errno {
                    errno: libc::EINVAL,
                    what: "mknod of an unknown file type",
                });
            }
        };
        let meta = self.remote.mknod(&path, kind, mode & 0o7777, rdev, owner)?;
        self.noted_new(&path, meta)
    }

    /// `renameat2(RENAME_EXCHANGE)`: swaps two names on the server. Files
    /// with unsent changes are uploaded first; a side that is open, or
    /// holds unsent files beneath it, is refused with EBUSY, since their
    /// local copies are keyed by the names being swapped.
    pub(super) fn exchange(&self, a: &RelPath, b: &RelPath) -> FsResult<()> {
        for p in [a, b] {
            let ino = self.inodes.lock().ino(p);
            if let Some(ino) = ino {
                let state = self.files.lock().get(&ino).cloned();
                if state.as_ref().is_some_and(|s| s.open_count() > 0) {
                    return Err(FsError::Errno {
                        errno: libc::EBUSY,
                        what: "cannot exchange a file that is open here",
                    });
                }
                if self.cache.entry(p).is_some_and(|e| e.dirty) {
                    let state = state.unwrap_or_else(|| self.file_state(ino));
                    self.upload(ino, &state, Why::Flush)?;
                }
            }
            if self.has_unsent_beneath(p) {
                return Err(FsError::Errno {
                    errno: libc::EBUSY,
                    what: "files beneath are not uploaded yet",
                });
            }
        }
        match self.remote.rename(a, b, rfmount_proto::RENAME_EXCHANGE) {
            Ok(()) => {}
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return Err(FsError::enoent()),
            Err(e) => return Err(e.into()),
        }
        {
            let mut mc = self.meta.lock();
            mc.invalidate_tree(a);
            mc.invalidate_tree(b);
            for dir in [a.parent(), b.parent()].into_iter().flatten() {
                mc.dir_changed(&dir);
            }
        }
        self.inodes.lock().exchange(a, b);
        // Clean copies are simply fetched again under their new names.
        self.cache.remove(a);
        self.cache.remove(b);
        Ok(())
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
        if self.chown_is_noop_before_upload(path, uid, gid) {
            let meta = self.local_meta(path).ok_or_else(FsError::enoent)?;
            return Ok(Attr { ino, meta });
        }
        if self.cache.entry(path).is_some_and(|e| e.dirty) {
            let state = self.file_state(ino);
            self.upload(ino, &state, Why::Flush)?;
        }
        let attr = SetAttr {
            uid,
            gid,
            ..SetAttr::default()
        };
        if let Some(a) = self.defer_dir_attrs(ino, path, &attr)? {
            return Ok(a);
        }
        let meta = match self.remote.setattr(path, attr) {
            Ok(m) => m,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return Err(FsError::enoent()),
            Err(e) => return Err(e.into()),
        };
        self.same_content_new_version(path, &meta);
        self.meta.lock().note_attr(path, meta.clone());
        let meta = self.dir_attrs.also_applied(path, &attr, meta);
        Ok(Attr { ino, meta })
    }

    /// A file created here and not uploaded yet already has its creator as
    /// owner (its upload gives it that owner): a chown to that owner (tar
    /// and `cp -p` as root give each file its owner before the close) changes
    /// nothing, and costs neither the upload it would force now nor a
    /// SETATTR.
    fn chown_is_noop_before_upload(
        &self,
        path: &RelPath,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> bool {
        let Some(o) = self.creators.lock().get(path).copied() else {
            return false;
        };
        let never_uploaded = self
            .cache
            .entry(path)
            .is_some_and(|e| e.dirty && e.version.is_none());
        never_uploaded && uid.is_none_or(|u| u == o.uid) && gid.is_none_or(|g| g == o.gid)
    }

    /// Records a just-created object at `path` and counts the kernel's
    /// reference to it.
    fn noted_new(&self, path: &RelPath, meta: Meta) -> FsResult<Attr> {
        self.meta.lock().note_entry(path, meta.clone());
        let ino = self
            .inodes
            .lock()
            .lookup_object(path, super::known_id(&meta));
        Ok(Attr { ino, meta })
    }
}
