//! How far a streamed upload has come on the server: the bytes its
//! unnamed temporary file holds, read through `/proc/PID/fd` (the only way
//! to see an `O_TMPFILE` file from outside).

use std::fs;
use std::path::Path;

/// The size of the largest unnamed (`O_TMPFILE`) file that process `pid`
/// holds open at or below `root`: rfserve's upload in progress there.
/// `None` when it holds none.
pub fn server_upload_bytes(pid: u32, root: &Path) -> Option<u64> {
    let root = root.canonicalize().ok()?;
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    fds.filter_map(Result::ok)
        .filter(|fd| {
            let Ok(target) = fs::read_link(fd.path()) else {
                return false;
            };
            let t = target.to_string_lossy();
            t.strip_suffix(" (deleted)").is_some_and(|live| {
                let live = Path::new(live);
                live.starts_with(&root)
                    && live
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('#'))
            })
        })
        // Follows the descriptor to the file itself.
        .filter_map(|fd| fs::metadata(fd.path()).ok().map(|m| m.len()))
        .max()
}
