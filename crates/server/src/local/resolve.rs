//! Confinement: every path is resolved by the kernel beneath one directory
//! descriptor opened at startup, with `openat2(RESOLVE_BENEATH)`.
//!
//! Checking paths in user space and then opening them is racy (a directory
//! swapped for a symlink between check and use escapes the root), and
//! `RelPath` alone cannot see symlinks at all. With `RESOLVE_BENEATH` the
//! kernel refuses, atomically, any lookup that would leave the root, whether
//! through `..` hidden in a symlink target, an absolute symlink or a magic
//! link. Operations on a name (unlink, rename, mkdir, create) resolve the
//! *parent* this way and then act on the final name with the `*at` calls, so
//! a final-component symlink is never followed by them.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rfmount_proto::{ErrorCode, RelPath, WireError};

use super::sys;
use crate::store::StoreResult;

/// The export root, held open for the server's lifetime.
pub(super) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` as the root and proves that `openat2` works here, so an
    /// old kernel or a seccomp filter fails the start instead of every
    /// request.
    pub(super) fn new(path: &Path) -> anyhow::Result<Root> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => anyhow::anyhow!("{}: not a directory", path.display()),
                _ => anyhow::anyhow!("{}: {e}", path.display()),
            })?;
        let root = Root { fd: file.into() };
        match sys::openat2(
            root.fd(),
            c".",
            libc::O_PATH | libc::O_DIRECTORY,
            sys::BENEATH,
        ) {
            Ok(_) => Ok(root),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                anyhow::bail!(
                    "openat2(2) is unavailable ({e}); rfserve needs Linux 5.6 or later to \
                     confine paths safely and will not serve without it"
                )
            }
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        }
    }

    /// A directory beneath this root as a root of its own: every lookup
    /// through the result is confined to that directory.
    pub(super) fn subdir(&self, dir: &RelPath) -> StoreResult<Root> {
        let fd = self.open(dir, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok(Root { fd })
    }

    /// The root's descriptor (`O_PATH`): for `fstat`, `fstatvfs` and as the
    /// base of every lookup.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` beneath the root with `flags`, following symlinks only
    /// while they stay inside.
    pub(super) fn open(&self, path: &RelPath, flags: libc::c_int) -> StoreResult<OwnedFd> {
        let c = if path.is_root() {
            CString::from(c".")
        } else {
            sys::cstring(path.as_str()).map_err(|e| WireError::from_io(&e, path))?
        };
        sys::openat2(self.fd(), &c, flags, sys::BENEATH).map_err(|e| resolve_error(&e, path))
    }

    /// The parent directory of `path` (opened with `flags | O_DIRECTORY`)
    /// and the final name, for the `*at` calls. The root has no parent:
    /// nothing may remove, rename or replace it.
    pub(super) fn parent(
        &self,
        path: &RelPath,
        flags: libc::c_int,
    ) -> StoreResult<(OwnedFd, CString)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(WireError::new(
                ErrorCode::Busy,
                "/: the export root itself cannot be changed",
            ));
        };
        let dir = self.open(&parent, flags | libc::O_DIRECTORY)?;
        let name = sys::cstring(name).map_err(|e| WireError::from_io(&e, path))?;
        Ok((dir, name))
    }
}

/// Maps a lookup failure. EXDEV from `openat2` means the kernel caught an
/// escape (it is never a cross-device error here), which the client must see
/// as a refusal, not as an I/O problem.
fn resolve_error(e: &io::Error, path: &RelPath) -> WireError {
    if e.raw_os_error() == Some(libc::EXDEV) {
        WireError::new(
            ErrorCode::Access,
            format!("{path}: path escapes the export"),
        )
    } else {
        WireError::from_io(e, path)
    }
}
