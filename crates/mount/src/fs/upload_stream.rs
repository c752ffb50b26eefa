//! Uploads that stream while the file is still being written. A file
//! written in order from its first byte (`dd`, `cp` of a big file, `tar x`
//! of a big member) starts an open-ended `Put` once it has [`STREAM_AFTER`]
//! bytes, and a sender thread sends what the writer has written, read back
//! from the cache file (the page cache still holds it), one chunk at a
//! time. At close only the tail is left to send; the close still returns
//! after the server's durable reply, with the same `expect` condition.
//!
//! Anything out of order (a write anywhere but the end, a truncate, a
//! second writer, a write through a mapping, a rename) cancels the stream:
//! the server discards its temporary file, and the close uploads the file
//! as it always did. A stream that failed for any other reason than a
//! conflict is also replaced by that upload, so a dead server gives the
//! close the error it gave before streaming existed. Write-back mounts do
//! not stream: their uploads run after the close anyway, from a finished
//! file. `-o nostream` turns streaming off.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{debug, info};
use parking_lot::{Condvar, Mutex};
use rfmount_client::{PutOptions, Remote, RemoteError, Uploaded};
use rfmount_proto::{RelPath, SetAttr, SetTime};

use super::RemoteFs;
use super::conflict;
use super::files::{FileState, Handle};
use super::passthrough::Mode;
use crate::data_cache::EntryInfo;
use crate::error::{FsError, FsResult};

/// A file written in order starts streaming once it is this big: smaller
/// ones are uploaded at close as quickly as a stream would end.
pub(crate) const STREAM_AFTER: u64 = 8 << 20;

/// Streams running at once. Each is a request in flight on the one
/// connection until its close, and the server answers `Busy` beyond
/// `max_in_flight` (64): the rest of the files written meanwhile are
/// uploaded at close.
const MAX_STREAMS: usize = 8;

/// Streams running in this process (one mount per process).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A file being written in order from offset 0 by its only writer, and
/// its stream once started. Kept in [`FileState::in_order`].
pub(crate) struct InOrder {
    /// `write_gen` after the last write in order: any other change of the
    /// file (truncate, fallocate, a fetched version) moves it.
    generation: u64,
    /// Bytes written in order, which is the cache file's size.
    end: u64,
    sender: Option<Arc<Sender>>,
}

impl InOrder {
    fn cancel(self) {
        if let Some(s) = self.sender {
            s.cancel();
        }
    }
}

/// Where the writer and the sender thread meet.
struct Progress {
    /// Bytes of the cache file that may be sent.
    avail: u64,
    /// The close's size: the content ends here.
    end: Option<u64>,
    cancelled: bool,
    /// The server's answer, once the upload is over.
    result: Option<Result<Uploaded, RemoteError>>,
}

/// One open-ended upload in flight.
pub(crate) struct Sender {
    path: RelPath,
    opts: PutOptions,
    progress: Mutex<Progress>,
    changed: Condvar,
}

impl Sender {
    fn advance(&self, avail: u64) {
        self.progress.lock().avail = avail;
        self.changed.notify_all();
    }

    fn cancel(&self) {
        self.progress.lock().cancelled = true;
        self.changed.notify_all();
    }

    /// Ends the content at `size` and waits for the server's answer.
    fn finish(&self, size: u64) -> Result<Uploaded, RemoteError> {
        let mut p = self.progress.lock();
        p.avail = size;
        p.end = Some(size);
        self.changed.notify_all();
        loop {
            if let Some(r) = p.result.take() {
                return r;
            }
            self.changed.wait(&mut p);
        }
    }
}

