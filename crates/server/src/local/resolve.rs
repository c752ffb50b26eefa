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
    ///
    /// A path too long for one system call is resolved in pieces of whole
    /// components, each beneath the directory the previous piece opened
    /// (which is itself beneath the root). A symlink is then confined to its
    /// piece's directory: stricter than one lookup would be, never looser.
    pub(super) fn open(&self, path: &RelPath, flags: libc::c_int) -> StoreResult<OwnedFd> {
        if path.is_root() {
            return sys::openat2(self.fd(), c".", flags, sys::BENEATH)
                .map_err(|e| resolve_error(&e, path));
        }
        let s = path.as_str();
        if s.len() < PIECE {
            let c = sys::cstring(s).map_err(|e| WireError::from_io(&e, path))?;
            return sys::openat2(self.fd(), &c, flags, sys::BENEATH)
                .map_err(|e| resolve_error(&e, path));
        }
        let pieces = pieces(s);
        let mut dir: Option<OwnedFd> = None;
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let f = if last {
                flags
            } else {
                libc::O_PATH | libc::O_DIRECTORY
            };
            let c = sys::cstring(piece).map_err(|e| WireError::from_io(&e, path))?;
            let base = dir.as_ref().map_or(self.fd(), AsFd::as_fd);
            let next =
                sys::openat2(base, &c, f, sys::BENEATH).map_err(|e| resolve_error(&e, path))?;
            dir = Some(next);
        }
        dir.ok_or_else(|| WireError::new(ErrorCode::Invalid, format!("{path}: empty path")))
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

/// Longest piece handed to one `openat2` (below `PATH_MAX`).
const PIECE: usize = 4000;

/// Splits a long relative path into pieces of whole components, each
/// shorter than [`PIECE`] (a component is at most 255 bytes).
fn pieces(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_slash = None;
    for (i, b) in s.bytes().enumerate() {
        if b == b'/' {
            if i - start >= PIECE {
                if let Some(cut) = last_slash {
                    out.push(&s[start..cut]);
                    start = cut + 1;
                }
            }
            last_slash = Some(i);
        }
    }
    if s.len() - start >= PIECE {
        if let Some(cut) = last_slash.filter(|&c| c > start) {
            out.push(&s[start..cut]);
            start = cut + 1;
        }
    }
    out.push(&s[start..]);
    out
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

#[cfg(test)]
mod piece_tests {
    use super::{PIECE, pieces};

    #[test]
    fn long_paths_split_on_component_boundaries_into_short_pieces() {
        let name = "n".repeat(250);
        let path = vec![name.as_str(); 40].join("/");
        let ps = pieces(&path);
        assert!(ps.len() > 1);
        assert!(ps.iter().all(|p| p.len() < PIECE && !p.is_empty()));
        assert_eq!(ps.join("/"), path);
        assert_eq!(pieces("a/b"), ["a/b"]);
    }
}
