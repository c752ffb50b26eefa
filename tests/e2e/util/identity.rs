//! Tests about owners need root: to run rfserve and commands as other users
//! (`setpriv`) and to give files away.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

/// The user `nobody`, whom these tests act as.
pub const NOBODY: u32 = 65534;

/// True when the tests run as root; outside CI a test that needs root
/// notes why it is skipped, in CI it fails.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(!in_ci(), "{test}: CI must run the owner tests as root");
    eprintln!("note: {test} skipped: needs root");
    false
}

/// Opens `dir` and every directory above it (up to `/`) to traversal by
/// other users, as temporary directories are private by default.
pub fn let_others_in(dir: &Path) {
    let mut p = Some(dir);
    while let Some(d) = p {
        if d == Path::new("/") {
            break;
        }
        if let Ok(md) = fs::metadata(d) {
            let mode = md.permissions().mode();
            if mode & 0o055 != 0o055 {
                fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o055)).unwrap();
            }
        }
        p = d.parent();
    }
}

/// `setpriv --reuid UID --regid GID --clear-groups bash -c SCRIPT`.
pub fn as_user(uid: u32, gid: u32, dir: &Path, script: &str) -> TestCommand {
    let mut c = TestCommand::new("setpriv");
    c.args([
        "--reuid",
        &uid.to_string(),
        "--regid",
        &gid.to_string(),
        "--clear-groups",
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
    ])
    .current_dir(dir);
    c
}
