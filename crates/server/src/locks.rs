//! The server's lock table: `fcntl` byte-range locks and `flock` locks of
//! every session, keyed by the locked object's [`FileId`] (a lock belongs
//! to the file, not to the name it was taken under).
//!
//! A lock owner is a session plus the client's own owner number, so owners
//! of different mounts never mix. POSIX locks split and merge per owner as
//! `fcntl(2)` says; `flock` locks are whole-file, one per owner, and a
//! conversion that has to wait gives up the old lock first (as Linux does,
//! so that two shared holders upgrading at once cannot deadlock). The two
//! flavors never conflict with each other.
//!
//! A session's locks outlive its connection for the grace period when the
//! client named itself (`ClientHello.client_id`): the same client
//! reconnecting takes them over; otherwise they are released when the grace
//! expires and waiters are woken. The grace starts only when the client's
//! last connection ends: one it gave up before its handshake was answered
//! (to a server that was stopped) may be served and end after the
//! connection that took the session over, and must not start it.
//!
//! An upload that replaces a locked file by a new object moves its locks
//! along ([`crate::store::Succession`], see [`crate::lock_ids`]).
//!
//! Waiting: [`LockTable::lock_as`] is the one place that blocks a thread,
//! on a condition variable notified by every release, takeover and cancel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rfmount_proto::{ErrorCode, FileId, LockFlavor, LockHolder, LockKind, WireError};

use crate::lock_ids::Ids;
use crate::store::Succession;

/// A session's identity in the table; it survives a reconnect of the same
/// client within the grace period.
pub(crate) type SessionId = u64;

/// Who holds a lock: the session and the client's lock owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    session: SessionId,
    owner: u64,
}

/// One lock request as the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LockReq {
    pub(crate) file: FileId,
    pub(crate) owner: u64,
    pub(crate) flavor: LockFlavor,
    pub(crate) kind: LockKind,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) pid: u32,
}

