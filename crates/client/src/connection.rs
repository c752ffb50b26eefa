//! One TCP connection to `rfserve`, plain or TLS ([`crate::tls`]):
//! handshake, authentication, and request multiplexing.
//!
//! A reader thread owns the receiving half and routes every frame by request
//! id to the caller waiting for it, so many requests can be in flight on one
//! connection and a large `GET` does not hold up a `LIST`. Writers share the
//! sending half under a mutex held for one whole frame at a time.
//!
//! A watchdog thread bounds every wait on the server. While anything is
//! outstanding (a request, an upload, its own ping) it pings every third of
//! `timeout`, and when the server has shown no progress for `timeout` (no
//! frame received, no byte of ours accepted by the socket) it declares the
//! connection dead: the socket is shut down and every waiting caller fails
//! at once with a transport error. The deadline is on progress, not on total
//! time, so a large transfer that keeps moving is never cut off. While the
//! connection is idle it pings every `keepalive`, so that the server's idle
//! timeout never closes a quiet mount and a dead link is still noticed.
//!
//! With callbacks the mount answers from its caches without sending
//! anything, so a silent server would go unnoticed until the next request
//! and its whole timeout. There the watchdog pings every eighth of
//! `timeout` (see `quiet`) even when idle, and a ping unanswered for that long (no frame
//! at all arriving meanwhile) *suspends* the callbacks: the subscriber is
//! told the connection broke, and answers fall back to their short
//! timeouts and to requests, which then meet the silence and its timeout
//! like any request. The next frame that arrives lifts the suspension as a
//! new connection would (everything read before is forgotten).
//! A connection that failed is never reused.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;
use rfmount_proto::{
    AuthKey, ClientMsg, FrameError, Op, PathError, RelPath, ServerHello, ServerMsg, Welcome,
    read_server_msg_with, write_frame,
};

use rfmount_transport::{ReadHalf, WriteHalf};

use crate::callbacks::CallbackHub;
use crate::error::RemoteError;
use crate::handshake;
use crate::stats::{RequestStats, op_name};
use crate::tls::{self, TlsOptions};

/// Frames buffered per request before the reader thread waits for the
/// caller: bounds memory to a few chunks per transfer in flight.
const ROUTE_DEPTH: usize = 8;

/// How to reach and authenticate with a server.
#[derive(Clone, Debug)]
pub struct ConnectConfig {
    /// `host:port`.
    pub addr: String,
    /// Shared secret, when the server requires one.
    pub token: Option<AuthKey>,
    /// Limit for TCP connect and for the handshake.
    pub connect_timeout: Duration,
    /// Interval of keep-alive pings on an idle connection.
    pub keepalive: Duration,
    /// Confine the session to this directory of the export: the server
    /// resolves every path beneath it and nothing outside is reachable.
    pub subdir: Option<RelPath>,
    /// How long the server may show no progress while we wait for it
    /// before the connection is declared dead.
    pub timeout: Duration,
    /// Speak TLS, trusting the server as these options say; plain TCP when
    /// `None`. Every reconnection of a [`crate::TcpRemote`] uses them too.
    pub tls: Option<TlsOptions>,
    /// Where every connection opened with this configuration counts its
    /// requests and their latency; clones share it.
    pub stats: Arc<RequestStats>,
    /// Where pushed invalidations and connection breaks go; clones share it.
    pub callbacks: CallbackHub,
    /// This client's identity for the server's lock table: random, and the
    /// same for every connection made with this configuration or its
    /// clones, so that a reconnect takes over the locks it held.
    pub client_id: [u8; 16],
}

fn new_client_id() -> [u8; 16] {
    let nonce = rfmount_proto::new_nonce();
    let mut id = [0u8; 16];
    id.copy_from_slice(&nonce[..16]);
    id
}

/// Default of [`ConnectConfig::timeout`] (and of the connect timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);

