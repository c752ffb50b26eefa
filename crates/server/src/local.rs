//! `LocalStore`: a directory on the server's own filesystem.
//!
//! Every path is resolved beneath the root descriptor by the kernel (see
//! [`resolve`]); nothing is ever written into the root except by the
//! client's own requests, and an upload has no name at all until it is
//! complete (see [`put`]). The store never removes or creates anything of its
//! own accord, so a read-only export is never modified.

mod condition;
mod dirsync;
mod holes;
mod layout;
mod links;
mod listing;
mod meta;
mod put;
mod resolve;
mod sys;
mod write_behind;
mod xattr;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use rfmount_proto::{
    ErrorCode, FileKind, Meta, Owner, PutExpect, PutExt, RENAME_EXCHANGE, RENAME_NOREPLACE,
    RelPath, SetAttr, StatFs, WireError,
};

use crate::store::{Content, Listing, PendingPut, Store, StoreResult};
use resolve::Root;

/// A local directory served as an export.
pub struct LocalStore {
    root: Root,
    export_id: String,
    /// Group commit of directory fsyncs, shared with confined stores.
    dir_syncs: Arc<dirsync::DirSyncs>,
    /// The canonical directory, for the export watch.
    dir: std::path::PathBuf,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("export_id", &self.export_id)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens `root` for serving.
    ///
    /// # Errors
    /// When `root` is missing or not a directory, or when the kernel cannot
    /// confine lookups (no `openat2`): serving without it would be unsafe.
    pub fn open(root: &Path) -> anyhow::Result<LocalStore> {
        let canonical = root
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
        let handle = Root::new(&canonical)?;
        let st =
            sys::fstat(handle.fd()).map_err(|e| anyhow::anyhow!("{}: {e}", canonical.display()))?;
        let export_id = meta::export_id(canonical.as_os_str().as_bytes(), &st);
        Ok(LocalStore {
            root: handle,
            export_id,
            dir_syncs: Arc::default(),
            dir: canonical,
        })
    }

    /// Opens an object that some operation will act on through its
    /// descriptor, refusing devices, FIFOs and sockets: opening those can
    /// block or have side effects (a tape rewinds).
    fn open_object(
        &self,
        path: &RelPath,
        flags: libc::c_int,
    ) -> StoreResult<(OwnedFd, libc::stat)> {
        // openat2 refuses O_PATH combined with anything but a few flags.
        let extra = if flags & libc::O_PATH == 0 {
            libc::O_NONBLOCK | libc::O_NOCTTY
        } else {
            0
        };
        let fd = self.root.open(path, flags | extra)?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| WireError::from_io(&e, path))?;
        Ok((fd, st))
    }
}

fn io_err(path: &RelPath) -> impl Fn(io::Error) -> WireError + '_ {
    move |e| WireError::from_io(&e, path)
}

impl Store for LocalStore {
    fn export_id(&self) -> String {
        self.export_id.clone()
    }

