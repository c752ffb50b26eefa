//! Space and traffic of sparse files: what a file stores on disk, where its
//! data lies, the biggest file of a mount's cache, and what rfserve sent
//! (its per-session "bytes out").

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Server;

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

/// Asks `srv` for its live sessions' counts (SIGUSR1) and returns the sum
/// of their "bytes out": frame bytes the server has written to clients.
pub fn bytes_out(srv: &Server) -> u64 {
    let before = srv.count("live session(s)");
    // SAFETY: plain syscall with a PID this test started.
    let r = unsafe { libc::kill(srv.pid() as libc::pid_t, libc::SIGUSR1) };
    assert_eq!(r, 0, "SIGUSR1 to rfserve");
    let got = srv.wait_count("live session(s)", before + 1, Duration::from_secs(10));
    assert!(got > before, "no session summary in {}", srv.log());
    let lines = super::wait_for(Duration::from_secs(5), || {
        let log = srv.log();
        let (head, rest) = log.rsplit_once(" live session(s)")?;
        let n: usize = head
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let lines: Vec<String> = rest
            .lines()
            .filter(|l| l.contains("session from ") && l.contains(" bytes out"))
            .map(str::to_owned)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("incomplete session summary in {}", srv.log()));
    lines
        .iter()
        .map(|l| {
            let before = l.split(" bytes out").next().unwrap_or("");
            before
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no byte count in {l:?}"))
        })
        .sum()
}
