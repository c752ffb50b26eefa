//! One connection: the handshake, then a reader loop that hands each request
//! to a worker thread (or, for uploads, writes its data itself) until the
//! peer leaves, falls silent or misbehaves.
//!
//! The reader never waits for a request to finish, so a large GET streaming
//! on a worker does not hold up the next LIST; replies meet in the shared
//! [`FrameWriter`]. Whatever ends the connection, unfinished uploads are
//! dropped on the way out, which deletes their temporary files.

use std::collections::HashMap;
use std::io::{self, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rfmount_proto::{ClientMsg, ErrorCode, FrameError, ServerMsg, WireError, read_frame};
use rfmount_transport::{ReadHalf, WriteHalf};

use crate::config::ServerConfig;
use crate::handshake;
use crate::requests::{self, Job};
use crate::store::Store;
use crate::tls;
use crate::upload::Uploads;
use crate::writer::FrameWriter;

/// State of one connection shared by its reader and its workers.
pub(crate) struct Conn {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: FrameWriter,
    pub(crate) peer: SocketAddr,
    pub(crate) read_only: bool,
    /// Requests being worked on, with the flag that cancels each.
    requests: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    /// Worker threads alive; the session waits for zero before it ends.
    workers: Mutex<usize>,
    workers_done: Condvar,
}

/// Why and how a connection ends.
pub(crate) struct Ending {
    /// For the log line.
    pub(crate) reason: String,
    /// Sent to the peer, best effort, before closing.
    pub(crate) fatal: Option<WireError>,
    /// Stop work in flight rather than letting it finish.
    pub(crate) abort: bool,
}

impl Ending {
    pub(crate) fn quiet(reason: impl Into<String>) -> Ending {
        Ending {
            reason: reason.into(),
            fatal: None,
            abort: false,
        }
    }

    pub(crate) fn fatal(code: ErrorCode, message: impl Into<String>) -> Ending {
        let message = message.into();
        Ending {
            reason: message.clone(),
            fatal: Some(WireError::new(code, message)),
            abort: true,
        }
    }
}

/// Counts the bytes handed to the frame decoder, to tell a timeout between
/// frames (the peer is idle) from one inside a frame (the stream is broken).
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Serves one accepted connection to its end; logs its opening and closing.
pub(crate) fn run(stream: TcpStream, peer: SocketAddr, store: Arc<dyn Store>, cfg: &ServerConfig) {
    log::info!("connection from {peer}");
    let reason = match tls::accept(&stream, peer, cfg) {
        Ok(halves) => match serve(&stream, halves, peer, store, cfg) {
            Ok(reason) => reason,
            Err(e) => format!("error: {e}"),
        },
        Err(reason) => reason,
    };
    let _ = stream.shutdown(Shutdown::Both);
    log::info!("connection from {peer} closed: {reason}");
}

fn serve(
    stream: &TcpStream,
    (read_half, write_half): (ReadHalf, WriteHalf),
    peer: SocketAddr,
    store: Arc<dyn Store>,
    cfg: &ServerConfig,
) -> io::Result<String> {
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Conn {
        store,
        writer: FrameWriter::new(stream, write_half, cfg.write_timeout)?,
        peer,
        read_only: cfg.read_only,
        requests: Mutex::new(HashMap::new()),
        workers: Mutex::new(0),
        workers_done: Condvar::new(),
    });
    let mut reader = Counting {
        inner: BufReader::new(read_half),
        count: 0,
    };
    stream.set_read_timeout(Some(cfg.handshake_timeout()))?;
    let ending = match handshake::run(&mut reader, &conn, cfg) {
        Ok(()) => {
            stream.set_read_timeout(Some(cfg.idle()))?;
            let mut uploads = Uploads::default();
            let ending = read_loop(&mut reader, &conn, &mut uploads, cfg);
            // Before anything else: an unfinished upload must never outlive
            // its connection, even if the goodbye below blocks.
            drop(uploads);
            ending
        }
        Err(ending) => ending,
    };
    if ending.abort {
        conn.cancel_all();
    } else {
        // The peer only stopped sending (or the server is shutting down,
        // which has closed the socket already): answers in progress may
        // still reach it.
        conn.wait_workers();
    }
    if let Some(fatal) = &ending.fatal {
        log::warn!("{peer}: closing connection: {}", fatal.message);
        let _ = conn.writer.send(&ServerMsg::Fatal(fatal.clone()));
    }
    linger(stream);
    conn.wait_workers();
    Ok(ending.reason)
}

