//! Callbacks: which session has read which object, so that a change can be
//! pushed ([`ServerMsg::Invalidate`]) to every other session that may have
//! it cached.
//!
//! Keys are export-relative paths; each session sees the export through its
//! subdirectory (its prefix), so paths are translated on the way in and out.
//! A callback on a directory covers its attributes and its listing (the
//! listing carries every child's attributes); one on a file covers its
//! attributes and content. A change of `P` is therefore sent to the holders
//! of `P` and of `P`'s parent, and both callbacks are forgotten: one
//! invalidation per session and change, and the client drops both.
//!
//! A session's invalidations go through its own outbox and sender thread,
//! and the sender jumps the queue of its connection's writer
//! ([`FrameWriter::send_urgent`]). The writer of a change waits (bounded by
//! [`DELIVERY_WAIT`]) until every invalidation it caused is written to its
//! holder's socket: when its close returns, the other mounts already have
//! the news, so close-to-open holds across mounts (as AFS breaks callbacks
//! before a store returns). A holder that does not take its frame in time
//! only delays the writer, never blocks it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rfmount_proto::{Change, FileId, Invalidation, RelPath, ServerMsg};

use crate::watch::Watcher;
use crate::writer::FrameWriter;

/// Callbacks one session may hold; beyond it the oldest are dropped (and
/// the client told with `Change::Dropped`).
pub(crate) const MAX_PER_SESSION: usize = 50_000;
/// Invalidations per frame: keeps a frame far below `MAX_FRAME` whatever
/// the path lengths.
const BATCH: usize = 1024;
/// How long a change made through a session is attributed to it when the
/// export's watch reports it again, so the writer is not invalidated by its
/// own change. Other sessions still get the watch's report. Within it the
/// object must also still be what the session's change left (see
/// [`Stamp`]): a change by another process on the server right after is
/// news to the writer too.
const OWN_CHANGE_WINDOW: Duration = Duration::from_secs(2);
/// How long a change's writer waits for its invalidations to be written to
/// the sessions holding callbacks. Far above a healthy write (microseconds
/// on a LAN), far below the liveness bound that makes a silent mount stop
/// trusting its callbacks anyway.
const DELIVERY_WAIT: Duration = Duration::from_secs(2);

/// What kind of read registered a callback: decides which directory the
/// export watch must cover to see the object change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// `STAT` or `GET`: the object itself, seen from its parent directory.
    Object,
    /// `LIST`: the directory's listing, seen from the directory itself.
    Listing,
}

/// The server-wide table of callbacks.
pub(crate) struct Callbacks {
    inner: Mutex<Inner>,
    watcher: Option<Watcher>,
    /// The export, where the watch's reports are checked against what a
    /// session's change left (`None`: no watch, nothing to check).
    root: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    sessions: HashMap<u64, SessionState>,
    /// Export path -> sessions holding a callback on it.
    holders: HashMap<RelPath, HashSet<u64>>,
    /// Export path -> the session that changed it lately, when, and what
    /// it left there.
    own: HashMap<RelPath, Own>,
}

/// A session's recent change of one path.
struct Own {
    session: u64,
    at: Instant,
    /// `None` while the change is being made: the watch may report it
    /// before the request ends.
    left: Option<Stamp>,
    /// This session's changes of names inside it (a directory) under way:
    /// each moves its mtime and ctime, so what the session left there is
    /// known again only when they are done (see [`Callbacks::expect`]).
    inside: u32,
}

impl Own {
    fn is_session_s(&self, session: u64) -> bool {
        self.session == session && self.at.elapsed() < OWN_CHANGE_WINDOW
    }
}

/// The parent directories of `paths`, each once.
fn parents_of(paths: &[RelPath]) -> Vec<RelPath> {
    let mut dirs: Vec<RelPath> = paths.iter().filter_map(RelPath::parent).collect();
    dirs.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    dirs.dedup();
    dirs
}

/// What a path is on the export, as far as telling one change from the
/// next goes: ctime moves with every change to a file (content, mode,
/// owner, links, a rename) and cannot be set by a program; device, inode
/// and size catch a replacement within one tick of the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stamp {
    Absent,
    Present {
        dev: u64,
        ino: u64,
        ctime: (i64, i64),
        size: u64,
    },
    /// Not looked at (no export root known): trusted as the session's.
    Unknown,
}

