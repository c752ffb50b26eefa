//! Short-lived caches of attributes and directory listings.
//!
//! One `LIST` fills both: the listing (for readdir and for lookups of names
//! in that directory) and the attributes of every child, so `ls -l` of a
//! 10,000-file directory costs one round trip. Entries expire after the
//! configured timeouts; every local change invalidates what it touches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rfmount_proto::{DirEntry, Meta, RelPath};

/// A directory's entries as of one `LIST`, plus the changes this mount
/// made since.
#[derive(Clone)]
pub struct Listing {
    /// Entries in server order.
    pub entries: Vec<DirEntry>,
    index: HashMap<String, usize>,
}

impl Listing {
    /// Indexes a listing by name.
    pub fn new(entries: Vec<DirEntry>) -> Self {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Listing { entries, index }
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&DirEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Position of `name` in `entries`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn upsert(&mut self, name: &str, meta: Meta) {
        match self.index.get(name) {
            Some(&i) => self.entries[i].meta = meta,
            None => {
                self.index.insert(name.to_owned(), self.entries.len());
                self.entries.push(DirEntry {
                    name: name.to_owned(),
                    meta,
                });
            }
        }
    }

    fn remove(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }
}

/// Attribute and listing caches with expiry.
pub struct MetaCache {
    attr_ttl: Duration,
    dir_ttl: Duration,
    attrs: HashMap<RelPath, (Meta, Instant)>,
    dirs: HashMap<RelPath, (Arc<Listing>, Instant)>,
    /// Names the server just said do not exist, trusted as attributes
    /// are: a `cp` or `tar x` looks a new name up several times before it
    /// creates it, and each would be a STAT answered NotFound.
    absent: HashMap<RelPath, Instant>,
}

impl MetaCache {
    /// Empty caches with these lifetimes.
    pub fn new(attr_ttl: Duration, dir_ttl: Duration) -> Self {
        MetaCache {
            attr_ttl,
            dir_ttl,
            attrs: HashMap::new(),
            dirs: HashMap::new(),
            absent: HashMap::new(),
        }
    }

    /// Fresh attributes of `path`, if cached.
    pub fn attr(&self, path: &RelPath) -> Option<Meta> {
        self.attrs
            .get(path)
            .filter(|(_, t)| t.elapsed() < self.attr_ttl)
            .map(|(m, _)| m.clone())
    }

    /// Cached attributes of `path`, however old: for answering while the
    /// server is unreachable.
    pub fn attr_any(&self, path: &RelPath) -> Option<Meta> {
        self.attrs.get(path).map(|(m, _)| m.clone())
    }

    /// The last listing of `dir`, however old (see [`MetaCache::attr_any`]).
    pub fn listing_any(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        self.dirs.get(dir).map(|(l, _)| l.clone())
    }

    /// True when the server said `path` does not exist within the
    /// attribute lifetime, and nothing here created it since.
    pub fn known_absent(&self, path: &RelPath) -> bool {
        self.absent
            .get(path)
            .is_some_and(|t| t.elapsed() < self.attr_ttl)
    }

    /// Records the server's answer that `path` does not exist.
    pub fn put_absent(&mut self, path: &RelPath) {
        if self.absent.len() > 10_000 {
            let ttl = self.attr_ttl;
            self.absent.retain(|_, t| t.elapsed() < ttl);
        }
        self.attrs.remove(path);
        self.absent.insert(path.clone(), Instant::now());
    }

    /// Records attributes just received.
    pub fn put_attr(&mut self, path: &RelPath, meta: Meta) {
        self.absent.remove(path);
        self.attrs
            .insert(path.clone(), (meta.clone(), Instant::now()));
    }

    /// A fresh listing of `dir`, if cached.
    pub fn listing(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        self.dirs
            .get(dir)
            .filter(|(_, t)| t.elapsed() < self.dir_ttl)
            .map(|(l, _)| l.clone())
    }

