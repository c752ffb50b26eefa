//! Mounting with the type `fuse.rfmount` and the source `HOST:PORT[:/SUBDIR]`,
//! so that `findmnt -t fuse.rfmount`, `umount` and fstab treat the mount like
//! any other.
//!
//! fuser mounts as root with mount(2) and the plain type `fuse`, dropping
//! the subtype; so as root rfmount calls mount(2) itself (type
//! `fuse.rfmount`) and hands the descriptor to fuser. Other users go
//! through fuser and fusermount3, which sets the subtype. A mount made here
//! is unmounted here too, which also means no warning from fuser when the
//! mount was already removed by `umount` or `fusermount3 -u`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fuser::{BackgroundSession, Config, Filesystem, MountOption, Notifier, Session, SessionACL};

use crate::cli_options::KernelFlags;

/// The mount's type is `fuse.` + this.
pub(crate) const SUBTYPE: &str = "rfmount";

/// How the mount is to look in the mount table.
pub(crate) struct MountSpec<'a> {
    pub(crate) mountpoint: &'a Path,
    /// `HOST:PORT[:/SUBDIR]`.
    pub(crate) source: String,
    pub(crate) flags: KernelFlags,
    pub(crate) read_only: bool,
    pub(crate) default_permissions: bool,
    pub(crate) acl: SessionACL,
}

/// A session before it runs, with what is needed to unmount it later.
pub(crate) struct Prepared<FS: Filesystem> {
    session: Session<FS>,
    direct: Option<CString>,
}

impl<FS: Filesystem + Send + 'static> Prepared<FS> {
    /// Mounts and performs the FUSE handshake.
    pub(crate) fn mount(fs: FS, spec: &MountSpec<'_>, mut cfg: Config) -> io::Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return mount_direct(fs, spec, cfg);
        }
        cfg.mount_options = fuser_options(spec);
        cfg.acl = spec.acl;
        let session = Session::new(fs, spec.mountpoint, &cfg)?;
        Ok(Prepared {
            session,
            direct: None,
        })
    }

    /// For invalidating the kernel's caches.
    pub(crate) fn notifier(&self) -> Notifier {
        self.session.notifier()
    }

    /// Starts serving kernel requests in a background thread. Unmounting
    /// is `own_mount`'s job: it checks that the mount point still holds
    /// this connection, which fuser's unmount by path does not.
    pub(crate) fn spawn(self) -> io::Result<MountedSession> {
        let direct = self.direct;
        let bg = self.session.spawn().inspect_err(|_| {
            if let Some(mp) = &direct {
                detach(mp);
            }
        })?;
        Ok(MountedSession { bg })
    }
}

/// A mount being served.
pub(crate) struct MountedSession {
    bg: BackgroundSession,
}

impl MountedSession {
    /// True once the session ended (the mount was removed from outside).
    pub(crate) fn is_finished(&self) -> bool {
        self.bg.guard.is_finished()
    }
}

fn fuser_options(spec: &MountSpec<'_>) -> Vec<MountOption> {
    let f = &spec.flags;
    let mut o = vec![
        MountOption::FSName(spec.source.clone()),
        MountOption::Subtype(SUBTYPE.into()),
    ];
    o.push(if f.nodev {
        MountOption::NoDev
    } else {
        MountOption::Dev
    });
    o.push(if f.nosuid {
        MountOption::NoSuid
    } else {
        MountOption::Suid
    });
    if f.noexec {
        o.push(MountOption::NoExec);
    }
    if f.noatime {
        o.push(MountOption::NoAtime);
    }
    if f.sync {
        o.push(MountOption::Sync);
    }
    if f.dirsync {
        o.push(MountOption::DirSync);
    }
    if f.strictatime {
        o.push(MountOption::CUSTOM("strictatime".into()));
    }
    if f.nodiratime {
        o.push(MountOption::CUSTOM("nodiratime".into()));
    }
    if spec.read_only {
        o.push(MountOption::RO);
    }
    if spec.default_permissions {
        o.push(MountOption::DefaultPermissions);
    }
    o
}

fn ms_flags(spec: &MountSpec<'_>) -> libc::c_ulong {
    let f = &spec.flags;
    let mut flags = 0;
    for (on, bit) in [
        (f.nodev, libc::MS_NODEV),
        (f.nosuid, libc::MS_NOSUID),
        (f.noexec, libc::MS_NOEXEC),
        (f.noatime, libc::MS_NOATIME),
        (f.strictatime, libc::MS_STRICTATIME),
        (f.nodiratime, libc::MS_NODIRATIME),
        (f.sync, libc::MS_SYNCHRONOUS),
        (f.dirsync, libc::MS_DIRSYNC),
        (spec.read_only, libc::MS_RDONLY),
    ] {
        if on {
            flags |= bit;
        }
    }
    flags
}

fn mount_direct<FS: Filesystem>(
    fs: FS,
    spec: &MountSpec<'_>,
    cfg: Config,
) -> io::Result<Prepared<FS>> {
    let dev = File::options()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/fuse: {e}")))?;
    let root_mode = std::fs::metadata(spec.mountpoint)?.mode();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid}",
        dev.as_raw_fd()
    );
    if spec.acl == SessionACL::All {
        data.push_str(",allow_other");
    }
    if spec.default_permissions {
        data.push_str(",default_permissions");
    }
    let cstr = |s: &[u8]| {
        CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
    };
    let source = cstr(spec.source.as_bytes())?;
    let target = cstr(spec.mountpoint.as_os_str().as_bytes())?;
    let fstype = cstr(format!("fuse.{SUBTYPE}").as_bytes())?;
    let data = cstr(data.as_bytes())?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            ms_flags(spec),
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    match Session::from_fd(fs, OwnedFd::from(dev), spec.acl, cfg) {
        Ok(session) => Ok(Prepared {
            session,
            direct: Some(target),
        }),
        Err(e) => {
            detach(&target);
            Err(e)
        }
    }
}

fn detach(mp: &CString) {
    // SAFETY: `mp` is a valid NUL-terminated path.
    unsafe { libc::umount2(mp.as_ptr(), libc::MNT_DETACH) };
}
