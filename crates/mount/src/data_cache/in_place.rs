//! Fetched content put in place by copying it into the cache file that is
//! there, rather than by renaming the new file over it: for a cache file
//! the kernel reads itself (FUSE passthrough), which no other file may
//! replace while it is open.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use rfmount_proto::{RelPath, Version};

use super::changes::Changes;
use super::files::{key_of, open_data};
use super::index::EntryInfo;
use super::{DataCache, Fetch, allocated};

impl DataCache {
    /// As [`DataCache::finish_fetch`], but the content is copied into the
    /// cache file of `path`, which must be the file `backing` has open.
    /// Readers of it see the new bytes as they are copied.
    ///
    /// # Errors
    /// The cache file is not `backing`'s any more, or the copy failed.
    pub fn finish_fetch_into(
        &self,
        path: &RelPath,
        mut fetch: Fetch<'_>,
        version: Version,
        size: u64,
        backing: &File,
    ) -> io::Result<()> {
        let data = self.data_path(path);
        let dest = open_data(&data, true)?;
        let (a, b) = (dest.metadata()?, backing.metadata()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(io::Error::other(
                "the cache file was replaced under its passthrough readers",
            ));
        }
        let tmp = fetch
            .tmp
            .take()
            .ok_or_else(|| io::Error::other("fetch already finished"))?;
        copy_all(tmp.as_file(), &dest, size)?;
        dest.set_len(size)?;
        let info = EntryInfo {
            version: Some(version),
            dirty: false,
            writing: false,
            size,
            mode: None,
            mtime: None,
            changes: Some(Changes::clean(size)),
            xattrs: Vec::new(),
            unsynced: None,
        };
        let stored = allocated(&dest.metadata()?);
        let mut ix = self.index.lock();
        ix.sub_fetching(fetch.reserved);
        fetch.reserved = 0;
        ix.take(path);
        ix.record(path, key_of(path), info, false)?;
        ix.set_alloc(path, stored);
        drop(ix);
        drop(tmp);
        self.evict();
        Ok(())
    }
}

/// Copies the first `len` bytes of `from` over the start of `to`, in the
/// kernel (no buffer here, however big the file).
fn copy_all(from: &File, to: &File, len: u64) -> io::Result<()> {
    let mut done: u64 = 0;
    while done < len {
        let mut off_in = libc::loff_t::try_from(done).map_err(|_| efbig())?;
        let mut off_out = off_in;
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        // SAFETY: both descriptors are open for the call; the offsets are
        // locals the kernel updates.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &raw mut off_in,
                to.as_raw_fd(),
                &raw mut off_out,
                want,
                0,
            )
        };
        match u64::try_from(n) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "fetched content shorter than its size",
                ));
            }
            Ok(n) => done += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn efbig() -> io::Error {
    io::Error::from_raw_os_error(libc::EFBIG)
}