impl ConnectConfig {
    /// Defaults for `addr`: no token, 4 s progress and connect timeout,
    /// 15 s keep-alive.
    pub fn new(addr: impl Into<String>) -> Self {
        ConnectConfig {
            addr: addr.into(),
            token: None,
            connect_timeout: DEFAULT_TIMEOUT,
            keepalive: Duration::from_secs(15),
            subdir: None,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
            stats: Arc::default(),
            callbacks: CallbackHub::default(),
            client_id: new_client_id(),
        }
    }

    /// Asks for a session confined to directory `dir` of the export
    /// (`/sub`, `sub/` and `sub` are the same; `/` or empty is the whole
    /// export).
    ///
    /// # Errors
    /// When `dir` is not a path inside the export (`..`, NUL, too long).
    pub fn with_subdir(mut self, dir: &str) -> Result<Self, PathError> {
        let dir = RelPath::from_user(dir)?;
        self.subdir = (!dir.is_root()).then_some(dir);
        Ok(self)
    }

    /// Sets both the progress timeout and the connect/handshake timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let t = timeout.max(Duration::from_millis(100));
        self.timeout = t;
        self.connect_timeout = t;
        self
    }

    /// Reads the shared secret from a token file.
    ///
    /// # Errors
    /// The file cannot be read, or holds only whitespace.
    pub fn with_token_file(mut self, path: &Path) -> Result<Self, RemoteError> {
        let token = std::fs::read(path)
            .map_err(|e| RemoteError::local(format!("token file {}", path.display()), e))?;
        if token.trim_ascii().is_empty() {
            return Err(RemoteError::Auth(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        self.token = Some(AuthKey::from_token(&token));
        Ok(self)
    }
}

type Routes = HashMap<u64, SyncSender<ServerMsg>>;

struct Shared {
    routes: Mutex<Routes>,
    /// Why the connection died; `Some` means never use it again.
    dead: Mutex<Option<String>>,
    /// The socket itself, shut down when the connection is declared dead so
    /// that a reader or writer blocked on it wakes up (with TLS too: both
    /// halves block only in plain socket calls).
    sock: Arc<TcpStream>,
    /// The last time the server showed progress: a frame arrived, a frame
    /// of ours was accepted by the socket, or we started waiting.
    progress: Mutex<Instant>,
    /// The reader is blocked handing a frame to a slow caller: the wait is
    /// ours, not the server's.
    delivering: AtomicBool,
    /// The connection died because the server stopped making progress (as
    /// opposed to closing or resetting it).
    timed_out: AtomicBool,
    stats: Arc<RequestStats>,
    /// The watchdog's ping in flight and when it was sent: the reader
    /// times its answer as it arrives.
    ping: Mutex<Option<(u64, Instant)>>,
    callbacks: CallbackHub,
    /// The callbacks are suspended because the server fell silent; lock
    /// order: this, then `dead`.
    suspended: Mutex<bool>,
    /// How many bytes the socket had received (its `tcpi_bytes_received`)
    /// once the reader had acted on every frame up to them: when it equals
    /// what the socket has received now, no invalidation is waiting unread.
    applied: AtomicU64,
}

impl Shared {
    fn kill(&self, why: String) {
        let mut dead = self.dead.lock();
        if dead.is_none() {
            debug!("connection closed: {why}");
            // Before anyone can see the connection dead (and open the next
            // one): every callback of this one is void first.
            self.callbacks.broken();
            *dead = Some(why);
        }
        drop(dead);
        let _ = self.sock.shutdown(Shutdown::Both);
        // Dropping the senders wakes every waiting caller with an error.
        self.routes.lock().clear();
    }

    /// The server has been silent for a while with our ping outstanding:
    /// its callbacks cannot be relied on until it speaks again.
    fn suspend(&self) {
        let mut suspended = self.suspended.lock();
        let dead = self.dead.lock();
        if !*suspended && dead.is_none() {
            debug!("server silent: callbacks suspended");
            *suspended = true;
            self.callbacks.broken();
        }
    }

    /// A frame arrived: a suspension ends as a new connection would begin.
    /// Called on the reader thread before the frame is acted on.
    fn resume(&self) {
        let mut suspended = self.suspended.lock();
        if *suspended {
            *suspended = false;
            // Holding `dead`: a kill cannot slip between the check and
            // the call and leave callbacks live on a dead connection.
            let dead = self.dead.lock();
            if dead.is_none() {
                debug!("server answers again: callbacks resumed");
                self.callbacks.connected(true);
            }
        }
    }

    fn note_progress(&self) {
        *self.progress.lock() = Instant::now();
    }

    /// Something is outstanding and the server has shown no progress for
    /// `timeout`.
    fn stalled(&self, timeout: Duration) -> bool {
        !self.delivering.load(Ordering::SeqCst)
            && !self.routes.lock().is_empty()
            && self.progress.lock().elapsed() > timeout
    }
}

/// A live, authenticated connection.
pub struct Connection {
    addr: String,
    timeout: Duration,
    hello: ServerHello,
    welcome: Welcome,
    writer: Mutex<WriteHalf>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    // Dropping this stops the keep-alive thread.
    _stop_keepalive: SyncSender<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, performs the handshake and authenticates.
    ///
    /// # Errors
    /// `Transport` when the server is unreachable, `Protocol` on a version
    /// mismatch or a non-rfserve peer, `Auth` when credentials are refused or
    /// missing, `Service` when the server turns the client away (busy, too
    /// many failed authentications, a subdirectory it cannot serve).
    pub fn open(cfg: &ConnectConfig) -> Result<Arc<Connection>, RemoteError> {
        let addr = &cfg.addr;
        let stream = Arc::new(connect(addr, cfg.connect_timeout)?);
        let io_err = |e: std::io::Error| RemoteError::Transport(format!("{addr}: {e}"));
        stream.set_nodelay(true).map_err(io_err)?;
        stream
            .set_read_timeout(Some(cfg.connect_timeout))
            .map_err(io_err)?;
        // A send that moves no byte for `timeout` fails: the server has
        // stopped reading. Progress resets it (it is per system call).
        stream
            .set_write_timeout(Some(cfg.timeout))
            .map_err(io_err)?;
        // TLS comes first and gets its own connect timeout: a handshake of
        // rfmount's protocol follows over it, bounded like a plain one.
        let (mut reader, mut writer) = match &cfg.tls {
            None => rfmount_transport::plain(Arc::clone(&stream)).map_err(io_err)?,
            Some(tls) => tls::connect(
                Arc::clone(&stream),
                tls,
                addr,
                Instant::now() + cfg.connect_timeout,
            )?,
        };

        let handshake::Greeting { hello, welcome } = handshake::run(&mut reader, &mut writer, cfg)?;
        // Ping often enough that the server's idle timeout never fires on a
        // quiet but healthy connection.
        let idle = Duration::from_secs(u64::from(welcome.limits.idle_timeout_secs.max(1)));
        let interval = cfg.keepalive.min(idle / 3).max(Duration::from_millis(200));
        // The watchdog decides when the server is too slow; the reader
        // itself never times out, so a frame is never cut in half.
        reader.set_read_timeout(None).map_err(io_err)?;

        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            dead: Mutex::new(None),
            sock: stream,
            progress: Mutex::new(Instant::now()),
            delivering: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            stats: cfg.stats.clone(),
            ping: Mutex::new(None),
            callbacks: cfg.callbacks.clone(),
            suspended: Mutex::new(false),
            applied: AtomicU64::new(0),
        });
        // Before the reader starts: its first invalidation must find the
        // subscriber knowing this connection.
        cfg.callbacks.connected(welcome.callbacks);
        let (stop_tx, stop_rx) = sync_channel(0);
        let conn = Arc::new(Connection {
            addr: addr.clone(),
            timeout: cfg.timeout,
            hello,
            welcome,
            writer: Mutex::new(writer),
            shared: shared.clone(),
            next_id: AtomicU64::new(1),
            _stop_keepalive: stop_tx,
        });
        let reader_addr = addr.clone();
        thread::Builder::new()
            .name("rf-reader".into())
            .spawn(move || read_loop(reader, shared, reader_addr))
            .map_err(|e| RemoteError::local("spawning reader thread", e))?;
        let weak = Arc::downgrade(&conn);
        let timeout = cfg.timeout;
        let quiet = conn.welcome.callbacks.then(|| quiet(timeout));
        thread::Builder::new()
            .name("rf-watchdog".into())
            .spawn(move || watchdog(weak, stop_rx, timeout, interval, quiet))
            .map_err(|e| RemoteError::local("spawning watchdog thread", e))?;
        Ok(conn)
    }

    /// The server's hello: its protocol version and whether it asked for
    /// a token.
    pub fn hello(&self) -> &ServerHello {
        &self.hello
    }

    /// The export this session sees: its id, read-only flag and limits.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Waits, at most `within`, until the reader has acted on every byte
    /// the socket has received: afterwards, any invalidation the server
    /// wrote before now has been applied. The server writes a change's
    /// invalidations before it answers the change's writer, so an open that
    /// checks this before trusting a callback sees every change whose close
    /// has returned (close-to-open across mounts). False when it cannot be
    /// sure in time (frames still arriving): the caller asks the server.
    pub fn settled(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let Some(received) = received_bytes(&self.shared.sock) else {
                return true;
            };
            if self.shared.applied.load(Ordering::SeqCst) >= received {
                return true;
            }
            if Instant::now() >= deadline || self.dead_reason().is_some() {
                return false;
            }
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Why this connection is unusable, if it is.
    pub fn dead_reason(&self) -> Option<String> {
        self.shared.dead.lock().clone()
    }

    /// True when it died because the server stopped making progress.
    pub(crate) fn timed_out(&self) -> bool {
        self.shared.timed_out.load(Ordering::SeqCst)
    }

    /// One `PING` and the time until its answer arrived.
    ///
    /// # Errors
    /// `Transport` when the connection breaks, `Service` if the server refuses.
    pub fn ping(&self) -> Result<Duration, RemoteError> {
        let started = std::time::Instant::now();
        let call = self.start(Op::Ping)?;
        match call.next()? {
            ServerMsg::Reply { result: Ok(_), .. } => Ok(started.elapsed()),
            ServerMsg::Reply { result: Err(e), .. } => Err(RemoteError::Service(e)),
            _ => Err(RemoteError::Protocol(format!(
                "unexpected answer to a ping from {}",
                self.addr
            ))),
        }
    }

    /// Sends a request and returns the handle that receives its answer.
    ///
    /// # Errors
    /// `Transport` if the connection is dead or the send fails.
    pub(crate) fn start(&self, op: Op) -> Result<Call<'_>, RemoteError> {
        let kind = op_name(&op);
        let started = Instant::now();
        let (id, rx) = self.start_raw(op)?;
        Ok(Call {
            conn: self,
            id,
            rx,
            kind,
            started,
        })
    }

    /// [`Connection::start`] without the guard that unregisters the route.
    fn start_raw(&self, op: Op) -> Result<(u64, Receiver<ServerMsg>), RemoteError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(ROUTE_DEPTH);
        // Register before sending: the answer may arrive before `send` returns.
        {
            let mut routes = self.shared.routes.lock();
            // Time spent idle before this request is no stall of the server.
            if routes.is_empty() {
                self.shared.note_progress();
            }
            routes.insert(id, tx);
        }
        let sent = match self.dead_reason() {
            Some(why) => Err(RemoteError::Transport(why)),
            None => self.send(&ClientMsg::Request { id, op }),
        };
        if let Err(e) = sent {
            self.shared.routes.lock().remove(&id);
            return Err(e);
        }
        Ok((id, rx))
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// `Transport` on any write failure; the connection is then dead.
    pub(crate) fn send(&self, msg: &ClientMsg) -> Result<(), RemoteError> {
        let mut w = self.writer.lock();
        if let Err(e) = write_frame(&mut *w, msg) {
            let why = match self.dead_reason() {
                Some(why) => why,
                None if e.is_transport() && is_timeout(&e) => {
                    self.shared.timed_out.store(true, Ordering::SeqCst);
                    format!(
                        "server {} stopped accepting data (no progress for {} s)",
                        self.addr,
                        secs(self.timeout)
                    )
                }
                None => format!("connection to {} lost: {e}", self.addr),
            };
            let _ = w.shutdown(Shutdown::Both);
            drop(w);
            self.shared.kill(why.clone());
            return Err(RemoteError::Transport(why));
        }
        drop(w);
        // The socket took our frame: the server is reading.
        self.shared.note_progress();
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wakes the reader thread so it exits.
        let _ = self.writer.lock().shutdown(Shutdown::Both);
    }
}

