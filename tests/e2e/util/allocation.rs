//! Space and traffic of sparse files: what a file stores on disk, where its
//! data lies, and the biggest file of a mount's cache (what rfserve sent is
//! `traffic::bytes_out`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes `path` takes on disk (`st_blocks` × 512).
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .blocks()
        * 512
}

/// The first data byte of `path` at or after `from` (`SEEK_DATA`); `None`
/// when only a hole follows.
pub fn next_data(path: &Path, from: u64) -> Option<u64> {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: lseek on a descriptor `f` keeps open; no memory involved.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, libc::SEEK_DATA) };
    (r >= 0).then_some(r as u64)
}

/// The largest regular file (by apparent size) under `dir`: in a mount's
/// cache dir, the data file of the one big file a test read.
pub fn largest_file(dir: &Path) -> Option<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                todo.push(e.path());
            } else if md.is_file() && best.as_ref().is_none_or(|(s, _)| md.len() > *s) {
                best = Some((md.len(), e.path()));
            }
        }
    }
    best.map(|(_, p)| p)
}