impl Stamp {
    fn of(root: Option<&std::path::Path>, path: &RelPath) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        let Some(root) = root else {
            return Stamp::Unknown;
        };
        match std::fs::symlink_metadata(root.join(path.as_str())) {
            Ok(m) => Stamp::Present {
                dev: m.dev(),
                ino: m.ino(),
                ctime: (m.ctime(), m.ctime_nsec()),
                size: m.size(),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::Absent,
            Err(_) => Stamp::Unknown,
        }
    }

    /// Whether a path found as `now` is still what a change left as `self`.
    fn still(self, now: Stamp) -> bool {
        self == Stamp::Unknown || now == Stamp::Unknown || self == now
    }

    /// Whether `now` is the same object as `self`, whatever its ctime and
    /// size: not removed, not replaced.
    fn same_object(self, now: Stamp) -> bool {
        match (self, now) {
            (Stamp::Unknown, _) | (_, Stamp::Unknown) => true,
            (
                Stamp::Present { dev, ino, .. },
                Stamp::Present {
                    dev: now_dev,
                    ino: now_ino,
                    ..
                },
            ) => dev == now_dev && ino == now_ino,
            (a, b) => a == b,
        }
    }
}

struct SessionState {
    prefix: RelPath,
    /// Export paths held, oldest first (each at most once).
    order: VecDeque<RelPath>,
    held: HashSet<RelPath>,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: Condvar,
    /// Signalled when a frame of invalidations is written, or the outbox
    /// closes.
    delivered: Condvar,
}

#[derive(Default)]
struct OutboxState {
    pending: Vec<Invalidation>,
    closed: bool,
    /// Invalidations ever pushed, and of those, how many are written to
    /// the socket (or given up with the connection).
    pushed: u64,
    written: u64,
}

impl Outbox {
    /// Queues one; its number, for [`Outbox::wait_written`].
    fn push(&self, inv: Invalidation) -> u64 {
        let mut st = self.state.lock();
        st.pending.push(inv);
        st.pushed += 1;
        let n = st.pushed;
        drop(st);
        self.ready.notify_one();
        n
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
        self.delivered.notify_all();
    }

    /// Waits until invalidation number `n` is written, the outbox closed,
    /// or `deadline`.
    fn wait_written(&self, n: u64, deadline: Instant) {
        let mut st = self.state.lock();
        while st.written < n && !st.closed {
            if self.delivered.wait_until(&mut st, deadline).timed_out() {
                log::debug!("a session took its invalidations late; the writer goes on");
                return;
            }
        }
    }

    /// Sends until closed. Everything pushed before a frame is written goes
    /// in it, so a burst of changes costs few frames.
    fn run(&self, writer: &FrameWriter) {
        loop {
            let batch = {
                let mut st = self.state.lock();
                while st.pending.is_empty() && !st.closed {
                    self.ready.wait(&mut st);
                }
                if st.closed {
                    return;
                }
                let n = st.pending.len().min(BATCH);
                st.pending.drain(..n).collect::<Vec<_>>()
            };
            let n = batch.len() as u64;
            let sent = writer.send_urgent(&ServerMsg::Invalidate(batch));
            let mut st = self.state.lock();
            st.written += n;
            if sent.is_err() {
                st.closed = true;
            }
            drop(st);
            self.delivered.notify_all();
            if sent.is_err() {
                return;
            }
        }
    }
}

/// One change to report, in export paths.
#[derive(Clone, Debug)]
pub(crate) struct Changed {
    pub(crate) path: RelPath,
    pub(crate) file_id: FileId,
    pub(crate) change: Change,
}

impl Callbacks {
    /// A table; with `watch_root`, changes made there by other processes
    /// are reported too.
    pub(crate) fn new(watch_root: Option<std::path::PathBuf>) -> Arc<Callbacks> {
        Arc::new_cyclic(|weak| {
            let watcher = watch_root
                .clone()
                .and_then(|root| Watcher::start(root, weak.clone()));
            Callbacks {
                inner: Mutex::default(),
                root: watcher.is_some().then_some(watch_root).flatten(),
                watcher,
            }
        })
    }

