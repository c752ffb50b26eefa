//! Short-lived caches of attributes and directory listings.
//!
//! One `LIST` fills both: the listing (for readdir and for lookups of names
//! in that directory) and the attributes of every child, so `ls -l` of a
//! 10,000-file directory costs one round trip. Entries expire after the
//! configured timeouts; every local change invalidates what it touches.
//!
//! An entry read under a server callback is *trusted*: it stays valid
//! whatever its age until the server pushes an invalidation (or the
//! connection breaks, which makes every entry ordinary again), so it is
//! served with no round trip at all.

use std::collections::{HashMap, HashSet};
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
    /// Subdirectories whose own attributes (mtime, ctime, nlink) here are
    /// stale: something changed inside them through this mount. They still
    /// exist, so a lookup of another name needs no round trip; their
    /// attributes are asked for again.
    stale: HashSet<String>,
}

impl Listing {
    /// Indexes a listing by name.
    pub fn new(entries: Vec<DirEntry>) -> Self {
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Listing {
            entries,
            index,
            stale: HashSet::new(),
        }
    }

    /// True when the attributes of `name` here are stale (see
    /// [`MetaCache::dir_changed`]).
    pub fn is_stale(&self, name: &str) -> bool {
        self.stale.contains(name)
    }

    /// True when some entry's attributes are stale: readdir, which hands
    /// them all to the kernel, needs a fresh listing.
    pub fn has_stale(&self) -> bool {
        !self.stale.is_empty()
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
        self.stale.remove(name);
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
        self.stale.remove(name);
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
    attrs: HashMap<RelPath, (Meta, Instant, bool)>,
    dirs: HashMap<RelPath, (Arc<Listing>, Instant, bool)>,
    /// The connection broke: until the next one is up, nothing is served
    /// for longer than [`BROKEN_TTL`], whatever the configured timeouts
    /// (which may be long because invalidations are pushed).
    broken: bool,
    /// Names the server just said do not exist, trusted for at most
    /// [`ABSENT_TTL`]: a `cp` or `tar x` looks a new name up several times
    /// before it creates it, and each would be a STAT answered NotFound.
    /// No callback covers them, so they are never trusted for longer.
    absent: HashMap<RelPath, Instant>,
}

/// The longest an entry is reused while callbacks are void.
pub const BROKEN_TTL: Duration = Duration::from_secs(1);

/// The longest a "no such name" answer is reused.
pub const ABSENT_TTL: Duration = Duration::from_secs(1);

impl MetaCache {
    /// Empty caches with these lifetimes.
    pub fn new(attr_ttl: Duration, dir_ttl: Duration) -> Self {
        MetaCache {
            attr_ttl,
            dir_ttl,
            attrs: HashMap::new(),
            dirs: HashMap::new(),
            broken: false,
            absent: HashMap::new(),
        }
    }

    fn attr_ttl(&self) -> Duration {
        if self.broken {
            self.attr_ttl.min(BROKEN_TTL)
        } else {
            self.attr_ttl
        }
    }

    fn dir_ttl(&self) -> Duration {
        if self.broken {
            self.dir_ttl.min(BROKEN_TTL)
        } else {
            self.dir_ttl
        }
    }

    /// Fresh attributes of `path`, if cached.
    pub fn attr(&self, path: &RelPath) -> Option<Meta> {
        self.attrs
            .get(path)
            .filter(|(_, t, trusted)| *trusted || t.elapsed() < self.attr_ttl())
            .map(|(m, _, _)| m.clone())
    }

    /// Attributes of `path` held under a callback.
    pub fn attr_trusted(&self, path: &RelPath) -> Option<Meta> {
        self.attrs
            .get(path)
            .filter(|(_, _, trusted)| *trusted)
            .map(|(m, _, _)| m.clone())
    }

    /// A listing of `dir` held under a callback.
    pub fn listing_trusted(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        self.dirs
            .get(dir)
            .filter(|(_, _, trusted)| *trusted)
            .map(|(l, _, _)| l.clone())
    }

    /// Cached attributes of `path`, however old: for answering while the
    /// server is unreachable.
    pub fn attr_any(&self, path: &RelPath) -> Option<Meta> {
        self.attrs.get(path).map(|(m, _, _)| m.clone())
    }

    /// The last listing of `dir`, however old (see [`MetaCache::attr_any`]).
    pub fn listing_any(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        self.dirs.get(dir).map(|(l, _, _)| l.clone())
    }

    /// True when the server said `path` does not exist within the
    /// attribute lifetime, and nothing here created it since.
    pub fn known_absent(&self, path: &RelPath) -> bool {
        self.absent
            .get(path)
            .is_some_and(|t| t.elapsed() < self.attr_ttl.min(ABSENT_TTL))
    }

    /// Records the server's answer that `path` does not exist.
    pub fn put_absent(&mut self, path: &RelPath) {
        if self.absent.len() > 10_000 {
            let ttl = self.attr_ttl.min(ABSENT_TTL);
            self.absent.retain(|_, t| t.elapsed() < ttl);
        }
        self.attrs.remove(path);
        self.absent.insert(path.clone(), Instant::now());
    }

