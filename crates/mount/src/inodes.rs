//! The inode table: FUSE inode numbers for paths of the export.
//!
//! An inode is a path plus a kernel lookup count. Numbers come from a
//! counter and are never reused, so a stale number from the kernel can never
//! name a different file. Inodes are keyed by path because the protocol is
//! path-based: a rename rewrites the paths of the moved subtree, and an
//! unlinked or replaced inode is *detached* (it keeps its number until the
//! kernel forgets it, but no longer names any path, so an open handle on it
//! can never upload over whatever now lives at its old path).
//!
//! The root (inode 1) is never forgotten.

use std::collections::HashMap;

use rfmount_proto::RelPath;

/// FUSE's root inode.
pub const ROOT: u64 = 1;

struct Inode {
    path: Option<RelPath>,
    lookups: u64,
}

/// Inode numbers for paths.
pub struct InodeTable {
    by_ino: HashMap<u64, Inode>,
    by_path: HashMap<RelPath, u64>,
    next: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut t = InodeTable {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        t.by_ino.insert(
            ROOT,
            Inode {
                path: Some(RelPath::root()),
                lookups: 1,
            },
        );
        t.by_path.insert(RelPath::root(), ROOT);
        t
    }
}

impl InodeTable {
    /// The path an inode names, or `None` if unknown or detached.
    pub fn path(&self, ino: u64) -> Option<RelPath> {
        self.by_ino.get(&ino).and_then(|i| i.path.clone())
    }

    /// The inode for `path` if one exists.
    pub fn ino(&self, path: &RelPath) -> Option<u64> {
        self.by_path.get(path).copied()
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
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.by_ino.insert(
            ino,
            Inode {
                path: Some(path.clone()),
                lookups: 0,
            },
        );
        self.by_path.insert(path.clone(), ino);
        ino
    }

    /// The kernel dropped `n` references.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT {
            return;
        }
        let Some(i) = self.by_ino.get_mut(&ino) else {
            return;
        };
        i.lookups = i.lookups.saturating_sub(n);
        if i.lookups == 0 {
            if let Some(p) = i.path.take() {
                self.by_path.remove(&p);
            }
            self.by_ino.remove(&ino);
        }
    }

    /// `path` no longer exists: its inode (if any) is detached.
    pub fn detach(&mut self, path: &RelPath) {
        if let Some(ino) = self.by_path.remove(path) {
            if let Some(i) = self.by_ino.get_mut(&ino) {
                i.path = None;
            }
        }
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
                        i.path = None;
                    }
                }
            }
            if let Some(i) = self.by_ino.get_mut(&ino) {
                i.path = Some(new);
            }
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
    fn root_survives_forget() {
        let mut t = InodeTable::default();
        t.forget(ROOT, 100);
        assert_eq!(t.path(ROOT), Some(RelPath::root()));
    }
}
