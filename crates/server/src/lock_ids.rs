//! Which key of the lock table a file id names. Locks are keyed by the
//! locked object's [`FileId`], but an upload replaces a file by a new
//! object (a new inode: see `local/put.rs`), and to the mounts it is the
//! same file: sqlite uploads its database in the middle of a transaction,
//! with every lock of it held. So the locks move to the new id when the
//! upload takes the name ([`crate::store::Succession`]), in one step with
//! the rename.
//!
//! A lock request resolves its path to an id before it reaches the table;
//! one that resolved the old id just before the rename must still find the
//! locks, so the old id is kept as an alias of the new one for as long as
//! a request that started resolving before the rename is still on its way.
//! Requests already in the table (waiting ones) are moved with the locks.
//! Aliases are therefore few and short-lived: none at all once no request
//! is between its path lookup and the table.

use std::collections::{BTreeSet, HashMap};

use rfmount_proto::FileId;

/// The aliases and the requests still resolving their paths.
#[derive(Default)]
pub(crate) struct Ids {
    /// Old id → (the id its locks are under now, the ticket count when
    /// the alias was made).
    aliases: HashMap<FileId, (FileId, u64)>,
    /// Tickets of the requests between their path lookup and the table.
    resolving: BTreeSet<u64>,
    next_ticket: u64,
}

impl Ids {
    /// A request starts resolving its path: its ticket.
    pub(crate) fn enter(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.resolving.insert(t);
        t
    }

    /// The request with `ticket` has reached the table (or given up).
    pub(crate) fn leave(&mut self, ticket: u64) {
        self.resolving.remove(&ticket);
        // An alias made when ticket `n` was next is needed only by the
        // requests that entered before it.
        match self.resolving.first() {
            None => self.aliases.clear(),
            Some(&oldest) => self.aliases.retain(|_, (_, made)| *made > oldest),
        }
    }

    /// The key `id` names now.
    pub(crate) fn resolve(&self, id: FileId) -> FileId {
        self.aliases.get(&id).map_or(id, |(to, _)| *to)
    }

    /// The locks under key `from` moved to `to`.
    pub(crate) fn moved(&mut self, from: FileId, to: FileId) {
        for (now, _) in self.aliases.values_mut() {
            if *now == from {
                *now = to;
            }
        }
        // `to` is a live object's id now, never an alias of another.
        self.aliases.remove(&to);
        if !self.resolving.is_empty() {
            self.aliases.insert(from, (to, self.next_ticket));
        }
    }

    #[cfg(test)]
    pub(crate) fn aliases(&self) -> usize {
        self.aliases.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId { dev: 1, ino }
    }

    #[test]
    fn an_alias_lives_while_a_request_that_started_before_it_resolves() {
        let mut ids = Ids::default();
        let early = ids.enter();
        ids.moved(id(1), id(2));
        let late = ids.enter();
        assert_eq!(ids.resolve(id(1)), id(2));
        ids.moved(id(2), id(3));
        // Both old ids lead to the newest key.
        assert_eq!(ids.resolve(id(1)), id(3));
        assert_eq!(ids.resolve(id(2)), id(3));
        assert_eq!(ids.resolve(id(3)), id(3));
        ids.leave(early);
        // `late` entered after 1 → 2: only 2 → 3 may still be needed.
        assert_eq!(ids.resolve(id(1)), id(1));
        assert_eq!(ids.resolve(id(2)), id(3));
        ids.leave(late);
        assert_eq!(ids.aliases(), 0);
    }

    #[test]
    fn without_requests_on_their_way_no_alias_is_kept() {
        let mut ids = Ids::default();
        ids.moved(id(1), id(2));
        assert_eq!(ids.aliases(), 0);
        assert_eq!(ids.resolve(id(1)), id(1));
    }
}