    /// Records attributes just received.
    pub fn put_attr(&mut self, path: &RelPath, meta: Meta) {
        self.put_attr_as(path, meta, false);
    }

    /// Records attributes just received, `trusted` when under a callback.
    pub fn put_attr_as(&mut self, path: &RelPath, meta: Meta, trusted: bool) {
        self.absent.remove(path);
        // The parent's listing says the same (readdirplus hands its
        // entries to the kernel, and a trusted listing outlives `attrs`):
        // a chmod or utimes of a directory `tar x` made must show in
        // `ls -l` of its parent.
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
            && let Some((l, _, _)) = self.dirs.get_mut(&parent)
            && (l.is_stale(name) || l.get(name).is_some_and(|e| e.meta != meta))
        {
            Arc::make_mut(l).upsert(name, meta.clone());
        }
        self.attrs
            .insert(path.clone(), (meta, Instant::now(), trusted));
    }

    /// Records the attributes this mount's own change of `path` (chmod,
    /// chown, utimes, truncate) got from the server, in the parent's cached
    /// listing too: once the attribute entry expires, lookups fall back to
    /// that listing, which must not bring back the attributes from before
    /// the change. The directory itself did not change.
    pub fn note_attr(&mut self, path: &RelPath, meta: Meta) {
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
            && let Some((l, _, _)) = self.dirs.get_mut(&parent)
            && l.get(name).is_some()
        {
            Arc::make_mut(l).upsert(name, meta.clone());
        }
        self.put_attr(path, meta);
    }

    /// A fresh listing of `dir`, if cached.
    pub fn listing(&self, dir: &RelPath) -> Option<Arc<Listing>> {
        self.dirs
            .get(dir)
            .filter(|(_, t, trusted)| *trusted || t.elapsed() < self.dir_ttl())
            .map(|(l, _, _)| l.clone())
    }

    /// Records a listing and the attributes of its children.
    pub fn put_listing(&mut self, dir: &RelPath, listing: Arc<Listing>) {
        self.put_listing_as(dir, listing, false);
    }

    /// Records a listing and its children's attributes, `trusted` when
    /// under a callback (a directory's callback covers its listing, which
    /// carries every child's attributes).
    pub fn put_listing_as(&mut self, dir: &RelPath, listing: Arc<Listing>, trusted: bool) {
        let now = Instant::now();
        // Bound memory: expired entries are dropped whenever a big listing
        // arrives, so repeated `ls -R` of a huge tree does not accumulate.
        if self.attrs.len() > 100_000 {
            let ttl = self.attr_ttl;
            self.attrs
                .retain(|_, (_, t, trusted)| *trusted || t.elapsed() < ttl);
            let dttl = self.dir_ttl;
            self.dirs
                .retain(|_, (_, t, trusted)| *trusted || t.elapsed() < dttl);
        }
        for e in &listing.entries {
            if let Ok(p) = dir.join(&e.name) {
                self.absent.remove(&p);
                self.attrs.insert(p, (e.meta.clone(), now, trusted));
            }
        }
        self.dirs.insert(dir.clone(), (listing, now, trusted));
    }

    /// Records that this mount created or changed `path`: its attributes,
    /// and the parent's cached listing updated in place rather than dropped,
    /// so that looking up the next new name in that directory (`tar x`,
    /// `cp -r`) needs no round trip.
    ///
    /// The new attributes stay trusted when the old ones or the parent's
    /// listing were: the server keeps this mount's callbacks across its own
    /// changes, and any other change since would have dropped them.
    pub fn note_entry(&mut self, path: &RelPath, meta: Meta) {
        self.absent.remove(path);
        let parent_trusted = path
            .parent()
            .and_then(|p| self.dirs.get(&p))
            .is_some_and(|(_, _, t)| *t);
        let trusted = parent_trusted || self.attrs.get(path).is_some_and(|(_, _, t)| *t);
        self.attrs
            .insert(path.clone(), (meta.clone(), Instant::now(), trusted));
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return;
        };
        self.dir_changed(&parent);
        if let Some((l, _, _)) = self.dirs.get_mut(&parent) {
            Arc::make_mut(l).upsert(name, meta);
        }
    }

    /// [`MetaCache::note_entry`], where `parent` holds the parent
    /// directory's attributes after the change, as the server answered
    /// them: they replace the stale ones (here and in the grandparent's
    /// listing) instead of being forgotten.
    pub fn note_entry_in(&mut self, path: &RelPath, meta: Meta, parent: Option<Meta>) {
        self.note_entry_in_as(path, meta, parent, false);
    }