    /// Registers a session seeing the export through `prefix`; its
    /// invalidations go out on `writer`.
    pub(crate) fn join(self: &Arc<Self>, prefix: RelPath, writer: Arc<FrameWriter>) -> Session {
        let outbox = Arc::new(Outbox::default());
        let id = {
            let mut inner = self.inner.lock();
            inner.next += 1;
            let id = inner.next;
            inner.sessions.insert(
                id,
                SessionState {
                    prefix: prefix.clone(),
                    order: VecDeque::new(),
                    held: HashSet::new(),
                    outbox: Arc::clone(&outbox),
                },
            );
            id
        };
        let sender = Arc::clone(&outbox);
        if let Err(e) = std::thread::Builder::new()
            .name(format!("rfserve-inval-{id}"))
            .spawn(move || sender.run(&writer))
        {
            // Without a sender the session must not hold callbacks: nobody
            // could tell it of a change.
            log::warn!("cannot start the invalidation sender of a session: {e}");
            self.inner.lock().sessions.remove(&id);
            return Session {
                table: None,
                id,
                prefix,
            };
        }
        Session {
            table: Some(Arc::clone(self)),
            id,
            prefix,
        }
    }

    fn hold(&self, session: u64, path: RelPath, kind: Held) {
        let mut inner = self.inner.lock();
        let Inner {
            sessions, holders, ..
        } = &mut *inner;
        let Some(s) = sessions.get_mut(&session) else {
            return;
        };
        // Held already (a STAT of a directory before its LIST, or before
        // its creation): the table has it, but the watch this kind needs
        // may not be there yet.
        let new = s.held.insert(path.clone());
        if new {
            s.order.push_back(path.clone());
            holders.entry(path.clone()).or_default().insert(session);
        }
        while new && s.order.len() > MAX_PER_SESSION {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            if !s.held.remove(&old) {
                continue;
            }
            unhold(holders, &old, session);
            if let Some(p) = old.rebase(&s.prefix, &RelPath::root()) {
                s.outbox.push(Invalidation {
                    path: p,
                    file_id: FileId::default(),
                    change: Change::Dropped,
                });
            }
        }
        drop(inner);
        if let Some(w) = &self.watcher {
            let dir = match kind {
                Held::Listing => Some(path),
                Held::Object => path.parent().or(Some(RelPath::root())),
            };
            if let Some(d) = dir {
                w.watch(&d);
            }
        }
    }

    /// Session `origin` is about to change `paths`: the export's watch may
    /// report the change before [`Callbacks::changed`] runs for it (the
    /// inotify event is queued by the very system call), and must not send
    /// it back to its writer then either.
    ///
    /// A directory the session changed moments ago (made it, say) changes
    /// again with every name the session then creates or removes in it
    /// (`mkdir -p a/b/c`, `tar x`): if it is still what the session left,
    /// that is the session's change too, and the watch's late report of
    /// the first one (the directory now looks different from what it left)
    /// is no news to it either.
    fn expect(&self, origin: u64, paths: &[RelPath]) {
        let dirs = parents_of(paths);
        // Looked at before the lock, and before the change.
        let before: Vec<Stamp> = dirs
            .iter()
            .map(|d| Stamp::of(self.root.as_deref(), d))
            .collect();
        let mut inner = self.inner.lock();
        let now = Instant::now();
        for (d, stamp) in dirs.iter().zip(&before) {
            if let Some(own) = inner.own.get_mut(d)
                && own.is_session_s(origin)
                && own.left.is_none_or(|left| {
                    left.still(*stamp) || (own.inside > 0 && left.same_object(*stamp))
                })
            {
                own.inside += 1;
                own.at = now;
            }
        }
        for p in paths {
            let inside = inner.own.get(p).map_or(0, |o| o.inside);
            inner.own.insert(
                p.clone(),
                Own {
                    session: origin,
                    at: now,
                    left: None,
                    inside,
                },
            );
        }
    }

