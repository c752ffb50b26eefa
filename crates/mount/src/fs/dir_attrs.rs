//! Directory attribute changes of a write-back mount (`chmod`, `chown`,
//! and `utimensat` with explicit times, on a directory): shown by the mount
//! at once and sent to the server in the background, once every upload
//! into the directory queued before the change has landed.
//!
//! Why: `tar x` gives each directory its owner, mode and times after it
//! extracted the directory's entries. Sent at once, ahead of the queued
//! uploads of those entries, the server's renames that commit the uploads
//! would move the directory's mtime again; sent synchronously, they are
//! three round trips per directory that the extraction waits for.
//!
//! The changes to one directory that wait together are merged into one
//! SETATTR (a later field wins). A change the server cannot be reached for
//! is tried again with back-off (listed with the failed uploads, and waited
//! for by `rfmount sync` and unmount); one the server refuses is logged as
//! a warning, counted among the mount's errors (`rfmount status`), and the
//! server's attributes are shown again. The queue is kept in memory: a
//! crash of rfmount loses the changes still waiting (the files themselves
//! are in the cache's dirty set).
//!
//! Not in the default mode: the ctime shown until the change lands is the
//! mount's, and the server's replaces it then, so a reader that compares
//! ctimes (`tar c`: "file changed as we read it") would see the directory
//! change by itself once the change lands.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use parking_lot::{Condvar, Mutex};
use rfmount_client::Remote;
use rfmount_proto::{FileKind, Meta, RelPath, SetAttr, SetTime, Timestamp};

use super::writeback::FailedUpload;
use super::{Attr, RemoteFs};
use crate::error::FsResult;

/// First pause before a change the server was not reached for is sent
/// again; doubled per failure.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest pause between tries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a change held back by uploads looks again.
const POLL: Duration = Duration::from_millis(20);

/// The changes waiting for one directory.
struct Pending {
    /// Fields not sent yet.
    change: SetAttr,
    /// What the mount shows for the directory meanwhile.
    shown: Meta,
    /// Uploads queued before the last change merged in must land first.
    mark: u64,
    /// Order of the first change, so that directories go in change order.
    seq: u64,
    /// A SETATTR of this directory is on its way.
    in_flight: bool,
    /// Not before this instant (back-off after a failure).
    not_before: Instant,
    /// The last failure, for `rfmount status`.
    failed: Option<FailedUpload>,
}

#[derive(Default)]
struct State {
    pending: HashMap<RelPath, Pending>,
    next_seq: u64,
}

/// The waiting directory attribute changes of a write-back mount.
#[derive(Default)]
pub(crate) struct DirAttrs {
    state: Mutex<State>,
    changed: Condvar,
    /// Held while a SETATTR is sent, and by a rename or rmdir that moves
    /// or removes a directory with changes waiting, so that a change never
    /// goes to a path that no longer names its directory.
    sending: Mutex<()>,
    /// The sender runs (a filesystem without one sends every change now).
    started: AtomicBool,
}

/// `b`'s fields over `a`'s.
fn merged(a: &SetAttr, b: &SetAttr) -> SetAttr {
    SetAttr {
        mode: b.mode.or(a.mode),
        size: None,
        atime: b.atime.or(a.atime),
        mtime: b.mtime.or(a.mtime),
        uid: b.uid.or(a.uid),
        gid: b.gid.or(a.gid),
    }
}

fn is_empty(c: &SetAttr) -> bool {
    *c == SetAttr::default()
}

/// `m` as it is once `c` is applied (what the server will answer).
fn applied(mut m: Meta, c: &SetAttr) -> Meta {
    if let Some(mode) = c.mode {
        m.mode = mode & 0o7777;
    }
    if let Some(u) = c.uid {
        m.uid = u;
    }
    if let Some(g) = c.gid {
        m.gid = g;
    }
    if let Some(SetTime::At(t)) = &c.atime {
        m.atime = *t;
    }
    if let Some(SetTime::At(t)) = &c.mtime {
        m.mtime = *t;
    }
    m.ctime = Timestamp::from_system(SystemTime::now());
    m
}

