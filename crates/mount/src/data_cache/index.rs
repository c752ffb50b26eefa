//! The cache's bookkeeping: what each cached path holds (version, dirty,
//! still being written, size, upload overrides), kept in memory for the
//! mount and on disk in the [`Journal`] so that it survives a crash of
//! rfmount. (Layout 1 kept one `<key>.meta` file per entry; those are read
//! once, folded into the journal and deleted.)
//!
//! The space accounting lives here too: `bytes` is the sum of every entry's
//! allocation on disk (clean and dirty; a sparse file counts what it
//! stores, not its apparent size) plus the bytes of fetches in flight, so
//! that the limit check before a write or a fetched chunk is O(1).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;

use log::debug;
use rfmount_proto::{RelPath, Timestamp, Version, XattrValue};

use super::changes::Changes;
use super::journal::{Journal, Record};

const META_MAGIC_V1: &str = "rfmount-cache 1";
const META_MAGIC: &str = "rfmount-cache 2";

/// What the cache knows about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// Server version of the cached content, if it came from (or went to)
    /// the server.
    pub version: Option<Version>,
    /// Changed locally and not yet uploaded.
    pub dirty: bool,
    /// Changed since an application last closed or fsynced it: the local
    /// content may be half-written and must never be uploaded as it is.
    /// Recorded on disk before the first change lands.
    pub writing: bool,
    /// Bytes of the local content: exact for dirty entries (it grows with
    /// every write), the fetched or uploaded size for clean ones.
    pub size: u64,
    /// Mode to set on upload (a chmod of a dirty file).
    pub mode: Option<u32>,
    /// Mtime to set on upload (a utimens of a dirty file).
    pub mtime: Option<Timestamp>,
    /// What changed since `version`, when known: the upload then sends
    /// only that.
    pub changes: Option<Changes>,
    /// Extended attributes set here that the next upload carries
    /// (`PutExt::xattrs`), sorted by name.
    pub xattrs: Vec<XattrValue>,
    /// Sealed by a write-back close in the boot named here, before its
    /// content was flushed to the cache disk: safe against a crash of
    /// rfmount (the kernel still holds the pages), not against one of the
    /// machine. `None` once the flusher (or an fsync) made it durable.
    pub unsynced: Option<BootId>,
}

/// Identifies one boot of the machine (`/proc/sys/kernel/random/boot_id`).
pub type BootId = u128;

impl EntryInfo {
    /// A local change is about to land: dirty, being written.
    pub(super) fn changing(&self) -> EntryInfo {
        EntryInfo {
            dirty: true,
            writing: true,
            ..self.clone()
        }
    }
}

pub(super) struct Entry {
    pub key: String,
    pub info: EntryInfo,
    pub last_use: u64,
    /// Changes with every record of the entry (in memory only), so that
    /// the flusher can tell whether what it flushed is still what the
    /// entry holds.
    pub stamp: u64,
    /// Bytes the data file takes on disk (`st_blocks` × 512) as last
    /// measured, plus what writes since have reserved; what counts toward
    /// the limit. In memory only: measured again at load.
    pub alloc: u64,
}

/// In-memory index of one export's cache.
#[derive(Default)]
pub(super) struct Index {
    pub entries: HashMap<RelPath, Entry>,
    /// Open handles per path. Kept apart from `entries` because a path is
    /// pinned *before* its content is fetched: otherwise a fetch larger than
    /// the limit would be evicted before the handle could open it.
    pub pins: HashMap<RelPath, u32>,
    tick: u64,
    /// Sum of `alloc` over `entries` plus `fetching`.
    bytes: u64,
    /// Bytes of fetches not yet put in place.
    fetching: u64,
    /// Where every change is recorded (`None` in tests of the accounting).
    pub journal: Option<Journal>,
}

/// Dead records tolerated in the journal beyond twice the live ones.
const COMPACT_SLACK: u64 = 10_000;

