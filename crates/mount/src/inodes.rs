//! The inode table: FUSE inode numbers for paths of the export.
//!
//! An inode is a path plus a kernel lookup count. Numbers come from a
//! counter and are never given to another object, so a stale number from
//! the kernel can never name a different file. Inodes are keyed by path
//! because the protocol is path-based: a rename rewrites the paths of the moved subtree, and an
//! unlinked or replaced inode is *detached* (it keeps its number until the
//! kernel forgets it, but no longer names any path, so an open handle on it
//! can never upload over whatever now lives at its old path).
//!
//! Hard links: names whose attributes say they are one server object (the
//! same `file_id`, more than one link) share one inode, so the kernel sees
//! one file and the data cache holds one copy. Such an inode has a primary
//! path (its cache key and upload target) and other names; unlinking the
//! primary promotes another name.
//!
//! The root (inode 1) is never forgotten.
//!
//! A number the kernel has forgotten is remembered with its last path and
//! server object: when the kernel looks the same object (same `FileId`) up
//! again under that path, it gets the same number back. Without that, the
//! `st_ino` of a file would change whenever the kernel dropped its entry
//! (memory pressure, a pushed invalidation) between two `stat`s, which
//! POSIX tools take for a different file. The kernel holds no reference to a forgotten number, so
//! giving it back cannot make a stale reference name another file.

use std::collections::HashMap;

use rfmount_proto::{FileId, RelPath};

/// FUSE's root inode.
pub const ROOT: u64 = 1;

struct Inode {
    path: Option<RelPath>,
    /// Further names of a hard-linked file.
    others: Vec<RelPath>,
    lookups: u64,
    /// The server object, for a file with several names.
    file: Option<FileId>,
    /// The server object, when a lookup said which.
    id: Option<FileId>,
}

/// Forgotten numbers kept for their objects' return; beyond, the record
/// starts over (numbers are then new, as before).
const MAX_FORGOTTEN: usize = 16_384;

impl Inode {
    fn named(path: RelPath) -> Inode {
        Inode {
            path: Some(path),
            others: Vec::new(),
            lookups: 0,
            file: None,
            id: None,
        }
    }

    /// Drops `path` from this inode's names, promoting another name if it
    /// was the primary one.
    fn drop_name(&mut self, path: &RelPath) {
        if self.path.as_ref() == Some(path) {
            self.path = self.others.pop();
        } else {
            self.others.retain(|p| p != path);
        }
    }
}

/// Inode numbers for paths.
pub struct InodeTable {
    by_ino: HashMap<u64, Inode>,
    by_path: HashMap<RelPath, u64>,
    by_file: HashMap<FileId, u64>,
    /// Last path of a forgotten inode -> its number and server object.
    forgotten: HashMap<RelPath, (u64, Option<FileId>)>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = InodeTable {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            by_file: HashMap::new(),
            forgotten: HashMap::new(),
            next: ROOT + 1,
        };
        let mut root = Inode::named(RelPath::root());
        root.lookups = 1;
        t.by_ino.insert(ROOT, root);
        t.by_path.insert(RelPath::root(), ROOT);
        t
    }
}

impl InodeTable {
    /// The path an inode names, or `None` if unknown or detached.
    pub fn path(&self, ino: u64) -> Option<RelPath> {
        self.by_ino.get(&ino).and_then(|i| i.path.clone())
    }

    /// Every named inode at or beneath `path`, with its path.
    pub fn known_beneath(&self, path: &RelPath) -> Vec<(u64, RelPath)> {
        self.by_path
            .iter()
            .filter(|(p, _)| p.starts_with(path))
            .map(|(p, &i)| (i, p.clone()))
            .collect()
    }

    /// The inode for `path` if one exists.
    pub fn ino(&self, path: &RelPath) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// How many references the kernel holds to `ino` (0 when unknown).
    pub fn lookups(&self, ino: u64) -> u64 {
        self.by_ino.get(&ino).map_or(0, |i| i.lookups)
    }

