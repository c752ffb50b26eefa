//! Extended attributes of an object itself, through its `O_PATH |
//! O_NOFOLLOW` handle and `/proc/self/fd`, and their copy onto an upload's
//! new file so that a PUT keeps them.
//!
//! A symlink is refused (`NotSupported`): Linux allows no `user.` attribute
//! on one, and following its `/proc/self/fd` name could lead to whatever it
//! names.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rfmount_proto::{
    ErrorCode, FileKind, RelPath, WireError, XATTR_CREATE, XATTR_REPLACE, XattrValue,
};

use super::{LocalStore, links, meta, sys};
use crate::store::StoreResult;

/// Linux's limit on one value and on a name list (`XATTR_SIZE_MAX`,
/// `XATTR_LIST_MAX`).
const XATTR_MAX: usize = 65_536;

fn cvt_len(r: isize) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

fn proc_path(fd: BorrowedFd<'_>) -> io::Result<CString> {
    sys::cstring(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn get(p: &CStr, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XATTR_MAX];
    // SAFETY: NUL-terminated strings; `buf` is writable for its length.
    let n = cvt_len(unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

fn list(p: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XATTR_MAX];
    // SAFETY: NUL-terminated path; `buf` is writable for its length.
    let n = cvt_len(unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf)
}

fn set(p: &CStr, name: &CStr, value: &[u8], flags: libc::c_int) -> io::Result<()> {
    // SAFETY: NUL-terminated strings; `value` is readable for its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn names_of(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|&b| b == 0).filter(|n| !n.is_empty())
}

/// Copies every extended attribute of the file `from` onto `to` (both real
/// descriptors). Attributes this process may not read or write (another
/// namespace) are skipped: the copy is best effort, like `cp -a`'s.
pub(super) fn copy_all(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
    let (pf, pt) = (proc_path(from)?, proc_path(to)?);
    let raw = match list(&pf) {
        Ok(raw) => raw,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names_of(&raw) {
        let Ok(c) = CString::new(name) else { continue };
        match get(&pf, &c).and_then(|v| set(&pt, &c, &v, 0)) {
            Ok(()) => {}
            Err(e) => log::debug!("not copying xattr {c:?}: {e}"),
        }
    }
    Ok(())
}

/// Checks the attributes an upload carries before any data flows, so that
/// a name no filesystem accepts is refused at once, not after the copy.
pub(super) fn check_carried(path: &RelPath, xattrs: &[XattrValue]) -> StoreResult<()> {
    for x in xattrs {
        LocalStore::xattr_name(path, &x.name)?;
        if x.value.len() > XATTR_MAX {
            return Err(WireError::new(
                ErrorCode::Range,
                format!(
                    "{path}: {}: a value of {} bytes is over the {XATTR_MAX} bytes allowed",
                    x.name,
                    x.value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Gives the file `to` (a real descriptor) the attributes an upload
/// carries, replacing values of the same name. Not best effort, unlike
/// [`copy_all`]: the client was told these are set, so one that cannot be
/// fails the upload, naming it.
pub(super) fn set_carried(
    to: BorrowedFd<'_>,
    path: &RelPath,
    xattrs: &[XattrValue],
) -> StoreResult<()> {
    if xattrs.is_empty() {
        return Ok(());
    }
    let pt = proc_path(to).map_err(|e| WireError::from_io(&e, path))?;
    for x in xattrs {
        let c = LocalStore::xattr_name(path, &x.name)?;
        set(&pt, &c, &x.value, 0)
            .map_err(|e| WireError::from_io(&e, format!("{path}: {}", x.name)))?;
    }
    Ok(())
}

impl LocalStore {
    /// The `/proc/self/fd` name of `path` itself, refusing symlinks; the
    /// handle must live as long as the name is used.
    fn xattr_target(&self, path: &RelPath) -> StoreResult<(std::os::fd::OwnedFd, CString)> {
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        let obj = if path.is_root() {
            self.root.open(path, libc::O_PATH)?
        } else {
            let (dir, name) = self.root.parent(path, libc::O_PATH)?;
            links::open_self(dir.as_fd(), &name).map_err(io_err)?
        };
        let st = sys::fstat(obj.as_fd()).map_err(io_err)?;
        if meta::kind_of(&st) == FileKind::Symlink {
            return Err(WireError::new(
                ErrorCode::NotSupported,
                format!("{path}: extended attributes of a symlink are not supported"),
            ));
        }
        let p = proc_path(obj.as_fd()).map_err(io_err)?;
        Ok((obj, p))
    }

    fn xattr_name(path: &RelPath, name: &str) -> StoreResult<CString> {
        CString::new(name).map_err(|_| {
            WireError::new(
                ErrorCode::Invalid,
                format!("{path}: attribute name contains a NUL byte"),
            )
        })
    }

    pub(super) fn do_getxattr(&self, path: &RelPath, name: &str) -> StoreResult<Vec<u8>> {
        let (_obj, p) = self.xattr_target(path)?;
        let c = Self::xattr_name(path, name)?;
        get(&p, &c).map_err(|e| WireError::from_io(&e, format!("{path}: {name}")))
    }

    pub(super) fn do_listxattr(&self, path: &RelPath) -> StoreResult<Vec<String>> {
        let (_obj, p) = self.xattr_target(path)?;
        let raw = list(&p).map_err(|e| WireError::from_io(&e, path))?;
        Ok(names_of(&raw)
            .filter_map(|n| std::str::from_utf8(n).ok().map(str::to_owned))
            .collect())
    }

    pub(super) fn do_setxattr(
        &self,
        path: &RelPath,
        name: &str,
        value: &[u8],
        flags: u32,
    ) -> StoreResult<()> {
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(WireError::new(
                ErrorCode::Invalid,
                format!("{path}: unknown xattr flags {flags:#x}"),
            ));
        }
        let mut f = 0;
        if flags & XATTR_CREATE != 0 {
            f |= libc::XATTR_CREATE;
        }
        if flags & XATTR_REPLACE != 0 {
            f |= libc::XATTR_REPLACE;
        }
        let (_obj, p) = self.xattr_target(path)?;
        let c = Self::xattr_name(path, name)?;
        set(&p, &c, value, f).map_err(|e| WireError::from_io(&e, format!("{path}: {name}")))
    }

    pub(super) fn do_removexattr(&self, path: &RelPath, name: &str) -> StoreResult<()> {
        let (_obj, p) = self.xattr_target(path)?;
        let c = Self::xattr_name(path, name)?;
        // SAFETY: NUL-terminated strings; no memory of ours is written.
        let r = unsafe { libc::removexattr(p.as_ptr(), c.as_ptr()) };
        if r == 0 {
            Ok(())
        } else {
            Err(WireError::from_io(
                &io::Error::last_os_error(),
                format!("{path}: {name}"),
            ))
        }
    }
}