impl Index {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn touch(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Puts `info` for `path`. A replaced entry's data file is the same
    /// file, so its allocation carries over; a new one has none until
    /// [`Index::set_alloc`].
    pub fn put(&mut self, path: RelPath, key: String, info: EntryInfo) {
        let last_use = self.touch();
        let alloc = self.entries.get(&path).map_or(0, |e| e.alloc);
        let e = Entry {
            key,
            info,
            last_use,
            stamp: last_use,
            alloc,
        };
        self.entries.insert(path, e);
    }

    pub fn take(&mut self, path: &RelPath) -> Option<Entry> {
        let e = self.entries.remove(path)?;
        self.bytes -= e.alloc;
        Some(e)
    }

    /// The data file of `path` now takes `alloc` bytes on disk.
    pub fn set_alloc(&mut self, path: &RelPath, alloc: u64) {
        if let Some(e) = self.entries.get_mut(path) {
            self.bytes = self.bytes - e.alloc + alloc;
            e.alloc = alloc;
        }
    }

    /// The allocation counted for `path`, if cached.
    pub fn alloc(&self, path: &RelPath) -> Option<u64> {
        self.entries.get(path).map(|e| e.alloc)
    }

    /// Records in the journal that `path` holds `info`, then puts it.
    pub fn record(
        &mut self,
        path: &RelPath,
        key: String,
        info: EntryInfo,
        durable: bool,
    ) -> io::Result<()> {
        if let Some(j) = self.journal.as_mut() {
            j.append(&Record::Put(path.clone(), info.clone()), durable)?;
        }
        self.put(path.clone(), key, info);
        self.maybe_compact();
        Ok(())
    }

    /// Records that `path` is gone, then takes it out. The caller deletes
    /// the data afterwards: a crash in between leaves an orphan data file,
    /// which the next load deletes, never a record without its data.
    pub fn forget(&mut self, path: &RelPath) -> Option<Entry> {
        let e = self.take(path)?;
        self.note_gone(path);
        Some(e)
    }

    /// Appends a deletion record for `path` (already out of `entries`). A
    /// failure is harmless: the stale record's data file is deleted too,
    /// and a record without data is dropped at load.
    pub fn note_gone(&mut self, path: &RelPath) {
        if let Some(j) = self.journal.as_mut()
            && let Err(e) = j.append(&Record::Del(path.clone()), false)
        {
            debug!("cache index: recording the removal of {path}: {e}");
        }
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        let live = self.entries.len() as u64;
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if j.records() <= 2 * live + COMPACT_SLACK {
            return;
        }
        if let Err(e) = j.rewrite(self.entries.iter().map(|(p, e)| (p, &e.info))) {
            debug!("cache index: compacting the journal: {e}");
        }
    }

    /// Sets the (apparent) size of an existing entry (in memory only: a
    /// dirty entry's size is read back from its data file at load).
    pub fn set_size(&mut self, path: &RelPath, size: u64) {
        if let Some(e) = self.entries.get_mut(path) {
            e.info.size = size;
        }
    }

    pub fn add_fetching(&mut self, n: u64) {
        self.fetching += n;
        self.bytes += n;
    }

    pub fn sub_fetching(&mut self, n: u64) {
        self.fetching -= n;
        self.bytes -= n;
    }

    /// Removes clean, unpinned entries, least recently used first, until
    /// `bytes + need <= limit` (or nothing evictable is left); returns the
    /// keys whose data files the caller deletes.
    pub fn evict_for(&mut self, need: u64, limit: u64) -> Vec<String> {
        if self.bytes + need <= limit {
            return Vec::new();
        }
        let mut clean: Vec<(u64, RelPath)> = self
            .entries
            .iter()
            .filter(|(p, e)| !e.info.dirty && !self.pins.contains_key(*p))
            .map(|(p, e)| (e.last_use, p.clone()))
            .collect();
        clean.sort();
        let mut victims = Vec::new();
        for (_, p) in clean {
            if self.bytes + need <= limit {
                break;
            }
            if let Some(e) = self.forget(&p) {
                victims.push(e.key);
            }
        }
        victims
    }
}

/// The text of one record (also layout 1's `.meta` file format).
pub(super) fn format_meta(path: &RelPath, info: &EntryInfo) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut text = format!(
        "{META_MAGIC}\nversion {}\ndirty {}\nwriting {}\nsize {}\nmode {}\nmtime {}\npath {}\n",
        opt(info.version.map(|v| v.to_string())),
        u8::from(info.dirty),
        u8::from(info.writing),
        info.size,
        opt(info.mode.map(|m| m.to_string())),
        opt(info.mtime.map(|t| format!("{}.{}", t.secs, t.nanos))),
        path.as_str(),
    );
    // After the path, optional: records without it (layout 1, earlier
    // mounts) read as "changes unknown".
    if let Some(c) = &info.changes {
        text.push_str(&format!("changes {}\n", c.format()));
    }
    for x in &info.xattrs {
        text.push_str(&format!(
            "xattr {} {}\n",
            hex(x.name.as_bytes()),
            hex(&x.value)
        ));
    }
    if let Some(boot) = info.unsynced {
        text.push_str(&format!("unsynced {boot:032x}\n"));
    }
    text
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(2 * bytes.len() + 1);
    // A leading mark, so that an empty value is a field too.
    s.push('x');
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits = s.strip_prefix('x')?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok())
        .collect()
}