    fn local_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.dir.clone())
    }

    fn list(&self, dir: &RelPath) -> StoreResult<Listing> {
        let fd = self.root.open(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
        Ok(Box::new(listing::DirStream::new(fd, dir)?))
    }

    fn stat(&self, path: &RelPath) -> StoreResult<Meta> {
        if path.is_root() {
            let st = sys::fstat(self.root.fd()).map_err(io_err(path))?;
            return Ok(meta::meta_of(&st));
        }
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        let st = sys::lstatat(dir.as_fd(), &name).map_err(io_err(path))?;
        Ok(meta::meta_at(dir.as_fd(), &name, &st))
    }

    fn open_read(&self, path: &RelPath) -> StoreResult<(Meta, Content)> {
        let (fd, st) = self.open_object(path, libc::O_RDONLY)?;
        match meta::kind_of(&st) {
            FileKind::File => Ok((meta::meta_of(&st), Box::new(File::from(fd)))),
            FileKind::Dir => Err(WireError::new(
                ErrorCode::IsDir,
                format!("{path}: is a directory"),
            )),
            _ => Err(WireError::new(
                ErrorCode::Invalid,
                format!("{path}: not a regular file"),
            )),
        }
    }

    fn begin_put_ext(
        &self,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
        ext: &PutExt,
    ) -> StoreResult<Box<dyn PendingPut>> {
        xattr::check_carried(path, &ext.xattrs)?;
        // Read access to the parent is what lets the commit fsync it.
        let (dir, name) = self.root.parent(path, libc::O_RDONLY)?;
        let owner = links::new_owner(dir.as_fd(), owner).map_err(io_err(path))?;
        let mut put = put::LocalPut::create(
            dir,
            name,
            path,
            size,
            owner,
            Arc::clone(&self.dir_syncs),
            ext.expect,
        )?;
        put.atime = ext.atime;
        put.xattrs.clone_from(&ext.xattrs);
        Ok(Box::new(put))
    }

    fn begin_layout_put(
        &self,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
        ext: &PutExt,
    ) -> StoreResult<Box<dyn PendingPut>> {
        let Some(layout) = &ext.layout else {
            return self.begin_put_ext(path, size, owner, ext);
        };
        xattr::check_carried(path, &ext.xattrs)?;
        let (dir, name) = self.root.parent(path, libc::O_RDONLY)?;
        // Opened before the temporary exists, so the base checked is the
        // file the copy is made from.
        let old = if layout.base.is_some() {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
            match sys::openat(dir.as_fd(), &name, flags, 0) {
                Ok(fd) => Some(File::from(fd)),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => None,
                Err(e) => return Err(WireError::from_io(&e, path)),
            }
        } else {
            None
        };
        let owner = links::new_owner(dir.as_fd(), owner).map_err(io_err(path))?;
        // The base is the version the writer started from: checked again
        // atomically at the rename, like any condition.
        let expect = match (ext.expect, layout.base) {
            (PutExpect::Any, Some(v)) => PutExpect::Version(v),
            (e, _) => e,
        };
        let mut inner = put::LocalPut::create(
            dir,
            name,
            path,
            size,
            owner,
            Arc::clone(&self.dir_syncs),
            expect,
        )?;
        inner.atime = ext.atime;
        inner.xattrs.clone_from(&ext.xattrs);
        Ok(Box::new(layout::LayoutPut::new(
            inner, path, size, layout, old,
        )?))
    }

    fn remove(&self, path: &RelPath) -> StoreResult<()> {
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        // Linux's unlink already answers EISDIR for a directory.
        sys::unlinkat(dir.as_fd(), &name, 0).map_err(io_err(path))
    }

    fn rename(&self, from: &RelPath, to: &RelPath, flags: u32) -> StoreResult<()> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(WireError::new(
                ErrorCode::Invalid,
                format!("{from}: unknown rename flags {flags:#x}"),
            ));
        }
        let (from_dir, from_name) = self.root.parent(from, libc::O_PATH)?;
        let (to_dir, to_name) = self.root.parent(to, libc::O_PATH)?;
        let done = if flags == 0 {
            sys::renameat(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name)
        } else {
            let mut bits = 0;
            if flags & RENAME_NOREPLACE != 0 {
                bits |= libc::RENAME_NOREPLACE;
            }
            if flags & RENAME_EXCHANGE != 0 {
                bits |= libc::RENAME_EXCHANGE;
            }
            sys::renameat2(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name, bits)
        };
        done.map_err(|e| WireError::from_io(&e, format!("{from} -> {to}")))
    }

    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> StoreResult<Meta> {
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        let owner = links::new_owner(dir.as_fd(), owner).map_err(io_err(path))?;
        // A directory made in a setgid directory keeps that bit, as with a
        // local mkdir, although the client's mode does not carry it.
        let parent_sgid = sys::fstat(dir.as_fd()).map_err(io_err(path))?.st_mode & libc::S_ISGID;
        let mode = mode | parent_sgid;
        sys::mkdirat(dir.as_fd(), &name, mode & 0o7777).map_err(io_err(path))?;
        if let Some(o) = owner {
            let obj = links::open_self(dir.as_fd(), &name).map_err(io_err(path))?;
            sys::chown_fd(obj.as_fd(), Some(o.uid), Some(o.gid)).map_err(io_err(path))?;
        }
        // mkdir applies the server's umask; the client asked for exact bits.
        // O_NOFOLLOW: if someone swapped in a symlink meanwhile, fail rather
        // than chmod whatever it points to.
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        match sys::openat(dir.as_fd(), &name, flags, 0) {
            Ok(fd) => {
                sys::fchmod(fd.as_fd(), mode).map_err(io_err(path))?;
                let st = sys::fstat(fd.as_fd()).map_err(io_err(path))?;
                Ok(meta::meta_of(&st))
            }
            // A mode without read permission for us: keep what mkdir made.
            Err(_) => {
                let st = sys::lstatat(dir.as_fd(), &name).map_err(io_err(path))?;
                Ok(meta::meta_of(&st))
            }
        }
    }

    fn rmdir(&self, path: &RelPath) -> StoreResult<()> {
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        sys::unlinkat(dir.as_fd(), &name, libc::AT_REMOVEDIR).map_err(io_err(path))
    }

    fn setattr(&self, path: &RelPath, attr: &SetAttr) -> StoreResult<Meta> {
        // The object itself, never what a final symlink names (the client's
        // kernel has already followed the links it meant to follow); an
        // O_PATH handle opens nothing, so a device or FIFO is never touched.
        let (parent, obj) = if path.is_root() {
            (None, self.root.open(path, libc::O_PATH)?)
        } else {
            let (dir, name) = self.root.parent(path, libc::O_PATH)?;
            let obj = links::open_self(dir.as_fd(), &name).map_err(io_err(path))?;
            (Some((dir, name)), obj)
        };
        let st = sys::fstat(obj.as_fd()).map_err(io_err(path))?;
        let kind = meta::kind_of(&st);
        let not_for = |what: &str| {
            WireError::new(
                ErrorCode::Invalid,
                format!("{path}: cannot change the {what} of a {kind:?}"),
            )
        };
        if attr.size.is_some() {
            match kind {
                FileKind::File => {}
                FileKind::Dir => {
                    return Err(WireError::new(
                        ErrorCode::IsDir,
                        format!("{path}: is a directory"),
                    ));
                }
                _ => return Err(not_for("size")),
            }
        }
        if attr.mode.is_some() && kind == FileKind::Symlink {
            return Err(not_for("mode"));
        }
        // chown clears setuid/setgid bits, so a mode sent along is applied
        // after it.
        if attr.uid.is_some() || attr.gid.is_some() {
            sys::chown_fd(obj.as_fd(), attr.uid, attr.gid).map_err(io_err(path))?;
        }
        if let Some(mode) = attr.mode {
            sys::chmod_opath(obj.as_fd(), mode).map_err(io_err(path))?;
        }
        if let Some(size) = attr.size {
            // Opened through the handle we checked, so it is the same file.
            let rw = sys::reopen(obj.as_fd(), libc::O_WRONLY).map_err(io_err(path))?;
            File::from(rw).set_len(size).map_err(io_err(path))?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            match (&parent, kind) {
                (Some((dir, name)), FileKind::Symlink) => {
                    sys::lutimensat(dir.as_fd(), name, attr.atime, attr.mtime)
                }
                _ => sys::utimens_opath(obj.as_fd(), attr.atime, attr.mtime),
            }
            .map_err(io_err(path))?;
        }
        let st = sys::fstat(obj.as_fd()).map_err(io_err(path))?;
        Ok(match &parent {
            Some((dir, name)) => meta::meta_at(dir.as_fd(), name, &st),
            None => meta::meta_of(&st),
        })
    }

    fn symlink(&self, path: &RelPath, target: &str, owner: Option<Owner>) -> StoreResult<Meta> {
        self.do_symlink(path, target, owner)
    }

    fn readlink(&self, path: &RelPath) -> StoreResult<String> {
        self.do_readlink(path)
    }

    fn link(&self, from: &RelPath, to: &RelPath) -> StoreResult<Meta> {
        self.do_link(from, to)
    }

    fn mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> StoreResult<Meta> {
        self.do_mknod(path, kind, mode, rdev, owner)
    }

    fn getxattr(&self, path: &RelPath, name: &str) -> StoreResult<Vec<u8>> {
        self.do_getxattr(path, name)
    }

    fn listxattr(&self, path: &RelPath) -> StoreResult<Vec<String>> {
        self.do_listxattr(path)
    }

    fn setxattr(&self, path: &RelPath, name: &str, value: &[u8], flags: u32) -> StoreResult<()> {
        self.do_setxattr(path, name, value, flags)
    }

    fn removexattr(&self, path: &RelPath, name: &str) -> StoreResult<()> {
        self.do_removexattr(path, name)
    }

    fn confine(&self, dir: &RelPath) -> StoreResult<Arc<dyn Store>> {
        let root = self.root.subdir(dir)?;
        let st = sys::fstat(root.fd()).map_err(io_err(dir))?;
        Ok(Arc::new(LocalStore {
            export_id: meta::subdir_export_id(&self.export_id, &st),
            root,
            dir_syncs: Arc::clone(&self.dir_syncs),
            // Watching is done through the whole export's store only.
            dir: self.dir.join(dir.as_str()),
        }))
    }

    fn statfs(&self) -> StoreResult<StatFs> {
        let v =
            sys::fstatvfs(self.root.fd()).map_err(|e| WireError::from_io(&e, RelPath::root()))?;
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(StatFs {
            blocks: v.f_blocks,
            bfree: v.f_bfree,
            bavail: v.f_bavail,
            files: v.f_files,
            ffree: v.f_ffree,
            bsize: small(v.f_bsize),
            namelen: small(v.f_namemax),
            frsize: small(v.f_frsize),
        })
    }
}