/// A request in flight; dropping it unregisters its route and counts the
/// request, timed from its sending to the end of its answer.
pub(crate) struct Call<'a> {
    conn: &'a Connection,
    pub(crate) id: u64,
    rx: Receiver<ServerMsg>,
    kind: String,
    started: Instant,
}

impl Call<'_> {
    /// The next frame of this request's answer.
    pub(crate) fn next(&self) -> Result<ServerMsg, RemoteError> {
        self.rx.recv().map_err(|_| {
            RemoteError::Transport(
                self.conn
                    .dead_reason()
                    .unwrap_or_else(|| format!("connection to {} lost", self.conn.addr)),
            )
        })
    }

    /// The next frame, or `None` when none arrives within `wait`.
    pub(crate) fn next_within(&self, wait: Duration) -> Result<Option<ServerMsg>, RemoteError> {
        match self.rx.recv_timeout(wait) {
            Ok(m) => Ok(Some(m)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(RemoteError::Transport(
                self.conn
                    .dead_reason()
                    .unwrap_or_else(|| format!("connection to {} lost", self.conn.addr)),
            )),
        }
    }

    /// A frame if one has already arrived (used to spot an early error while
    /// uploading).
    pub(crate) fn try_next(&self) -> Option<ServerMsg> {
        self.rx.try_recv().ok()
    }

    pub(crate) fn conn(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.conn.shared.routes.lock().remove(&self.id);
        self.conn
            .shared
            .stats
            .record(&self.kind, self.started.elapsed());
    }
}

fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, RemoteError> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| RemoteError::Transport(format!("cannot resolve {addr}: {e}")))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(RemoteError::Transport(match last {
        Some(e) => format!("cannot connect to {addr}: {e}"),
        None => format!("cannot resolve {addr}: no addresses"),
    }))
}

fn read_loop(mut reader: ReadHalf, shared: Arc<Shared>, addr: String) {
    // Nothing unsolicited comes before the first request: every byte the
    // socket holds now was the handshake's.
    let base = received_bytes(reader.socket()).unwrap_or(0);
    let start = reader.drained().unwrap_or(0);
    let publish = |reader: &ReadHalf| {
        if let Some(n) = reader.drained() {
            shared.applied.store(base + (n - start), Ordering::SeqCst);
        }
    };
    let why = loop {
        let msg: ServerMsg = match read_server_msg_with(&mut reader, ReadHalf::read_vec) {
            Ok(m) => m,
            Err(FrameError::Closed) => break format!("server {addr} closed the connection"),
            Err(e) => break format!("connection to {addr} lost: {e}"),
        };
        shared.note_progress();
        shared.resume();
        let id = match &msg {
            ServerMsg::Reply { id, .. }
            | ServerMsg::Data { id, .. }
            | ServerMsg::DataHole { id, .. }
            | ServerMsg::DataEnd { id, .. } => *id,
            ServerMsg::Fatal(e) => break format!("server {addr} closed the connection: {e}"),
            ServerMsg::Invalidate(items) => {
                shared.callbacks.invalidated(items);
                publish(&reader);
                continue;
            }
            other => break format!("unexpected frame from {addr}: {other:?}"),
        };
        // Not an invalidation: acted on as far as freshness goes, even
        // while its delivery below waits for a slow caller.
        publish(&reader);
        let pinged = *shared.ping.lock();
        if let Some((ping, sent)) = pinged
            && ping == id
        {
            shared.stats.record_rtt(sent.elapsed());
            *shared.ping.lock() = None;
        }
        let route = shared.routes.lock().get(&id).cloned();
        if let Some(tx) = route {
            // Blocks while the caller is ROUTE_DEPTH frames behind: that is
            // the backpressure that keeps memory bounded.
            shared.delivering.store(true, Ordering::SeqCst);
            let _ = tx.send(msg);
            shared.delivering.store(false, Ordering::SeqCst);
            shared.note_progress();
        }
    };
    let _ = reader.shutdown(Shutdown::Both);
    shared.kill(why);
}