    /// Reports changes made by session `origin` (or, with `None`, by
    /// something else) to every other session holding a callback on the
    /// objects or their parents, and forgets those callbacks. `origin`
    /// keeps its own: it knows what it did.
    pub(crate) fn changed(&self, origin: Option<u64>, changes: &[Changed]) {
        let waits = self.queue_changes(origin, changes);
        // Only a session's own change has a writer waiting for its reply;
        // the export watch has nobody to hold back.
        if origin.is_some() {
            let deadline = Instant::now() + DELIVERY_WAIT;
            for (outbox, n) in waits {
                outbox.wait_written(n, deadline);
            }
        }
    }

    /// Queues the invalidations of `changes`; the outboxes they went to,
    /// each with the number of its last one.
    fn queue_changes(&self, origin: Option<u64>, changes: &[Changed]) -> Vec<(Arc<Outbox>, u64)> {
        let mut waits: Vec<(Arc<Outbox>, u64)> = Vec::new();
        // Looked at before the lock: a stat per changed path.
        let stamps: Vec<Stamp> = changes
            .iter()
            .map(|c| Stamp::of(self.root.as_deref(), &c.path))
            .collect();
        let paths: Vec<RelPath> = changes.iter().map(|c| c.path.clone()).collect();
        let dirs = if origin.is_some() {
            parents_of(&paths)
        } else {
            Vec::new()
        };
        let dir_stamps: Vec<Stamp> = dirs
            .iter()
            .map(|d| Stamp::of(self.root.as_deref(), d))
            .collect();
        let mut inner = self.inner.lock();
        let now = Instant::now();
        if let Some(o) = origin {
            if inner.own.len() > 10_000 {
                inner
                    .own
                    .retain(|_, own| own.at.elapsed() < OWN_CHANGE_WINDOW);
            }
            for (c, stamp) in changes.iter().zip(&stamps) {
                let inside = inner.own.get(&c.path).map_or(0, |o| o.inside);
                inner.own.insert(
                    c.path.clone(),
                    Own {
                        session: o,
                        at: now,
                        left: Some(*stamp),
                        inside,
                    },
                );
            }
            // What the session's change left its directories as (see
            // `expect`), once no other change of its in them is under way.
            for (d, stamp) in dirs.iter().zip(&dir_stamps) {
                if let Some(own) = inner.own.get_mut(d)
                    && own.is_session_s(o)
                    && own.inside > 0
                {
                    own.inside -= 1;
                    own.at = now;
                    own.left = Some(*stamp);
                }
            }
        }
        for (c, stamp) in changes.iter().zip(&stamps) {
            // A change the watch reports that a session made itself moments
            // ago, to an object still as that change left it: not news to
            // that session.
            let skip = match origin {
                Some(o) => Some(o),
                None => inner
                    .own
                    .get(&c.path)
                    .filter(|own| own.at.elapsed() < OWN_CHANGE_WINDOW)
                    .filter(|own| {
                        let left_as = |now: Stamp| match own.left {
                            None => true,
                            // Names in it changing: its ctime moves, but it
                            // is still the directory the session left.
                            Some(left) if own.inside > 0 => left.same_object(now),
                            Some(left) => left.still(now),
                        };
                        // Looked at again when it differs: the session may
                        // have changed it again between that look and its
                        // record of what it left, which is then current.
                        left_as(*stamp) || left_as(Stamp::of(self.root.as_deref(), &c.path))
                    })
                    .map(|own| own.session),
            };
            if c.change == Change::All {
                all_beneath(&mut inner, &c.path, skip, &mut waits);
                continue;
            }
            let mut keys = vec![c.path.clone()];
            if let Some(parent) = c.path.parent() {
                keys.push(parent);
            }
            let mut targets: Vec<u64> = keys
                .iter()
                .filter_map(|k| inner.holders.get(k))
                .flat_map(|set| set.iter().copied())
                .filter(|s| Some(*s) != skip)
                .collect();
            targets.sort_unstable();
            targets.dedup();
            let Inner {
                sessions, holders, ..
            } = &mut *inner;
            for t in targets {
                let Some(s) = sessions.get_mut(&t) else {
                    continue;
                };
                for k in &keys {
                    if s.held.remove(k) {
                        unhold(holders, k, t);
                    }
                }
                if let Some(p) = c.path.rebase(&s.prefix, &RelPath::root()) {
                    let n = s.outbox.push(Invalidation {
                        path: p,
                        file_id: c.file_id,
                        change: c.change,
                    });
                    note_wait(&mut waits, &s.outbox, n);
                }
            }
        }
        waits
    }

