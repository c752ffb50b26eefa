//! Reading a directory through its descriptor with `readdir(3)`, entry by
//! entry, so that listing a directory of a million files holds one entry at
//! a time (std's `read_dir` wants a path, which would reopen the race that
//! `openat2` closes).

use std::ffi::CStr;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use std::ptr::NonNull;

use rfmount_proto::{DirEntry, RelPath, WireError};

use super::{TEMP_PREFIX, meta, sys};
use crate::store::StoreResult;

/// An open directory stream, closed on drop.
pub(super) struct DirStream {
    dir: NonNull<libc::DIR>,
    path: RelPath,
    non_utf8: usize,
    done: bool,
}

// SAFETY: the DIR stream is owned exclusively by this value and only used
// through `&mut self`, so it is never touched by two threads at once; glibc's
// DIR carries no thread affinity.
unsafe impl Send for DirStream {}

impl DirStream {
    /// Takes ownership of `fd`, a directory opened for reading.
    pub(super) fn new(fd: OwnedFd, path: &RelPath) -> StoreResult<DirStream> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is a valid directory descriptor that we own; on
        // success the DIR takes it over, on failure we still own it.
        let dir = unsafe { libc::fdopendir(raw) };
        let Some(dir) = NonNull::new(dir) else {
            let e = std::io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `raw` is still ours to close.
            unsafe { libc::close(raw) };
            return Err(WireError::from_io(&e, path));
        };
        Ok(DirStream {
            dir,
            path: path.clone(),
            non_utf8: 0,
            done: false,
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: dirfd of a live DIR is valid for as long as the DIR is,
        // which the borrow of `self` guarantees.
        unsafe { BorrowedFd::borrow_raw(libc::dirfd(self.dir.as_ptr())) }
    }

    fn finish(&mut self) {
        self.done = true;
        if self.non_utf8 > 0 {
            log::warn!(
                "{}: {} entries with names that are not valid UTF-8 were left out of the listing",
                self.path,
                self.non_utf8
            );
        }
    }
}

impl Iterator for DirStream {
    type Item = StoreResult<DirEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // readdir reports errors only through errno, so clear it first.
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `self.dir` is a live stream used by this thread only.
            let ent = unsafe { libc::readdir(self.dir.as_ptr()) };
            if ent.is_null() {
                let e = std::io::Error::last_os_error();
                self.finish();
                if e.raw_os_error().is_some_and(|n| n != 0) {
                    return Some(Err(WireError::from_io(&e, &self.path)));
                }
                return None;
            }
            // SAFETY: readdir returned a valid entry whose d_name is
            // NUL-terminated; it stays valid until the next readdir, and we
            // copy what we need before that.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." || bytes.starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            let Ok(utf8) = std::str::from_utf8(bytes) else {
                self.non_utf8 += 1;
                continue;
            };
            let utf8 = utf8.to_owned();
            match sys::lstatat(self.fd(), name) {
                Ok(st) => {
                    return Some(Ok(DirEntry {
                        name: utf8,
                        meta: meta::meta_of(&st),
                    }));
                }
                // Removed between readdir and stat: it is simply gone.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    self.done = true;
                    let at = self
                        .path
                        .join(&utf8)
                        .map_or_else(|_| self.path.to_string(), |p| p.to_string());
                    return Some(Err(WireError::from_io(&e, at)));
                }
            }
        }
        None
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is live and dropped exactly once; closedir also
        // closes the descriptor it took over.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}
