//! Watching rfserve's uploads from outside: an upload in progress is an
//! unnamed `O_TMPFILE` file, visible only among the server's open
//! descriptors, and the only names the server ever makes itself start with
//! [`UPLOAD_TEMP_PREFIX`].

use std::fs;
use std::path::Path;

/// The prefix of rfserve's staging names and fallback temporaries; none may
/// be left behind.
pub const UPLOAD_TEMP_PREFIX: &str = ".rfserve-upload-";

/// True when process `pid` holds an unnamed (`O_TMPFILE`) file open in a
/// directory at or below `root`: rfserve receiving an upload there. The
/// kernel shows such a descriptor as `DIR/#INODE (deleted)`.
pub fn server_has_open_upload(pid: u32, root: &Path) -> bool {
    let Ok(root) = root.canonicalize() else {
        return false;
    };
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        let Ok(target) = fs::read_link(fd.path()) else {
            return false;
        };
        let t = target.to_string_lossy();
        let Some(live) = t.strip_suffix(" (deleted)") else {
            return false;
        };
        let live = Path::new(live);
        live.starts_with(&root)
            && live
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('#'))
    })
}
