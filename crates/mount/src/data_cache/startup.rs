//! What a mount does with the cache a previous one left: rebuild the index
//! from the journal (and layout 1's `.meta` files), check it against the
//! data files, and move content that was still being written when that
//! mount died out of the way of its name.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use log::{debug, warn};
use rfmount_proto::RelPath;

use super::files::key_of;
use super::index::{EntryInfo, read_meta};
use super::journal::{self, Journal, Record};
use super::{DataCache, recovery};

fn file_name(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_owned()
}

impl DataCache {
    /// Rebuilds the index: layout 1's `.meta` files (if any), then the
    /// journal's records in order; each entry checked against its data
    /// file; data files no record names (a removal cut short) deleted.
    /// Then the journal is rewritten with just the live entries and the
    /// `.meta` files are deleted.
    pub(super) fn load(&self) -> io::Result<()> {
        let (journal, records) = Journal::open(&self.files.root)?;
        let mut live: HashMap<RelPath, EntryInfo> = HashMap::new();
        let mut legacy = Vec::new();
        let mut data_files = Vec::new();
        for sub in fs::read_dir(&self.files.root)? {
            let sub = sub?.path();
            let name = file_name(&sub);
            if !sub.is_dir() {
                if journal::is_temp(&name) {
                    // A journal rewrite interrupted by a crash.
                    let _ = fs::remove_file(&sub);
                }
                continue;
            }
            for f in fs::read_dir(&sub)? {
                let f = f?.path();
                let name = file_name(&f);
                if name.starts_with(".tmp") {
                    // A fetch or record write interrupted by a crash.
                    let _ = fs::remove_file(&f);
                } else if name.ends_with(".meta") {
                    match read_meta(&f) {
                        Some((path, info)) => {
                            live.insert(path, info);
                        }
                        None => warn!("discarding unreadable cache record {}", f.display()),
                    }
                    legacy.push(f);
                } else {
                    data_files.push((name, f));
                }
            }
        }
        for rec in records {
            match rec {
                Record::Put(path, info) => {
                    live.insert(path, info);
                }
                Record::Del(path) => {
                    live.remove(&path);
                }
            }
        }
        let mut ix = self.index.lock();
        for (path, mut info) in live {
            let key = key_of(&path);
            let Ok(md) = fs::metadata(self.files.data_of_key(&key)) else {
                continue;
            };
            if !info.dirty && info.size != md.len() {
                warn!("discarding cache entry {path}: its content is not the recorded size");
                continue;
            }
            info.size = md.len();
            self.trust_unsynced(&path, &mut info);
            ix.put(path.clone(), key, info);
            ix.set_alloc(&path, super::allocated(&md));
        }
        let keys: HashSet<&str> = ix.entries.values().map(|e| e.key.as_str()).collect();
        for (name, f) in data_files {
            if !keys.contains(name.as_str()) {
                debug!("cache: deleting {}, which no record names", f.display());
                let _ = fs::remove_file(&f);
            }
        }
        let mut journal = journal;
        journal.rewrite(ix.entries.iter().map(|(p, e)| (p, &e.info)))?;
        ix.journal = Some(journal);
        for f in legacy {
            let _ = fs::remove_file(f);
        }
        debug!(
            "cache {}: {} entries, {} bytes",
            self.files.root.display(),
            ix.entries.len(),
            ix.bytes()
        );
        Ok(())
    }

    /// An entry sealed by a write-back close before its content reached
    /// the disk: in this boot the kernel still holds that content (rfmount
    /// crashed, not the machine) and the flusher takes it; after a restart
    /// of the machine it may be torn, so it is treated as still being
    /// written ([`DataCache::recover`] moves it aside).
    fn trust_unsynced(&self, path: &RelPath, info: &mut EntryInfo) {
        let Some(boot) = info.unsynced else {
            return;
        };
        if !info.dirty || info.writing {
            // Clean: on the server. Being written: recovered anyway.
            info.unsynced = None;
        } else if Some(boot) == self.boot {
            self.unsynced
                .store(true, std::sync::atomic::Ordering::SeqCst);
        } else {
            warn!(
                "{path} was closed shortly before the machine restarted, before its content \
                 reached the cache disk: it may be incomplete, so it is recovered aside and \
                 not uploaded under its name"
            );
            info.writing = true;
            info.unsynced = None;
        }
    }

    /// Entries still marked *writing* were open when the previous mount
    /// died: their content may be half-written. Each is moved to a
    /// `NAME.recovered-HOST-STAMP` sibling (uploaded by the retry loop as a
    /// new file), so the server's `NAME` is never replaced by it. Returns
    /// `(original, where it went)`; `None` for an empty file, which holds
    /// nothing to recover and is dropped.
    pub(super) fn recover(&self, host: &str, now: SystemTime) -> Vec<(RelPath, Option<RelPath>)> {
        let torn: Vec<(RelPath, EntryInfo)> = {
            let ix = self.index.lock();
            ix.entries
                .iter()
                .filter(|(_, e)| e.info.writing)
                .map(|(p, e)| (p.clone(), e.info.clone()))
                .collect()
        };
        let stamp = recovery::utc_stamp(now);
        let mut out = Vec::new();
        for (path, info) in torn {
            if info.size == 0 {
                warn!(
                    "{path} was open for writing when rfmount stopped and is empty here: \
                     nothing to recover; the server's copy is left as it was"
                );
                self.remove(&path);
                out.push((path, None));
                continue;
            }
            let target = (1..1000)
                .filter_map(|n| recovery::sibling(&path, host, &stamp, n))
                .find(|s| self.entry(s).is_none());
            let Some(target) = target else {
                // Still marked writing, so it is never uploaded as it is.
                warn!(
                    "{path}: no free name to recover its unfinished content under; it stays in \
                     the cache at {} and is not uploaded",
                    self.data_path(&path).display()
                );
                continue;
            };
            self.rename(&path, &target);
            let sealed = EntryInfo {
                version: None,
                dirty: true,
                writing: false,
                // A new file now: uploaded whole.
                changes: None,
                unsynced: None,
                ..info
            };
            if let Err(e) = self.store(&target, sealed, true) {
                warn!("{path}: recording its recovery as {target}: {e}");
                continue;
            }
            warn!(
                "recovered {path}: it was open for writing when rfmount stopped; its unfinished \
                 local content ({} bytes) is kept as {target} (uploaded under that name; local \
                 copy {}), and the server's {path} is left as it was",
                info.size,
                self.data_path(&target).display()
            );
            out.push((path, Some(target)));
        }
        out
    }
}