impl LockReq {
    /// The range the request covers: `flock` is always the whole file.
    fn range(&self) -> (u64, u64) {
        match self.flavor {
            LockFlavor::Flock => (0, u64::MAX),
            LockFlavor::Posix => (self.start, self.end),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    owner: Owner,
    flavor: LockFlavor,
    /// `Read` or `Write`, never `Unlock`.
    kind: LockKind,
    start: u64,
    end: u64,
    pid: u32,
}

impl Held {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// What a non-blocking attempt found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Granted, changed or released.
    Done,
    /// Another owner's lock is in the way.
    Blocked,
    /// Waiting would close a cycle of POSIX waiters.
    Deadlock,
}

struct Client {
    session: SessionId,
    /// Bumped by every connection that takes the session over, so that a
    /// grace timer started before it leaves the session alone.
    generation: u64,
    /// Connections of the client that have not ended yet.
    live: u32,
    /// Every connection is gone and the grace period is running.
    orphaned: bool,
}

#[derive(Default)]
struct State {
    files: HashMap<FileId, Vec<Held>>,
    /// POSIX requests waiting, for deadlock detection.
    waiting: HashMap<Owner, LockReq>,
    clients: HashMap<[u8; 16], Client>,
    next_session: SessionId,
    /// Old ids of files replaced by uploads, for requests on their way.
    ids: Ids,
    /// The file each waiting request (by its ticket) waits for: moved
    /// with the locks when an upload replaces the file.
    parked: HashMap<u64, FileId>,
}

/// A lock request between its path lookup and the table: while it lives,
/// the id the lookup finds leads to the file's locks even if an upload
/// replaces the file meanwhile. Take it before the lookup.
pub(crate) struct Resolving {
    table: Arc<LockTable>,
    ticket: u64,
    done: bool,
}

impl Drop for Resolving {
    fn drop(&mut self) {
        if !self.done {
            self.table.state.lock().ids.leave(self.ticket);
        }
    }
}

/// Every lock of one server, shared by all sessions.
pub(crate) struct LockTable {
    state: Mutex<State>,
    changed: Condvar,
    grace: Duration,
}

/// A connection's hold on its session in the table; ending it (explicitly
/// or by dropping) starts the grace period or releases the locks.
pub(crate) struct Lease {
    table: Arc<LockTable>,
    session: SessionId,
    client: Option<[u8; 16]>,
    ended: std::sync::atomic::AtomicBool,
}

impl LockTable {
    pub(crate) fn new(grace: Duration) -> Arc<LockTable> {
        Arc::new(LockTable {
            state: Mutex::new(State {
                next_session: 1,
                ..State::default()
            }),
            changed: Condvar::new(),
            grace,
        })
    }

    /// Starts a connection's session: takes over the session of an earlier
    /// connection of the same client if the table still keeps it. Returns
    /// the lease and whether it was taken over.
    pub(crate) fn attach(self: &Arc<Self>, client: Option<[u8; 16]>) -> (Lease, bool) {
        let mut st = self.state.lock();
        let mut resumed = false;
        let session = match client.and_then(|c| st.clients.get_mut(&c)) {
            Some(c) => {
                c.generation += 1;
                c.live += 1;
                c.orphaned = false;
                resumed = true;
                c.session
            }
            None => {
                let session = st.next_session;
                st.next_session += 1;
                if let Some(id) = client {
                    st.clients.insert(
                        id,
                        Client {
                            session,
                            generation: 0,
                            live: 1,
                            orphaned: false,
                        },
                    );
                }
                session
            }
        };
        drop(st);
        let lease = Lease {
            table: Arc::clone(self),
            session,
            client,
            ended: std::sync::atomic::AtomicBool::new(false),
        };
        (lease, resumed)
    }

    /// Wakes every waiter so that it looks at its cancel flag again.
    pub(crate) fn wake(&self) {
        // Under the mutex: a waiter between its flag check and its wait
        // would miss a notification sent without it.
        let _st = self.state.lock();
        self.changed.notify_all();
    }

    /// One non-blocking attempt, as [`LockTable::lock_as`] makes them (for
    /// the tests of the table's decisions); a waiting caller passes
    /// `waiting` so that its request takes part in deadlock detection.
    #[cfg(test)]
    pub(crate) fn try_lock(&self, session: SessionId, req: &LockReq, waiting: bool) -> Attempt {
        let mut st = self.state.lock();
        let attempt = st.attempt(session, req, waiting);
        if attempt == Attempt::Done {
            self.changed.notify_all();
        }
        attempt
    }

    /// Starts a lock request's path lookup (see [`Resolving`]).
    pub(crate) fn resolving(self: &Arc<Self>) -> Resolving {
        let ticket = self.state.lock().ids.enter();
        Resolving {
            table: Arc::clone(self),
            ticket,
            done: false,
        }
    }

    /// [`LockTable::lock_as`] for a request whose file id needs no lookup.
    #[cfg(test)]
    pub(crate) fn lock(
        self: &Arc<Self>,
        session: SessionId,
        req: &LockReq,
        wait: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), WireError> {
        self.lock_as(self.resolving(), session, req, wait, cancelled)
    }

    /// Takes, changes or releases a lock; with `req.wait`-style waiting
    /// (`wait`), blocks the calling thread until granted, a deadlock is
    /// found, or `cancelled` says so after a [`LockTable::wake`]. `req.file`
    /// is what the lookup that `pass` covered found.
    ///
    /// # Errors
    /// `WouldBlock`, `Deadlock` or `Interrupted`.
    pub(crate) fn lock_as(
        &self,
        mut pass: Resolving,
        session: SessionId,
        req: &LockReq,
        wait: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), WireError> {
        let me = Owner {
            session,
            owner: req.owner,
        };
        let mut st = self.state.lock();
        let mut req = LockReq {
            file: st.ids.resolve(req.file),
            ..*req
        };
        // From here on an upload replacing the file moves `parked` along.
        let ticket = pass.ticket;
        st.ids.leave(ticket);
        pass.done = true;
        let req = &mut req;
        let mut first = true;
        loop {
            if let Some(file) = st.parked.remove(&ticket) {
                req.file = file;
            }
            // Asked under the table's mutex, before every attempt: the
            // connection's end sets the flag before it releases the
            // session's locks, so a request it cancelled is never granted
            // to a session already gone (a waiter woken by that very
            // release would otherwise take a lock nobody ever frees). An
            // unlock still goes through.
            if req.kind != LockKind::Unlock && cancelled() {
                st.waiting.remove(&me);
                return Err(WireError::new(
                    ErrorCode::Interrupted,
                    "lock request cancelled",
                ));
            }
            match st.attempt(session, req, wait) {
                Attempt::Done => {
                    st.waiting.remove(&me);
                    self.changed.notify_all();
                    return Ok(());
                }
                Attempt::Deadlock => {
                    st.waiting.remove(&me);
                    return Err(WireError::new(
                        ErrorCode::Deadlock,
                        "waiting for this lock would deadlock",
                    ));
                }
                Attempt::Blocked if !wait => {
                    return Err(WireError::new(
                        ErrorCode::WouldBlock,
                        "the file is locked by another owner",
                    ));
                }
                Attempt::Blocked => {}
            }
            if first && req.flavor == LockFlavor::Flock {
                // A waiting flock conversion lets go of the old lock first.
                if st.release_range(me, req.file, LockFlavor::Flock, 0, u64::MAX) {
                    self.changed.notify_all();
                }
            }
            first = false;
            if cancelled() {
                st.waiting.remove(&me);
                return Err(WireError::new(
                    ErrorCode::Interrupted,
                    "lock wait cancelled",
                ));
            }
            if req.flavor == LockFlavor::Posix {
                st.waiting.insert(me, *req);
            }
            st.parked.insert(ticket, req.file);
            self.changed.wait(&mut st);
        }
    }

    /// [`LockTable::test_as`] for a request whose file id needs no lookup.
    #[cfg(test)]
    pub(crate) fn test(self: &Arc<Self>, session: SessionId, req: &LockReq) -> Option<LockHolder> {
        self.test_as(self.resolving(), session, req)
    }

    /// The lock that would block `req`, if any; `req.file` is what the
    /// lookup that `pass` covered found.
    pub(crate) fn test_as(
        &self,
        mut pass: Resolving,
        session: SessionId,
        req: &LockReq,
    ) -> Option<LockHolder> {
        let mut st = self.state.lock();
        let req = LockReq {
            file: st.ids.resolve(req.file),
            ..*req
        };
        st.ids.leave(pass.ticket);
        pass.done = true;
        let me = Owner {
            session,
            owner: req.owner,
        };
        st.conflicts(me, &req).first().map(|h| LockHolder {
            kind: h.kind,
            start: h.start,
            end: h.end,
            pid: h.pid,
        })
    }

    /// Locks held now, for tests and logs.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.state.lock().files.values().map(Vec::len).sum()
    }

    fn detach(self: &Arc<Self>, lease: &Lease) {
        let mut st = self.state.lock();
        let Some(id) = lease.client else {
            st.release_session(lease.session);
            self.changed.notify_all();
            return;
        };
        let Some(c) = st.clients.get_mut(&id) else {
            return;
        };
        c.live = c.live.saturating_sub(1);
        if c.live > 0 {
            // Another connection of the same client holds the session.
            return;
        }
        if self.grace.is_zero() {
            st.clients.remove(&id);
            st.release_session(lease.session);
            self.changed.notify_all();
            return;
        }
        c.orphaned = true;
        let generation = c.generation;
        let held = st.held_by(lease.session);
        drop(st);
        if held > 0 {
            log::info!(
                "keeping {held} lock(s) of a disconnected client for {} s",
                self.grace.as_secs_f32()
            );
        }
        let table = Arc::clone(self);
        let session = lease.session;
        let spawned = std::thread::Builder::new()
            .name("rfserve-lock-grace".into())
            .spawn(move || {
                std::thread::sleep(table.grace);
                table.expire(id, session, generation);
            });
        if spawned.is_err() {
            // No timer: release now rather than never.
            self.expire(id, session, generation);
        }
    }

    fn expire(&self, id: [u8; 16], session: SessionId, generation: u64) {
        let mut st = self.state.lock();
        let still = st
            .clients
            .get(&id)
            .is_some_and(|c| c.orphaned && c.generation == generation);
        if !still {
            return;
        }
        st.clients.remove(&id);
        let held = st.held_by(session);
        st.release_session(session);
        self.changed.notify_all();
        if held > 0 {
            log::info!(
                "grace period over: released {held} lock(s) of a client that did not come back"
            );
        }
    }
}

impl State {
    #[cfg(test)]
    fn ids_aliases(&self) -> usize {
        self.ids.aliases()
    }