/// The sender thread's view of the cache file: blocks until the writer
/// has written a whole chunk more (or the close ends the content).
struct Source {
    sender: Arc<Sender>,
    handle: Arc<Handle>,
    at: u64,
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let mut p = self.sender.progress.lock();
            loop {
                if p.cancelled {
                    return Err(io::Error::other("the file was not written in order"));
                }
                let ready = p.avail.saturating_sub(self.at);
                if p.end.is_some_and(|end| self.at >= end) {
                    return Ok(0);
                }
                if ready >= buf.len() as u64 || (p.end.is_some() && ready > 0) {
                    break ready.min(buf.len() as u64) as usize;
                }
                self.sender.changed.wait(&mut p);
            }
        };
        // Outside the lock: the writer goes on while this reads back.
        let file = self.handle.file();
        std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf[..n], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl<R: Remote> RemoteFs<R> {
    /// Called after every write of `len` bytes at `offset` to `path` that
    /// moved the file's `write_gen` to `generation`: follows whether the file is
    /// still written in order, and starts, feeds or cancels its stream.
    pub(super) fn note_in_order(
        &self,
        h: &Arc<Handle>,
        path: &RelPath,
        offset: u64,
        len: u64,
        generation: u64,
    ) {
        let state = h.state();
        let mut slot = state.in_order.lock();
        let only_writer = state.writers.load(Ordering::SeqCst) == 1;
        if let Some(io) = slot.as_mut()
            && io.generation + 1 == generation
            && io.end == offset
            && only_writer
        {
            io.generation = generation;
            io.end += len;
            match &io.sender {
                Some(s) => s.advance(io.end),
                None if io.end >= STREAM_AFTER => {
                    io.sender = self.start_stream(h, path, io.end);
                }
                None => {}
            }
            return;
        }
        if let Some(old) = slot.take() {
            debug!("{path}: written out of order, streaming stops");
            old.cancel();
        }
        // Only content that is all new: a whole upload is due anyway.
        let fresh = offset == 0
            && only_writer
            && self.cfg.stream_uploads
            && !self.cfg.writeback
            && h.mode() != Mode::Passthrough
            && h.file().metadata().is_ok_and(|m| m.len() == len);
        if fresh {
            *slot = Some(InOrder {
                generation,
                end: len,
                sender: None,
            });
        }
    }

    fn start_stream(&self, h: &Arc<Handle>, path: &RelPath, avail: u64) -> Option<Arc<Sender>> {
        if RUNNING.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let Some(entry) = self.cache.entry(path) else {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return None;
        };
        // Times are not known before the close: they follow the stream
        // when the application set them (see `land_stream`).
        let opts = PutOptions {
            mode: entry.mode,
            mtime: None,
            owner: self.creators.lock().get(path).copied(),
            expect: self.put_expectation(&entry),
            atime: None,
            xattrs: entry.xattrs.clone(),
        };
        let sender = Arc::new(Sender {
            path: path.clone(),
            opts,
            progress: Mutex::new(Progress {
                avail,
                end: None,
                cancelled: false,
                result: None,
            }),
            changed: Condvar::new(),
        });
        let mut src = Source {
            sender: Arc::clone(&sender),
            handle: Arc::clone(h),
            at: 0,
        };
        let remote = Arc::clone(&self.remote);
        let spawned = std::thread::Builder::new()
            .name("rf-upstream".into())
            .spawn(move || {
                let s = Arc::clone(&src.sender);
                let r = remote.put_open_ended(&s.path, &mut src, s.opts.clone());
                // The handle goes with the thread: nothing waits on it.
                drop(src);
                RUNNING.fetch_sub(1, Ordering::SeqCst);
                s.progress.lock().result = Some(r);
                s.changed.notify_all();
            });
        match spawned {
            Ok(_) => {
                info!("{path}: written in order, streaming its upload");
                Some(sender)
            }
            Err(e) => {
                RUNNING.fetch_sub(1, Ordering::SeqCst);
                info!("{path}: no thread to stream the upload: {e}");
                None
            }
        }
    }

    /// At an upload of `path` (`size` bytes, attributes `opts`): ends the
    /// file's stream, if one runs and still matches the file, and returns
    /// the server's answer. `None` when there is no usable stream: the
    /// caller uploads as usual.
    ///
    /// # Errors
    /// A conflict found by the stream, as the upload would report it.
    pub(super) fn land_stream(
        &self,
        path: &RelPath,
        state: &FileState,
        size: u64,
        entry: &EntryInfo,
        opts: &PutOptions,
    ) -> FsResult<Option<Uploaded>> {
        let Some(io) = state.in_order.lock().take() else {
            return Ok(None);
        };
        let Some(sender) = io.sender.clone() else {
            return Ok(None);
        };
        let matches = io.generation == state.write_gen.load(Ordering::SeqCst)
            && io.end == size
            && state.writers.load(Ordering::SeqCst) <= 1
            && sender.path == *path
            && sender.opts.mode == opts.mode
            && sender.opts.owner == opts.owner
            && sender.opts.expect == opts.expect
            // Attributes set while it streamed ride only a whole upload.
            && sender.opts.xattrs == opts.xattrs;
        if !matches {
            debug!("{path}: changed since its stream started, uploading it whole");
            io.cancel();
            return Ok(None);
        }
        let up = match sender.finish(size) {
            Ok(up) => up,
            Err(e) => {
                let e = FsError::from(e);
                if conflict::is_conflict(&e) {
                    return Err(e);
                }
                info!("{path}: streamed upload failed ({e}), uploading it whole");
                return Ok(None);
            }
        };
        if entry.mtime.is_none() && opts.atime.is_none() {
            return Ok(Some(up));
        }
        // Times the application set before the close.
        let set = SetAttr {
            mtime: entry.mtime.map(SetTime::At),
            atime: opts.atime.map(SetTime::At),
            ..SetAttr::default()
        };
        let meta = self.remote.setattr(path, set)?;
        Ok(Some(Uploaded {
            meta,
            parents: up.parents,
        }))
    }
}

/// The last writer closed: a stream no upload ended (the file was
/// unlinked, or its upload did not run) is cancelled.
pub(super) fn abandon(state: &FileState) {
    if let Some(io) = state.in_order.lock().take() {
        io.cancel();
    }
}