    /// [`MetaCache::note_entry_in`]; `granted` when the answer came under
    /// the callbacks (no invalidation between request and answer): the
    /// parent's new attributes are then trusted as far as its listing is,
    /// since the server keeps this mount's callbacks across its own
    /// changes and stat'ed the parent after the change.
    pub fn note_entry_in_as(
        &mut self,
        path: &RelPath,
        meta: Meta,
        parent: Option<Meta>,
        granted: bool,
    ) {
        let (Some(parent_meta), Some(dir), Some(name)) = (parent, path.parent(), path.file_name())
        else {
            self.note_entry(path, meta);
            return;
        };
        self.absent.remove(path);
        let parent_trusted = self.dirs.get(&dir).is_some_and(|(_, _, t)| *t);
        let trusted = parent_trusted || self.attrs.get(path).is_some_and(|(_, _, t)| *t);
        self.attrs
            .insert(path.clone(), (meta.clone(), Instant::now(), trusted));
        if let Some((l, _, _)) = self.dirs.get_mut(&dir) {
            Arc::make_mut(l).upsert(name, meta);
        }
        if let (Some(grand), Some(dir_name)) = (dir.parent(), dir.file_name())
            && let Some((l, _, _)) = self.dirs.get_mut(&grand)
        {
            Arc::make_mut(l).upsert(dir_name, parent_meta.clone());
        }
        // Not granted: another change may have landed between the server's
        // stat of the directory and this, and no callback says so.
        let keep = granted && parent_trusted;
        self.attrs.insert(dir, (parent_meta, Instant::now(), keep));
    }

    /// Records that this mount created the directory `dir`: it is empty.
    pub fn note_empty_dir(&mut self, dir: &RelPath) {
        self.note_empty_dir_as(dir, false);
    }

    /// [`MetaCache::note_empty_dir`], `trusted` when the server holds a
    /// callback on the new directory for this mount.
    pub fn note_empty_dir_as(&mut self, dir: &RelPath, trusted: bool) {
        self.dirs.insert(
            dir.clone(),
            (Arc::new(Listing::new(Vec::new())), Instant::now(), trusted),
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
        if let Some((l, _, _)) = self.dirs.get_mut(&parent) {
            Arc::make_mut(l).remove(name);
        }
    }

    /// Something in `dir` changed through this mount: its own attributes
    /// (mtime, ctime, nlink) are stale wherever they are cached, in its
    /// attribute entry and in its parent's listing, so the next look at
    /// them asks the server. Its own listing, kept up to date in place,
    /// stays; so does the parent's, whose other names are unchanged (the
    /// next name `tar x` creates beside `dir` is known absent from it).
    pub fn dir_changed(&mut self, dir: &RelPath) {
        self.attrs_changed(dir);
    }

    /// The attributes of `path` changed through this mount while its name
    /// stayed (a hard link's count dropped): they are stale here and in
    /// the parent's listing, whose names all still hold, so a name created
    /// beside it later is still known absent.
    pub fn attrs_changed(&mut self, path: &RelPath) {
        self.attrs.remove(path);
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
            && let Some((l, _, _)) = self.dirs.get_mut(&parent)
            && !l.is_stale(name)
        {
            Arc::make_mut(l).stale.insert(name.to_owned());
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

    /// The server pushed a change of `path`: its attributes, its own
    /// listing and its parent's listing are gone (the parent's carries its
    /// attributes); with `tree`, everything beneath it too.
    pub fn pushed(&mut self, path: &RelPath, tree: bool) {
        self.attrs.remove(path);
        self.dirs.remove(path);
        if let Some(parent) = path.parent() {
            self.dirs.remove(&parent);
            // The parent's mtime (and link count) changed with its listing.
            self.attrs.remove(&parent);
        }
        if tree {
            self.attrs.retain(|p, _| !p.starts_with(path));
            self.dirs.retain(|p, _| !p.starts_with(path));
        }
    }

    /// The connection broke: nothing is trusted any more; entries age out
    /// by the timeouts from when they were read.
    pub fn distrust_all(&mut self) {
        self.broken = true;
        for v in self.attrs.values_mut() {
            v.2 = false;
        }
        for v in self.dirs.values_mut() {
            v.2 = false;
        }
    }

    /// Forgets everything (a new connection after a break: whatever was
    /// read before may have changed unseen).
    pub fn clear(&mut self) {
        self.broken = false;
        self.attrs.clear();
        self.dirs.clear();
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

    #[test]
    fn an_attribute_change_reaches_the_listing_not_the_directory() {
        let mut mc = MetaCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let d = RelPath::new("d").unwrap();
        let entry = DirEntry {
            name: "f".into(),
            meta: meta(1),
        };
        mc.put_listing(&d, Arc::new(Listing::new(vec![entry])));
        mc.put_attr(&d, meta(0));
        let mut chowned = meta(1);
        chowned.uid = 1000;
        mc.note_attr(&d.join("f").unwrap(), chowned);
        mc.note_attr(&d.join("gone").unwrap(), meta(3));
        let l = mc.listing(&d).unwrap();
        assert_eq!(l.get("f").unwrap().meta.uid, 1000);
        assert!(l.get("gone").is_none(), "no entry made up");
        assert!(mc.attr(&d).is_some(), "the directory itself is unchanged");
    }
}
