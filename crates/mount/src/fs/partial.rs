//! Uploads that send less than the whole file ([`Remote::put_layout`]):
//!
//! - *partial*: a cached file fetched as version V, changed in a few
//!   ranges (tracked in the cache's index, [`crate::data_cache::Changes`]),
//!   is sent as those ranges on top of V; the server builds the new
//!   version from its copy of V and checks the whole-file checksum;
//! - *sparse*: a file with holes is sent as its data segments only
//!   (`SEEK_DATA`/`SEEK_HOLE` on the cache file); the server leaves the
//!   holes unallocated.
//!
//! A partial upload whose base is no longer the server's file (`Conflict`)
//! or whose rebuilt content does not match (`Io`: the base changed in
//! place, or the file changed while being read) falls back to sending the
//! whole file, so the outcome is the same as a whole upload's.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use log::debug;
use rfmount_client::{PutOptions, Remote, Uploaded};
use rfmount_proto::{ErrorCode, Extent, PutLayout, RelPath};

use super::RemoteFs;
use crate::data_cache::EntryInfo;
use crate::error::{FsError, FsResult};

/// The data segments of `file` (its first `size` bytes): everything but
/// its holes. Leaves the file positioned at its start.
pub(crate) fn data_segments(file: &File, size: u64) -> io::Result<Vec<Extent>> {
    let fd = file.as_raw_fd();
    let seek = |pos: u64, whence| -> io::Result<Option<u64>> {
        // SAFETY: lseek on a descriptor that `file` keeps open.
        let r = unsafe { libc::lseek(fd, pos as libc::off_t, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENXIO) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        Ok(Some(r as u64))
    };
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let Some(data) = seek(pos, libc::SEEK_DATA)? else {
            break;
        };
        if data >= size {
            break;
        }
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        out.push(Extent {
            offset: data,
            len: hole - data,
        });
        pos = hole;
    }
    // SEEK_DATA/SEEK_HOLE move the file position; a whole upload reads
    // the same descriptor from its start afterwards.
    // SAFETY: lseek on a descriptor that `file` keeps open.
    if unsafe { libc::lseek(fd, 0, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

impl<R: Remote> RemoteFs<R> {
    /// Uploads `path` from `file` (`size` bytes) sending less than all of
    /// it, when that is possible; `None` when a whole upload is what it
    /// takes (a dense file with no known base).
    pub(super) fn put_by_layout(
        &self,
        path: &RelPath,
        file: &File,
        size: u64,
        entry: &EntryInfo,
        opts: PutOptions,
    ) -> FsResult<Option<Uploaded>> {
        let segments = data_segments(file, size)
            .map_err(|e| FsError::cache(format!("finding the holes of {path}"), e))?;
        let data: u64 = segments.iter().map(|e| e.len).sum();
        if let (Some(base), Some(changes)) = (entry.version, entry.changes.as_ref()) {
            let layout = PutLayout {
                base: Some(base),
                extents: changes.extents(size),
            };
            let sending: u64 = layout.extents.iter().map(|e| e.len).sum();
            // Everything changed (a file written from scratch): the whole
            // upload sends as much, and shows its progress in the status.
            // A file that stores no more than the changes (a mostly empty
            // one) goes as its data alone, its holes as holes: a change
            // sent on a base travels as bytes, even where it punched one.
            if sending < size && sending < data {
                match self
                    .remote
                    .put_layout(path, file, size, layout, opts.clone())
                {
                    Ok(meta) => {
                        debug!("{path}: partial upload of {sending} of {size} bytes");
                        return Ok(Some(meta));
                    }
                    Err(e) if matches!(e.code(), Some(ErrorCode::Conflict | ErrorCode::Io)) => {
                        debug!("{path}: partial upload refused ({e}); sending it whole");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if data == size {
            return Ok(None);
        }
        let layout = PutLayout {
            base: None,
            extents: segments,
        };
        debug!("{path}: sparse upload of {data} of {size} bytes");
        Ok(Some(
            self.remote.put_layout(path, file, size, layout, opts)?,
        ))
    }
}
