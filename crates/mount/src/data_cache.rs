//! The whole-file data cache on disk.
//!
//! Layout: `<cache_dir>/<export id>/v1/<k0k1>/<key>` holds a file's content
//! and `<key>.meta` beside it says which path and version that content is,
//! whether it is *dirty* (changed here and not yet uploaded), and any mode or
//! mtime to apply on upload. `key` is a hash of the path; `v1` is the layout
//! version, so an incompatible layout never misreads an old one.
//!
//! Invariants:
//! - content lands through a temporary file and a rename, so a fetch cut
//!   short never leaves a truncated file under a valid entry;
//! - dirty entries are never evicted, and survive restarts: they are found
//!   again at startup and uploaded;
//! - clean entries are evicted least-recently-used first once the total size
//!   exceeds the limit, except while a handle has them open (pinned);
//! - the cache directory is private (0700); it is never wiped at mount.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::{debug, warn};
use parking_lot::Mutex;
use rfmount_proto::{RelPath, Timestamp, Version};
use tempfile::NamedTempFile;

const LAYOUT: &str = "v1";
const META_MAGIC: &str = "rfmount-cache 1";

/// What the cache knows about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Server version of the cached content, if it came from (or went to)
    /// the server.
    pub version: Option<Version>,
    /// Changed locally and not yet uploaded.
    pub dirty: bool,
    /// Size in bytes when last fetched or uploaded.
    pub size: u64,
    /// Mode to set on upload (a chmod of a dirty file).
    pub mode: Option<u32>,
    /// Mtime to set on upload (a utimens of a dirty file).
    pub mtime: Option<Timestamp>,
}

struct Entry {
    key: String,
    info: EntryInfo,
    last_use: u64,
}

struct State {
    entries: HashMap<RelPath, Entry>,
    /// Open handles per path. Kept apart from `entries` because a path is
    /// pinned *before* its content is fetched: otherwise a fetch larger than
    /// the limit would be evicted before the handle could open it.
    pins: HashMap<RelPath, u32>,
    tick: u64,
    /// Sum of `info.size` over `entries`, kept up to date by `put`/`take`
    /// so that eviction checks cost O(1), not a walk of every entry.
    bytes: u64,
}

impl State {
    fn put(&mut self, path: RelPath, e: Entry) {
        self.bytes += e.info.size;
        if let Some(old) = self.entries.insert(path, e) {
            self.bytes -= old.info.size;
        }
    }

    fn take(&mut self, path: &RelPath) -> Option<Entry> {
        let e = self.entries.remove(path)?;
        self.bytes -= e.info.size;
        Some(e)
    }
}

/// The on-disk whole-file cache of one export.
pub struct DataCache {
    root: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

fn key_of(path: &RelPath) -> String {
    let h = blake3::hash(path.as_str().as_bytes());
    h.to_hex()[..32].to_owned()
}

impl DataCache {
    /// Opens (creating if needed) the cache of `export_id` under `dir`, and
    /// loads the entries a previous mount left.
    ///
    /// # Errors
    /// The cache directory cannot be created or read.
    pub fn open(dir: &Path, export_id: &str, limit: u64) -> io::Result<Self> {
        let safe_id: String = export_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let root = dir.join(safe_id).join(LAYOUT);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        let cache = DataCache {
            root,
            limit,
            state: Mutex::new(State {
                entries: HashMap::new(),
                pins: HashMap::new(),
                tick: 0,
                bytes: 0,
            }),
        };
        cache.load()?;
        Ok(cache)
    }

    fn load(&self) -> io::Result<()> {
        let mut st = self.state.lock();
        for sub in fs::read_dir(&self.root)? {
            let sub = sub?.path();
            if !sub.is_dir() {
                continue;
            }
            for f in fs::read_dir(&sub)? {
                let f = f?.path();
                let name = f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned();
                if name.starts_with(".tmp") {
                    // A fetch interrupted by a crash.
                    let _ = fs::remove_file(&f);
                    continue;
                }
                let Some(key) = name.strip_suffix(".meta") else {
                    continue;
                };
                match read_meta(&f) {
                    Some((path, info)) if key_of(&path) == key && sub.join(key).exists() => {
                        st.tick += 1;
                        let last_use = st.tick;
                        st.put(
                            path,
                            Entry {
                                key: key.to_owned(),
                                info,
                                last_use,
                            },
                        );
                    }
                    _ => {
                        warn!("discarding unreadable cache entry {}", f.display());
                        let _ = fs::remove_file(&f);
                        let _ = fs::remove_file(sub.join(key));
                    }
                }
            }
        }
        debug!(
            "cache {}: {} entries",
            self.root.display(),
            st.entries.len()
        );
        Ok(())
    }