fn parse_xattr(line: &str) -> Option<XattrValue> {
    let (name, value) = line.split_once(' ')?;
    Some(XattrValue {
        name: String::from_utf8(unhex(name)?).ok()?,
        value: unhex(value)?,
    })
}

pub(super) fn read_meta(meta_path: &Path) -> Option<(RelPath, EntryInfo)> {
    parse_meta(&fs::read_to_string(meta_path).ok()?)
}

pub(super) fn parse_meta(text: &str) -> Option<(RelPath, EntryInfo)> {
    let mut lines = text.lines();
    // Layout 1 did not record `writing`; its dirty entries are taken as
    // closed, which is what that version assumed when it wrote them.
    let v2 = match lines.next()? {
        META_MAGIC => true,
        META_MAGIC_V1 => false,
        _ => return None,
    };
    let mut field = |name: &str| -> Option<String> {
        let l = lines.next()?;
        l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned)
    };
    let opt = |s: String| if s == "-" { None } else { Some(s) };
    let version = match opt(field("version")?) {
        Some(v) => Some(v.parse().ok()?),
        None => None,
    };
    let dirty = flag(&field("dirty")?)?;
    let writing = if v2 { flag(&field("writing")?)? } else { false };
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
    let mut changes = None;
    let mut xattrs = Vec::new();
    let mut unsynced = None;
    for l in lines {
        if unsynced.is_some() {
            return None;
        }
        if let Some(b) = l.strip_prefix("unsynced ") {
            unsynced = Some(BootId::from_str_radix(b, 16).ok()?);
        } else if let Some(x) = l.strip_prefix("xattr ") {
            xattrs.push(parse_xattr(x)?);
        } else if changes.is_none() && xattrs.is_empty() {
            changes = Some(Changes::parse(l.strip_prefix("changes ")?)?);
        } else {
            return None;
        }
    }
    Some((
        path,
        EntryInfo {
            version,
            dirty,
            writing,
            size,
            mode,
            mtime,
            changes,
            xattrs,
            unsynced,
        },
    ))
}

fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn info(dirty: bool, size: u64) -> EntryInfo {
        EntryInfo {
            version: Some(1),
            dirty,
            writing: false,
            size,
            mode: None,
            mtime: None,
            changes: None,
            xattrs: Vec::new(),
            unsynced: None,
        }
    }

    #[test]
    fn meta_round_trips_and_reads_layout_1() {
        let i = EntryInfo {
            version: Some(9),
            dirty: true,
            writing: true,
            size: 12,
            mode: Some(0o640),
            mtime: Some(Timestamp { secs: 3, nanos: 4 }),
            changes: None,
            xattrs: Vec::new(),
            unsynced: None,
        };
        let text = format_meta(&p("a b/c"), &i);
        assert_eq!(parse_meta(&text), Some((p("a b/c"), i.clone())));
        let mut c = Changes::clean(40);
        c.write(3, 4);
        let with = EntryInfo {
            changes: Some(c),
            ..i.clone()
        };
        let text2 = format_meta(&p("a b/c"), &with);
        assert_eq!(parse_meta(&text2), Some((p("a b/c"), with.clone())));
        let carried = EntryInfo {
            xattrs: vec![
                XattrValue {
                    name: "user.a b".into(),
                    value: b"\0\n\xff".to_vec(),
                },
                XattrValue {
                    name: "user.empty".into(),
                    value: Vec::new(),
                },
            ],
            ..with
        };
        let text3 = format_meta(&p("x"), &carried);
        assert_eq!(parse_meta(&text3), Some((p("x"), carried.clone())));
        let no_changes = EntryInfo {
            changes: None,
            ..carried
        };
        let text4 = format_meta(&p("x"), &no_changes);
        let unsynced = EntryInfo {
            unsynced: Some(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            ..no_changes.clone()
        };
        let text5 = format_meta(&p("x"), &unsynced);
        assert_eq!(parse_meta(&text5), Some((p("x"), unsynced)));
        assert_eq!(parse_meta(&format!("{text5}xattr x x\n")), None);
        assert_eq!(parse_meta(&text4), Some((p("x"), no_changes)));
        assert_eq!(parse_meta(&format!("{text3}changes 0\n")), None);
        assert_eq!(parse_meta(&text3.replace("xattr x", "xattr y")), None);
        assert_eq!(parse_meta(&format!("{text}junk\n")), None);
        let v1 = "rfmount-cache 1\nversion -\ndirty 1\nsize 5\nmode -\nmtime -\npath f\n";
        let (path, old) = parse_meta(v1).unwrap();
        assert_eq!(path, p("f"));
        assert!(old.dirty && !old.writing);
        assert_eq!(old.size, 5);
        assert_eq!(parse_meta("rfmount-cache 2\nversion x\n"), None);
        let bad_flag = text.replace("writing 1", "writing 7");
        assert_eq!(parse_meta(&bad_flag), None);
    }

    #[test]
    fn accounting_counts_allocation_not_apparent_size() {
        let mut ix = Index::default();
        ix.put(p("a"), "ka".into(), info(false, 10));
        ix.set_alloc(&p("a"), 10);
        ix.put(p("b"), "kb".into(), info(true, 5));
        ix.set_alloc(&p("b"), 5);
        assert_eq!(ix.bytes(), 15);
        // The same data file under a new record keeps its allocation.
        ix.put(p("a"), "ka".into(), info(false, 3));
        assert_eq!(ix.bytes(), 15);
        ix.set_alloc(&p("a"), 3);
        assert_eq!(ix.bytes(), 8);
        // A sparse file: a huge apparent size, a small allocation.
        ix.set_size(&p("b"), 1 << 40);
        assert_eq!(ix.bytes(), 8);
        ix.set_alloc(&p("b"), 50);
        assert_eq!(ix.bytes(), 53);
        ix.add_fetching(7);
        assert_eq!(ix.bytes(), 60);
        ix.sub_fetching(7);
        ix.take(&p("a"));
        assert_eq!(ix.bytes(), 50);
        ix.set_alloc(&p("missing"), 99);
        assert_eq!(ix.bytes(), 50);
    }

    #[test]
    fn the_journal_is_compacted_once_dead_records_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path()).unwrap();
        let mut ix = Index {
            journal: Some(j),
            ..Index::default()
        };
        for i in 0..(COMPACT_SLACK + 500) {
            ix.record(&p("hot"), "k".into(), info(i % 2 == 0, i), false)
                .unwrap();
        }
        ix.record(&p("other"), "k2".into(), info(false, 1), false)
            .unwrap();
        let records = ix.journal.as_ref().unwrap().records();
        assert!(records <= COMPACT_SLACK + 3, "{records} records kept");
        drop(ix);
        let (_, recs) = Journal::open(dir.path()).unwrap();
        let mut live = HashMap::new();
        for r in recs {
            if let Record::Put(path, i) = r {
                live.insert(path, i);
            }
        }
        assert_eq!(live.len(), 2);
        assert_eq!(live[&p("hot")].size, COMPACT_SLACK + 499);
    }

    #[test]
    fn eviction_takes_lru_clean_unpinned_only_as_far_as_needed() {
        let mut ix = Index::default();
        for (name, key, dirty) in [
            ("old", "k1", false),
            ("pinned", "k2", false),
            ("dirty", "k3", true),
            ("mid", "k4", false),
            ("new", "k5", false),
        ] {
            ix.put(p(name), key.into(), info(dirty, 10));
            ix.set_alloc(&p(name), 10);
        }
        ix.pins.insert(p("pinned"), 1);
        assert!(ix.evict_for(0, 50).is_empty());
        // Room for 15 more under 50: two clean entries must go, oldest first.
        assert_eq!(ix.evict_for(15, 50), vec!["k1", "k4"]);
        assert_eq!(ix.bytes(), 30);
        // Asking for more than can be freed frees what it can.
        assert_eq!(ix.evict_for(100, 50), vec!["k5"]);
        assert!(ix.entries.contains_key(&p("pinned")));
        assert!(ix.entries.contains_key(&p("dirty")));
    }
}
