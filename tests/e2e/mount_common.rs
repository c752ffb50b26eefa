//! Helpers shared by the FUSE mount tests (`mount_*.rs`): shell commands
//! run in a mount with both logs in their failure report, file times and
//! modes on the server side, and process facts from `/proc`.

#![allow(dead_code)] // Not every mount module uses every helper.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::util::*;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// A path as an argument (temporary paths are always UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// `p` single-quoted for a bash script.
pub fn q(p: &Path) -> String {
    format!("'{}'", s(p).replace('\'', "'\\''"))
}

/// `bash -euo pipefail -c SCRIPT` run inside the mount point; a failure
/// report carries rfmount's and rfserve's logs.
pub fn sh(m: &Mount, srv: &Server, script: &str) -> TestCommand {
    let mut c = TestCommand::sh(script);
    c.current_dir(m.path())
        .with_log("rfmount log", m.log_path())
        .with_server(srv);
    c
}

/// A real tool run inside the mount point (`mount.cmd`) whose failure
/// report carries rfserve's log too.
pub fn tool(m: &Mount, srv: &Server, program: &str) -> TestCommand {
    let mut c = m.cmd(program);
    c.with_server(srv);
    c
}

/// Sets the modification time of `path` to `secs` after the epoch.
pub fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::options()
        .write(!path.is_dir())
        .read(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Modification time of `path` in whole seconds.
pub fn mtime_secs(path: &Path) -> i64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .mtime()
}

/// Permission bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Size of `path` in bytes.
pub fn size_of(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .len()
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A field of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`), if readable.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// True while `pid` exists and is not a zombie (an orphan whose parent has
/// not reaped it yet has exited all the same).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// PIDs of live processes whose command line contains every one of
/// `needles` as a separate argument (exact match).
pub fn pids_with_args(needles: &[&str]) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let all = needles.iter().all(|n| args.contains(&n.as_bytes()));
        if all && process_alive(pid) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Sends `sig` to one process we started.
pub fn signal(pid: u32, sig: i32) {
    assert!(pid > 0, "no process to signal");
    // SAFETY: plain syscall with a PID this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits until `path` holds exactly the bytes of `expected` (both are
/// compared whole; for large files use [`wait_same_file`]).
pub fn wait_content(path: &Path, expected: &[u8], timeout: Duration) -> bool {
    wait_for(timeout, || {
        (fs::read(path).ok().as_deref() == Some(expected)).then_some(())
    })
    .is_some()
}

/// Waits until `actual` is byte-identical to `expected`; `Err` with the last
/// difference if it never is. Polls every 250 ms (the files may be large).
pub fn wait_same_file(expected: &Path, actual: &Path, timeout: Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        // Cheap size check first: the server renames complete files into
        // place, so a right-sized file is worth a full comparison.
        let last = match (fs::metadata(expected), fs::metadata(actual)) {
            (Ok(a), Ok(b)) if a.len() == b.len() => match compare_files(expected, actual) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
            (Ok(a), Ok(b)) => format!("sizes {} and {}", a.len(), b.len()),
            (_, Err(e)) => format!("{}: {e}", actual.display()),
            (Err(e), _) => format!("{}: {e}", expected.display()),
        };
        if std::time::Instant::now() >= deadline {
            return Err(last);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether this kernel has FUSE passthrough (6.9 and later) for root.
pub fn kernel_has_passthrough() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && (major, minor) >= (6, 9)
}
