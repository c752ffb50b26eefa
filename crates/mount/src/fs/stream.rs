//! Fetches that readers follow while they run: the content lands in the
//! cache's temporary file as it arrives, `open` returns once the server has
//! said that it follows, and each `read` waits only until its own range is
//! there. Every handle of the file (and a prefetch) shares the one fetch.
//!
//! Only a fetch that completed and verified its checksum becomes a cache
//! entry ([`DataCache::finish_fetch`]); one that fails or is abandoned
//! leaves the cache as it was, and readers of the range that never arrived
//! get `EIO` (never zeros).

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::trust::Ticket;
use log::debug;
use parking_lot::{Condvar, Mutex};
use rfmount_client::{GetOutcome, GetSink, Remote, RemoteError};
use rfmount_proto::{Meta, RelPath, Version};

use super::recent_chunks::{ReadBuf, RecentChunks};
use crate::data_cache::DataCache;
use crate::error::{FsError, FsResult};
use crate::meta_cache::MetaCache;

/// A fetch whose last reader closed goes on if at most this much is left.
pub(crate) const ABANDON_REST: u64 = 4 << 20;

/// How far one fetch has come.
enum Phase {
    /// Asked; the server has not answered yet.
    Asked,
    /// The content is arriving.
    Streaming,
    /// All of it arrived, was verified and is the cache entry (unless the
    /// name went away meanwhile).
    Done,
    /// The cached version was current.
    NotModified,
    /// The fetch failed; `error` is handed to the first opener still
    /// waiting for the server's answer, readers get `EIO`.
    Failed { error: Option<FsError>, why: String },
}

struct Progress {
    phase: Phase,
    /// The server's attributes, once it answered.
    meta: Option<Meta>,
    /// A descriptor of the file the content lands in, once it exists.
    file: Option<File>,
    /// Bytes that have landed in `file`.
    received: u64,
    /// Handles reading from this fetch.
    readers: u32,
    /// No handle wants the rest: the transfer stops.
    abandoned: bool,
    /// When the server answered (its header arrived, or `NotModified`).
    answered: Option<Instant>,
    /// The chunks that landed last, while the content arrives.
    recent: RecentChunks,
}

/// What `open` learns from the server's first answer.
pub(crate) enum Answer {
    /// The content follows; read it through this descriptor.
    Content(Meta, File),
    /// The cached version is current.
    NotModified(Meta),
}

/// One fetch of one file into the cache, shared by its readers.
pub(crate) struct Stream {
    path: RelPath,
    /// Started ahead of any open (a prefetch): no handle owns it, so no
    /// close abandons it.
    pub(crate) prefetch: bool,
    /// The name was unlinked or replaced while fetching: finish for the
    /// open handles, but record nothing under the old name.
    discard: AtomicBool,
    /// Taken before the GET was sent: its answer may become a callback.
    pub(crate) ticket: Ticket,
    st: Mutex<Progress>,
    changed: Condvar,
}

