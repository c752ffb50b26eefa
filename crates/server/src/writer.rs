//! The one writer of a connection: a thread that writes queued frames in
//! the order they were queued, so frames of concurrent replies interleave
//! but never mix.
//!
//! Two ways in. [`FrameWriter::send`] waits until its frame is written:
//! streaming senders (LIST parts) use it, which bounds their memory to one
//! frame each and paces them to the peer; GET chunks use
//! [`FrameWriter::queue_raw`] and [`FrameWriter::wait_written`], one chunk
//! being written while the next is read (two frames each). [`FrameWriter::post`]
//! only queues: a request's last frame goes this way, so that a worker of
//! the shared pool never waits for a peer that reads slowly. Posted frames
//! are bounded by the connection's requests in flight (one last frame
//! each). [`FrameWriter::send_urgent`] queues an invalidation ahead of
//! every waiting frame.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rfmount_proto::ServerMsg;
use rfmount_transport::WriteHalf;

/// Writes frames to one connection. Once a write fails the connection is
/// dead for everyone: the socket is shut down (which also wakes the reader)
/// and later sends fail fast instead of each waiting for a timeout.
///
/// Frames go out strictly first come, first served. A plain mutex around
/// the socket would let a GET worker, which asks again right after each
/// chunk, win it over and over while a LIST reply waits (measured: 35
/// chunks); in the queue, a reply waits for the frames queued before it,
/// at most one per streaming request.
pub(crate) struct FrameWriter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// The socket itself, for its options and for shutting it down.
    stream: Arc<TcpStream>,
    /// Where frames go: the socket, or TLS over it.
    out: WriteHalf,
    queue: Mutex<Queue>,
    /// Signalled when a frame is queued, written, or the queue closes.
    changed: Condvar,
    broken: AtomicBool,
    /// Bytes written so far.
    sent: Arc<AtomicU64>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    /// Frames ever queued, and of those, how many are written (or dropped
    /// because the connection broke).
    queued: u64,
    written: u64,
    /// No more frames will come: the thread ends once the queue is empty.
    closing: bool,
    /// Invalidations: written before any frame of `frames`.
    urgent: VecDeque<Vec<u8>>,
    /// Urgent frames ever queued, and how many of them are written (or
    /// dropped with the connection).
    urgent_queued: u64,
    urgent_written: u64,
}

/// Sending failed; the connection is closed.
#[derive(Debug)]
pub(crate) struct Broken;

impl FrameWriter {
    /// Sends on `out`, the sending half of the connection's shared socket
    /// `stream`. `timeout` bounds how long one frame may wait for a peer
    /// that stopped reading.
    ///
    /// # Errors
    /// When the socket's options cannot be set or the thread not started.
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        out: WriteHalf,
        timeout: Duration,
    ) -> std::io::Result<FrameWriter> {
        stream.set_write_timeout(Some(timeout))?;
        limit_unsent(&stream);
        let shared = Arc::new(Shared {
            stream,
            out,
            queue: Mutex::default(),
            changed: Condvar::new(),
            broken: AtomicBool::new(false),
            sent: Arc::default(),
        });
        let me = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("rfserve-write".into())
            .spawn(move || me.run())?;
        Ok(FrameWriter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends one frame and waits until it is written.
    pub(crate) fn send(&self, msg: &ServerMsg) -> Result<(), Broken> {
        let frame = self.encode(msg)?;
        self.send_raw(frame)
    }

    /// Sends bytes that are already a whole frame; waits until written.
    pub(crate) fn send_raw(&self, frame: Vec<u8>) -> Result<(), Broken> {
        let mine = self.queue_raw(frame)?;
        self.wait_written(mine)
    }

    /// Queues bytes that are already a whole frame and returns at once with
    /// its number, for [`FrameWriter::wait_written`]: a download reads its
    /// next chunk while this one is being written, and waits for this one
    /// before queueing the one after (two chunks per download at most).
    pub(crate) fn queue_raw(&self, frame: Vec<u8>) -> Result<u64, Broken> {
        self.shared.push(frame)
    }

    /// Waits until the frame numbered `mine` by [`FrameWriter::queue_raw`]
    /// is written.
    pub(crate) fn wait_written(&self, mine: u64) -> Result<(), Broken> {
        let mut q = self.shared.queue.lock();
        while q.written < mine {
            self.shared.changed.wait(&mut q);
        }
        drop(q);
        if self.is_broken() {
            Err(Broken)
        } else {
            Ok(())
        }
    }

    /// Queues one frame ahead of every frame still waiting (after the one
    /// being written: invalidations must never wait behind a large
    /// transfer's chunks), and waits until it is written (bounded by the
    /// socket's write timeout), so that a change's writer can know its
    /// invalidations are out.
    pub(crate) fn send_urgent(&self, msg: &ServerMsg) -> Result<(), Broken> {
        let mine = self.queue_urgent(msg)?;
        let mut q = self.shared.queue.lock();
        while q.urgent_written < mine {
            self.shared.changed.wait(&mut q);
        }
        drop(q);
        if self.is_broken() {
            Err(Broken)
        } else {
            Ok(())
        }
    }

    fn queue_urgent(&self, msg: &ServerMsg) -> Result<u64, Broken> {
        let frame = self.encode(msg)?;
        let mut q = self.shared.queue.lock();
        if q.closing || self.is_broken() {
            return Err(Broken);
        }
        q.urgent.push_back(frame);
        q.urgent_queued += 1;
        let n = q.urgent_queued;
        drop(q);
        self.shared.changed.notify_all();
        Ok(n)
    }

    /// Queues one frame and returns at once; it is written after every
    /// frame queued before it.
    pub(crate) fn post(&self, msg: &ServerMsg) -> Result<(), Broken> {
        let frame = self.encode(msg)?;
        self.shared.push(frame).map(|_| ())
    }

    fn encode(&self, msg: &ServerMsg) -> Result<Vec<u8>, Broken> {
        // Encoded by the sender, so the writer thread only writes.
        let mut frame = Vec::new();
        if let Err(e) = rfmount_proto::write_frame(&mut frame, msg) {
            log::error!("cannot encode a reply: {e}");
            self.shared.fail();
            return Err(Broken);
        }
        Ok(frame)
    }

    /// Writes what is queued, then stops the thread; frames sent later
    /// are dropped. Waits at most as long as those writes take.
    pub(crate) fn finish(&self) {
        self.shared.close_queue();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }

    /// The count of bytes written, as it grows.
    pub(crate) fn sent_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.shared.sent)
    }

    /// True once a send has failed.
    pub(crate) fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        // The thread drains what is queued and ends on its own.
        self.shared.close_queue();
    }
}

