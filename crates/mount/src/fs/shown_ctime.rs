//! The ctime the kernel is shown for a file this mount wrote.
//!
//! Until its upload a file exists only in the local cache, and the kernel
//! is shown the local copy's ctime (that of the cache file, which every
//! write and truncate moves). The upload then makes the server's file, and
//! the server's kernel gives it its own ctime a few milliseconds later,
//! which no call can set. Shown as it is, the ctime of a file would change
//! at its close although nothing changed it then (pjdfstest's
//! `unchanged_ctime` tests see exactly that). So the ctime shown before
//! the upload stays the one shown for as long as the server's ctime is the
//! one that upload produced; the server's next real change of the file
//! (a chmod, a link, another upload, anyone's) shows as it is.

use std::collections::HashMap;

use parking_lot::Mutex;
use rfmount_proto::{Meta, Timestamp};

/// Files whose shown ctime is kept; beyond it the map starts over (a
/// forgotten file shows the server's ctime: a few milliseconds later).
const MAX_FILES: usize = 65_536;

/// Inode -> (the server's ctime after this mount's upload, the ctime the
/// kernel was shown before it).
#[derive(Default)]
pub(crate) struct ShownCtimes(Mutex<HashMap<u64, (Timestamp, Timestamp)>>);

impl ShownCtimes {
    /// `ino`'s upload left the server's file with ctime `server`; the
    /// kernel was shown `shown` until then.
    pub(crate) fn landed(&self, ino: u64, server: Timestamp, shown: Timestamp) {
        let mut map = self.0.lock();
        if map.len() >= MAX_FILES {
            map.clear();
        }
        map.insert(ino, (server, shown));
    }

    /// The ctime to show for `ino` with server attributes `meta`.
    pub(crate) fn ctime(&self, ino: u64, meta: &Meta) -> Timestamp {
        let mut map = self.0.lock();
        match map.get(&ino) {
            Some(&(server, shown)) if server == meta.ctime => shown,
            Some(_) => {
                // Changed since (on the server, or here and not sent yet):
                // its own ctime from now on.
                map.remove(&ino);
                meta.ctime
            }
            None => meta.ctime,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 0 }
    }

    #[test]
    fn the_shown_ctime_lasts_until_the_server_changes_the_file() {
        let s = ShownCtimes::default();
        let mut meta = Meta {
            ctime: t(20),
            version: 5,
            ..Meta::default()
        };
        assert_eq!(s.ctime(1, &meta), t(20));
        s.landed(1, t(20), t(19));
        assert_eq!(s.ctime(1, &meta), t(19));
        assert_eq!(s.ctime(2, &meta), t(20));
        meta.ctime = t(30);
        assert_eq!(s.ctime(1, &meta), t(30));
        // Forgotten: the old ctime coming back is the server's again.
        meta.ctime = t(20);
        assert_eq!(s.ctime(1, &meta), t(20));
    }
}
