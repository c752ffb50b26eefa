//! The open-file limit. Every connection costs a descriptor, and the soft
//! limit most systems start processes with (1,024) is far below what the
//! kernel allows; a server that keeps it stops accepting long before its
//! connection cap.

use std::io;

fn get() -> io::Result<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the call to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// The current soft limit on open descriptors (`u64::MAX` when unlimited or
/// unknown).
pub fn current() -> u64 {
    get().map_or(u64::MAX, |r| r.rlim_cur)
}

/// Raises the soft limit to the hard limit; returns `(old, new)`.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise() -> io::Result<(u64, u64)> {
    let mut r = get()?;
    let old = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: `r` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old, r.rlim_cur))
}