    /// Where the content of `path` lives (whether or not it is cached).
    pub fn data_path(&self, path: &RelPath) -> PathBuf {
        let key = key_of(path);
        self.root.join(&key[..2]).join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join(&key[..2]).join(format!("{key}.meta"))
    }

    /// The entry for `path`, if cached. Counts as a use for LRU.
    pub fn entry(&self, path: &RelPath) -> Option<EntryInfo> {
        let mut st = self.state.lock();
        st.tick += 1;
        let tick = st.tick;
        st.entries.get_mut(path).map(|e| {
            e.last_use = tick;
            e.info.clone()
        })
    }

    /// A temporary file to fetch `path` into; see [`DataCache::finish_fetch`].
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn begin_fetch(&self, path: &RelPath) -> io::Result<NamedTempFile> {
        let data = self.data_path(path);
        let dir = data.parent().unwrap_or(&self.root);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)
    }

    /// Puts fetched content in place as the clean copy of `version`.
    ///
    /// # Errors
    /// The rename or the metadata write failed.
    pub fn finish_fetch(
        &self,
        path: &RelPath,
        tmp: NamedTempFile,
        version: Version,
        size: u64,
    ) -> io::Result<()> {
        tmp.persist(self.data_path(path)).map_err(|e| e.error)?;
        self.mark_clean(path, version, size)
    }

