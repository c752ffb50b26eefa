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
//! anyone's) moves its ctime there, and that shows as it is. The kept
//! ctimes are also written to a file in the cache directory, keyed by the
//! server's file id and ctime, so that a remount (or a mount that lost the
//! file's inode number) shows the same; a file changed since has another
//! server ctime and no longer matches.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use log::warn;
use parking_lot::Mutex;
use rfmount_proto::{FileId, Meta, Timestamp};

/// Files remembered; beyond it a map (and the saved file) starts over (a
/// forgotten file shows the server's ctime: a few milliseconds later).
const MAX_FILES: usize = 65_536;

#[derive(Default)]
struct Shown {
    /// Inode -> the last ctime given to the kernel.
    told: HashMap<u64, Timestamp>,
    /// Inode -> (the server's ctime after this mount's upload, the ctime
    /// the kernel was shown before it).
    kept: HashMap<u64, (Timestamp, Timestamp)>,
    /// (server file, its ctime after the upload) -> the ctime kept for it,
    /// as saved: what a new inode of that file shows.
    saved: HashMap<(FileId, Timestamp), Timestamp>,
    /// Where `saved` is appended to, once opened.
    file: Option<File>,
}

#[derive(Default)]
pub(crate) struct ShownCtimes {
    shown: Mutex<Shown>,
    /// The saved file (`None`: kept in memory only).
    path: Option<PathBuf>,
}

impl ShownCtimes {
    /// Kept ctimes saved in (and read back from) `path`. An unreadable
    /// file is started over: its files then show the server's ctimes.
    pub(crate) fn open(path: PathBuf) -> Self {
        let saved = match File::open(&path) {
            Ok(f) => read_saved(BufReader::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                warn!("reading {}: {e}; starting it over", path.display());
                HashMap::new()
            }
        };
        ShownCtimes {
            shown: Mutex::new(Shown {
                saved,
                ..Shown::default()
            }),
            path: Some(path),
        }
    }

    /// `ino`'s upload left the server's file `meta` (its ctime that of the
    /// upload); the local copy it sent had ctime `local`.
    pub(crate) fn landed(&self, ino: u64, meta: &Meta, local: Timestamp) {
        let server = meta.ctime;
        let mut s = self.shown.lock();
        if s.told.get(&ino) != Some(&local) {
            s.kept.remove(&ino);
            return;
        }
        if s.kept.len() >= MAX_FILES {
            s.kept.clear();
        }
        s.kept.insert(ino, (server, local));
        if meta.file_id != FileId::default() {
            self.save(&mut s, meta.file_id, server, local);
        }
    }

    fn save(&self, s: &mut Shown, id: FileId, server: Timestamp, kept: Timestamp) {
        let Some(path) = &self.path else {
            s.saved.insert((id, server), kept);
            return;
        };
        let restart = s.saved.len() >= MAX_FILES;
        if restart {
            s.saved.clear();
            s.file = None;
        }
        if s.file.is_none() {
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .truncate(false)
                .open(path)
                .and_then(|f| {
                    if restart {
                        f.set_len(0)?;
                    }
                    Ok(f)
                });
            match opened {
                Ok(f) => s.file = Some(f),
                Err(e) => warn!("saving shown ctimes in {}: {e}", path.display()),
            }
        }
        s.saved.insert((id, server), kept);
        if let Some(f) = &mut s.file
            && let Err(e) = f.write_all(line(id, server, kept).as_bytes())
        {
            warn!("saving shown ctimes in {}: {e}", path.display());
        }
    }

    /// The ctime to give the kernel for `ino` with attributes `meta`.
    pub(crate) fn ctime(&self, ino: u64, meta: &Meta) -> Timestamp {
        let mut s = self.shown.lock();
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
            None => match s.saved.get(&(meta.file_id, meta.ctime)).copied() {
                Some(kept) if meta.file_id != FileId::default() => {
                    s.kept.insert(ino, (meta.ctime, kept));
                    kept
                }
                _ => meta.ctime,
            },
        };
        if s.told.len() >= MAX_FILES {
            s.told.clear();
        }
        s.told.insert(ino, shown);
        shown
    }
}

