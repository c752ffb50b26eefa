//! The one setuid/setgid rule FUSE's kernel side leaves undone.
//!
//! A write, truncate, `fallocate` or `chown` by a process without
//! `CAP_FSETID` clears setuid, and setgid when group-exec is set; the
//! kernel's FUSE code does both itself (a SETATTR of the mode). Linux 6.x
//! local filesystems also clear a setgid bit *without* group-exec when the
//! caller is not in the file's group, and FUSE recomputes the bits to clear
//! from the mode alone, so that case never reaches the filesystem. Taking
//! all of it over (`FUSE_HANDLE_KILLPRIV_V2`) would need the kill flags of
//! SETATTR and OPEN, which fuser 0.18 does not pass on, and would stop the
//! kernel's own clearing on paths that never reach rfmount as writes; so
//! rfmount keeps the kernel's part and adds this case, judging the caller
//! as the kernel does: its effective capabilities and its groups, read
//! from `/proc/PID/status`. The rule came with Linux 6.2; on an older
//! kernel local filesystems apply the group-exec rule only, as FUSE does,
//! and so does rfmount.

use std::fs;
use std::sync::OnceLock;

/// `CAP_FSETID`: keeps setuid/setgid across writes and lets a process set
/// setgid on a file whose group it is not in.
const CAP_FSETID: u32 = 4;

/// What the kernel asks of a process before it clears setgid.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    fsetid: bool,
    /// Its filesystem gid and its supplementary groups.
    groups: Vec<u32>,
}

impl Caller {
    /// The process `pid` of a FUSE request from `uid`/`gid` (its
    /// filesystem ids). A process that is gone (or a request with no
    /// process) is judged by those ids alone, root as privileged.
    pub(crate) fn of(pid: u32, uid: u32, gid: u32) -> Caller {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| parse_status(&s))
            .unwrap_or(Caller {
                fsetid: uid == 0,
                groups: vec![gid],
            })
    }

    /// True when a change this caller makes to a file with `mode` and
    /// group `gid` (as the kernel sees them) must clear setgid, which the
    /// kernel has not: setgid without group-exec on a regular file, and a
    /// caller neither privileged nor in the file's group.
    pub(crate) fn clears_setgid(&self, mode: u32, gid: u32) -> bool {
        let regular = mode & libc::S_IFMT == libc::S_IFREG;
        let setgid_only = mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID;
        regular && setgid_only && !self.fsetid && !self.groups.contains(&gid)
    }
}

/// True when `mode` is one [`Caller::clears_setgid`] may act on: checked
/// before `/proc` is read, so that ordinary files cost nothing.
pub(crate) fn may_clear(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG
        && mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID
        && kernel_has_rule()
}

/// True when this machine's kernel (6.2 and later) clears setgid without
/// group-exec for callers outside the file's group on its own filesystems.
fn kernel_has_rule() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| release_at_least(&r, (6, 2)))
            .unwrap_or(true)
    })
}

/// Whether a kernel release string (`6.18.44-fc`) is at least `want`.
fn release_at_least(release: &str, want: (u32, u32)) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some((major, minor) >= want)
}

/// The `CapEff`, `Gid` (its fourth field: the filesystem gid) and `Groups`
/// lines of `/proc/PID/status`.
fn parse_status(text: &str) -> Option<Caller> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let caps = u64::from_str_radix(field("CapEff")?, 16).ok()?;
    let fsgid: u32 = field("Gid")?.split_whitespace().nth(3)?.parse().ok()?;
    let mut groups = vec![fsgid];
    for g in field("Groups")?.split_whitespace() {
        groups.push(g.parse().ok()?);
    }
    Some(Caller {
        fsetid: caps & (1 << CAP_FSETID) != 0,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: &str = "Name:\tsh\nUid:\t65534\t65534\t65534\t65534\n\
        Gid:\t65534\t65534\t65534\t65534\nGroups:\t\nCapEff:\t0000000000000000\n";

    #[test]
    fn reads_capabilities_and_groups() {
        let c = parse_status(NOBODY).unwrap();
        assert_eq!(
            c,
            Caller {
                fsetid: false,
                groups: vec![65534]
            }
        );
        let root = "Gid:\t0\t0\t0\t7\nGroups:\t0 24 27\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            parse_status(root).unwrap(),
            Caller {
                fsetid: true,
                groups: vec![7, 0, 24, 27]
            }
        );
        assert_eq!(parse_status("Gid:\t1\t1\t1\t1\n"), None);
    }

    #[test]
    fn clears_only_setgid_without_group_exec_for_outsiders() {
        let nobody = parse_status(NOBODY).unwrap();
        let file = libc::S_IFREG;
        assert!(nobody.clears_setgid(file | 0o2767, 0));
        assert!(nobody.clears_setgid(file | 0o6767, 0));
        // In the file's group, group-exec set (the kernel's part), no setgid.
        assert!(!nobody.clears_setgid(file | 0o2767, 65534));
        assert!(!nobody.clears_setgid(file | 0o2777, 0));
        assert!(!nobody.clears_setgid(file | 0o4767, 0));
        // Directories keep setgid.
        assert!(!nobody.clears_setgid(libc::S_IFDIR | 0o2767, 0));
        let privileged = Caller {
            fsetid: true,
            groups: vec![65534],
        };
        assert!(!privileged.clears_setgid(file | 0o2767, 0));
        assert!(!may_clear(file | 0o2777));
    }

    #[test]
    fn reads_kernel_releases() {
        assert_eq!(release_at_least("6.18.44-fc-v973", (6, 2)), Some(true));
        assert_eq!(release_at_least("6.1.0-18-amd64", (6, 2)), Some(false));
        assert_eq!(release_at_least("10.0", (6, 2)), Some(true));
        assert_eq!(release_at_least("weird", (6, 2)), None);
    }
}