    /// Makes `path` an empty dirty file (a create or an open with
    /// `O_TRUNC`), keeping upload overrides given.
    ///
    /// # Errors
    /// The cache directory is not writable.
    pub fn create_empty(&self, path: &RelPath, mode: Option<u32>) -> io::Result<()> {
        let data = self.data_path(path);
        if let Some(dir) = data.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&data)?;
        let old = self.entry(path);
        let info = EntryInfo {
            version: old.as_ref().and_then(|o| o.version),
            dirty: true,
            size: 0,
            mode: mode.or(old.as_ref().and_then(|o| o.mode)),
            mtime: None,
        };
        self.store(path, info)
    }

    /// Marks `path` changed locally; cheap when it already is.
    ///
    /// # Errors
    /// The metadata write failed.
    pub fn mark_dirty(&self, path: &RelPath) -> io::Result<()> {
        let info = {
            let st = self.state.lock();
            match st.entries.get(path) {
                Some(e) if e.info.dirty && e.info.mtime.is_none() => return Ok(()),
                // A write after an explicit utimens makes the mtime "now"
                // again, as on a local disk: the override is dropped.
                Some(e) => EntryInfo {
                    dirty: true,
                    mtime: None,
                    ..e.info.clone()
                },
                None => EntryInfo {
                    version: None,
                    dirty: true,
                    size: 0,
                    mode: None,
                    mtime: None,
                },
            }
        };
        self.store(path, info)
    }

    /// Records overrides to apply at the next upload of a dirty file.
    ///
    /// # Errors
    /// The metadata write failed.
    pub fn set_overrides(
        &self,
        path: &RelPath,
        mode: Option<u32>,
        mtime: Option<Timestamp>,
    ) -> io::Result<()> {
        let info = {
            let st = self.state.lock();
            let Some(e) = st.entries.get(path) else {
                return Ok(());
            };
            EntryInfo {
                mode: mode.or(e.info.mode),
                mtime: mtime.or(e.info.mtime),
                ..e.info.clone()
            }
        };
        self.store(path, info)
    }

    /// The content now on the server is `version`: the entry is clean.
    ///
    /// # Errors
    /// The metadata write failed.
    pub fn mark_clean(&self, path: &RelPath, version: Version, size: u64) -> io::Result<()> {
        let info = EntryInfo {
            version: Some(version),
            dirty: false,
            size,
            mode: None,
            mtime: None,
        };
        self.store(path, info)?;
        self.evict();
        Ok(())
    }

    /// Drops `path`'s entry and content.
    pub fn remove(&self, path: &RelPath) {
        let removed = self.state.lock().take(path);
        if let Some(e) = removed {
            let _ = fs::remove_file(self.meta_path(&e.key));
            let _ = fs::remove_file(self.root.join(&e.key[..2]).join(&e.key));
        }
    }

    /// Moves the entries of `from` and everything beneath it to `to`,
    /// replacing what was cached at the targets.
    pub fn rename(&self, from: &RelPath, to: &RelPath) {
        let moving: Vec<RelPath> = {
            let st = self.state.lock();
            st.entries
                .keys()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect()
        };
        self.remove(to);
        for old in moving {
            let Some(new) = old.rebase(from, to) else {
                continue;
            };
            self.remove(&new);
            let entry = self.state.lock().take(&old);
            let Some(e) = entry else { continue };
            let _ = fs::remove_file(self.meta_path(&e.key));
            let new_data = self.data_path(&new);
            if let Some(dir) = new_data.parent() {
                let _ = fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir);
            }
            if let Err(err) = fs::rename(self.data_path(&old), &new_data) {
                warn!("cache: moving {old} to {new}: {err}");
                continue;
            }
            if let Err(err) = self.store(&new, e.info) {
                warn!("cache: recording {new}: {err}");
            }
            // Open handles follow the file to its new name.
            let mut st = self.state.lock();
            if let Some(n) = st.pins.remove(&old) {
                *st.pins.entry(new).or_default() += n;
            }
        }
    }

    /// A handle is about to open `path`: never evict it until unpinned.
    /// Pin before fetching, so the fetched content cannot be evicted before
    /// the handle opens it.
    pub fn pin(&self, path: &RelPath) {
        *self.state.lock().pins.entry(path.clone()).or_default() += 1;
    }

    /// The handle is closed.
    pub fn unpin(&self, path: &RelPath) {
        {
            let mut st = self.state.lock();
            if let Some(n) = st.pins.get_mut(path) {
                *n -= 1;
                if *n == 0 {
                    st.pins.remove(path);
                }
            }
        }
        self.evict();
    }

    /// Paths changed locally and not yet uploaded.
    pub fn dirty_paths(&self) -> Vec<RelPath> {
        self.state
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.info.dirty)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every cached path with what the cache knows about it.
    pub fn entries(&self) -> Vec<(RelPath, EntryInfo)> {
        let st = self.state.lock();
        st.entries
            .iter()
            .map(|(p, e)| (p.clone(), e.info.clone()))
            .collect()
    }

    /// Bytes of cached content (clean and dirty).
    pub fn total_size(&self) -> u64 {
        self.state.lock().bytes
    }

    fn store(&self, path: &RelPath, info: EntryInfo) -> io::Result<()> {
        let key = key_of(path);
        write_meta(&self.meta_path(&key), path, &info)?;
        let mut st = self.state.lock();
        st.tick += 1;
        let tick = st.tick;
        st.put(
            path.clone(),
            Entry {
                key,
                info,
                last_use: tick,
            },
        );
        Ok(())
    }

    fn evict(&self) {
        let victims = {
            let mut st = self.state.lock();
            if st.bytes <= self.limit {
                return;
            }
            let mut clean: Vec<(u64, RelPath)> = st
                .entries
                .iter()
                .filter(|(p, e)| !e.info.dirty && !st.pins.contains_key(*p))
                .map(|(p, e)| (e.last_use, p.clone()))
                .collect();
            clean.sort();
            let mut victims = Vec::new();
            for (_, p) in clean {
                if st.bytes <= self.limit {
                    break;
                }
                if let Some(e) = st.take(&p) {
                    victims.push(e.key);
                }
            }
            victims
        };
        for key in victims {
            debug!("cache: evicting {key}");
            let _ = fs::remove_file(self.meta_path(&key));
            let _ = fs::remove_file(self.root.join(&key[..2]).join(&key));
        }
    }
}

fn write_meta(meta_path: &Path, path: &RelPath, info: &EntryInfo) -> io::Result<()> {
    let dir = meta_path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    // One write: formatting straight into the file costs a syscall per field.
    let text = format!(
        "{META_MAGIC}\nversion {}\ndirty {}\nsize {}\nmode {}\nmtime {}\npath {}\n",
        opt(info.version.map(|v| v.to_string())),
        u8::from(info.dirty),
        info.size,
        opt(info.mode.map(|m| m.to_string())),
        opt(info.mtime.map(|t| format!("{}.{}", t.secs, t.nanos))),
        path.as_str(),
    );
    tmp.write_all(text.as_bytes())?;
    tmp.persist(meta_path).map_err(|e| e.error)?;
    Ok(())
}

