//! The one writer of a connection, shared by the reader thread and every
//! worker: each frame is written whole under a lock, so frames of
//! concurrent replies interleave but never mix.

use std::io::{BufWriter, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rfmount_proto::{FrameError, ServerMsg};

/// Writes frames to one connection. Once a write fails the connection is
/// dead for everyone: the socket is shut down (which also wakes the reader)
/// and later sends fail fast instead of each waiting for a timeout.
pub(crate) struct FrameWriter {
    // parking_lot's mutex is eventually fair: a GET looping over chunks
    // cannot starve a LIST reply waiting for its turn.
    out: Mutex<BufWriter<TcpStream>>,
    stream: TcpStream,
    broken: AtomicBool,
}

/// Sending failed; the connection is closed.
#[derive(Debug)]
pub(crate) struct Broken;

impl FrameWriter {
    /// Wraps a clone of the connection. `timeout` bounds how long one frame
    /// may wait for a peer that stopped reading.
    pub(crate) fn new(stream: &TcpStream, timeout: Duration) -> std::io::Result<FrameWriter> {
        stream.set_write_timeout(Some(timeout))?;
        Ok(FrameWriter {
            out: Mutex::new(BufWriter::new(stream.try_clone()?)),
            stream: stream.try_clone()?,
            broken: AtomicBool::new(false),
        })
    }

    /// Sends one frame and flushes it.
    pub(crate) fn send(&self, msg: &ServerMsg) -> Result<(), Broken> {
        if self.is_broken() {
            return Err(Broken);
        }
        let mut out = self.out.lock();
        let result = rfmount_proto::write_frame(&mut *out, msg)
            .and_then(|()| out.flush().map_err(FrameError::Io));
        drop(out);
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                if !self.broken.swap(true, Ordering::SeqCst) {
                    log::debug!("write to peer failed: {e}");
                }
                self.close();
                Err(Broken)
            }
        }
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