impl DirAttrs {
    /// What the mount shows for `dir` while changes of it wait.
    pub(crate) fn shown(&self, dir: &RelPath) -> Option<Meta> {
        self.state.lock().pending.get(dir).map(|p| p.shown.clone())
    }

    /// What the mount shows for the entries of `parent` with changes
    /// waiting, by name (a listing from the server predates them).
    pub(crate) fn shown_in(&self, parent: &RelPath) -> Vec<(String, Meta)> {
        let st = self.state.lock();
        st.pending
            .iter()
            .filter(|(d, _)| d.parent().as_ref() == Some(parent))
            .filter_map(|(d, p)| Some((d.file_name()?.to_owned(), p.shown.clone())))
            .collect()
    }

    /// A change of `dir` was made on the server directly (the server
    /// answering `server`): while other changes of it wait, what the mount
    /// shows takes it too. Returns what to show.
    pub(crate) fn also_applied(&self, dir: &RelPath, change: &SetAttr, server: Meta) -> Meta {
        let mut st = self.state.lock();
        match st.pending.get_mut(dir) {
            Some(p) => {
                p.shown = applied(p.shown.clone(), change);
                p.shown.clone()
            }
            None => server,
        }
    }

    /// Directories with changes waiting or on their way.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Changes the server was not reached for, waiting for their next try.
    pub(crate) fn failed(&self) -> Vec<FailedUpload> {
        let st = self.state.lock();
        st.pending
            .values()
            .filter_map(|p| p.failed.clone())
            .collect()
    }

    /// Records `change` of `dir` (currently shown as `base`), to be sent
    /// after the uploads queued before `mark`; returns what to show.
    fn push(&self, dir: &RelPath, base: Meta, change: &SetAttr, mark: u64) -> Meta {
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let p = st.pending.entry(dir.clone()).or_insert_with(|| Pending {
            change: SetAttr::default(),
            shown: base,
            mark,
            seq,
            in_flight: false,
            not_before: Instant::now(),
            failed: None,
        });
        p.change = merged(&p.change, change);
        p.shown = applied(p.shown.clone(), change);
        p.mark = p.mark.max(mark);
        let shown = p.shown.clone();
        drop(st);
        self.changed.notify_all();
        shown
    }

    /// Takes the next change that may be sent now: none of its uploads is
    /// pending (`busy(dir, mark)`), it is not on its way, and no back-off
    /// holds it. `Err` with how long to wait when none may.
    fn take(
        &self,
        busy: &dyn Fn(&RelPath, u64) -> bool,
    ) -> Result<(RelPath, SetAttr), Option<Duration>> {
        let mut st = self.state.lock();
        let now = Instant::now();
        let mut ready: Vec<(&RelPath, &Pending)> = st
            .pending
            .iter()
            .filter(|(_, p)| !p.in_flight && !is_empty(&p.change) && p.not_before <= now)
            .collect();
        ready.sort_by_key(|(_, p)| p.seq);
        let pick = ready
            .into_iter()
            .find(|(d, p)| !busy(d, p.mark))
            .map(|(d, _)| d.clone());
        let Some(dir) = pick else {
            let waiting = st.pending.values().any(|p| !p.in_flight);
            return Err(waiting.then_some(POLL));
        };
        let p = st.pending.get_mut(&dir).expect("picked from the map");
        p.in_flight = true;
        Ok((dir, std::mem::take(&mut p.change)))
    }

    /// Waits for a change to be recorded, or `timeout`.
    fn wait(&self, timeout: Option<Duration>) {
        let mut st = self.state.lock();
        match timeout {
            Some(t) => {
                self.changed.wait_for(&mut st, t);
            }
            None => self.changed.wait(&mut st),
        }
    }

    /// `sent` of `dir` landed, the server answering `meta`: returns
    /// whether nothing more waits for `dir`.
    fn landed(&self, dir: &RelPath) -> bool {
        let mut st = self.state.lock();
        self.changed.notify_all();
        let Some(p) = st.pending.get_mut(dir) else {
            return true;
        };
        p.in_flight = false;
        p.failed = None;
        if is_empty(&p.change) {
            st.pending.remove(dir);
            return true;
        }
        false
    }

