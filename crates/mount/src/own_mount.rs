//! Which mount is ours, and unmounting only that one.
//!
//! A mount point is only a path: after `fusermount3 -u` (or `umount -l`
//! while a program still uses the old mount) another rfmount may mount at
//! the same path. Unmounting "whatever is at MOUNTPOINT" on SIGTERM would
//! then unmount that newer mount, which is what fuser's own unmount does
//! (its check that the session is still mounted is true for a connection the
//! kernel has already ended). So the mount is identified by its FUSE
//! connection: right after mounting we record the device number the kernel
//! gave it (`0:N` in mountinfo; `N` is also the connection's directory in
//! `/sys/fs/fuse/connections`) and keep a duplicate of the `/dev/fuse`
//! descriptor, which reports `POLLERR` as soon as the kernel has ended the
//! connection by any route (unmount, lazy unmount once unused, abort).
//! Unmounting opens the mount point, checks that the mount it resolves to
//! has our device number, and detaches exactly that mount through the open
//! descriptor (`/proc/self/fd/N`), so no other mount is ever touched.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The FUSE connection this process mounted.
pub(crate) struct OwnMount {
    mountpoint: PathBuf,
    /// `major:minor` of the mount as mountinfo shows it.
    dev: String,
    /// Its mount ID (mountinfo's first field, fdinfo's `mnt_id`).
    id: Option<u64>,
    /// Our duplicate of fuser's `/dev/fuse` descriptor.
    device: Option<OwnedFd>,
}

/// What [`OwnMount::unmount`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unmount {
    /// Our mount was detached.
    Done,
    /// The mount point no longer holds our mount; nothing was touched.
    NotOurs,
}

/// Descriptors of this process that are open on `/dev/fuse`.
pub(crate) fn fuse_fds() -> HashSet<i32> {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        (fs::read_link(e.path()).ok()? == Path::new("/dev/fuse")).then_some(fd)
    })
    .collect()
}