    /// Records a listing and the attributes of its children.
    pub fn put_listing(&mut self, dir: &RelPath, listing: Arc<Listing>) {
        let now = Instant::now();
        // Bound memory: expired entries are dropped whenever a big listing
        // arrives, so repeated `ls -R` of a huge tree does not accumulate.
        if self.attrs.len() > 100_000 {
            let ttl = self.attr_ttl;
            self.attrs.retain(|_, (_, t)| t.elapsed() < ttl);
            let dttl = self.dir_ttl;
            self.dirs.retain(|_, (_, t)| t.elapsed() < dttl);
        }
        for e in &listing.entries {
            if let Ok(p) = dir.join(&e.name) {
                self.absent.remove(&p);
                self.attrs.insert(p, (e.meta.clone(), now));
            }
        }
        self.dirs.insert(dir.clone(), (listing, now));
    }

    /// Records that this mount created or changed `path`: its attributes,
    /// and the parent's cached listing updated in place rather than dropped,
    /// so that looking up the next new name in that directory (`tar x`,
    /// `cp -r`) needs no round trip.
    pub fn note_entry(&mut self, path: &RelPath, meta: Meta) {
        self.absent.remove(path);
        self.attrs
            .insert(path.clone(), (meta.clone(), Instant::now()));
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        self.dir_changed(&parent);
        if let Some((l, _)) = self.dirs.get_mut(&parent) {
            Arc::make_mut(l).upsert(name, meta);
        }
    }

    /// Records that this mount created the directory `dir`: it is empty.
    pub fn note_empty_dir(&mut self, dir: &RelPath) {
        self.dirs.insert(
            dir.clone(),
            (Arc::new(Listing::new(Vec::new())), Instant::now()),
        );
    }

    /// Records that this mount removed `path` (a file or an empty directory).
    pub fn note_removed(&mut self, path: &RelPath) {
        self.attrs.remove(path);
        self.dirs.remove(path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        self.dir_changed(&parent);
        if let Some((l, _)) = self.dirs.get_mut(&parent) {
            Arc::make_mut(l).remove(name);
        }
    }

    /// Something in `dir` changed through this mount: its own attributes
    /// (mtime, ctime, nlink) are stale wherever they are cached, in its
    /// attribute entry and in its parent's listing, so the next look at
    /// them asks the server. Its own listing, kept up to date in place,
    /// stays.
    pub fn dir_changed(&mut self, dir: &RelPath) {
        self.attrs.remove(dir);
        if let Some(parent) = dir.parent() {
            self.dirs.remove(&parent);
        }
    }

    /// Forgets the attributes of `path` and the listing of its parent.
    pub fn invalidate(&mut self, path: &RelPath) {
        self.attrs.remove(path);
        self.absent.remove(path);
        if let Some(parent) = path.parent() {
            self.dirs.remove(&parent);
        }
    }

    /// Forgets `path`, everything beneath it, and its parent's listing.
    pub fn invalidate_tree(&mut self, path: &RelPath) {
        self.invalidate(path);
        self.attrs.retain(|p, _| !p.starts_with(path));
        self.dirs.retain(|p, _| !p.starts_with(path));
        self.absent.retain(|p, _| !p.starts_with(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfmount_proto::{FileKind, Timestamp};

    fn meta(size: u64) -> Meta {
        Meta {
            kind: FileKind::File,
            size,
            mode: 0o644,
            mtime: Timestamp::default(),
            version: 1,
            ..Meta::default()
        }
    }

    #[test]
    fn local_changes_update_the_cached_listing_in_place() {
        let mut mc = MetaCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let d = RelPath::new("d").unwrap();
        let entries = ["a", "b", "c"]
            .map(|n| DirEntry {
                name: n.into(),
                meta: meta(1),
            })
            .to_vec();
        mc.put_listing(&d, Arc::new(Listing::new(entries)));
        mc.note_entry(&d.join("new").unwrap(), meta(5));
        mc.note_entry(&d.join("b").unwrap(), meta(7));
        mc.note_removed(&d.join("a").unwrap());
        let l = mc.listing(&d).unwrap();
        let mut names: Vec<_> = l.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["b", "c", "new"]);
        assert_eq!(l.get("b").unwrap().meta.size, 7);
        assert_eq!(l.get("new").unwrap().meta.size, 5);
        assert_eq!(l.get("c").unwrap().name, "c");
        assert!(l.get("a").is_none());
        let sub = d.join("sub").unwrap();
        mc.note_empty_dir(&sub);
        assert!(mc.listing(&sub).unwrap().entries.is_empty());
    }
}
