//! Guards for tests that go through mount(8): `rfmount` put where
//! mount.fuse3 finds it (`PathInstall`), and mounts made by mount(8) whose
//! rfmount runs in the background (`SystemMount`).

#![allow(dead_code, unused_imports)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// True when running as root, which mount(8) with fstab lines needs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `/usr/local/bin/rfmount` pointing at the binary under test, removed on
/// drop. mount(8) runs helpers with the default PATH, so this is where
/// mount.fuse3's `/bin/sh -c 'rfmount SOURCE DIR -o OPTS'` looks. Tests
/// run as separate processes, so an exclusive `flock` serialises the
/// tests holding one: none removes the link under another's feet.
pub struct PathInstall {
    link: PathBuf,
    // Held (locked) until drop.
    _lock: fs::File,
}

impl PathInstall {
    /// Installs the link.
    ///
    /// # Panics
    /// If another `rfmount` is installed there (the test will not replace
    /// a real installation).
    pub fn rfmount() -> PathInstall {
        use std::os::fd::AsRawFd;
        let lock = fs::File::create(std::env::temp_dir().join("rfmount-e2e-path-install.lock"))
            .expect("creating the install lock file");
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
        let link = PathBuf::from("/usr/local/bin/rfmount");
        match fs::read_link(&link) {
            Ok(t) if t == rfmount_bin() => {}
            Ok(t) => panic!(
                "{} already points at {}; not replacing it",
                link.display(),
                t.display()
            ),
            Err(_) if link.exists() => {
                panic!("{} is installed; not replacing it", link.display())
            }
            Err(_) => {
                fs::create_dir_all(link.parent().unwrap()).unwrap();
                symlink(rfmount_bin(), &link)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", link.display()));
            }
        }
        PathInstall { link, _lock: lock }
    }
}

impl Drop for PathInstall {
    fn drop(&mut self) {
        if fs::read_link(&self.link).is_ok_and(|t| t == rfmount_bin()) {
            let _ = fs::remove_file(&self.link);
        }
    }
}

/// A mount made through mount(8): on drop, lazily unmounted if still there
/// and its background rfmount (found by the unique mount point on its
/// command line) killed by PID.
pub struct SystemMount {
    pub mountpoint: PathBuf,
}

impl SystemMount {
    /// PIDs of the rfmount processes serving this mount point.
    pub fn pids(&self) -> Vec<u32> {
        let want = self.mountpoint.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_rfmount = args
                .first()
                .is_some_and(|a| Path::new(a).file_name().is_some_and(|n| n == "rfmount"));
            let alive = fs::read_to_string(e.path().join("stat")).is_ok_and(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X")
            });
            if alive && is_rfmount && args.contains(&want) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Waits (20 s) until no rfmount serves this mount point any more.
    pub fn wait_gone(&self) -> bool {
        wait_for(Duration::from_secs(20), || {
            (self.pids().is_empty() && exiting_rfmounts().is_empty()).then_some(())
        })
        .is_some()
    }
}

impl Drop for SystemMount {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            eprintln!(
                "note: {} still mounted; detaching",
                self.mountpoint.display()
            );
            TestCommand::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .timeout(Duration::from_secs(20))
                .run();
        }
        for pid in self.pids() {
            eprintln!("note: killing leftover rfmount {pid}");
            kill_pid(pid);
        }
    }
}

/// rfmount processes that are exiting: they have released their memory,
/// and with it their command line, but not yet closed their files (a cache
/// lock among them). Which mount they served cannot be told any more. A
/// process whose first thread is a zombie already while others are still
/// exiting counts too: the others hold its files.
fn exiting_rfmounts() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| c.is_empty())
                && fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rfmount")
                && has_live_thread(&e.path())
        })
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// True when a thread of the process at `/proc/PID` is neither a zombie
/// nor dead.
fn has_live_thread(proc_dir: &Path) -> bool {
    fs::read_dir(proc_dir.join("task"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|t| {
            fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .is_some_and(|state| state != "Z" && state != "X")
            })
        })
}