fn read_loop<R: Read>(
    reader: &mut Counting<R>,
    conn: &Arc<Conn>,
    uploads: &mut Uploads,
    cfg: &ServerConfig,
) -> Ending {
    loop {
        let before = reader.count;
        let msg: ClientMsg = match read_frame(reader) {
            Ok(msg) => msg,
            Err(FrameError::Closed) => return Ending::quiet("client closed the connection"),
            Err(FrameError::Io(e)) if is_timeout(&e) && reader.count == before => {
                // A client waiting on a long GET is not idle.
                if conn.in_flight() > 0 {
                    continue;
                }
                return Ending::fatal(
                    ErrorCode::Protocol,
                    format!("idle for {} s", cfg.idle_secs()),
                );
            }
            Err(FrameError::Io(e)) if conn.writer.is_broken() => {
                return Ending {
                    reason: format!("connection lost: {e}"),
                    fatal: None,
                    abort: true,
                };
            }
            Err(FrameError::Io(e)) if is_timeout(&e) => {
                return Ending::fatal(ErrorCode::Protocol, "peer stalled in the middle of a frame");
            }
            Err(FrameError::Io(e)) => {
                return Ending {
                    reason: format!("read failed: {e}"),
                    fatal: None,
                    abort: true,
                };
            }
            Err(e) => return Ending::fatal(ErrorCode::Protocol, format!("bad frame: {e}")),
        };
        let step = match msg {
            ClientMsg::Request { id, op } => requests::admit(conn, uploads, cfg, id, op),
            ClientMsg::PutData { id, data } => {
                uploads.data(conn, id, &data);
                Ok(())
            }
            ClientMsg::PutEnd { id, checksum } => {
                uploads.end(conn, id, checksum);
                Ok(())
            }
            ClientMsg::Cancel { id } => {
                if !uploads.cancel(conn, id) {
                    conn.cancel(id);
                }
                Ok(())
            }
            ClientMsg::Hello(_) | ClientMsg::Auth { .. } => Err(Ending::fatal(
                ErrorCode::Protocol,
                "Hello or Auth after the handshake",
            )),
        };
        if let Err(ending) = step {
            return ending;
        }
    }
}

/// Closes gracefully: half-close, then read and discard what the peer still
/// sends for a moment. Closing a socket with unread input makes the kernel
/// send a reset, which can destroy our last frame (a `Fatal`, a refused
/// `AuthResult`) before the peer reads it.
pub(crate) fn linger(stream: &TcpStream) {
    const BUDGET: Duration = Duration::from_millis(200);
    const MAX_BYTES: usize = 1 << 20;
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let start = Instant::now();
    let mut buf = [0u8; 8192];
    let mut drained = 0;
    let mut s = stream;
    while start.elapsed() < BUDGET && drained < MAX_BYTES {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

impl Conn {
    /// Requests currently being worked on.
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.lock().len()
    }

    /// True when `id` names a request being worked on.
    pub(crate) fn is_active(&self, id: u64) -> bool {
        self.requests.lock().contains_key(&id)
    }

    fn cancel(&self, id: u64) {
        if let Some(flag) = self.requests.lock().get(&id) {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn cancel_all(&self) {
        for flag in self.requests.lock().values() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    fn wait_workers(&self) {
        let mut n = self.workers.lock();
        while *n > 0 {
            self.workers_done.wait(&mut n);
        }
    }

    /// Runs `job` for request `id` on a new thread. The job returns the
    /// request's last frame; the id is released just before that frame
    /// goes out, so a client that reuses it at once is never refused.
    ///
    /// # Errors
    /// When no thread can be started; the job has not run.
    pub(crate) fn spawn(self: &Arc<Self>, id: u64, job: Job) -> Result<(), WireError> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.requests.lock().insert(id, Arc::clone(&cancel));
        *self.workers.lock() += 1;
        let conn = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("rfserve-req-{id}"))
            .spawn(move || {
                let _alive = WorkerGuard(&conn);
                let last = job(&conn, &cancel);
                conn.requests.lock().remove(&id);
                if let Some(msg) = last {
                    let _ = conn.writer.send(&msg);
                }
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.requests.lock().remove(&id);
                *self.workers.lock() -= 1;
                self.workers_done.notify_all();
                Err(WireError::new(
                    ErrorCode::Busy,
                    format!("server cannot start a worker: {e}"),
                ))
            }
        }
    }
}

/// Counts a worker out when its thread ends, even by unwinding.
struct WorkerGuard<'a>(&'a Conn);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.workers.lock();
        *n = n.saturating_sub(1);
        self.0.workers_done.notify_all();
    }
}
