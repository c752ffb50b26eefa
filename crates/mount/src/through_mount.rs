//! Removing a name through this mount's own mount point, as a program
//! would, so that the VFS notifies inotify watchers (see `fs/echo.rs`).
//!
//! Every removal opens the mount point afresh and checks that it resolves
//! to this mount (its device number) before removing anything relative to
//! that descriptor: after an unmount the path names the directory beneath,
//! whose files must never be touched. The path's directories are then
//! resolved beneath that root with no symlink followed and no other mount
//! entered (`openat2`), since whoever changed the export may have put a
//! symlink where a directory was. The descriptors are held only for the
//! call, so that they keep no `umount` from succeeding.

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
        let name = CString::new(
            rel.file_name()
                .ok_or_else(|| io::Error::other("the mount's root cannot be removed"))?,
        )?;
        let parent = match rel.parent() {
            Some(p) if !p.is_root() => beneath(&root, &p)?,
            _ => root,
        };
        let flags = if dir { libc::AT_REMOVEDIR } else { 0 };
        // SAFETY: parent is an open descriptor, name a valid C string.
        if unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), flags) } != 0 {
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

/// The directory `dir` beneath `root`, reached without following any
/// symlink or leaving the mount: a directory replaced meanwhile by a
/// symlink (to `/etc`, say) must not lead the removal out of the mount.
fn beneath(root: &OwnedFd, dir: &RelPath) -> io::Result<OwnedFd> {
    let path = CString::new(dir.as_str())?;
    // SAFETY: open_how is plain old data; all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
    // SAFETY: root is open, path a valid C string, how a valid open_how of
    // the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("openat2 returned no descriptor"))?;
    // SAFETY: openat2 just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    fn never_follows_a_symlink_out_of_the_mount() {
        let base = std::env::temp_dir().join(format!("rfmount-beneath-{}", std::process::id()));
        let (dir, outside) = (base.join("mnt"), base.join("outside"));
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::fs::write(dir.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        let root = MountRoot::new(&dir, dev_of(&dir));
        let err = root
            .remove(&RelPath::new("link/keep").unwrap(), false)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert!(outside.join("keep").exists(), "removed through a symlink");
        root.remove(&RelPath::new("d/f").unwrap(), false).unwrap();
        assert!(!dir.join("d/f").exists());
        std::fs::remove_dir_all(&base).unwrap();
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
