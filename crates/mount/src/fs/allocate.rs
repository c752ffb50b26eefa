//! Space of cache files: `fallocate(2)` on the mount, applied to the cache
//! file (and so uploaded at close, its holes as holes), and the count of
//! what a cache file really stores after a change, which the cache's
//! limit holds (a sparse file counts its allocation, not its size).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use log::debug;
use rfmount_client::Remote;
use rfmount_proto::RelPath;

use super::RemoteFs;
use crate::error::{FsError, FsResult};

const KEEP_SIZE: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH_HOLE: i32 = libc::FALLOC_FL_PUNCH_HOLE;
const ZERO_RANGE: i32 = libc::FALLOC_FL_ZERO_RANGE;

/// What one `fallocate` mode does to the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Mode 0 or `KEEP_SIZE`: space is reserved, the bytes stay as they
    /// are (zeros past the end); mode 0 may grow the file.
    Reserve { keep_size: bool },
    /// `PUNCH_HOLE | KEEP_SIZE`: the range becomes a hole.
    Punch,
    /// `ZERO_RANGE` (`| KEEP_SIZE`): the range reads as zeros.
    Zero { keep_size: bool },
}

/// The modes the mount supports; anything else (`COLLAPSE_RANGE`,
/// `INSERT_RANGE`, `UNSHARE_RANGE`, a punch without `KEEP_SIZE`, which
/// Linux refuses too) is `EOPNOTSUPP`.
fn effect(mode: i32) -> Option<Effect> {
    match mode {
        0 => Some(Effect::Reserve { keep_size: false }),
        KEEP_SIZE => Some(Effect::Reserve { keep_size: true }),
        m if m == PUNCH_HOLE | KEEP_SIZE => Some(Effect::Punch),
        ZERO_RANGE => Some(Effect::Zero { keep_size: false }),
        m if m == ZERO_RANGE | KEEP_SIZE => Some(Effect::Zero { keep_size: true }),
        _ => None,
    }
}

fn eopnotsupp() -> FsError {
    FsError::Errno {
        errno: libc::EOPNOTSUPP,
        what: "fallocate mode not supported (0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE are)",
    }
}

impl<R: Remote> RemoteFs<R> {
    /// `fallocate(2)` on open file `fh`: applied to its cache file, which
    /// becomes dirty and is uploaded at close like any write.
    ///
    /// # Errors
    /// `EOPNOTSUPP` for other modes, `EBADF` for a read-only handle,
    /// `EINVAL` for a zero length, `ENOSPC` when the cache cannot hold
    /// the reservation, the cache file's own error.
    pub fn fallocate(&self, fh: u64, offset: u64, len: u64, mode: i32) -> FsResult<()> {
        let effect = effect(mode).ok_or_else(eopnotsupp)?;
        if len == 0 {
            return Err(FsError::Errno {
                errno: libc::EINVAL,
                what: "fallocate of zero bytes",
            });
        }
        let end = offset.checked_add(len).ok_or(FsError::Errno {
            errno: libc::EFBIG,
            what: "fallocate past the largest file size",
        })?;
        let h = self.handle(fh)?;
        if !h.writable() {
            return Err(FsError::Errno {
                errno: libc::EBADF,
                what: "fallocate on a descriptor not open for writing",
            });
        }
        self.check_writable()?;
        let path = self.inodes.lock().path(h.ino());
        let state = h.state();
        let _changing = state.seal.read();
        if let Some(path) = &path {
            self.cache
                .note_change(path)
                .map_err(|e| FsError::cache(format!("recording a fallocate of {path}"), e))?;
            if !matches!(effect, Effect::Punch) {
                self.cache
                    .reserve_write(path, offset, len)
                    .map_err(|e| FsError::cache(format!("cache full of unsent data: {path}"), e))?;
            }
        }
        let file = h.file();
        let before = file
            .metadata()
            .map_err(|e| FsError::cache("reading the cached file's size", e))?
            .len();
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(FsError::Errno {
                errno: libc::EFBIG,
                what: "fallocate past the largest file size",
            });
        };
        // SAFETY: fallocate on a descriptor `file` keeps open; no memory.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, n) } != 0 {
            let e = std::io::Error::last_os_error();
            if let Some(path) = &path {
                self.note_stored(path, &file);
            }
            return Err(FsError::cache("fallocate on the cached file", e));
        }
        debug!("fallocate {effect:?} {offset}+{len} of {path:?}");
        if let Some(path) = &path {
            // What an upload on the fetched version must send: the bytes
            // that now read differently (the cache's change record).
            match effect {
                Effect::Reserve { keep_size } => {
                    if !keep_size && end > before {
                        self.cache.note_truncated(path, end);
                    }
                }
                Effect::Punch => {
                    let stop = end.min(before);
                    if stop > offset {
                        self.cache.note_written(path, offset, stop - offset);
                    }
                }
                Effect::Zero { keep_size } => {
                    let stop = if keep_size { end.min(before) } else { end };
                    if stop > offset {
                        self.cache.note_written(path, offset, stop - offset);
                    }
                }
            }
            self.note_stored(path, &file);
        }
        drop(file);
        state.write_gen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// `file`, the cache file of `path`, just changed: the cache counts what
    /// it stores now.
    pub(super) fn note_stored(&self, path: &RelPath, file: &File) {
        match file.metadata() {
            Ok(md) => self.cache.note_stored(path, &md),
            Err(e) => debug!("{path}: measuring the cached file: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_effects_and_others_are_refused() {
        assert_eq!(effect(0), Some(Effect::Reserve { keep_size: false }));
        assert_eq!(effect(KEEP_SIZE), Some(Effect::Reserve { keep_size: true }));
        assert_eq!(effect(PUNCH_HOLE | KEEP_SIZE), Some(Effect::Punch));
        assert_eq!(effect(ZERO_RANGE), Some(Effect::Zero { keep_size: false }));
        assert_eq!(
            effect(ZERO_RANGE | KEEP_SIZE),
            Some(Effect::Zero { keep_size: true })
        );
        assert_eq!(effect(PUNCH_HOLE), None);
        assert_eq!(effect(libc::FALLOC_FL_COLLAPSE_RANGE), None);
        assert_eq!(effect(libc::FALLOC_FL_INSERT_RANGE), None);
        assert_eq!(effect(0x40), None);
    }
}