    /// Tells session `session` alone that `path` changed (and forgets its
    /// callback there), waiting until the frame is written: called before
    /// a reply, so that the session learns it first.
    fn tell(&self, session: u64, path: RelPath, change: Change) {
        let mut inner = self.inner.lock();
        let Inner {
            sessions, holders, ..
        } = &mut *inner;
        let Some(s) = sessions.get_mut(&session) else {
            return;
        };
        if s.held.remove(&path) {
            unhold(holders, &path, session);
        }
        let Some(view) = path.rebase(&s.prefix, &RelPath::root()) else {
            return;
        };
        let outbox = Arc::clone(&s.outbox);
        let n = outbox.push(Invalidation {
            path: view,
            file_id: FileId::default(),
            change,
        });
        drop(inner);
        outbox.wait_written(n, Instant::now() + DELIVERY_WAIT);
    }

    fn leave(&self, session: u64) {
        let mut inner = self.inner.lock();
        let Inner {
            sessions, holders, ..
        } = &mut *inner;
        if let Some(s) = sessions.remove(&session) {
            for p in &s.held {
                unhold(holders, p, session);
            }
            s.outbox.close();
        }
    }
}

/// Remembers that outbox `o` must have written its invalidation `n`.
fn note_wait(waits: &mut Vec<(Arc<Outbox>, u64)>, o: &Arc<Outbox>, n: u64) {
    match waits.iter_mut().find(|(w, _)| Arc::ptr_eq(w, o)) {
        Some((_, last)) => *last = (*last).max(n),
        None => waits.push((Arc::clone(o), n)),
    }
}

fn unhold(holders: &mut HashMap<RelPath, HashSet<u64>>, path: &RelPath, session: u64) {
    if let Some(set) = holders.get_mut(path) {
        set.remove(&session);
        if set.is_empty() {
            holders.remove(path);
        }
    }
}

/// Everything at or below `path` may have changed: every session holding
/// anything there is told once and loses those callbacks.
fn all_beneath(
    inner: &mut Inner,
    path: &RelPath,
    skip: Option<u64>,
    waits: &mut Vec<(Arc<Outbox>, u64)>,
) {
    let Inner {
        sessions, holders, ..
    } = inner;
    for (&id, s) in sessions.iter_mut() {
        if Some(id) == skip {
            continue;
        }
        let gone: Vec<RelPath> = s
            .held
            .iter()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        if gone.is_empty() {
            continue;
        }
        for p in &gone {
            s.held.remove(p);
            unhold(holders, p, id);
        }
        // The session's view: the changed subtree, or all of it when the
        // change lies above its subdirectory.
        let view = path
            .rebase(&s.prefix, &RelPath::root())
            .unwrap_or_else(RelPath::root);
        let n = s.outbox.push(Invalidation {
            path: view,
            file_id: FileId::default(),
            change: Change::All,
        });
        note_wait(waits, &s.outbox, n);
    }
}

/// A session's membership in [`Callbacks`]; dropping it forgets the
/// session's callbacks and stops its sender.
pub(crate) struct Session {
    table: Option<Arc<Callbacks>>,
    id: u64,
    prefix: RelPath,
}

impl Session {
    /// True when the session is told of changes (the Welcome says so).
    pub(crate) fn active(&self) -> bool {
        self.table.is_some()
    }

    /// Sets the subdirectory the session sees (known only after the
    /// handshake, which needs [`Session::active`] first).
    pub(crate) fn set_prefix(&mut self, prefix: RelPath) {
        if let Some(t) = &self.table
            && let Some(s) = t.inner.lock().sessions.get_mut(&self.id)
        {
            s.prefix = prefix.clone();
        }
        self.prefix = prefix;
    }

