//! From `struct stat` to the wire's [`Meta`], and the identities derived
//! from it: a file's content version and the export id.

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rfmount_proto::{FileId, FileKind, Meta, Timestamp, Version};

use super::sys;

/// The kind of object a `st_mode` describes.
pub(super) fn kind_of(st: &libc::stat) -> FileKind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFCHR => FileKind::CharDev,
        libc::S_IFBLK => FileKind::BlockDev,
        libc::S_IFSOCK => FileKind::Socket,
        _ => FileKind::Other,
    }
}

/// A value that changes whenever the content may have changed.
///
/// Size and mtime catch ordinary writes; the inode catches a file replaced by
/// rename (every PUT); ctime catches a writer that restores mtime afterwards
/// (`touch -r`, `cp -p`, `tar`), since nobody can set ctime back. Hashing
/// them keeps the number opaque, so no client is tempted to compare
/// versions for order.
pub(super) fn version_of(st: &libc::stat) -> Version {
    let mut h = blake3::Hasher::new();
    for field in [
        st.st_dev,
        st.st_ino,
        st.st_size as u64,
        st.st_mtime as u64,
        st.st_mtime_nsec as u64,
        st.st_ctime as u64,
        st.st_ctime_nsec as u64,
    ] {
        h.update(&field.to_le_bytes());
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

fn time(secs: i64, nanos: i64) -> Timestamp {
    Timestamp {
        secs,
        nanos: u32::try_from(nanos).unwrap_or(0).min(999_999_999),
    }
}

/// The wire attributes of an object, without a symlink's target (see
/// [`meta_at`] for that).
pub(super) fn meta_of(st: &libc::stat) -> Meta {
    Meta {
        kind: kind_of(st),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode & 0o7777,
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        version: version_of(st),
        uid: st.st_uid,
        gid: st.st_gid,
        nlink: st.st_nlink,
        file_id: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        atime: time(st.st_atime, st.st_atime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        rdev: st.st_rdev,
        target: None,
        blocks: st.st_blocks as u64,
    }
}

/// The wire attributes of `name` in `dir` as `st` describes it, with the
/// target of a symlink read as text (a link that vanished or changed since
/// the stat is reported with the target it has now, or none).
pub(super) fn meta_at(dir: BorrowedFd<'_>, name: &CStr, st: &libc::stat) -> Meta {
    let mut meta = meta_of(st);
    if meta.kind == FileKind::Symlink {
        match sys::readlinkat(dir, name) {
            Ok(bytes) => meta.target = Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => log::debug!("readlink {name:?}: {e}"),
        }
    }
    meta
}

/// The export id of a root directory: the canonical path tells two exports
/// of one machine apart, device and inode tell a root that was deleted and
/// recreated (whose old cache would be wrong) from the same root restarted.
pub(super) fn export_id(canonical_root: &[u8], st: &libc::stat) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"rfmount export id v1\0");
    h.update(canonical_root);
    h.update(&st.st_dev.to_le_bytes());
    h.update(&st.st_ino.to_le_bytes());
    h.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The export id of a subdirectory of an export: the parent export's id
/// and the directory's own device and inode, so that two names of one
/// directory (a symlink to it) share an id and caches, while another
/// directory, or this one deleted and recreated, gets another.
pub(super) fn subdir_export_id(parent_id: &str, st: &libc::stat) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"rfmount subdir export id v1\0");
    h.update(parent_id.as_bytes());
    h.update(&st.st_dev.to_le_bytes());
    h.update(&st.st_ino.to_le_bytes());
    h.finalize().as_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
