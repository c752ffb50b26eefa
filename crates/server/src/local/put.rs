//! An upload in progress: a temporary file next to the target, renamed over
//! it only once complete and durable, unlinked on drop otherwise.
//!
//! The temporary lives in the target's directory so that the final rename is
//! atomic (same filesystem) and inherits the directory's quota; its name
//! starts with [`TEMP_PREFIX`] so listings can hide it while it exists, and
//! it is registered with [`Temps`] for its whole life so that neither
//! listings nor the startup sweep mistake it for one a dead server left.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rfmount_proto::{ErrorCode, Meta, RelPath, SetTime, Timestamp, WireError};

use super::sweep::{LiveTemp, Temps};
use super::{TEMP_PREFIX, meta, sys};
use crate::store::{PendingPut, StoreResult};

/// How often to draw a new random name when one is taken.
const NAME_TRIES: usize = 8;

/// A temporary file being filled; see the module documentation.
pub(super) struct LocalPut {
    dir: OwnedFd,
    /// Unregistered only when this value is gone, after the unlink in
    /// `drop` (fields drop after the body).
    temp: LiveTemp,
    target: CString,
    path: RelPath,
    file: File,
    /// Permission bits of the file being replaced, to keep by default.
    old_mode: Option<u32>,
    committed: bool,
}

fn temp_name() -> io::Result<CString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    sys::cstring(&format!("{TEMP_PREFIX}{hex}.tmp"))
}

impl LocalPut {
    /// Creates the temporary in `dir` (the target's parent, opened for
    /// reading so it can be fsynced), if `size` bytes fit on its filesystem.
    pub(super) fn create(
        temps: &Arc<Temps>,
        dir: OwnedFd,
        target: CString,
        path: &RelPath,
        size: u64,
    ) -> StoreResult<LocalPut> {
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        let old_mode = match sys::lstatat(dir.as_fd(), &target) {
            Ok(st) if meta::kind_of(&st) == rfmount_proto::FileKind::Dir => {
                return Err(WireError::new(
                    ErrorCode::IsDir,
                    format!("{path}: is a directory"),
                ));
            }
            Ok(st) if meta::kind_of(&st) == rfmount_proto::FileKind::File => {
                Some(st.st_mode & 0o7777)
            }
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(io_err(e)),
        };
        let mut tries = 0;
        let (temp, fd) = loop {
            // Registered before it exists, so no sweep can see it unregistered.
            let temp = temps.hold(temp_name().map_err(io_err)?);
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            match sys::openat(dir.as_fd(), temp.name(), flags, 0o600) {
                Ok(fd) => break (temp, fd),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < NAME_TRIES => {
                    tries += 1;
                }
                Err(e) => return Err(io_err(e)),
            }
        };
        let put = LocalPut {
            dir,
            temp,
            target,
            path: path.clone(),
            file: File::from(fd),
            old_mode,
            committed: false,
        };
        // Nothing is reserved: only data that has arrived takes space, so
        // an upload that trickles in cannot make other uploads fail with
        // ENOSPC. One that cannot fit in what is free now is still refused
        // before the client streams it.
        if libc::off_t::try_from(size).is_err() {
            return Err(io_err(io::Error::from_raw_os_error(libc::EFBIG)));
        }
        if let Ok(free) = sys::free_bytes(put.dir.as_fd()) {
            if size > free {
                return Err(WireError::new(
                    ErrorCode::NoSpace,
                    format!(
                        "{path}: {size} bytes do not fit in the {free} bytes free on the server"
                    ),
                ));
            }
        }
        Ok(put)
    }

    fn finish(&mut self, mode: Option<u32>, mtime: Option<Timestamp>) -> StoreResult<Meta> {
        let path = &self.path;
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        let mode = mode.or(self.old_mode).unwrap_or(0o644);
        sys::fchmod(self.file.as_fd(), mode).map_err(io_err)?;
        if let Some(t) = mtime {
            sys::futimens(self.file.as_fd(), None, Some(SetTime::At(t))).map_err(io_err)?;
        }
        self.file.sync_all().map_err(io_err)?;
        sys::renameat(
            self.dir.as_fd(),
            self.temp.name(),
            self.dir.as_fd(),
            &self.target,
        )
        .map_err(io_err)?;
        self.committed = true;
        // Without this the rename itself may be lost in a crash, and the
        // client would have been told its data is safe.
        File::from(self.dir.try_clone().map_err(io_err)?)
            .sync_all()
            .map_err(io_err)?;
        let st = sys::fstat(self.file.as_fd()).map_err(io_err)?;
        Ok(meta::meta_of(&st))
    }
}

impl Write for LocalPut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl PendingPut for LocalPut {
    fn commit(
        mut self: Box<Self>,
        mode: Option<u32>,
        mtime: Option<Timestamp>,
    ) -> StoreResult<Meta> {
        self.finish(mode, mtime)
    }
}

impl Drop for LocalPut {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Err(e) = sys::unlinkat(self.dir.as_fd(), self.temp.name(), 0) {
            log::warn!(
                "{}: cannot remove temporary upload file {:?}: {e}",
                self.path,
                self.temp.name()
            );
        }
    }
}
