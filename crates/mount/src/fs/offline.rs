//! Answers from the data cache alone, for a mount that started while its
//! server was down (or lost its listings since): the files the cache holds
//! and the directories that lead to them. Nothing here is a listing the
//! server gave, so a name it does not show is *unknown* (EIO), never
//! absent (ENOENT).

use std::time::SystemTime;

use rfmount_client::Remote;
use rfmount_proto::{DirEntry, FileKind, Meta, RelPath, Timestamp};

use super::RemoteFs;

fn dir_meta(mtime: Timestamp) -> Meta {
    Meta {
        kind: FileKind::Dir,
        size: 4096,
        mode: 0o755,
        mtime,
        version: 0,
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
            return Some(Meta {
                kind: FileKind::File,
                size: md.map_or(e.size, |m| m.len()),
                mode: e.mode.unwrap_or(0o644),
                mtime,
                version: e.version.unwrap_or(0),
            });
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