    fn export_path(&self, path: &RelPath) -> Option<RelPath> {
        path.rebase(&RelPath::root(), &self.prefix)
    }

    /// Registers a callback on `path` (session-relative). Call before
    /// reading the object, so a change between the read and this cannot
    /// go unreported.
    pub(crate) fn hold(&self, path: &RelPath, kind: Held) {
        if let (Some(t), Some(p)) = (&self.table, self.export_path(path)) {
            t.hold(self.id, p, kind);
        }
    }

    /// This session just created the directory `path` (session-relative),
    /// and its mount takes the new directory as empty: it holds a listing
    /// callback from now on. The export's watch covers the directory only
    /// from here, so `empty` is asked after it is in place: anything that
    /// landed in the directory before (another session's change was not
    /// reported to this one, a change on the server machine not seen) makes
    /// the session be told that the directory changed, before its reply,
    /// so its mount does not trust the empty listing.
    pub(crate) fn hold_new_dir(&self, path: &RelPath, empty: impl FnOnce() -> bool) {
        let (Some(t), Some(p)) = (&self.table, self.export_path(path)) else {
            return;
        };
        t.hold(self.id, p.clone(), Held::Listing);
        if !empty() {
            t.tell(self.id, p, Change::All);
        }
    }

    /// This session is about to change `paths` (session-relative): see
    /// [`Callbacks::expect`]. Call before the change is made.
    pub(crate) fn expect(&self, paths: &[&RelPath]) {
        let Some(t) = &self.table else { return };
        let list: Vec<RelPath> = paths.iter().filter_map(|p| self.export_path(p)).collect();
        t.expect(self.id, &list);
    }

    /// Reports changes this session made (session-relative paths). Call
    /// before the request's reply is sent: by the time the writer learns
    /// its change is done, every other session's invalidation is queued.
    pub(crate) fn changed(&self, changes: &[(RelPath, Change, FileId)]) {
        let Some(t) = &self.table else { return };
        let list: Vec<Changed> = changes
            .iter()
            .filter_map(|(p, change, file_id)| {
                Some(Changed {
                    path: self.export_path(p)?,
                    file_id: *file_id,
                    change: *change,
                })
            })
            .collect();
        t.changed(Some(self.id), &list);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = &self.table {
            t.leave(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn pending(t: &Callbacks, id: u64) -> Vec<Invalidation> {
        let inner = t.inner.lock();
        let st = inner.sessions[&id].outbox.state.lock();
        st.pending.clone()
    }

    fn table_with(ids: &[u64], prefixes: &[&str]) -> Arc<Callbacks> {
        let t = Callbacks::new(None);
        let mut inner = t.inner.lock();
        for (id, pre) in ids.iter().zip(prefixes) {
            inner.sessions.insert(
                *id,
                SessionState {
                    prefix: p(pre),
                    order: VecDeque::new(),
                    held: HashSet::new(),
                    outbox: Arc::default(),
                },
            );
        }
        drop(inner);
        t
    }

    #[test]
    fn a_change_reaches_other_holders_of_the_object_or_its_parent_once() {
        let t = table_with(&[1, 2, 3], &["", "", "d"]);
        t.hold(1, p("d/f"), Held::Object);
        t.hold(2, p("d"), Held::Listing);
        t.hold(3, p("d/f"), Held::Object);
        t.hold(3, p("d"), Held::Listing);
        t.changed(
            Some(1),
            &[Changed {
                path: p("d/f"),
                file_id: FileId { dev: 1, ino: 7 },
                change: Change::Content,
            }],
        );
        assert!(pending(&t, 1).is_empty(), "the writer is not told");
        let two = pending(&t, 2);
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].path, p("d/f"));
        // Translated to the session's subdirectory; one message for both
        // callbacks it held.
        let three = pending(&t, 3);
        assert_eq!(three.len(), 1);
        assert_eq!(three[0].path, p("f"));
        assert_eq!(three[0].change, Change::Content);
        // Forgotten: a second change is news to nobody but the writer.
        t.changed(
            Some(2),
            &[Changed {
                path: p("d/f"),
                file_id: FileId { dev: 1, ino: 7 },
                change: Change::Removed,
            }],
        );
        let one = pending(&t, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].change, Change::Removed);
        assert_eq!(pending(&t, 2).len(), 1);
        assert_eq!(pending(&t, 3).len(), 1);
    }