fn read_meta(meta_path: &Path) -> Option<(RelPath, EntryInfo)> {
    let text = fs::read_to_string(meta_path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != META_MAGIC {
        return None;
    }
    let mut field = |name: &str| -> Option<String> {
        let l = lines.next()?;
        l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned)
    };
    let opt = |s: String| if s == "-" { None } else { Some(s) };
    let version = match opt(field("version")?) {
        Some(v) => Some(v.parse().ok()?),
        None => None,
    };
    let dirty = field("dirty")? == "1";
    let size = field("size")?.parse().ok()?;
    let mode = match opt(field("mode")?) {
        Some(m) => Some(m.parse().ok()?),
        None => None,
    };
    let mtime = match opt(field("mtime")?) {
        Some(t) => {
            let (s, n) = t.split_once('.')?;
            Some(Timestamp {
                secs: s.parse().ok()?,
                nanos: n.parse().ok()?,
            })
        }
        None => None,
    };
    let path = RelPath::try_from(field("path")?).ok()?;
    Some((
        path,
        EntryInfo {
            version,
            dirty,
            size,
            mode,
            mtime,
        },
    ))
}

/// Opens a cache file for a handle.
pub(crate) fn open_data(path: &Path, writable: bool) -> io::Result<File> {
    OpenOptions::new().read(true).write(writable).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn fetch(c: &DataCache, path: &RelPath, data: &[u8], version: Version) {
        let mut t = c.begin_fetch(path).unwrap();
        t.write_all(data).unwrap();
        c.finish_fetch(path, t, version, data.len() as u64).unwrap();
    }

    #[test]
    fn entries_survive_reopen_and_dirty_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
            fetch(&c, &p("a/b"), b"hello", 7);
            c.create_empty(&p("new"), Some(0o600)).unwrap();
            c.set_overrides(&p("new"), None, Some(Timestamp { secs: 5, nanos: 6 }))
                .unwrap();
        }
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        let e = c.entry(&p("a/b")).unwrap();
        assert_eq!((e.version, e.dirty, e.size), (Some(7), false, 5));
        assert_eq!(fs::read(c.data_path(&p("a/b"))).unwrap(), b"hello");
        let n = c.entry(&p("new")).unwrap();
        assert!(n.dirty);
        assert_eq!(n.mode, Some(0o600));
        assert_eq!(n.mtime, Some(Timestamp { secs: 5, nanos: 6 }));
        assert_eq!(c.dirty_paths(), vec![p("new")]);
        // A different export never sees these entries.
        let other = DataCache::open(dir.path(), "other", 1 << 20).unwrap();
        assert!(other.entry(&p("a/b")).is_none());
    }

    #[test]
    fn evicts_lru_clean_never_dirty_or_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let c = DataCache::open(dir.path(), "exp", 25).unwrap();
        fetch(&c, &p("old"), &[0; 10], 1);
        fetch(&c, &p("pinned"), &[0; 10], 2);
        c.pin(&p("pinned"));
        c.create_empty(&p("dirty"), None).unwrap();
        fs::write(c.data_path(&p("dirty")), [1; 10]).unwrap();
        c.mark_dirty(&p("dirty")).unwrap();
        fetch(&c, &p("new"), &[0; 10], 3);
        assert!(
            c.entry(&p("old")).is_none(),
            "LRU clean entry should be evicted"
        );
        assert!(!c.data_path(&p("old")).exists());
        assert!(c.entry(&p("pinned")).is_some());
        assert!(c.entry(&p("dirty")).is_some());
        assert!(c.entry(&p("new")).is_some());
        // pinned (10) + dirty (size known only once uploaded: 0) + new (10)
        assert_eq!(c.total_size(), 20);
    }

    #[test]
    fn rename_moves_content_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        fetch(&c, &p("d/x"), b"xx", 1);
        c.mark_dirty(&p("d/x")).unwrap();
        fetch(&c, &p("e"), b"old target", 2);
        c.rename(&p("d"), &p("e"));
        assert!(c.entry(&p("d/x")).is_none());
        let e = c.entry(&p("e/x")).unwrap();
        assert!(e.dirty);
        assert_eq!(fs::read(c.data_path(&p("e/x"))).unwrap(), b"xx");
        assert!(c.entry(&p("e")).is_none());
    }

    #[test]
    fn corrupt_meta_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
            fetch(&c, &p("f"), b"abc", 1);
            c.data_path(&p("f"))
        };
        let meta = path.with_file_name(format!(
            "{}.meta",
            path.file_name().unwrap().to_str().unwrap()
        ));
        fs::write(&meta, "garbage").unwrap();
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        assert!(c.entry(&p("f")).is_none());
        assert!(!path.exists());
    }
}