/// One saved entry: `DEV INO SERVER_SECS SERVER_NANOS KEPT_SECS KEPT_NANOS`.
fn line(id: FileId, server: Timestamp, kept: Timestamp) -> String {
    format!(
        "{} {} {} {} {} {}\n",
        id.dev, id.ino, server.secs, server.nanos, kept.secs, kept.nanos
    )
}

/// The saved entries of `r`; lines that do not parse (a write cut short)
/// are skipped, and at most the last `MAX_FILES` are kept.
fn read_saved(r: impl BufRead) -> HashMap<(FileId, Timestamp), Timestamp> {
    let mut saved = HashMap::new();
    for l in r.lines() {
        let Ok(l) = l else { break };
        let f: Vec<&str> = l.split(' ').collect();
        let parsed = (|| {
            let [dev, ino, ss, sn, ks, kn] = f.as_slice() else {
                return None;
            };
            let id = FileId {
                dev: dev.parse().ok()?,
                ino: ino.parse().ok()?,
            };
            let ts = |s: &str, n: &str| -> Option<Timestamp> {
                Some(Timestamp {
                    secs: s.parse().ok()?,
                    nanos: n.parse().ok()?,
                })
            };
            Some(((id, ts(ss, sn)?), ts(ks, kn)?))
        })();
        if let Some((k, v)) = parsed {
            if saved.len() >= MAX_FILES {
                saved.clear();
            }
            saved.insert(k, v);
        }
    }
    saved
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
            file_id: FileId { dev: 1, ino: 7 },
            ..Meta::default()
        }
    }

    #[test]
    fn a_ctime_the_kernel_was_given_lasts_until_the_server_changes_the_file() {
        let s = ShownCtimes::default();
        // The local copy's, given to the kernel; its upload made 20.
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        s.landed(1, &meta(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(19));
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        // Another server file that happens to have that ctime.
        let other = Meta {
            file_id: FileId { dev: 1, ino: 8 },
            ..meta(20)
        };
        assert_eq!(s.ctime(2, &other), t(20));
        // Changed on the server.
        assert_eq!(s.ctime(1, &meta(30)), t(30));
        assert_eq!(s.ctime(1, &meta(30)), t(30));
    }

    #[test]
    fn a_ctime_nobody_was_given_is_replaced_by_the_servers() {
        let s = ShownCtimes::default();
        // Shown before the last write (local ctime 19), not after it.
        assert_eq!(s.ctime(1, &meta(18)), t(18));
        s.landed(1, &meta(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(20));
        // Never shown at all.
        s.landed(3, &meta(20), t(19));
        assert_eq!(s.ctime(3, &meta(20)), t(20));
    }

    #[test]
    fn a_later_upload_of_a_file_seen_before_it_shows_the_servers_ctime() {
        let s = ShownCtimes::default();
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        s.landed(1, &meta(20), t(19));
        assert_eq!(s.ctime(1, &meta(20)), t(19));
        // Written again (local 25) with no stat in between: 26 from then.
        s.landed(1, &meta(26), t(25));
        assert_eq!(s.ctime(1, &meta(26)), t(26));
    }

    #[test]
    fn a_kept_ctime_outlives_the_mount_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("shown-ctime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shown-ctimes");
        let _ = std::fs::remove_file(&path);
        let s = ShownCtimes::open(path.clone());
        assert_eq!(s.ctime(1, &meta(19)), t(19));
        s.landed(1, &meta(20), t(19));
        drop(s);
        // A cut-short line is skipped.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"1 7 3").unwrap();
        drop(f);
        let again = ShownCtimes::open(path.clone());
        // Another inode number for the same server file.
        assert_eq!(again.ctime(9, &meta(20)), t(19));
        assert_eq!(again.ctime(9, &meta(21)), t(21));
        // Another server file with the same ctime.
        let other = Meta {
            file_id: FileId { dev: 1, ino: 8 },
            ..meta(20)
        };
        assert_eq!(again.ctime(10, &other), t(20));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
