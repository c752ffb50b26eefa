//! One TCP connection to `rfserve`, plain or TLS ([`crate::tls`]):
//! handshake, authentication, and request multiplexing.
//!
//! A reader thread owns the receiving half and routes every frame by request
//! id to the caller waiting for it, so many requests can be in flight on one
//! connection and a large `GET` does not hold up a `LIST`. Writers share the
//! sending half under a mutex held for one whole frame at a time.
//!
//! A keep-alive thread pings the server every `keepalive` so that the
//! server's idle timeout never closes a mount that is merely quiet, and so
//! that a half-open connection (server host gone) is noticed: the reader
//! gives up after three silent intervals and fails every waiting caller with
//! a transport error. A connection that failed is never reused.

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;
use rfmount_proto::{
    AuthKey, ClientHello, ClientMsg, FrameError, MAGIC, Op, PROTOCOL_VERSION, ServerHello,
    ServerMsg, new_nonce, read_frame, write_frame,
};

use rfmount_transport::{ReadHalf, WriteHalf};

use crate::error::RemoteError;
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
    /// Interval of keep-alive pings; silence for three intervals is a dead link.
    pub keepalive: Duration,
    /// Speak TLS, trusting the server as these options say; plain TCP when
    /// `None`.
    pub tls: Option<TlsOptions>,
}

impl ConnectConfig {
    /// Defaults for `addr`: no token, 10 s connect timeout, 15 s keep-alive.
    pub fn new(addr: impl Into<String>) -> Self {
        ConnectConfig {
            addr: addr.into(),
            token: None,
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(15),
            tls: None,
        }
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
}

impl Shared {
    fn kill(&self, why: String) {
        let mut dead = self.dead.lock();
        if dead.is_none() {
            debug!("connection closed: {why}");
            *dead = Some(why);
        }
        drop(dead);
        // Dropping the senders wakes every waiting caller with an error.
        self.routes.lock().clear();
    }
}

/// A live, authenticated connection.
pub struct Connection {
    addr: String,
    hello: ServerHello,
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
    /// missing.
    pub fn open(cfg: &ConnectConfig) -> Result<Arc<Connection>, RemoteError> {
        let addr = &cfg.addr;
        let stream = connect(addr, cfg.connect_timeout)?;
        let io_err = |e: std::io::Error| RemoteError::Transport(format!("{addr}: {e}"));
        stream.set_nodelay(true).map_err(io_err)?;
        stream
            .set_read_timeout(Some(cfg.connect_timeout))
            .map_err(io_err)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(60)))
            .map_err(io_err)?;
        let (mut reader, mut writer) = match &cfg.tls {
            None => rfmount_transport::plain(stream).map_err(io_err)?,
            Some(tls) => tls::connect(stream, tls, addr, Instant::now() + cfg.connect_timeout)?,
        };