    fn held_by(&self, session: SessionId) -> usize {
        self.files
            .values()
            .flatten()
            .filter(|h| h.owner.session == session)
            .count()
    }

    fn release_session(&mut self, session: SessionId) {
        for list in self.files.values_mut() {
            list.retain(|h| h.owner.session != session);
        }
        self.files.retain(|_, l| !l.is_empty());
        self.waiting.retain(|o, _| o.session != session);
    }

    /// Other owners' locks of the same flavor that `req` collides with.
    fn conflicts(&self, me: Owner, req: &LockReq) -> Vec<Held> {
        let (start, end) = req.range();
        let Some(list) = self.files.get(&req.file) else {
            return Vec::new();
        };
        list.iter()
            .filter(|h| {
                h.owner != me
                    && h.flavor == req.flavor
                    && h.overlaps(start, end)
                    && (h.kind == LockKind::Write || req.kind == LockKind::Write)
            })
            .copied()
            .collect()
    }

    fn attempt(&mut self, session: SessionId, req: &LockReq, waiting: bool) -> Attempt {
        let me = Owner {
            session,
            owner: req.owner,
        };
        let (start, end) = req.range();
        if req.kind == LockKind::Unlock {
            self.release_range(me, req.file, req.flavor, start, end);
            return Attempt::Done;
        }
        let blockers = self.conflicts(me, req);
        if !blockers.is_empty() {
            if waiting && req.flavor == LockFlavor::Posix && self.would_deadlock(me, &blockers) {
                return Attempt::Deadlock;
            }
            return Attempt::Blocked;
        }
        self.release_range(me, req.file, req.flavor, start, end);
        let list = self.files.entry(req.file).or_default();
        list.push(Held {
            owner: me,
            flavor: req.flavor,
            kind: req.kind,
            start,
            end,
            pid: req.pid,
        });
        merge(list, me, req.flavor);
        Attempt::Done
    }

