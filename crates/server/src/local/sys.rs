//! Thin safe wrappers over the `*at` system calls the local store needs and
//! std does not offer on a directory fd. Each returns `io::Error` with the
//! OS errno intact so that the caller can map it to a wire code.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use rfmount_proto::SetTime;

/// Resolution flags for every lookup: stay beneath the directory fd, and
/// never follow `/proc`-style magic links, which could point anywhere.
pub(super) const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;

/// openat2(2) returns EAGAIN when a concurrent rename made it unable to prove
/// the lookup safe; it is correct to retry, but not forever.
const OPENAT2_RETRIES: usize = 16;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A name or path as a C string. `RelPath` already excludes NUL bytes, so
/// this fails only for callers that bypass it.
pub(super) fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(dir, path, flags, mode, resolve)`; `O_CLOEXEC` is always added.
pub(super) fn openat2(
    dir: BorrowedFd<'_>,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain data and all-zero is its "no options"
    // value; it is `non_exhaustive`, so it cannot be built field by field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // Open flags are small positive bit sets; the cast cannot lose bits.
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    let mut tries = 0;
    loop {
        // SAFETY: `path` is NUL-terminated and `how` outlives the call; the
        // kernel reads exactly `size_of::<open_how>()` bytes from it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this descriptor; nobody else
            // owns it. File descriptors always fit in a c_int.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            _ => return Err(e),
        }
    }
}

/// `openat(dir, name, flags, mode)` for a single name; `O_CLOEXEC` added.
pub(super) fn openat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the mode argument is read only when
    // `flags` has O_CREAT, and is passed as the variadic `mode_t` it expects.
    let fd = cvt(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: a descriptor fresh from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dir, name, flags)`.
pub(super) fn fstatat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `name` is NUL-terminated and `st` is a valid place for the
    // kernel to write one `struct stat`.
    cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so it filled in the whole struct.
    Ok(unsafe { st.assume_init() })
}

/// `lstat` of a name in a directory.
pub(super) fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW)
}

/// `fstat`, which also works on `O_PATH` descriptors.
pub(super) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    fstatat(fd, c"", libc::AT_EMPTY_PATH)
}

/// `unlinkat(dir, name, flags)`.
pub(super) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; the call touches no memory of ours.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// `renameat(from_dir, from, to_dir, to)`.
pub(super) fn renameat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; no memory of ours is written.
    cvt(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
        )
    })
    .map(drop)
}

/// Gives the file open at `fd` (an `O_TMPFILE` file) the name `name` in
/// `dir`, failing with EEXIST rather than replace anything. `AT_EMPTY_PATH`
/// needs CAP_DAC_READ_SEARCH; without it the kernel answers ENOENT, and the
/// `/proc/self/fd` link, which any process may follow to its own files, does
/// the same.
pub(super) fn link_fd(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; no memory of ours is written.
    let r = cvt(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    });
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        r => return r.map(drop),
    }
    let proc = cstring(&format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    // SAFETY: as above.
    cvt(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            proc.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

/// `mkdirat(dir, name, mode)`.
pub(super) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; no memory of ours is written.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `fchmod(fd, mode)`.
pub(super) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we borrow.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode & 0o7777) }).map(drop)
}

fn timespec(t: Option<SetTime>) -> libc::timespec {
    let (tv_sec, tv_nsec) = match t {
        None => (0, libc::UTIME_OMIT),
        Some(SetTime::Now) => (0, libc::UTIME_NOW),
        Some(SetTime::At(ts)) => (ts.secs, libc::c_long::from(ts.nanos.min(999_999_999))),
    };
    libc::timespec { tv_sec, tv_nsec }
}

/// `futimens(fd, [atime, mtime])`; `None` leaves a time alone.
pub(super) fn futimens(
    fd: BorrowedFd<'_>,
    atime: Option<SetTime>,
    mtime: Option<SetTime>,
) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: `times` is the two-element array futimens reads.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) }).map(drop)
}

/// `fstatvfs(fd)`.
pub(super) fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `st` is a valid place for one `struct statvfs`.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded, so the struct is filled in.
    Ok(unsafe { st.assume_init() })
}

/// Bytes an unprivileged writer may still allocate on the filesystem of
/// `fd`.
pub(super) fn free_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let v = fstatvfs(fd)?;
    Ok(v.f_bavail.saturating_mul(v.f_frsize))
}

/// An open directory stream (`fdopendir(3)`/`readdir(3)`), read one entry
/// at a time and closed on drop.
pub(super) struct Dir {
    dir: NonNull<libc::DIR>,
}

// SAFETY: the DIR stream is owned exclusively by this value and only used
// through `&mut self`, so it is never touched by two threads at once; glibc's
// DIR carries no thread affinity.
unsafe impl Send for Dir {}