impl Shared {
    /// Queues a frame; its number in the queue.
    fn push(&self, frame: Vec<u8>) -> Result<u64, Broken> {
        let mut q = self.queue.lock();
        if q.closing || self.broken.load(Ordering::SeqCst) {
            return Err(Broken);
        }
        q.frames.push_back(frame);
        q.queued += 1;
        let n = q.queued;
        drop(q);
        self.changed.notify_all();
        Ok(n)
    }

    fn close_queue(&self) {
        self.queue.lock().closing = true;
        self.changed.notify_all();
    }

    fn run(&self) {
        loop {
            let mut q = self.queue.lock();
            let (frame, numbered) = loop {
                // Urgent frames are not numbered: senders waiting for their
                // own frame count only the ordinary ones.
                if let Some(f) = q.urgent.pop_front() {
                    break (f, false);
                }
                if let Some(f) = q.frames.pop_front() {
                    break (f, true);
                }
                if q.closing {
                    return;
                }
                self.changed.wait(&mut q);
            };
            drop(q);
            if !self.broken.load(Ordering::SeqCst) {
                match (&self.out).write_all(&frame) {
                    Ok(()) => {
                        self.sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        log::debug!("write to peer failed: {e}");
                        self.fail();
                    }
                }
            }
            let mut q = self.queue.lock();
            if numbered {
                q.written += 1;
            } else {
                q.urgent_written += 1;
            }
            if self.broken.load(Ordering::SeqCst) {
                // Nobody will read them: count them done and free them.
                q.written += q.frames.len() as u64;
                q.frames.clear();
                q.urgent_written += q.urgent.len() as u64;
                q.urgent.clear();
            }
            drop(q);
            self.changed.notify_all();
        }
    }

    fn fail(&self) {
        self.broken.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Unsent bytes the kernel may queue per connection before a write blocks.
/// Without a cap, autotuning lets megabytes of a GET pile up in the send
/// queue, and a LIST reply written after them waits for all of them; with
/// it, the reply queues behind at most this much. Data already sent but not
/// acknowledged does not count, so throughput is not limited.
const UNSENT_LIMIT: libc::c_int = 2 * rfmount_proto::CHUNK_SIZE as libc::c_int;

fn limit_unsent(stream: &TcpStream) {
    let value = UNSENT_LIMIT;
    // SAFETY: `value` is a live c_int and we pass its exact size.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        // Only latency suffers; the connection works the same.
        log::debug!(
            "cannot set TCP_NOTSENT_LOWAT: {}",
            std::io::Error::last_os_error()
        );
    }
}