/// The socket's count of bytes received from the peer (`TCP_INFO`'s
/// `tcpi_bytes_received`, Linux 4.1+); `None` where the kernel lacks it.
fn received_bytes(sock: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // `struct tcp_info` up to and including tcpi_bytes_received: 8 one-byte
    // fields, 24 u32, then u64 pacing_rate, max_pacing_rate, bytes_acked,
    // bytes_received (offset 128).
    const END: usize = 136;
    let mut buf = [0u64; 32];
    let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes, and the kernel writes at
    // most `len` and stores the length written back in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize >= END).then(|| buf[128 / 8])
}

pub(crate) fn is_timeout(e: &FrameError) -> bool {
    matches!(e, FrameError::Io(e) if matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ))
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{}", (d.as_secs_f64() * 10.0).round() / 10.0)
}

/// How long a server with callbacks may leave our ping unanswered before
/// its callbacks are suspended, and how often it is pinged: together well
/// under `timeout`, so that a frozen server is distrusted before a request
/// made after it froze has waited long, yet far above a loopback or LAN
/// round trip on a loaded machine. A ping is one small frame each way.
pub(crate) fn quiet(timeout: Duration) -> Duration {
    (timeout / 8)
        .max(Duration::from_millis(250))
        .min(timeout / 2)
}

