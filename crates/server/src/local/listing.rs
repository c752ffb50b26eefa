//! Reading a directory through its descriptor with `readdir(3)`, entry by
//! entry, so that listing a directory of a million files holds one entry at
//! a time (std's `read_dir` wants a path, which would reopen the race that
//! `openat2` closes).

use std::os::fd::OwnedFd;

use rfmount_proto::{DirEntry, RelPath, WireError};

use super::{meta, sys};
use crate::store::StoreResult;

/// An open directory stream, closed on drop.
pub(super) struct DirStream {
    dir: sys::Dir,
    path: RelPath,
    non_utf8: usize,
    done: bool,
}

impl DirStream {
    /// Takes ownership of `fd`, a directory opened for reading.
    pub(super) fn new(fd: OwnedFd, path: &RelPath) -> StoreResult<DirStream> {
        let dir = sys::Dir::new(fd).map_err(|e| WireError::from_io(&e, path))?;
        Ok(DirStream {
            dir,
            path: path.clone(),
            non_utf8: 0,
            done: false,
        })
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
            let ent = match self.dir.next_entry() {
                Some(Ok(ent)) => ent,
                Some(Err(e)) => {
                    self.finish();
                    return Some(Err(WireError::from_io(&e, &self.path)));
                }
                None => {
                    self.finish();
                    return None;
                }
            };
            let bytes = ent.name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let Ok(utf8) = std::str::from_utf8(bytes) else {
                self.non_utf8 += 1;
                continue;
            };
            let utf8 = utf8.to_owned();
            match sys::lstatat(ent.dir, ent.name) {
                Ok(st) => {
                    return Some(Ok(DirEntry {
                        name: utf8,
                        meta: meta::meta_at(ent.dir, ent.name, &st),
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
