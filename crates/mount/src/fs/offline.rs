//! Answers from the data cache alone, for a mount that started while its
//! server was down (or lost its listings since): the files the cache holds
//! and the directories that lead to them. Nothing here is a listing the
//! server gave, so a name it does not show is *unknown* (EIO), never
//! absent (ENOENT).

use std::time::SystemTime;

use rfmount_client::Remote;
use rfmount_proto::{DirEntry, FileId, FileKind, Meta, RelPath, Timestamp, Version};

use super::RemoteFs;

fn dir_meta(mtime: Timestamp) -> Meta {
    cached(FileKind::Dir, 4096, 0o755, mtime, 0)
}

/// Attributes the cache can vouch for. The owner the server gives is not
/// cached, so such files show as this process's, the user who cached them;
/// one link each, so no two of them are taken for hard links of each other.
fn cached(kind: FileKind, size: u64, mode: u32, mtime: Timestamp, version: Version) -> Meta {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Meta {
        kind,
        size,
        mode,
        mtime,
        version,
        uid,
        gid,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        file_id: FileId::default(),
        atime: mtime,
        ctime: mtime,
        rdev: 0,
        target: None,
        blocks: 0,
    }
}

impl<R: Remote> RemoteFs<R> {
    /// Attributes of `path` as far as the cache knows: a cached file, a
    /// directory holding cached files, or the root.
    pub(super) fn cached_meta(&self, path: &RelPath) -> Option<Meta> {
        if path.is_root() {
            return Some(dir_meta(self.started));
        }
        if let Some(e) = self.cache.entry(path) {
            let md = std::fs::metadata(self.cache.data_path(path)).ok();
            let mtime = e.mtime.unwrap_or_else(|| {
                md.as_ref()
                    .and_then(|m| m.modified().ok())
                    .map_or(self.started, Timestamp::from_system)
            });
            return Some(cached(
                FileKind::File,
                md.map_or(e.size, |m| m.len()),
                e.mode.unwrap_or(0o644),
                mtime,
                e.version.unwrap_or(0),
            ));
        }
        self.cache
            .entries()
            .iter()
            .any(|(p, _)| p != path && p.starts_with(path))
            .then(|| dir_meta(self.started))
    }

    /// The entries of `dir` that the cache knows of.
    pub(super) fn cached_listing(&self, dir: &RelPath) -> Vec<DirEntry> {
        let mut names: Vec<String> = Vec::new();
        for (p, _) in self.cache.entries() {
            if p == *dir || !p.starts_with(dir) {
                continue;
            }
            let rest = p.as_str()[dir.as_str().len()..].trim_start_matches('/');
            let first = rest.split('/').next().unwrap_or_default();
            if !first.is_empty() && !names.iter().any(|n| n == first) {
                names.push(first.to_owned());
            }
        }
        names
            .into_iter()
            .filter_map(|name| {
                let meta = self.cached_meta(&dir.join(&name).ok()?)?;
                Some(DirEntry { name, meta })
            })
            .collect()
    }
}

/// When this mount started: the time shown for directories known only
/// from the cache.
pub(super) fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rfmount_client::mock::MemRemote;

    use super::*;
    use crate::data_cache::DataCache;
    use crate::fs::DirSink;
    use crate::inodes::ROOT;
    use crate::options::MountConfig;

    struct Names(Vec<String>);

    impl DirSink for Names {
        fn add(&mut self, _ino: u64, _offset: u64, name: &str, _meta: &Meta) -> bool {
            self.0.push(name.to_owned());
            false
        }
    }

    fn mount(remote: &Arc<MemRemote>, dir: &std::path::Path) -> RemoteFs<MemRemote> {
        let cfg = MountConfig::new(dir.to_path_buf());
        let cache = Arc::new(DataCache::open(dir, "mem-export", 1 << 30).unwrap());
        RemoteFs::new(remote.clone(), cfg, cache)
    }

    fn names(fs: &RemoteFs<MemRemote>, ino: u64) -> Vec<String> {
        let fh = fs.opendir(ino).unwrap();
        let mut n = Names(Vec::new());
        fs.readdir(fh, 0, false, &mut n).unwrap();
        fs.releasedir(fh);
        n.0.sort();
        n.0
    }

    #[test]
    fn a_mount_that_starts_offline_serves_what_the_cache_holds() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Arc::new(MemRemote::new(false));
        remote.write_file("sub/doc", b"cached");
        remote.write_file("top", b"also cached");
        remote.write_file("never", b"never read");
        {
            // An earlier mount reads two files.
            let fs = mount(&remote, dir.path());
            for (parent, name) in [(None, "top"), (Some("sub"), "doc")] {
                let p = match parent {
                    Some(d) => fs.lookup(ROOT, d).unwrap().ino,
                    None => ROOT,
                };
                let a = fs.lookup(p, name).unwrap();
                let o = fs.open(a.ino, libc::O_RDONLY).unwrap();
                fs.release(o.fh);
            }
        }
        remote.set_offline(true);
        let fs = mount(&remote, dir.path());
        assert_eq!(names(&fs, ROOT), [".", "..", "sub", "top"]);
        let sub = fs.lookup(ROOT, "sub").unwrap();
        assert_eq!(sub.meta.kind, FileKind::Dir);
        assert_eq!(names(&fs, sub.ino), [".", "..", "doc"]);
        let doc = fs.lookup(sub.ino, "doc").unwrap();
        assert_eq!(doc.meta.size, 6);
        let o = fs.open(doc.ino, libc::O_RDONLY).unwrap();
        assert_eq!(&*fs.read(o.fh, 0, 100).unwrap(), b"cached");
        fs.release(o.fh);
        // Not in the cache: unknown, so EIO, never ENOENT.
        for name in ["never", "nothing"] {
            let e = fs.lookup(ROOT, name).unwrap_err();
            assert_eq!(e.errno(), libc::EIO, "{name}: {e}");
        }
        // Back online: the server's view again.
        remote.set_offline(false);
        assert_eq!(names(&fs, ROOT), [".", "..", "never", "sub", "top"]);
        assert!(fs.lookup(ROOT, "nothing").unwrap_err().errno() == libc::ENOENT);
    }
}