    /// The inode for `path`, created if needed, with one more kernel lookup
    /// counted (call exactly once per entry handed to the kernel).
    pub fn lookup(&mut self, path: &RelPath) -> u64 {
        let ino = self.peek(path);
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups += 1;
        }
        ino
    }

    /// The inode for `path`, created if needed, without counting a lookup
    /// (for entries the kernel does not count, like readdir without plus).
    pub fn peek(&mut self, path: &RelPath) -> u64 {
        self.peek_object(path, None)
    }

    /// As [`InodeTable::lookup`] for a name known to be server object `id`.
    pub fn lookup_object(&mut self, path: &RelPath, id: Option<FileId>) -> u64 {
        let ino = self.peek_object(path, id);
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups += 1;
        }
        ino
    }

    /// Records that `ino` is server object `id` (attributes just read).
    pub fn set_id(&mut self, ino: u64, id: Option<FileId>) {
        if let (Some(i), Some(_)) = (self.by_ino.get_mut(&ino), id) {
            i.id = id;
        }
    }

    /// As [`InodeTable::peek`] for a name known to be server object `id`.
    fn peek_object(&mut self, path: &RelPath, id: Option<FileId>) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            if let (Some(i), Some(_)) = (self.by_ino.get_mut(&ino), id) {
                i.id = id;
            }
            return ino;
        }
        let ino = self.number_for(path, id);
        let mut inode = Inode::named(path.clone());
        inode.id = id;
        self.by_ino.insert(ino, inode);
        self.by_path.insert(path.clone(), ino);
        ino
    }

    /// The number for a new inode at `path`: the one the kernel forgot for
    /// this object, else a fresh one.
    fn number_for(&mut self, path: &RelPath, id: Option<FileId>) -> u64 {
        if let Some((ino, old)) = self.forgotten.remove(path) {
            let same = old.is_some() && old == id;
            if same && !self.by_ino.contains_key(&ino) {
                return ino;
            }
        }
        let ino = self.next;
        self.next += 1;
        ino
    }

    /// Forgets that `path` held a forgotten number (its state lives on
    /// elsewhere, so the number must not come back for another object).
    pub fn never_reuse(&mut self, path: &RelPath) {
        self.forgotten.remove(path);
    }

    /// As [`InodeTable::peek`] for a name whose server object is `file`
    /// when it has several names: a name of an object already known joins
    /// that object's inode.
    pub fn peek_linked(&mut self, path: &RelPath, file: Option<FileId>, id: Option<FileId>) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let Some(file) = file else {
            return self.peek_object(path, id);
        };
        if let Some(&ino) = self.by_file.get(&file) {
            if let Some(i) = self.by_ino.get_mut(&ino) {
                if i.path.is_some() {
                    i.others.push(path.clone());
                    self.by_path.insert(path.clone(), ino);
                    return ino;
                }
            }
        }
        let ino = self.peek_object(path, id);
        self.by_file.insert(file, ino);
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.file = Some(file);
        }
        ino
    }

    /// As [`InodeTable::lookup`], joining hard links (see
    /// [`InodeTable::peek_linked`]).
    pub fn lookup_linked(
        &mut self,
        path: &RelPath,
        file: Option<FileId>,
        id: Option<FileId>,
    ) -> u64 {
        let ino = self.peek_linked(path, file, id);
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups += 1;
        }
        ino
    }

    /// Records that `ino` is the server object `file`, which has just been
    /// given another name, so that the name joins this inode.
    pub fn mark_linked(&mut self, ino: u64, file: FileId) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.file = Some(file);
            self.by_file.insert(file, ino);
        }
    }

    /// Every name of `ino`, the primary one first.
    pub fn names(&self, ino: u64) -> Vec<RelPath> {
        self.by_ino.get(&ino).map_or_else(Vec::new, |i| {
            i.path.iter().chain(i.others.iter()).cloned().collect()
        })
    }

    /// As [`InodeTable::forget`], but the inode stays known under its
    /// names even with no reference left (a file whose upload is pending
    /// must keep its one per-file state; see `RemoteFs::forget`).
    pub fn release_lookups(&mut self, ino: u64, n: u64) {
        if let Some(i) = self.by_ino.get_mut(&ino) {
            i.lookups = i.lookups.saturating_sub(n);
        }
    }

    /// The kernel dropped `n` references. Returns the path under which the
    /// number is remembered when the kernel has none left.
    pub fn forget(&mut self, ino: u64, n: u64) -> Option<RelPath> {
        if ino == ROOT {
            return None;
        }
        let i = self.by_ino.get_mut(&ino)?;
        i.lookups = i.lookups.saturating_sub(n);
        let mut remembered = None;
        if i.lookups == 0 {
            if let Some(p) = &i.path {
                if self.forgotten.len() >= MAX_FORGOTTEN {
                    self.forgotten.clear();
                }
                self.forgotten.insert(p.clone(), (ino, i.id));
                remembered = Some(p.clone());
            }
            let names: Vec<RelPath> = i
                .path
                .take()
                .into_iter()
                .chain(i.others.drain(..))
                .collect();
            let file = i.file;
            for p in names {
                if self.by_path.get(&p) == Some(&ino) {
                    self.by_path.remove(&p);
                }
            }
            if let Some(f) = file {
                if self.by_file.get(&f) == Some(&ino) {
                    self.by_file.remove(&f);
                }
            }
            self.by_ino.remove(&ino);
        }
        remembered
    }

    /// `path` no longer exists: its inode (if any) loses that name, and is
    /// detached when it has no other. Returns the inode's new primary path
    /// when `path` was the primary one and another name took over.
    pub fn detach(&mut self, path: &RelPath) -> Option<RelPath> {
        let ino = self.by_path.remove(path)?;
        let i = self.by_ino.get_mut(&ino)?;
        let was_primary = i.path.as_ref() == Some(path);
        i.drop_name(path);
        if i.path.is_none() {
            if let Some(f) = i.file {
                if self.by_file.get(&f) == Some(&ino) {
                    self.by_file.remove(&f);
                }
            }
            return None;
        }
        if was_primary { i.path.clone() } else { None }
    }

    /// Moves `from` and everything beneath it to `to`; an inode already at
    /// `to` is detached, as `rename(2)` replaces it.
    pub fn rename(&mut self, from: &RelPath, to: &RelPath) {
        self.detach(to);
        let moved: Vec<(RelPath, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let Some(new) = old.rebase(from, to) else {
                continue;
            };
            self.by_path.remove(&old);
            // A stale inode under the target subtree is replaced too.
            if let Some(prev) = self.by_path.insert(new.clone(), ino) {
                if prev != ino {
                    if let Some(i) = self.by_ino.get_mut(&prev) {
                        i.drop_name(&new);
                    }
                }
            }
            if let Some(i) = self.by_ino.get_mut(&ino) {
                if i.path.as_ref() == Some(&old) {
                    i.path = Some(new);
                } else if let Some(p) = i.others.iter_mut().find(|p| **p == old) {
                    *p = new;
                }
            }
        }
    }

    /// Swaps the names `a` and `b` and everything beneath them, as
    /// `renameat2(RENAME_EXCHANGE)` does.
    pub fn exchange(&mut self, a: &RelPath, b: &RelPath) {
        let under = |t: &Self, root: &RelPath| -> Vec<(RelPath, u64)> {
            t.by_path
                .iter()
                .filter(|(p, _)| p.starts_with(root))
                .map(|(p, &i)| (p.clone(), i))
                .collect()
        };
        let moves: Vec<(RelPath, RelPath, u64)> = under(self, a)
            .into_iter()
            .filter_map(|(p, i)| Some((p.rebase(a, b)?, p, i)))
            .chain(
                under(self, b)
                    .into_iter()
                    .filter_map(|(p, i)| Some((p.rebase(b, a)?, p, i))),
            )
            .collect();
        for (_, old, _) in &moves {
            self.by_path.remove(old);
        }
        for (new, old, ino) in moves {
            if let Some(i) = self.by_ino.get_mut(&ino) {
                if i.path.as_ref() == Some(&old) {
                    i.path = Some(new.clone());
                } else if let Some(p) = i.others.iter_mut().find(|p| **p == old) {
                    *p = new.clone();
                }
            }
            self.by_path.insert(new, ino);
        }
    }

    /// Number of live inodes (for tests and statistics).
    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    /// True when only the root is known.
    pub fn is_empty(&self) -> bool {
        self.by_ino.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn numbers_are_stable_and_never_reused() {
        let mut t = InodeTable::default();
        let a = t.lookup(&p("a"));
        assert_eq!(t.lookup(&p("a")), a);
        t.forget(a, 2);
        assert_eq!(t.path(a), None);
        let a2 = t.lookup(&p("a"));
        assert_ne!(a, a2);
    }

    #[test]
    fn rename_moves_subtree_and_detaches_target() {
        let mut t = InodeTable::default();
        let d = t.lookup(&p("d"));
        let f = t.lookup(&p("d/f"));
        let target = t.lookup(&p("e"));
        t.rename(&p("d"), &p("e"));
        assert_eq!(t.path(d), Some(p("e")));
        assert_eq!(t.path(f), Some(p("e/f")));
        assert_eq!(t.path(target), None);
        assert_eq!(t.ino(&p("e/f")), Some(f));
        assert_eq!(t.ino(&p("d/f")), None);
    }

    #[test]
    fn hard_links_share_an_inode_until_their_last_name_goes() {
        let mut t = InodeTable::default();
        let id = FileId { dev: 1, ino: 9 };
        let a = t.lookup_linked(&p("a"), Some(id), Some(id));
        let b = t.lookup_linked(&p("d/b"), Some(id), Some(id));
        assert_eq!(a, b);
        assert_eq!(t.names(a), [p("a"), p("d/b")]);
        t.rename(&p("d/b"), &p("c"));
        assert_eq!(t.ino(&p("c")), Some(a));
        assert_eq!(t.detach(&p("a")), Some(p("c")));
        assert_eq!(t.path(a), Some(p("c")));
        assert_eq!(t.detach(&p("c")), None);
        assert_eq!(t.path(a), None);
        // A new object with that id is a new inode.
        assert_ne!(t.lookup_linked(&p("a"), Some(id), Some(id)), a);
    }

    #[test]
    fn a_forgotten_object_gets_its_number_back_and_no_other_object_does() {
        let mut t = InodeTable::default();
        let x = FileId { dev: 1, ino: 5 };
        let y = FileId { dev: 1, ino: 6 };
        let a = t.lookup_object(&p("a"), Some(x));
        assert_eq!(t.forget(a, 1), Some(p("a")));
        assert_eq!(t.lookup_object(&p("a"), Some(x)), a);
        // Another object now at that path, or one of unknown identity.
        t.forget(a, 1);
        let other = t.lookup_object(&p("a"), Some(y));
        assert_ne!(other, a);
        t.forget(other, 1);
        assert_ne!(t.lookup(&p("a")), other);
        // A number whose state lives on is not given back.
        let b = t.lookup_object(&p("b"), Some(x));
        t.forget(b, 1);
        t.never_reuse(&p("b"));
        assert_ne!(t.lookup_object(&p("b"), Some(x)), b);
    }

    #[test]
    fn root_survives_forget() {
        let mut t = InodeTable::default();
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT), Some(RelPath::root()));
    }
}
