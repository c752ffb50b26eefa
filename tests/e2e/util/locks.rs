//! `fcntl(2)` record locks from the test process itself, on descriptors of
//! files in a mount: the calls programs make, without a helper program.

use std::fs::File;
use std::os::fd::AsRawFd;

fn flock_struct(typ: i32, start: u64, len: u64) -> libc::flock {
    // SAFETY: a plain C struct; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = typ as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start as i64;
    fl.l_len = len as i64;
    fl
}

/// `F_SETLK` (or `F_SETLKW` with `wait`) of `typ` on `len` bytes from
/// `start` (`len` 0: to the end); the errno on failure.
pub fn setlk(f: &File, typ: i32, start: u64, len: u64, wait: bool) -> Result<(), i32> {
    let fl = flock_struct(typ, start, len);
    let cmd = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    // SAFETY: a valid descriptor and a valid flock struct.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), cmd, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// `F_GETLK`: the blocking lock as (type, start, len, pid), or `None`.
pub fn getlk(f: &File, typ: i32, start: u64, len: u64) -> Option<(i32, u64, u64, i32)> {
    let mut fl = flock_struct(typ, start, len);
    // SAFETY: a valid descriptor and a valid flock struct.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    assert_eq!(r, 0, "F_GETLK: {}", std::io::Error::last_os_error());
    (i32::from(fl.l_type) != libc::F_UNLCK).then(|| {
        (
            i32::from(fl.l_type),
            fl.l_start as u64,
            fl.l_len as u64,
            fl.l_pid,
        )
    })
}