impl Stream {
    /// Starts fetching `path` (`have`: the cached version) on a fetch
    /// worker ([`super::fetch_workers`]). A prefetch passes `on_end`,
    /// called once it has ended (or could not start), and `attrs`, where
    /// it notes the attributes the server answered with (the program that
    /// reads the file next looks it up first).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(crate) fn start<R: Remote>(
        remote: Arc<R>,
        cache: Arc<DataCache>,
        path: RelPath,
        have: Option<Version>,
        on_end: Option<Box<dyn FnOnce() + Send>>,
        attrs: Option<Arc<Mutex<MetaCache>>>,
        ticket: Ticket,
    ) -> FsResult<Arc<Stream>> {
        let prefetch = on_end.is_some();
        let ended = OnEnd(on_end);
        let stream = Arc::new(Stream {
            path,
            prefetch,
            discard: AtomicBool::new(false),
            ticket,
            st: Mutex::new(Progress {
                phase: Phase::Asked,
                meta: None,
                file: None,
                received: 0,
                readers: 0,
                abandoned: false,
                answered: None,
                recent: RecentChunks::default(),
            }),
            changed: Condvar::new(),
        });
        let s = stream.clone();
        super::fetch_workers::run(move || {
            s.run(remote, cache, have, attrs.as_deref());
            drop(ended);
        })
        .map_err(|e| FsError::cache("starting a fetch", e))?;
        Ok(stream)
    }

    fn run<R: Remote>(
        &self,
        remote: Arc<R>,
        cache: Arc<DataCache>,
        have: Option<Version>,
        attrs: Option<&Mutex<MetaCache>>,
    ) {
        let path = &self.path;
        let result = (|| -> FsResult<Option<Meta>> {
            let mut fetch = cache
                .begin_fetch(path)
                .map_err(|e| FsError::cache(format!("preparing to fetch {path}"), e))?;
            let file = fetch
                .reader()
                .map_err(|e| FsError::cache(format!("preparing to fetch {path}"), e))?;
            self.st.lock().file = Some(file);
            let outcome = {
                let mut sink = Landing {
                    stream: self,
                    fetch: &mut fetch,
                };
                let mut started = |m: &Meta| {
                    self.note_attrs(attrs, m);
                    let mut st = self.st.lock();
                    st.meta = Some(m.clone());
                    st.answered = Some(Instant::now());
                    st.phase = Phase::Streaming;
                    self.changed.notify_all();
                };
                remote.get_sparse(path, have, &mut started, &mut sink)
            };
            // Before the file can become the cache entry, which writers
            // change: from now on reads go to the file.
            self.st.lock().recent.clear();
            match outcome? {
                GetOutcome::NotModified(meta) => {
                    self.note_attrs(attrs, &meta);
                    let mut st = self.st.lock();
                    st.meta = Some(meta);
                    st.answered = Some(Instant::now());
                    Ok(None)
                }
                GetOutcome::Fetched(meta) => {
                    let size = self.st.lock().received;
                    if !self.discard.load(Ordering::SeqCst) {
                        cache
                            .finish_fetch(path, fetch, meta.version, size)
                            .map_err(|e| FsError::cache(format!("storing {path}"), e))?;
                    }
                    Ok(Some(Meta { size, ..meta }))
                }
            }
        })();
        // Let go of the cache before anyone learns that the fetch ended:
        // whoever drops the filesystem next may reopen the cache at once.
        drop(cache);
        drop(remote);
        let mut st = self.st.lock();
        match result {
            Ok(fetched) => {
                st.phase = if fetched.is_some() {
                    Phase::Done
                } else {
                    Phase::NotModified
                };
                if fetched.is_some() {
                    st.meta = fetched;
                }
            }
            Err(e) => {
                debug!("fetch of {path} ended: {e}");
                st.phase = Phase::Failed {
                    why: e.to_string(),
                    error: Some(e),
                };
            }
        }
        self.changed.notify_all();
    }

    /// Notes the server's answer in the attribute cache, unless the name
    /// went away meanwhile (checked under the cache's lock, which the
    /// unlink's own update of the cache takes after discarding this).
    fn note_attrs(&self, attrs: Option<&Mutex<MetaCache>>, meta: &Meta) {
        if let Some(mc) = attrs {
            let mut mc = mc.lock();
            if !self.discard.load(Ordering::SeqCst) {
                mc.put_attr(&self.path, meta.clone());
            }
        }
    }

    /// Waits for the server's first answer and, for content, becomes one of
    /// the fetch's readers.
    ///
    /// # Errors
    /// The fetch's error (to the first caller; `EIO` to later ones), or
    /// `EIO` when it was abandoned.
    pub(crate) fn attach(&self) -> FsResult<Answer> {
        let mut st = self.st.lock();
        loop {
            match &mut st.phase {
                Phase::Asked => self.changed.wait(&mut st),
                Phase::NotModified => {
                    let meta = st.meta.clone().unwrap_or_default();
                    return Ok(Answer::NotModified(meta));
                }
                Phase::Failed { error, why, .. } => {
                    return Err(error.take().unwrap_or_else(|| failed(why)));
                }
                Phase::Streaming | Phase::Done => {
                    if st.abandoned {
                        return Err(failed("the fetch was abandoned"));
                    }
                    let file = st
                        .file
                        .as_ref()
                        .map(File::try_clone)
                        .transpose()
                        .map_err(|e| FsError::cache(format!("reading {}", self.path), e))?
                        .ok_or_else(|| failed("no file"))?;
                    st.readers += 1;
                    let meta = st.meta.clone().unwrap_or_default();
                    return Ok(Answer::Content(meta, file));
                }
            }
        }
    }

    /// A reader closed. The last one stops a fetch with more than
    /// [`ABANDON_REST`] still to come (`head` of a large file need not
    /// fetch all of it); a shorter rest is fetched and cached for the next
    /// open. A prefetch has no owner and runs to its end.
    pub(crate) fn detach(&self) {
        let mut st = self.st.lock();
        st.readers = st.readers.saturating_sub(1);
        let size = st.meta.as_ref().map_or(0, |m| m.size);
        if st.readers == 0
            && !self.prefetch
            && matches!(st.phase, Phase::Streaming)
            && size.saturating_sub(st.received) > ABANDON_REST
        {
            st.abandoned = true;
        }
    }

    /// The filesystem is going away: as at a last close, a fetch with more
    /// than [`ABANDON_REST`] to come stops, a shorter one ends and is
    /// cached; then waits for its thread to let go of the cache.
    pub(crate) fn stop(&self) {
        {
            let mut st = self.st.lock();
            let size = st.meta.as_ref().map_or(0, |m| m.size);
            if size.saturating_sub(st.received) > ABANDON_REST {
                st.abandoned = true;
            }
        }
        self.wait_end();
    }

    /// Still bringing content a new opener can join. Once every byte has
    /// landed the fetch is as good as ended: a later open asks the server
    /// itself (close-to-open).
    pub(crate) fn is_live(&self) -> bool {
        let st = self.st.lock();
        let size = st.meta.as_ref().map_or(u64::MAX, |m| m.size);
        let running = match st.phase {
            Phase::Asked => true,
            Phase::Streaming => st.received < size,
            _ => false,
        };
        running && !st.abandoned
    }

    /// The fetch has not ended yet (it may have all its bytes already).
    pub(crate) fn is_running(&self) -> bool {
        matches!(self.st.lock().phase, Phase::Asked | Phase::Streaming)
    }

    /// Waits until the fetch has ended, whatever the outcome.
    pub(crate) fn wait_end(&self) {
        let mut st = self.st.lock();
        while matches!(st.phase, Phase::Asked | Phase::Streaming) {
            self.changed.wait(&mut st);
        }
    }

    /// The server's answer (attributes of the version fetched), once in.
    pub(crate) fn answer(&self) -> Option<Meta> {
        self.st.lock().meta.clone()
    }

    /// The version this fetch found current and when the server said so,
    /// if it ended well and its content is the cache entry.
    pub(crate) fn confirmed(&self) -> Option<(Version, Instant)> {
        let st = self.st.lock();
        if self.discard.load(Ordering::SeqCst)
            || !matches!(st.phase, Phase::Done | Phase::NotModified)
        {
            return None;
        }
        Some((st.meta.as_ref()?.version, st.answered?))
    }

    /// The name went away: what arrives is for the open handles only.
    pub(crate) fn discard(&self) {
        self.discard.store(true, Ordering::SeqCst);
    }

    /// Waits until the bytes up to `end` (or the end of the file) have
    /// landed.
    ///
    /// # Errors
    /// `EIO` when the fetch failed before they arrived.
    pub(crate) fn wait_for(&self, end: u64) -> FsResult<()> {
        let mut st = self.st.lock();
        loop {
            let size = st.meta.as_ref().map_or(0, |m| m.size);
            if st.received >= end.min(size) {
                return Ok(());
            }
            match &st.phase {
                Phase::Failed { why, .. } => return Err(failed(why)),
                Phase::Done | Phase::NotModified => return Ok(()),
                _ if st.abandoned => return Err(failed("the fetch was abandoned")),
                _ => self.changed.wait(&mut st),
            }
        }
    }

    /// The bytes of `[offset, offset + len)` from a chunk that just
    /// arrived, when one holds them all (the caller has waited for them).
    pub(crate) fn recent(&self, offset: u64, len: usize) -> Option<ReadBuf> {
        let st = self.st.lock();
        let size = st.meta.as_ref()?.size;
        st.recent.get(offset, len, size)
    }

    fn landed(&self, n: u64) {
        let mut st = self.st.lock();
        st.received += n;
        self.changed.notify_all();
    }

    /// `data` has been written at the end of what landed before.
    fn landed_chunk(&self, data: Vec<u8>) {
        let mut st = self.st.lock();
        let at = st.received;
        st.received += data.len() as u64;
        st.recent.push(at, data);
        self.changed.notify_all();
    }

    fn abandoned(&self) -> bool {
        self.st.lock().abandoned
    }
}

