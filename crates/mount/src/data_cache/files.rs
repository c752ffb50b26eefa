//! Where the cached content lives on disk: `<root>/<k0k1>/<key>`, `key`
//! being a hash of the path (the index is `<root>/index.journal`). Directories are created on demand, and only when a write
//! into them fails for want of one, so the common case costs no `mkdir`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rfmount_proto::RelPath;
use tempfile::NamedTempFile;

/// The file layout of one export's cache.
pub(super) struct Layout {
    pub root: PathBuf,
    /// `<root>/lock`, held (`flock`) while this process uses the cache: two
    /// processes appending to one index would lose each other's records.
    lock: File,
}

pub(super) fn key_of(path: &RelPath) -> String {
    let h = blake3::hash(path.as_str().as_bytes());
    h.to_hex()[..32].to_owned()
}

fn mkdir_p(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Runs `op`, creating `dir` and retrying once if `op` found it missing.
fn in_dir<T>(dir: &Path, op: impl Fn() -> io::Result<T>) -> io::Result<T> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            mkdir_p(dir)?;
            op()
        }
        r => r,
    }
}

impl Layout {
    pub fn open(root: PathBuf) -> io::Result<Layout> {
        mkdir_p(&root)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join("lock"))?;
        // SAFETY: flock on a descriptor this function owns; no memory involved.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is in use by another rfmount process (of the same export); \
                         give this mount its own --cache-dir",
                        root.display()
                    ),
                ));
            }
            return Err(e);
        }
        Ok(Layout { root, lock })
    }

    /// Lets another process take the cache (see `DataCache::release`).
    pub fn unlock(&self) {
        // SAFETY: flock on a descriptor this struct owns; no memory involved.
        unsafe { libc::flock(self.lock.as_raw_fd(), libc::LOCK_UN) };
    }

    pub fn data_of_key(&self, key: &str) -> PathBuf {
        self.root.join(&key[..2]).join(key)
    }

    pub fn data(&self, path: &RelPath) -> PathBuf {
        self.data_of_key(&key_of(path))
    }

    /// A temporary file beside `path`'s data, for a fetch.
    pub fn temp_for(&self, path: &RelPath) -> io::Result<NamedTempFile> {
        let data = self.data(path);
        let dir = data.parent().unwrap_or(&self.root);
        in_dir(dir, || {
            tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)
        })
    }

    /// Creates (or empties) `path`'s data file.
    pub fn create_empty(&self, path: &RelPath) -> io::Result<File> {
        let data = self.data(path);
        let dir = data.parent().unwrap_or(&self.root);
        // Readable too: a create serves its handle from this descriptor
        // instead of opening the file a second time.
        in_dir(dir, || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&data)
        })
    }

    /// Moves the data of `from` to `to`'s place.
    pub fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (src, dst) = (self.data(from), self.data(to));
        let dir = dst.parent().unwrap_or(&self.root);
        in_dir(dir, || fs::rename(&src, &dst))
    }

    /// Deletes the data of `key` (a missing file is fine).
    pub fn remove_key(&self, key: &str) {
        let _ = fs::remove_file(self.data_of_key(key));
    }

    /// Flushes `path`'s data to stable storage.
    pub fn sync_data(&self, path: &RelPath) -> io::Result<()> {
        File::open(self.data(path))?.sync_data()
    }
}

/// Opens a cache file for a handle.
pub(crate) fn open_data(path: &Path, writable: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(writable).open(path)
}