    /// Removes `[start, end]` from `owner`'s locks of `flavor` on `file`,
    /// splitting locks that stick out. True when anything was released.
    fn release_range(
        &mut self,
        owner: Owner,
        file: FileId,
        flavor: LockFlavor,
        start: u64,
        end: u64,
    ) -> bool {
        let mut touched = false;
        if let Some(list) = self.files.get_mut(&file) {
            let mut out = Vec::with_capacity(list.len() + 1);
            for h in list.drain(..) {
                if h.owner != owner || h.flavor != flavor || !h.overlaps(start, end) {
                    out.push(h);
                    continue;
                }
                touched = true;
                if h.start < start {
                    out.push(Held {
                        end: start - 1,
                        ..h
                    });
                }
                if h.end > end {
                    out.push(Held {
                        start: end + 1,
                        ..h
                    });
                }
            }
            *list = out;
            if list.is_empty() {
                self.files.remove(&file);
            }
        }
        touched
    }

    /// An upload replaced the file `old` by the object `new`: its locks,
    /// and the requests waiting for them, are `new`'s now.
    fn replaced(&mut self, old: FileId, new: FileId) {
        let from = self.ids.resolve(old);
        if from == new {
            return;
        }
        if let Some(list) = self.files.remove(&from) {
            // `new` is a fresh inode; a list already there belongs to a
            // removed file whose inode number it reuses, and stays.
            self.files.entry(new).or_default().extend(list);
        }
        for file in self.parked.values_mut() {
            if *file == from {
                *file = new;
            }
        }
        for req in self.waiting.values_mut() {
            if req.file == from {
                req.file = new;
            }
        }
        self.ids.moved(from, new);
    }

    /// True when one of `blockers` waits, directly or through others, for
    /// a lock `me` holds.
    fn would_deadlock(&self, me: Owner, blockers: &[Held]) -> bool {
        let mut seen = HashSet::new();
        let mut todo: Vec<Owner> = blockers.iter().map(|h| h.owner).collect();
        while let Some(o) = todo.pop() {
            if o == me {
                return true;
            }
            if !seen.insert(o) {
                continue;
            }
            if let Some(req) = self.waiting.get(&o) {
                todo.extend(self.conflicts(o, req).iter().map(|h| h.owner));
            }
        }
        false
    }
}

/// Coalesces `owner`'s locks of `flavor` and one kind that touch or overlap.
fn merge(list: &mut Vec<Held>, owner: Owner, flavor: LockFlavor) {
    let (mut mine, rest): (Vec<Held>, Vec<Held>) = list
        .drain(..)
        .partition(|h| h.owner == owner && h.flavor == flavor);
    mine.sort_by_key(|h| h.start);
    let mut merged: Vec<Held> = Vec::with_capacity(mine.len());
    for h in mine {
        if let Some(last) = merged.last_mut() {
            if last.kind == h.kind && last.end.saturating_add(1) >= h.start {
                last.end = last.end.max(h.end);
                last.pid = h.pid;
                continue;
            }
        }
        merged.push(h);
    }
    *list = rest;
    list.extend(merged);
}

impl Succession for LockTable {
    fn replace(
        &self,
        new: FileId,
        rename: &mut dyn FnMut() -> std::io::Result<Option<FileId>>,
    ) -> std::io::Result<()> {
        // Held across the rename: no lock request sees the file's new id
        // before its locks are there.
        let mut st = self.state.lock();
        if let Some(old) = rename()? {
            st.replaced(old, new);
        }
        Ok(())
    }
}

impl Lease {
    pub(crate) fn session(&self) -> SessionId {
        self.session
    }

    pub(crate) fn table(&self) -> &Arc<LockTable> {
        &self.table
    }

    /// The connection is over: keep the session's locks for the grace
    /// period (a named client) or release them now. Idempotent.
    pub(crate) fn end(&self) {
        if self.ended.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let table = Arc::clone(&self.table);
        table.detach(self);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
#[path = "locks_tests.rs"]
mod tests;