        let client_nonce = new_nonce();
        let hello = ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce,
        });
        write_frame(&mut writer, &hello).map_err(|e| RemoteError::from_frame(e, addr))?;
        let hello = match read_frame(&mut reader) {
            Ok(ServerMsg::Hello(h)) if h.magic == MAGIC => h,
            Ok(ServerMsg::Fatal(e)) => return Err(RemoteError::Service(e)),
            Ok(_) | Err(FrameError::Decode(_)) | Err(FrameError::TooLarge(_)) => {
                return Err(RemoteError::Protocol(format!(
                    "{addr} is not an rfserve server"
                )));
            }
            Err(e) => return Err(RemoteError::from_frame(e, addr)),
        };
        if hello.version != PROTOCOL_VERSION {
            return Err(RemoteError::Protocol(format!(
                "protocol version mismatch: server {addr} speaks version {}, this client speaks {}",
                hello.version, PROTOCOL_VERSION
            )));
        }
        if let Some(server_nonce) = hello.auth_challenge {
            let Some(key) = &cfg.token else {
                return Err(RemoteError::Auth(format!(
                    "server {addr} requires a token (use --token-file)"
                )));
            };
            let proof = key.proof(&server_nonce, &client_nonce);
            write_frame(&mut writer, &ClientMsg::Auth { proof })
                .map_err(|e| RemoteError::from_frame(e, addr))?;
            match read_frame(&mut reader) {
                Ok(ServerMsg::AuthResult(Ok(()))) => {}
                Ok(ServerMsg::AuthResult(Err(_))) => {
                    return Err(RemoteError::Auth(format!(
                        "server {addr} refused the token"
                    )));
                }
                Ok(other) => {
                    return Err(RemoteError::Protocol(format!(
                        "unexpected answer to authentication: {other:?}"
                    )));
                }
                // The server closes the connection on a bad proof.
                Err(e) if e.is_transport() => {
                    return Err(RemoteError::Auth(format!(
                        "server {addr} refused the token"
                    )));
                }
                Err(e) => return Err(RemoteError::from_frame(e, addr)),
            }
        }
        // Ping often enough that the server's idle timeout never fires on a
        // quiet but healthy connection.
        let idle = Duration::from_secs(u64::from(hello.limits.idle_timeout_secs.max(1)));
        let interval = cfg.keepalive.min(idle / 3).max(Duration::from_millis(200));
        reader
            .set_read_timeout(Some(interval * 3))
            .map_err(io_err)?;

        let shared = Arc::new(Shared {
            routes: Mutex::new(HashMap::new()),
            dead: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = sync_channel(0);
        let conn = Arc::new(Connection {
            addr: addr.clone(),
            hello,
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
        thread::Builder::new()
            .name("rf-keepalive".into())
            .spawn(move || keepalive_loop(weak, stop_rx, interval))
            .map_err(|e| RemoteError::local("spawning keep-alive thread", e))?;
        Ok(conn)
    }

    /// The server's hello.
    pub fn hello(&self) -> &ServerHello {
        &self.hello
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Why this connection is unusable, if it is.
    pub fn dead_reason(&self) -> Option<String> {
        self.shared.dead.lock().clone()
    }

    /// Sends a request and returns the handle that receives its answer.
    ///
    /// # Errors
    /// `Transport` if the connection is dead or the send fails.
    pub(crate) fn start(&self, op: Op) -> Result<Call<'_>, RemoteError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(ROUTE_DEPTH);
        // Register before sending: the answer may arrive before `send` returns.
        self.shared.routes.lock().insert(id, tx);
        let call = Call { conn: self, id, rx };
        if let Some(why) = self.dead_reason() {
            return Err(RemoteError::Transport(why));
        }
        self.send(&ClientMsg::Request { id, op })?;
        Ok(call)
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// `Transport` on any write failure; the connection is then dead.
    pub(crate) fn send(&self, msg: &ClientMsg) -> Result<(), RemoteError> {
        let mut w = self.writer.lock();
        if let Err(e) = write_frame(&mut *w, msg) {
            let why = format!("connection to {} lost: {e}", self.addr);
            let _ = w.shutdown(Shutdown::Both);
            drop(w);
            self.shared.kill(why.clone());
            return Err(RemoteError::Transport(why));
        }
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wakes the reader thread so it exits.
        let _ = self.writer.lock().shutdown(Shutdown::Both);
    }
}

/// A request in flight; dropping it unregisters its route.
pub(crate) struct Call<'a> {
    conn: &'a Connection,
    pub(crate) id: u64,
    rx: Receiver<ServerMsg>,
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
    let why = loop {
        let msg: ServerMsg = match read_frame(&mut reader) {
            Ok(m) => m,
            Err(FrameError::Closed) => break format!("server {addr} closed the connection"),
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break format!("server {addr} stopped answering");
            }
            Err(e) => break format!("connection to {addr} lost: {e}"),
        };
        let id = match &msg {
            ServerMsg::Reply { id, .. }
            | ServerMsg::Data { id, .. }
            | ServerMsg::DataEnd { id, .. } => *id,
            ServerMsg::Fatal(e) => break format!("server {addr} closed the connection: {e}"),
            other => break format!("unexpected frame from {addr}: {other:?}"),
        };
        let route = shared.routes.lock().get(&id).cloned();
        if let Some(tx) = route {
            // Blocks while the caller is ROUTE_DEPTH frames behind: that is
            // the backpressure that keeps memory bounded.
            let _ = tx.send(msg);
        }
    };
    let _ = reader.shutdown(Shutdown::Both);
    shared.kill(why);
}

fn keepalive_loop(conn: std::sync::Weak<Connection>, stop: Receiver<()>, interval: Duration) {
    loop {
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(conn) = conn.upgrade() else { return };
        if conn.dead_reason().is_some() {
            return;
        }
        // The answer is dropped unread: receiving anything is what keeps the
        // reader's timeout from firing.
        if let Err(e) = conn.start(Op::Ping) {
            warn!("keep-alive to {} failed: {e}", conn.addr);
            return;
        }
    }
}
