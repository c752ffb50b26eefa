//! Removing a name through this mount's own mount point, as a program
//! would, so that the VFS notifies inotify watchers (see `fs/echo.rs`).
//!
//! Every removal opens the mount point afresh and checks that it resolves
//! to this mount (its device number) before removing anything relative to
//! that descriptor: after an unmount the path names the directory beneath,
//! whose files must never be touched. The descriptor is held only for the
//! call, so that it keeps no `umount` from succeeding.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rfmount_proto::RelPath;

/// This mount's root, reached through its mount point.
#[derive(Clone, Debug)]
pub struct MountRoot {
    path: PathBuf,
    /// The mount's device number, `(major, minor)`.
    dev: (u32, u32),
}

impl MountRoot {
    /// The mount at `path` whose device is `dev` (`(major, minor)`).
    pub fn new(path: &Path, dev: (u32, u32)) -> Self {
        MountRoot {
            path: path.to_owned(),
            dev,
        }
    }

    /// Removes `rel` (a directory with `dir`) through the mount.
    ///
    /// # Errors
    /// The mount point no longer holds this mount, or the removal's own
    /// error (permissions, a read-only mount, the name gone).
    pub fn remove(&self, rel: &RelPath, dir: bool) -> io::Result<()> {
        let root = self.open()?;
        let name = CString::new(rel.as_str())?;
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: root is an open descriptor, name a valid C string.
        if unsafe { libc::unlinkat(root.as_raw_fd(), name.as_ptr(), flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The mount's root directory, checked to be this mount.
    fn open(&self) -> io::Result<OwnedFd> {
        let path = CString::new(self.path.as_os_str().as_bytes())?;
        // O_PATH: nothing is asked of the filesystem to resolve it.
        // SAFETY: path is a valid C string.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open just returned this descriptor to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: statx is plain old data; all zeroes is a valid value.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // DONT_SYNC: the device number needs no fresh attributes (no
        // request to this very mount).
        // SAFETY: fd is open, the path is an empty C string, st is valid
        // for writes.
        let r = unsafe {
            libc::statx(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
                0,
                &mut st,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.stx_dev_major, st.stx_dev_minor) != self.dev {
            return Err(io::Error::other(format!(
                "{} no longer holds this mount",
                self.path.display()
            )));
        }
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_of(p: &Path) -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let d = std::fs::metadata(p).unwrap().dev();
        (libc::major(d), libc::minor(d))
    }

    #[test]
    fn removes_beneath_the_mount_it_was_given() {
        let dir = std::env::temp_dir().join(format!("rfmount-through-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("f"), "x").unwrap();
        let root = MountRoot::new(&dir, dev_of(&dir));
        root.remove(&RelPath::new("f").unwrap(), false).unwrap();
        root.remove(&RelPath::new("d").unwrap(), true).unwrap();
        assert!(!dir.join("f").exists() && !dir.join("d").exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn refuses_a_mount_point_that_is_another_filesystem() {
        let dir = std::env::temp_dir().join(format!("rfmount-other-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep"), "x").unwrap();
        let (maj, min) = dev_of(&dir);
        let root = MountRoot::new(&dir, (maj, min.wrapping_add(1)));
        let err = root
            .remove(&RelPath::new("keep").unwrap(), false)
            .unwrap_err();
        assert!(err.to_string().contains("no longer holds"), "{err}");
        assert!(dir.join("keep").exists(), "a file beneath was touched");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
