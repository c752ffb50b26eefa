//! The setup of the lock tests: one export holding one file, a server, two
//! mounts of it (A and B) and a read-write descriptor of the file on each,
//! and `flock(2)` from the test process beside [`super::setlk`].

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::*;

/// Two mounts of one export with the file `name` open read-write on both.
/// Fields drop in order: the descriptors close before their mounts go.
pub struct LockPair {
    pub fa: File,
    pub fb: File,
    pub a: Mount,
    pub b: Mount,
    pub srv: Server,
    pub root: TestDir,
}

impl LockPair {
    /// The export holds `name` with `content`; `server` and `mount_a` are
    /// extra arguments of rfserve and of mount A (B gets none).
    pub fn start(name: &str, content: &str, server: &[&str], mount_a: &[&str]) -> LockPair {
        let root = TestDir::new("root");
        root.write(name, content);
        let srv = Server::start(root.path(), server);
        let a = Mount::start(&srv, mount_a);
        let b = Mount::start(&srv, &[]);
        let fa = open_rw(&a.join(name));
        let fb = open_rw(&b.join(name));
        LockPair {
            fa,
            fb,
            a,
            b,
            srv,
            root,
        }
    }
}

/// One mount of an export holding `name` (one byte), with the file open
/// read-write: `(root, server, mount, file)`, in the order to bind them so
/// that they drop file first.
pub fn lock_one(name: &str) -> (TestDir, Server, Mount, File) {
    let root = TestDir::new("root");
    root.write(name, "x");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &[]);
    let fa = open_rw(&a.join(name));
    (root, srv, a, fa)
}

/// `path` opened for reading and writing; panics with the path otherwise.
pub fn open_rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// `flock(2)` with `op` (`LOCK_EX`, `LOCK_SH`, `LOCK_UN`, or-ed with
/// `LOCK_NB`); the errno on failure.
pub fn flock(f: &File, op: i32) -> Result<(), i32> {
    // SAFETY: a valid descriptor.
    let r = unsafe { libc::flock(f.as_raw_fd(), op) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}
