//! Symlinks, hard links, device/FIFO/socket nodes, and owners of new
//! objects: the namespace operations beyond files and directories.
//!
//! Every one resolves the *parent* beneath the root and acts on the final
//! name with an `*at` call that never follows it, so a symlink is created,
//! read, linked or changed itself and is never a way out of the export.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rfmount_proto::{ErrorCode, FileKind, Meta, Owner, RelPath, WireError};

use super::{LocalStore, meta, sys};
use crate::store::StoreResult;

/// Longest symlink target Linux stores (`PATH_MAX` less the NUL).
const MAX_TARGET: usize = libc::PATH_MAX as usize - 1;

/// The owner a new object in directory `dir` gets: the caller's, when this
/// server may give files away, with the group of a setgid directory as the
/// kernel would choose it; `None` leaves what the create made.
pub(super) fn new_owner(dir: BorrowedFd<'_>, owner: Option<Owner>) -> io::Result<Option<Owner>> {
    let Some(owner) = owner else {
        return Ok(None);
    };
    if !sys::can_chown() {
        return Ok(None);
    }
    let st = sys::fstat(dir)?;
    let gid = if st.st_mode & libc::S_ISGID != 0 {
        st.st_gid
    } else {
        owner.gid
    };
    Ok(Some(Owner {
        uid: owner.uid,
        gid,
    }))
}

/// Opens `name` in `dir` itself (`O_PATH | O_NOFOLLOW`): a handle on the
/// object, symlink or not, that no later rename can redirect.
pub(super) fn open_self(dir: BorrowedFd<'_>, name: &CString) -> io::Result<OwnedFd> {
    sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
}

/// Gives a just-created `name` in `dir` its owner, and reads its attributes.
fn finish_create(
    dir: BorrowedFd<'_>,
    name: &CString,
    path: &RelPath,
    owner: Option<Owner>,
    mode: Option<u32>,
) -> StoreResult<Meta> {
    let io_err = |e: io::Error| WireError::from_io(&e, path);
    let obj = open_self(dir, name).map_err(io_err)?;
    if let Some(o) = new_owner(dir, owner).map_err(io_err)? {
        sys::chown_fd(obj.as_fd(), Some(o.uid), Some(o.gid)).map_err(io_err)?;
    }
    // The create applied the server's umask; the client asked for exact
    // bits (set after the chown, which may clear setuid/setgid).
    if let Some(mode) = mode {
        sys::chmod_opath(obj.as_fd(), mode).map_err(io_err)?;
    }
    let st = sys::fstat(obj.as_fd()).map_err(io_err)?;
    Ok(meta::meta_at(dir, name, &st))
}

fn type_bits(kind: FileKind, path: &RelPath) -> StoreResult<libc::mode_t> {
    Ok(match kind {
        FileKind::Fifo => libc::S_IFIFO,
        FileKind::Socket => libc::S_IFSOCK,
        FileKind::CharDev => libc::S_IFCHR,
        FileKind::BlockDev => libc::S_IFBLK,
        _ => {
            return Err(WireError::new(
                ErrorCode::Invalid,
                format!("{path}: MKNOD makes FIFOs, sockets and devices, not {kind:?}"),
            ));
        }
    })
}

impl LocalStore {
    pub(super) fn do_symlink(
        &self,
        path: &RelPath,
        target: &str,
        owner: Option<Owner>,
    ) -> StoreResult<Meta> {
        if target.is_empty() {
            return Err(WireError::new(
                ErrorCode::NotFound,
                format!("{path}: empty symlink target"),
            ));
        }
        if target.len() > MAX_TARGET {
            return Err(WireError::new(
                ErrorCode::NameTooLong,
                format!("{path}: symlink target longer than {MAX_TARGET} bytes"),
            ));
        }
        let c_target = CString::new(target).map_err(|_| {
            WireError::new(
                ErrorCode::Invalid,
                format!("{path}: symlink target contains a NUL byte"),
            )
        })?;
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        sys::symlinkat(&c_target, dir.as_fd(), &name).map_err(|e| WireError::from_io(&e, path))?;
        finish_create(dir.as_fd(), &name, path, owner, None)
    }

    pub(super) fn do_readlink(&self, path: &RelPath) -> StoreResult<String> {
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        let bytes = sys::readlinkat(dir.as_fd(), &name).map_err(|e| match e.raw_os_error() {
            // readlink of a non-link is EINVAL, which is what callers expect.
            Some(libc::EINVAL) => {
                WireError::new(ErrorCode::Invalid, format!("{path}: not a symbolic link"))
            }
            _ => WireError::from_io(&e, path),
        })?;
        String::from_utf8(bytes).map_err(|_| {
            WireError::new(
                ErrorCode::Invalid,
                format!("{path}: symlink target is not valid UTF-8"),
            )
        })
    }

    pub(super) fn do_link(&self, from: &RelPath, to: &RelPath) -> StoreResult<Meta> {
        let (from_dir, from_name) = self.root.parent(from, libc::O_PATH)?;
        let (to_dir, to_name) = self.root.parent(to, libc::O_PATH)?;
        sys::linkat(from_dir.as_fd(), &from_name, to_dir.as_fd(), &to_name)
            .map_err(|e| WireError::from_io(&e, format!("{from} -> {to}")))?;
        let st = sys::lstatat(to_dir.as_fd(), &to_name).map_err(|e| WireError::from_io(&e, to))?;
        Ok(meta::meta_at(to_dir.as_fd(), &to_name, &st))
    }

    pub(super) fn do_mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> StoreResult<Meta> {
        let bits = type_bits(kind, path)?;
        let rdev = if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
            rdev
        } else {
            0
        };
        let (dir, name) = self.root.parent(path, libc::O_PATH)?;
        sys::mknodat(dir.as_fd(), &name, bits | (mode & 0o7777), rdev)
            .map_err(|e| WireError::from_io(&e, path))?;
        finish_create(dir.as_fd(), &name, path, owner, Some(mode))
    }
}
