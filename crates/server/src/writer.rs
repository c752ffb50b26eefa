//! The one writer of a connection, shared by the reader thread and every
//! worker: each frame is written whole, in the order senders asked, so
//! frames of concurrent replies interleave but never mix. Urgent frames
//! (invalidations) go before everything still waiting.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rfmount_proto::ServerMsg;
use rfmount_transport::WriteHalf;

/// Writes frames to one connection. Once a write fails the connection is
/// dead for everyone: the socket is shut down (which also wakes the reader)
/// and later sends fail fast instead of each waiting for a timeout.
///
/// Senders take turns strictly first come, first served. A plain mutex
/// would let a GET worker, which asks again right after each chunk, win the
/// lock over and over while a LIST reply waits (measured: 35 chunks); with
/// turns, a reply waits for at most the one frame being written.
pub(crate) struct FrameWriter {
    /// The socket itself, for its options and for shutting it down.
    stream: Arc<TcpStream>,
    /// Where frames go: the socket, or TLS over it.
    out: WriteHalf,
    turns: Mutex<Turns>,
    next_turn: Condvar,
    broken: AtomicBool,
    /// Bytes written so far.
    sent: Arc<AtomicU64>,
}

#[derive(Default)]
struct Turns {
    issued: u64,
    serving: u64,
    /// Urgent frames waiting: they go before any queued turn.
    urgent: usize,
    /// A frame is being written right now.
    writing: bool,
}

/// Sending failed; the connection is closed.
#[derive(Debug)]
pub(crate) struct Broken;

/// Passes the turn on when dropped, so that no failure can stall the queue.
struct Turn<'a> {
    writer: &'a FrameWriter,
    /// An urgent frame took no place in the queue.
    urgent: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut turns = self.writer.turns.lock();
        turns.writing = false;
        if !self.urgent {
            turns.serving += 1;
        }
        drop(turns);
        self.writer.next_turn.notify_all();
    }
}

impl FrameWriter {
    /// Sends on `out`, the sending half of the connection's shared socket
    /// `stream`. `timeout` bounds how long one frame may wait for a peer
    /// that stopped reading.
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        out: WriteHalf,
        timeout: Duration,
    ) -> std::io::Result<FrameWriter> {
        stream.set_write_timeout(Some(timeout))?;
        limit_unsent(&stream);
        Ok(FrameWriter {
            stream,
            out,
            turns: Mutex::default(),
            next_turn: Condvar::new(),
            broken: AtomicBool::new(false),
            sent: Arc::default(),
        })
    }

    /// Sends one frame.
    pub(crate) fn send(&self, msg: &ServerMsg) -> Result<(), Broken> {
        // Encoded before queueing, so a turn lasts only as long as the write.
        let mut frame = Vec::new();
        if let Err(e) = rfmount_proto::write_frame(&mut frame, msg) {
            log::error!("cannot encode a reply: {e}");
            self.fail();
            return Err(Broken);
        }
        self.send_raw(&frame)
    }

    /// Sends one frame ahead of every frame still waiting for its turn
    /// (after the one being written): invalidations must never wait behind
    /// a large transfer's chunks.
    pub(crate) fn send_urgent(&self, msg: &ServerMsg) -> Result<(), Broken> {
        let mut frame = Vec::new();
        if let Err(e) = rfmount_proto::write_frame(&mut frame, msg) {
            log::error!("cannot encode an invalidation: {e}");
            self.fail();
            return Err(Broken);
        }
        let _turn = self.wait_urgent();
        self.write(&frame)
    }

    /// Sends bytes that are already a whole frame.
    pub(crate) fn send_raw(&self, frame: &[u8]) -> Result<(), Broken> {
        let _turn = self.wait_turn();
        self.write(frame)
    }

    fn write(&self, frame: &[u8]) -> Result<(), Broken> {
        if self.is_broken() {
            return Err(Broken);
        }
        if let Err(e) = (&self.out).write_all(frame) {
            log::debug!("write to peer failed: {e}");
            self.fail();
            return Err(Broken);
        }
        self.sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The count of bytes written, as it grows.
    pub(crate) fn sent_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }

    fn wait_turn(&self) -> Turn<'_> {
        let mut turns = self.turns.lock();
        let mine = turns.issued;
        turns.issued += 1;
        while turns.serving != mine || turns.writing || turns.urgent > 0 {
            self.next_turn.wait(&mut turns);
        }
        turns.writing = true;
        Turn {
            writer: self,
            urgent: false,
        }
    }

    fn wait_urgent(&self) -> Turn<'_> {
        let mut turns = self.turns.lock();
        turns.urgent += 1;
        while turns.writing {
            self.next_turn.wait(&mut turns);
        }
        turns.urgent -= 1;
        turns.writing = true;
        Turn {
            writer: self,
            urgent: true,
        }
    }

    fn fail(&self) {
        self.broken.store(true, Ordering::SeqCst);
        self.close();
    }

    /// True once a send has failed.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }

    /// Shuts the connection down in both directions.
    pub(crate) fn close(&self) {
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
