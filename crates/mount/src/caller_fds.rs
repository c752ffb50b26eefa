//! What the process behind a FUSE request still holds open, read from its
//! descriptor table in `/proc/PID/fdinfo`.
//!
//! A `FLUSH` is sent for every `close(2)` of a descriptor, also of a dup
//! whose file the process goes on writing through another one: a shell's
//! `echo x > f` opens `f`, `dup2`s it onto stdout and closes the original
//! before it writes. The kernel removes the closed descriptor from the
//! table before it flushes, so a writable descriptor of the same inode
//! still in the table is one whose own close comes later.

use std::fs;

/// Descriptors looked at, at most: a process holding more is not the
/// shell pattern this serves, and the answer "no" is always safe.
const MAX_FDS: usize = 4096;

/// True when process `pid` holds a descriptor open for writing on inode
/// `ino` of mount `mount_id`. False when that cannot be told (the process
/// is gone or not ours to look at).
pub(crate) fn holds_writer(pid: u32, mount_id: u64, ino: u64) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    dir.take(MAX_FDS)
        .filter_map(Result::ok)
        .any(|e| fs::read_to_string(e.path()).is_ok_and(|info| writes(&info, mount_id, ino)))
}

/// Whether one fdinfo text is a writable descriptor of `ino` on `mount_id`.
fn writes(info: &str, mount_id: u64, ino: u64) -> bool {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let flags = field("flags:").and_then(|f| u32::from_str_radix(f, 8).ok());
    let mnt = field("mnt_id:").and_then(|f| f.parse::<u64>().ok());
    let inode = field("ino:").and_then(|f| f.parse::<u64>().ok());
    let accmode = libc::O_ACCMODE as u32;
    matches!(
        (flags, mnt, inode),
        (Some(fl), Some(m), Some(i))
            if m == mount_id && i == ino && fl & accmode != libc::O_RDONLY as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITER: &str = "pos:\t0\nflags:\t0100001\nmnt_id:\t27\nino:\t42\n";

    #[test]
    fn a_writable_descriptor_of_the_inode_counts() {
        assert!(writes(WRITER, 27, 42));
        assert!(writes(&WRITER.replace("0100001", "02"), 27, 42));
    }

    #[test]
    fn other_inodes_mounts_and_readers_do_not() {
        assert!(!writes(WRITER, 27, 43));
        assert!(!writes(WRITER, 28, 42));
        assert!(!writes(&WRITER.replace("0100001", "0100000"), 27, 42));
        // Kernels without the `ino:` line tell nothing.
        assert!(!writes("pos:\t0\nflags:\t01\nmnt_id:\t27\n", 27, 42));
    }

    #[test]
    fn this_process_holds_its_own_writer() {
        let dir = std::env::temp_dir().join(format!("rfmount-caller-fds-{}", std::process::id()));
        let f = fs::File::create(&dir).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = f.metadata().unwrap().ino();
        let info = fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            std::os::fd::AsRawFd::as_raw_fd(&f)
        ))
        .unwrap();
        let mnt: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(holds_writer(std::process::id(), mnt, ino));
        drop(f);
        assert!(!holds_writer(std::process::id(), mnt, ino));
        fs::remove_file(&dir).unwrap();
    }
}