    /// `sent` of `dir` did not reach the server: it is tried again later
    /// (under any change recorded meanwhile).
    fn unreached(&self, dir: &RelPath, sent: &SetAttr, error: String) {
        let mut st = self.state.lock();
        self.changed.notify_all();
        let Some(p) = st.pending.get_mut(dir) else {
            return;
        };
        p.in_flight = false;
        p.change = merged(sent, &p.change);
        let attempts = p.failed.as_ref().map_or(0, |f| f.attempts) + 1;
        let pause = BACKOFF_START
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(BACKOFF_MAX);
        p.not_before = Instant::now() + pause;
        p.failed = Some(FailedUpload {
            path: dir.to_string(),
            attempts,
            error,
            at: SystemTime::now(),
        });
    }

    /// The server refused `dir`'s change: returns whether nothing more
    /// waits for `dir` (then the server's attributes are to be shown).
    fn refused(&self, dir: &RelPath) -> bool {
        self.landed(dir)
    }

    /// `from` (and everything beneath it) is now `to`.
    fn rename(&self, from: &RelPath, to: &RelPath) {
        let mut st = self.state.lock();
        let moved: Vec<RelPath> = st
            .pending
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            let Some(mut v) = st.pending.remove(&p) else {
                continue;
            };
            let new = p.rebase(from, to).unwrap_or(p);
            if let Some(f) = v.failed.as_mut() {
                f.path = new.to_string();
            }
            st.pending.insert(new, v);
        }
    }

    /// `dir` was removed: its changes go with it.
    fn removed(&self, dir: &RelPath) {
        self.state.lock().pending.retain(|p, _| !p.starts_with(dir));
    }
}