/// Pings and watches the connection until it dies or is dropped (see the
/// module comment); `quiet` is set when the server grants callbacks.
fn watchdog(
    conn: std::sync::Weak<Connection>,
    stop: Receiver<()>,
    timeout: Duration,
    idle_interval: Duration,
    quiet: Option<Duration>,
) {
    let tick = (timeout / 40).clamp(Duration::from_millis(20), Duration::from_millis(100));
    let busy_interval = timeout / 3;
    let mut last_ping = Instant::now();
    let mut ping: Option<(u64, Receiver<ServerMsg>)> = None;
    loop {
        match stop.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(conn) = conn.upgrade() else { return };
        if conn.dead_reason().is_some() {
            return;
        }
        if let Some((id, rx)) = &ping {
            if !matches!(rx.try_recv(), Err(TryRecvError::Empty)) {
                conn.shared.routes.lock().remove(id);
                ping = None;
            }
        }
        if conn.shared.stalled(timeout) {
            conn.shared.timed_out.store(true, Ordering::SeqCst);
            conn.shared.kill(format!(
                "server {} did not answer for {} s",
                conn.addr,
                secs(timeout)
            ));
            return;
        }
        if let Some(q) = quiet
            && ping.is_some()
            && conn.shared.stalled(q)
        {
            conn.shared.suspend();
        }
        if ping.is_some() {
            continue;
        }
        let waiting = !conn.shared.routes.lock().is_empty();
        let every = if waiting {
            busy_interval
        } else {
            idle_interval
        };
        let every = quiet.map_or(every, |q| every.min(q));
        // A sender blocked on a full socket must not block the watchdog
        // too: it has to stay free to notice the stall.
        if last_ping.elapsed() >= every && !conn.writer.is_locked() {
            last_ping = Instant::now();
            match conn.start_raw(Op::Ping) {
                Ok(p) => {
                    *conn.shared.ping.lock() = Some((p.0, last_ping));
                    ping = Some(p);
                }
                Err(e) => {
                    warn!("keep-alive to {} failed: {e}", conn.addr);
                    return;
                }
            }
        }
    }
}
