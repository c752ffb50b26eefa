//! Resource limits for the server-limit tests: an `rfserve` started under
//! `ulimit -n` (`LimitedServer`), a small tmpfs (`SmallDisk`), and raising
//! this test process's own descriptor limit for thousands of sockets.

#![allow(dead_code, unused_imports)]

use std::ffi::CString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::*;

/// Raises this process's soft descriptor limit to its hard limit and
/// returns it, so that a test can open thousands of sockets.
pub fn raise_own_nofile() -> u64 {
    rfmount_server::fdlimit::raise()
        .map(|(_, new)| new)
        .expect("raise RLIMIT_NOFILE")
}

/// `rfserve` started by `sh -c 'ulimit -n N; exec rfserve ...'`, so that
/// both its soft and hard descriptor limits are `N`; killed on drop.
pub struct LimitedServer {
    child: Child,
    port: u16,
    logdir: TestDir,
}

impl LimitedServer {
    pub fn start(root: &Path, nofile: u32, extra: &[&str]) -> LimitedServer {
        let logdir = TestDir::new("rfserve-limited-log");
        let log = fs::File::create(logdir.join("rfserve.log")).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(rfserve_bin())
            .arg("--root")
            .arg(root)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sh for rfserve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so rfserve never blocks on stdout.
            let mut sink = String::new();
            while r.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let line = rx.recv_timeout(STARTUP_TIMEOUT).unwrap_or_default();
        let Some(port) = parse_listening_line(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "limited rfserve did not start: {line:?}\n{}",
                text(&fs::read(logdir.join("rfserve.log")).unwrap_or_default())
            );
        };
        LimitedServer {
            child,
            port,
            logdir,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        text(&fs::read(self.logdir.join("rfserve.log")).unwrap_or_default())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("---- limited rfserve log ----\n{}", tail(&self.log(), 60));
        }
    }
}

/// A tmpfs of a few MiB at a temporary directory, unmounted on drop.
/// `None` where this process may not mount (not root).
pub struct SmallDisk {
    dir: TestDir,
}

impl SmallDisk {
    pub fn mount(mib: u32) -> Option<SmallDisk> {
        let dir = TestDir::new("small-disk");
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        let opts = CString::new(format!("size={mib}m")).ok()?;
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        (r == 0).then_some(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