/// One directory entry, valid until the stream is read again.
pub(super) struct DirEntry<'a> {
    /// The stream's own descriptor, for the `*at` calls on `name`.
    pub(super) dir: BorrowedFd<'a>,
    pub(super) name: &'a CStr,
}

impl Dir {
    /// Takes ownership of `fd`, a directory opened for reading.
    pub(super) fn new(fd: OwnedFd) -> io::Result<Dir> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is a valid directory descriptor that we own; on
        // success the DIR takes it over, on failure we still own it.
        let dir = unsafe { libc::fdopendir(raw) };
        let Some(dir) = NonNull::new(dir) else {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `raw` is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        };
        Ok(Dir { dir })
    }

    /// The next entry (`.` and `..` included), `None` at the end.
    pub(super) fn next_entry(&mut self) -> Option<io::Result<DirEntry<'_>>> {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `self.dir` is a live stream used by this thread only.
        let ent = unsafe { libc::readdir(self.dir.as_ptr()) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            return e.raw_os_error().is_some_and(|n| n != 0).then_some(Err(e));
        }
        // SAFETY: readdir returned a valid entry whose d_name is
        // NUL-terminated; it stays valid until the next readdir on this
        // stream, which the borrow of `self` rules out. dirfd of a live DIR
        // is valid for as long as the DIR is.
        unsafe {
            Some(Ok(DirEntry {
                dir: BorrowedFd::borrow_raw(libc::dirfd(self.dir.as_ptr())),
                name: CStr::from_ptr((*ent).d_name.as_ptr()),
            }))
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: the stream is live and dropped exactly once; closedir also
        // closes the descriptor it took over.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}

/// `readlinkat(dir, name)`: a symlink's target bytes. An empty `name` reads
/// the link an `O_PATH | O_NOFOLLOW` descriptor `dir` refers to.
pub(super) fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    // PATH_MAX bytes always suffice on Linux; one more tells truncation.
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `name` is NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(buf)
}

/// `symlinkat(target, dir, name)`.
pub(super) fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; no memory of ours is written.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `linkat(from_dir, from, to_dir, to, 0)`: a final symlink is linked
/// itself, never followed.
pub(super) fn linkat(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; no memory of ours is written.
    cvt(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `mknodat(dir, name, mode, dev)`; `mode` carries the file type bits.
pub(super) fn mknodat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mode: libc::mode_t,
    dev: libc::dev_t,
) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; no memory of ours is written.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, dev) }).map(drop)
}

/// `renameat2(from_dir, from, to_dir, to, flags)`.
pub(super) fn renameat2(
    from_dir: BorrowedFd<'_>,
    from: &CStr,
    to_dir: BorrowedFd<'_>,
    to: &CStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; no memory of ours is written.
    cvt(unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// Changes the owner of the object `fd` refers to (any descriptor,
/// `O_PATH` included; a symlink opened with `O_NOFOLLOW` is changed
/// itself). `None` leaves an id alone.
pub(super) fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    // (uid_t)-1 and (gid_t)-1 mean "unchanged" to the kernel.
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: the empty path is NUL-terminated; no memory of ours is written.
    cvt(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// The `/proc/self/fd/N` name of `fd`: system calls given it act on the
/// object `fd` refers to, also for `O_PATH` descriptors that `fchmod` and
/// `futimens` refuse.
fn proc_fd(fd: BorrowedFd<'_>) -> io::Result<CString> {
    cstring(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `chmod` of the object an `O_PATH` descriptor (not of a symlink) refers to.
pub(super) fn chmod_opath(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let p = proc_fd(fd)?;
    // SAFETY: `p` is NUL-terminated; no memory of ours is written.
    cvt(unsafe { libc::chmod(p.as_ptr(), mode & 0o7777) }).map(drop)
}

/// `utimensat` of the object an `O_PATH` descriptor (not of a symlink)
/// refers to.
pub(super) fn utimens_opath(
    fd: BorrowedFd<'_>,
    atime: Option<SetTime>,
    mtime: Option<SetTime>,
) -> io::Result<()> {
    let p = proc_fd(fd)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: `p` is NUL-terminated and `times` is the two-element array
    // utimensat reads.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) }).map(drop)
}

/// `utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW)`: the times of a
/// symlink itself.
pub(super) fn lutimensat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    atime: Option<SetTime>,
    mtime: Option<SetTime>,
) -> io::Result<()> {
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: `name` is NUL-terminated and `times` is the array it reads.
    cvt(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// True when this process may give files away (it runs as root), which is
/// when creates take the caller's owner.
pub(super) fn can_chown() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Opens the object an `O_PATH` descriptor refers to, for real, with
/// `flags` (`O_CLOEXEC` added); the new descriptor is the same object even
/// if its name has changed meanwhile.
pub(super) fn reopen(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = proc_fd(fd)?;
    // SAFETY: `p` is NUL-terminated; without O_CREAT no mode is read.
    let raw = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })?;
    // SAFETY: a descriptor fresh from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