    #[test]
    fn the_watch_does_not_report_a_sessions_own_change_back_to_it() {
        let t = table_with(&[1, 2], &["", ""]);
        t.hold(1, p("f"), Held::Object);
        t.changed(
            Some(1),
            &[Changed {
                path: p("f"),
                file_id: FileId::default(),
                change: Change::Content,
            }],
        );
        t.hold(2, p("f"), Held::Object);
        t.changed(
            None,
            &[Changed {
                path: p("f"),
                file_id: FileId::default(),
                change: Change::Content,
            }],
        );
        assert!(pending(&t, 1).is_empty());
        assert_eq!(pending(&t, 2).len(), 1);
    }

    #[test]
    fn a_change_on_the_server_right_after_a_sessions_own_is_news_to_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "mine\n").unwrap();
        let mut t = table_with(&[1, 2], &["", ""]);
        Arc::get_mut(&mut t).expect("no other reference").root = Some(dir.path().to_owned());
        let report = |t: &Callbacks| {
            t.changed(
                None,
                &[Changed {
                    path: p("f"),
                    file_id: FileId::default(),
                    change: Change::Content,
                }],
            );
        };
        t.hold(1, p("f"), Held::Object);
        t.changed(
            Some(1),
            &[Changed {
                path: p("f"),
                file_id: FileId::default(),
                change: Change::Content,
            }],
        );
        // The watch's late report of session 1's own write: the file is as
        // that write left it.
        report(&t);
        assert!(pending(&t, 1).is_empty());
        // Another process on the server writes it within the window.
        std::fs::write(dir.path().join("f"), "someone else's\n").unwrap();
        report(&t);
        let got = pending(&t, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].path, p("f"));
        // And its removal, too.
        t.hold(1, p("f"), Held::Object);
        t.changed(
            Some(1),
            &[Changed {
                path: p("f"),
                file_id: FileId::default(),
                change: Change::Content,
            }],
        );
        std::fs::remove_file(dir.path().join("f")).unwrap();
        report(&t);
        assert_eq!(pending(&t, 1).len(), 2);
    }

    #[test]
    fn the_watch_reporting_a_change_before_its_request_ends_skips_the_writer() {
        let t = table_with(&[1, 2], &["", ""]);
        t.hold(1, p("d"), Held::Listing);
        t.hold(2, p("d"), Held::Listing);
        t.expect(1, &[p("d/new")]);
        // The inotify event of the mkdir, seen before the request's own
        // report of the change.
        t.changed(
            None,
            &[Changed {
                path: p("d/new"),
                file_id: FileId::default(),
                change: Change::Created,
            }],
        );
        assert!(pending(&t, 1).is_empty(), "the writer is not told");
        assert_eq!(pending(&t, 2).len(), 1);
    }

    #[test]
    fn beyond_the_bound_the_oldest_callback_is_dropped_and_said_so() {
        let t = table_with(&[1], &[""]);
        for i in 0..=MAX_PER_SESSION {
            t.hold(1, p(&format!("f{i}")), Held::Object);
        }
        let got = pending(&t, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, p("f0"));
        assert_eq!(got[0].change, Change::Dropped);
        assert_eq!(t.inner.lock().sessions[&1].held.len(), MAX_PER_SESSION);
    }

    #[test]
    fn an_overflow_tells_every_holder_to_drop_everything() {
        let t = table_with(&[1, 2], &["", "sub"]);
        t.hold(1, p("a"), Held::Object);
        t.hold(2, p("sub/b"), Held::Object);
        t.changed(
            None,
            &[Changed {
                path: RelPath::root(),
                file_id: FileId::default(),
                change: Change::All,
            }],
        );
        for id in [1, 2] {
            let got = pending(&t, id);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].change, Change::All);
            assert!(got[0].path.is_root());
        }
        assert!(t.inner.lock().holders.is_empty());
    }
}