impl<R: Remote + 'static> RemoteFs<R> {
    /// In write-back mode, a change of a directory's mode, owner or times
    /// (explicit ones: "now" is the server's clock) is queued here and
    /// answered at once; `None` when it is to be sent now.
    ///
    /// # Errors
    /// The directory's attributes cannot be had.
    pub(super) fn defer_dir_attrs(
        &self,
        ino: u64,
        path: &RelPath,
        change: &SetAttr,
    ) -> FsResult<Option<Attr>> {
        let now = |t: &Option<SetTime>| matches!(t, Some(SetTime::Now));
        if !self.cfg.writeback
            || !self.dir_attrs.started.load(Ordering::SeqCst)
            || change.size.is_some()
            || now(&change.atime)
            || now(&change.mtime)
        {
            return Ok(None);
        }
        let base = match self.dir_attrs.shown(path) {
            Some(m) => m,
            None => {
                // Attributes of any age will do: the server's answer
                // replaces them once the change lands, and asking now
                // would be the round trip this saves.
                let known = self.meta.lock().attr_any(path);
                let m = match known {
                    Some(m) => m,
                    None => self.meta_of(path)?,
                };
                if m.kind != FileKind::Dir {
                    return Ok(None);
                }
                m
            }
        };
        let meta = self.dir_attrs.push(path, base, change, self.uploads.mark());
        debug!("{path}: attribute change queued behind its uploads");
        Ok(Some(Attr { ino, meta }))
    }

    /// Sends the waiting directory attribute changes, each once the
    /// uploads queued before it have landed.
    fn dir_attr_worker(self: Arc<Self>) {
        let busy = |d: &RelPath, mark: u64| self.uploads.busy_beneath(d, mark);
        loop {
            let sending = self.dir_attrs.sending.lock();
            let (dir, change) = match self.dir_attrs.take(&busy) {
                Ok(job) => job,
                Err(wait) => {
                    drop(sending);
                    self.dir_attrs.wait(wait);
                    continue;
                }
            };
            match self.remote.setattr(&dir, change) {
                Ok(meta) => {
                    if self.dir_attrs.landed(&dir) {
                        self.meta.lock().note_attr(&dir, meta);
                    }
                }
                Err(e) if e.is_transport() => {
                    warn!("changing the attributes of {dir} failed, will retry: {e}");
                    self.dir_attrs.unreached(&dir, &change, e.to_string());
                }
                Err(e) => {
                    crate::activity::note_failure(&format!("attributes of {dir}"), &e);
                    warn!("the server refused the attribute change of {dir}: {e}");
                    if self.dir_attrs.refused(&dir) {
                        self.meta.lock().invalidate(&dir);
                        if let Some(inv) = self.invalidator.get()
                            && let Some(ino) = self.inodes.lock().ino(&dir)
                        {
                            inv(ino);
                        }
                    }
                }
            }
            drop(sending);
        }
    }

    /// Starts the sender of directory attribute changes.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_dir_attrs(self: &Arc<Self>) -> std::io::Result<()> {
        let fs = self.clone();
        std::thread::Builder::new()
            .name("rf-dir-attrs".into())
            .spawn(move || fs.dir_attr_worker())?;
        self.dir_attrs.started.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Before `from` is renamed to `to` on the server: a change of it (or
    /// of a directory beneath) on its way lands first; the ones waiting
    /// follow the rename (`done` runs the rename, holding that off).
    pub(super) fn dir_attrs_across_rename<T>(
        &self,
        from: &RelPath,
        to: &RelPath,
        done: impl FnOnce() -> FsResult<T>,
    ) -> FsResult<T> {
        if !self.cfg.writeback {
            return done();
        }
        let _sending = self.dir_attrs.sending.lock();
        let r = done()?;
        self.dir_attrs.removed(to);
        self.dir_attrs.rename(from, to);
        Ok(r)
    }

    /// As [`RemoteFs::dir_attrs_across_rename`], for the removal of `dir`.
    pub(super) fn dir_attrs_across_rmdir<T>(
        &self,
        dir: &RelPath,
        done: impl FnOnce() -> FsResult<T>,
    ) -> FsResult<T> {
        if !self.cfg.writeback {
            return done();
        }
        let _sending = self.dir_attrs.sending.lock();
        let r = done()?;
        self.dir_attrs.removed(dir);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn dir_meta() -> Meta {
        Meta {
            kind: FileKind::Dir,
            mode: 0o755,
            ..Meta::default()
        }
    }

    #[test]
    fn changes_merge_wait_for_their_uploads_and_follow_a_rename() {
        let q = DirAttrs::default();
        let t = Timestamp::from_system(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        let chown = SetAttr {
            uid: Some(7),
            ..SetAttr::default()
        };
        let chmod = SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        };
        let times = SetAttr {
            mtime: Some(SetTime::At(t)),
            ..SetAttr::default()
        };
        q.push(&p("d"), dir_meta(), &chown, 3);
        q.push(&p("d"), dir_meta(), &chmod, 3);
        let shown = q.push(&p("d"), dir_meta(), &times, 5);
        assert_eq!((shown.uid, shown.mode, shown.mtime), (7, 0o700, t));
        // Held back while an upload queued before the change is pending.
        assert_eq!(q.take(&|_, mark| mark == 5).unwrap_err(), Some(POLL));
        q.rename(&p("d"), &p("e"));
        assert!(q.shown(&p("d")).is_none());
        let (dir, sent) = q.take(&|_, _| false).unwrap();
        assert_eq!(dir, p("e"));
        assert_eq!(
            sent,
            SetAttr {
                mode: Some(0o700),
                uid: Some(7),
                mtime: Some(SetTime::At(t)),
                ..SetAttr::default()
            }
        );
        // Not reached: kept, listed, and held by the back-off.
        q.unreached(&dir, &sent, "down".into());
        assert_eq!(q.failed()[0].path, "/e");
        assert!(q.take(&|_, _| false).is_err());
        assert_eq!(q.len(), 1);
        q.state.lock().pending.get_mut(&dir).unwrap().not_before = Instant::now();
        let (dir, again) = q.take(&|_, _| false).unwrap();
        assert_eq!(again, sent);
        assert!(q.landed(&dir));
        assert_eq!(q.len(), 0);
        assert!(q.failed().is_empty());
    }
}