impl OwnMount {
    /// Records the mount just made on `mountpoint` (canonical), whose
    /// `/dev/fuse` descriptor is the one not in `fds_before`. Must run
    /// before anyone else can mount on top (right after mounting).
    ///
    /// # Errors
    /// The mount is not in `/proc/self/mountinfo`.
    pub(crate) fn record(mountpoint: &Path, fds_before: &HashSet<i32>) -> io::Result<OwnMount> {
        let table = fs::read_to_string("/proc/self/mountinfo")?;
        let want = mountpoint.as_os_str().as_bytes();
        let (dev, id) = table
            .lines()
            .rev()
            .filter_map(MountInfo::parse)
            .find(|m| m.mountpoint == want && m.fstype.starts_with("fuse"))
            .map(|m| (m.dev, m.id.parse().ok()))
            .ok_or_else(|| {
                io::Error::other(format!(
                    "{} is not in the mount table after mounting",
                    mountpoint.display()
                ))
            })?;
        let new: Vec<i32> = fuse_fds().difference(fds_before).copied().collect();
        let device = match new.as_slice() {
            // SAFETY: fd is open (just listed) and owned by fuser for the
            // session's lifetime; F_DUPFD_CLOEXEC makes a new descriptor
            // that this struct owns.
            [fd] => match unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 0) } {
                // SAFETY: dup just returned this new descriptor to us.
                d if d >= 0 => Some(unsafe { OwnedFd::from_raw_fd(d) }),
                _ => None,
            },
            _ => None,
        };
        if device.is_none() {
            log::debug!("cannot tell which /dev/fuse descriptor is ours: {new:?}");
        }
        Ok(OwnMount {
            mountpoint: mountpoint.to_owned(),
            dev,
            id,
            device,
        })
    }

    /// Its mount ID, as `/proc/PID/fdinfo` names the mount of a descriptor.
    pub(crate) fn mount_id(&self) -> Option<u64> {
        self.id
    }

    /// Where it was mounted.
    pub(crate) fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The connection's number in `/sys/fs/fuse/connections`.
    pub(crate) fn connection_id(&self) -> &str {
        self.dev.split_once(':').map_or("", |(_, minor)| minor)
    }

    /// The mount's device number, `(major, minor)`.
    pub(crate) fn dev_numbers(&self) -> Option<(u32, u32)> {
        let (major, minor) = self.dev.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// True once the kernel has ended our connection (unmounted, aborted).
    pub(crate) fn ended(&self) -> bool {
        let Some(fd) = &self.device else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
    }

    /// Unmounts our mount if (and only if) the mount point still holds it.
    ///
    /// # Errors
    /// The mount point cannot be opened, or unmounting failed.
    pub(crate) fn unmount(&self) -> io::Result<Unmount> {
        let path = CString::new(self.mountpoint.as_os_str().as_bytes())?;
        // O_PATH: resolves the path to the topmost mount there without
        // asking any filesystem to open anything.
        // SAFETY: path is a valid C string.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            // Nothing there (the directory went away), or a dead mount of
            // someone else's on top: either way not ours to touch.
            if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ENOENT)) {
                return Ok(Unmount::NotOurs);
            }
            return Err(e);
        }
        // SAFETY: open just returned this descriptor to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if mount_dev_of(&fd)?.as_deref() != Some(self.dev.as_str()) {
            return Ok(Unmount::NotOurs);
        }
        // The magic link names exactly the mount the descriptor is on.
        let link = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        // Detach: our own descriptor keeps the mount busy, and programs
        // still using it finish with it (as `fusermount3 -u -z` does).
        // SAFETY: link is a valid C string.
        if unsafe { libc::umount2(link.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(Unmount::Done);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(e);
        }
        drop(fd);
        // Not root: only the setuid helper may unmount, and only by path.
        // The check above ran a moment ago.
        let out = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(&self.mountpoint)
            .output()?;
        if out.status.success() {
            Ok(Unmount::Done)
        } else {
            Err(io::Error::other(format!(
                "fusermount3 -u: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// The `major:minor` of the mount that `fd` lies on.
fn mount_dev_of(fd: &OwnedFd) -> io::Result<Option<String>> {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    let Some(mnt_id) = info
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .map(|v| v.trim().to_owned())
    else {
        return Ok(None);
    };
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(table
        .lines()
        .filter_map(MountInfo::parse)
        .find(|m| m.id == mnt_id)
        .map(|m| m.dev))
}

/// The fields of one mountinfo line that matter here.
struct MountInfo {
    id: String,
    dev: String,
    mountpoint: Vec<u8>,
    fstype: String,
}

impl MountInfo {
    fn parse(line: &str) -> Option<MountInfo> {
        let mut f = line.split(' ');
        let id = f.next()?.to_owned();
        let _parent = f.next()?;
        let dev = f.next()?.to_owned();
        let _root = f.next()?;
        let mountpoint = unescape(f.next()?);
        let rest: Vec<&str> = f.collect();
        let sep = rest.iter().position(|x| *x == "-")?;
        let fstype = rest.get(sep + 1)?.to_string();
        Some(MountInfo {
            id,
            dev,
            mountpoint,
            fstype,
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let l = "42 27 0:39 / /tmp/a\\040b/mnt rw,nosuid shared:1 - fuse rfmount:h:1 rw,user_id=0";
        let m = MountInfo::parse(l).unwrap();
        assert_eq!(m.id, "42");
        assert_eq!(m.dev, "0:39");
        assert_eq!(m.mountpoint, b"/tmp/a b/mnt");
        assert_eq!(m.fstype, "fuse");
        assert!(MountInfo::parse("garbage").is_none());
    }

    #[test]
    fn the_mount_of_a_descriptor_is_found() {
        // /proc is always a mount of its own.
        let fd = OwnedFd::from(fs::File::open("/proc").unwrap());
        let dev = mount_dev_of(&fd).unwrap().unwrap();
        assert!(dev.contains(':'), "{dev}");
    }
}