/// Runs its callback when dropped: at the end of the fetch's thread, or
/// with the thread's closure when the thread could not start.
struct OnEnd(Option<Box<dyn FnOnce() + Send>>);

impl Drop for OnEnd {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

fn failed(why: &str) -> FsError {
    FsError::Remote(RemoteError::Transport(format!("fetch failed: {why}")))
}

/// Where fetched bytes go: the cache's temporary file, then the count that
/// readers wait on.
struct Landing<'a, 'c> {
    stream: &'a Stream,
    fetch: &'a mut crate::data_cache::Fetch<'c>,
}

impl Write for Landing<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stream.abandoned() {
            // Not `Interrupted`: `write_all` would retry that forever.
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "every reader closed the file",
            ));
        }
        self.fetch.write_all(buf)?;
        self.stream.landed(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.fetch.flush()
    }
}

/// A hole lands as a hole of the cache file: a reader waiting for a range
/// inside it reads zeros from there, as from the server's file.
impl GetSink for Landing<'_, '_> {
    fn hole(&mut self, len: u64) -> io::Result<()> {
        if self.stream.abandoned() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "every reader closed the file",
            ));
        }
        self.fetch.hole(len)?;
        self.stream.landed(len);
        Ok(())
    }

    fn chunk(&mut self, data: Vec<u8>) -> io::Result<()> {
        if self.stream.abandoned() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "every reader closed the file",
            ));
        }
        self.fetch.write_all(&data)?;
        self.stream.landed_chunk(data);
        Ok(())
    }
}
