//! The ctime the kernel is shown for a file this mount wrote.
//!
//! Until its upload a file exists only in the local cache, and the kernel
//! is shown the local copy's ctime (that of the cache file, which every
//! write and truncate moves, and which a chmod, utimens or xattr change of
//! the not yet uploaded file moves through [`touch`]). The upload then
//! makes the server's file, and the server's kernel gives it its own ctime
//! a few milliseconds later, which no call can set.
//!
//! Two rules keep both what was shown and what the server has:
//! - If the kernel was given the local copy's latest ctime before the
//!   upload (a create's reply, a stat after the last write), that one stays
//!   shown for as long as the server's ctime is the one the upload produced:
//!   shown as it is, the ctime would change at the close although nothing
//!   changed the file then (pjdfstest's `unchanged_ctime` tests see exactly
//!   that).
//! - If it was not (a write came after the last reply that carried a
//!   ctime), nobody can have seen the local ctime, and the server's is
//!   shown from the upload on: it is later than anything shown before, so
//!   the ctime moves forward as the write made it, and the mount shows the
//!   server's times exactly.
//!
//! The server's next change of the file (a chmod, a link, another upload,
//! anyone's) shows as it is.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use parking_lot::Mutex;
use rfmount_proto::{Meta, Timestamp};

/// Files remembered; beyond it a map starts over (a forgotten file shows
/// the server's ctime: a few milliseconds later).
const MAX_FILES: usize = 65_536;

#[derive(Default)]
struct Shown {
    /// Inode -> the last ctime given to the kernel.
    told: HashMap<u64, Timestamp>,
    /// Inode -> (the server's ctime after this mount's upload, the ctime
    /// the kernel was shown before it).
    kept: HashMap<u64, (Timestamp, Timestamp)>,
}

#[derive(Default)]
pub(crate) struct ShownCtimes(Mutex<Shown>);

impl ShownCtimes {
    /// `ino`'s upload left the server's file with ctime `server`; the local
    /// copy it sent had ctime `local`.
    pub(crate) fn landed(&self, ino: u64, server: Timestamp, local: Timestamp) {
        let mut s = self.0.lock();
        if s.told.get(&ino) == Some(&local) {
            if s.kept.len() >= MAX_FILES {
                s.kept.clear();
            }
            s.kept.insert(ino, (server, local));
        } else {
            s.kept.remove(&ino);
        }
    }

    /// The ctime to give the kernel for `ino` with attributes `meta`.
    pub(crate) fn ctime(&self, ino: u64, meta: &Meta) -> Timestamp {
        let mut s = self.0.lock();
        let shown = match s.kept.get(&ino) {
            // The server's file as the upload left it, or the local copy
            // whose upload that was (attributes read just before the
            // upload is recorded as landed).
            Some(&(server, kept)) if meta.ctime == server || meta.ctime == kept => kept,
            Some(_) => {
                // Changed since (on the server, or here and not sent yet):
                // its own ctime from now on.
                s.kept.remove(&ino);
                meta.ctime
            }
            None => meta.ctime,
        };
        if s.told.len() >= MAX_FILES {
            s.told.clear();
        }
        s.told.insert(ino, shown);
        shown
    }
}

/// The ctime of a cache file's metadata, as a protocol timestamp.
pub(crate) fn ctime_of(md: &std::fs::Metadata) -> Timestamp {
    use std::os::unix::fs::MetadataExt;
    Timestamp {
        secs: md.ctime(),
        nanos: u32::try_from(md.ctime_nsec()).unwrap_or(0),
    }
}

/// Moves the ctime of the cache file `path` without changing it, for a
/// change of a not yet uploaded file that is recorded beside its content
/// (a chmod, utimens or xattr change): on a local file system that change
/// moves the ctime too, and the cache file's is the one shown. A chmod to
/// the mode it has is one (the kernel sets ctime on every chmod).
///
/// # Errors
/// The cache file could not be read or changed.
pub(crate) fn touch(path: &Path) -> io::Result<()> {
    let perms = std::fs::metadata(path)?.permissions();
    std::fs::set_permissions(path, perms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    fn meta(ctime: i64) -> Meta {
        Meta {
            ctime: t(ctime),
            version: 5,
            ..Meta::default()
        }
    }

    #[test]
    fn a_ctime_the_kernel_was_given_lasts_until_the_server_changes_the_file() {
        let s = ShownCtimes::default();
        // The local copy's, given to the kernel; its upload made 20.
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        s.landed(1, t(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(19));
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        assert_eq!(s.ctime(2, &meta(20)), t(20));
        assert_eq!(s.ctime(1, &meta(30)), t(30));
        // Forgotten: the old ctime coming back is the server's again.
        assert_eq!(s.ctime(1, &meta(20)), t(20));
    }

    #[test]
    fn a_ctime_nobody_was_given_is_replaced_by_the_servers() {
        let s = ShownCtimes::default();
        // Shown before the last write (local ctime 19), not after it.
        assert_eq!(s.ctime(1, &meta(18)), t(18));
        s.landed(1, t(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(20));
        // Never shown at all.
        s.landed(3, t(20), t(19));
        assert_eq!(s.ctime(3, &meta(20)), t(20));
    }

    #[test]
    fn a_later_upload_of_a_file_seen_before_it_shows_the_servers_ctime() {
        let s = ShownCtimes::default();
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        s.landed(1, t(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(19));
        // Written again (local 25) with no stat in between: 26 from then.
        s.landed(1, t(26), t(25));
        assert_eq!(s.ctime(1, &meta(26)), t(26));
    }
}
