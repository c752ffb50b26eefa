//! The accept loop: admission through the connection table ([`Gate`]),
//! one thread per admitted connection, and an orderly shutdown that closes
//! every session so that unfinished uploads delete their temporary files
//! before the process exits.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rfmount_proto::{ErrorCode, ServerMsg, WireError};

use crate::callbacks::Callbacks;
use crate::config::ServerConfig;
use crate::locks::LockTable;
use crate::peers::{AddrKey, Gate, Refusal, backoff_message};
use crate::pool::Pool;
use crate::ratelog::Kind;
use crate::session::{self, Setup};
use crate::store::Store;
use crate::traffic::{Sessions, SessionsHandle};

/// How often the accept loop looks at the shutdown flag.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a shutdown waits for sessions to wind down.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound server, ready to [`run`](Server::run).
///
/// ```no_run
/// use std::sync::Arc;
/// use rfmount_server::{LocalStore, Server, ServerConfig};
/// let store = LocalStore::open("/srv/share".as_ref()).unwrap();
/// let server = Server::bind("127.0.0.1:0", Arc::new(store), ServerConfig::default()).unwrap();
/// println!("port {}", server.local_addr().unwrap().port());
/// let stop = server.shutdown_handle();
/// let t = std::thread::spawn(move || server.run());
/// stop.shutdown();
/// t.join().unwrap().unwrap();
/// ```
pub struct Server {
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: Arc<ServerConfig>,
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
    sessions: Arc<Sessions>,
    pool: Arc<Pool>,
    callbacks: Arc<Callbacks>,
    /// Every session's locks.
    locks: Arc<LockTable>,
}

/// Asks a running [`Server`] to stop; cheap to clone, usable from a signal
/// handler thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("stopping", &self.stop.load(Ordering::SeqCst))
            .finish()
    }
}

impl ShutdownHandle {
    /// Makes [`Server::run`] stop accepting, close every connection and
    /// return. Connections are closed here and now, not at the accept
    /// loop's next look at the flag: a signal means stop, not finish the
    /// uploads that happen to be running. Idempotent.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gate.close_all();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) to serve `store`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(
        addr: impl ToSocketAddrs,
        store: Arc<dyn Store>,
        config: ServerConfig,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        // Non-blocking, so that a wake-up from poll that finds no connection
        // after all (the peer gave up) cannot block the loop.
        listener.set_nonblocking(true)?;
        let gate = Arc::new(Gate::new(&config, crate::fdlimit::current()));
        let pool = Arc::new(Pool::new(config.workers, config.max_transfers));
        let locks = LockTable::new(config.lock_grace);
        Ok(Server {
            listener,
            config: Arc::new(config),
            stop: Arc::new(AtomicBool::new(false)),
            gate,
            sessions: Arc::default(),
            pool,
            callbacks: Callbacks::new(store.local_dir()),
            store,
            locks,
        })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            stop: Arc::clone(&self.stop),
            gate: Arc::clone(&self.gate),
        }
    }

    /// A handle that reports the live sessions (SIGUSR1 in `rfserve`).
    pub fn sessions_handle(&self) -> SessionsHandle {
        SessionsHandle(Arc::clone(&self.sessions))
    }

    /// Accepts and serves connections until shut down, then closes them all
    /// and waits (a few seconds at most) for their sessions to end.
    ///
    /// # Errors
    /// Only if waiting for connections fails outright.
    pub fn run(self) -> io::Result<()> {
        while !self.stop.load(Ordering::SeqCst) {
            if !wait_readable(&self.listener, POLL_INTERVAL)? {
                continue;
            }
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    // Out of descriptors or memory: keep serving the
                    // connections we have and try again shortly.
                    log::warn!("accept failed: {e}");
                    std::thread::sleep(POLL_INTERVAL);
                }
            }
        }
        log::info!("shutting down");
        self.drain();
        Ok(())
    }

    fn admit(&self, stream: TcpStream, peer: SocketAddr) {
        // Accepted sockets do not inherit O_NONBLOCK on Linux, but say so.
        let _ = stream.set_nonblocking(false);
        // One descriptor per connection: reader, writer and the table all
        // share this socket.
        let stream = Arc::new(stream);
        let ticket = match self.gate.admit(&stream, &peer) {
            Ok(t) => t,
            Err(Refusal::Stopping) => return,
            Err(refusal) => {
                let (code, message) = match refusal {
                    Refusal::Backoff(left) => {
                        (ErrorCode::Busy, backoff_message(AddrKey::of(&peer), left))
                    }
                    Refusal::Busy(m) => (ErrorCode::Busy, m),
                    Refusal::Stopping => return,
                };
                self.gate.log.log(
                    log::Level::Warn,
                    AddrKey::of(&peer),
                    Kind::Refused,
                    &format!("{peer}: refused: {message}"),
                );
                refuse(stream, WireError::new(code, message));
                return;
            }
        };
        let setup = Setup {
            stream,
            peer,
            store: Arc::clone(&self.store),
            cfg: Arc::clone(&self.config),
            gate: Arc::clone(&self.gate),
            ticket,
            sessions: Arc::clone(&self.sessions),
            pool: Arc::clone(&self.pool),
            callbacks: Arc::clone(&self.callbacks),
            locks: Arc::clone(&self.locks),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("rfserve-conn-{peer}"))
            .spawn(move || session::run(setup));
        if let Err(e) = spawned {
            log::warn!("{peer}: cannot start a session thread: {e}");
        }
    }

    fn drain(&self) {
        self.gate.close_all();
        let left = self.gate.wait_empty(Instant::now() + DRAIN_TIMEOUT);
        if left > 0 {
            log::warn!(
                "{left} connections still closing after {} s; exiting anyway",
                DRAIN_TIMEOUT.as_secs()
            );
        }
    }
}

/// Refusals being delivered at once; beyond this a refused connection is
/// closed without a word, so that a flood of refused connections costs no
/// more than this many threads.
const MAX_REFUSING: usize = 64;
static REFUSING: AtomicUsize = AtomicUsize::new(0);

/// Turns away a connection, on a short-lived thread so that a flood of
/// them cannot slow the accept loop.
fn refuse(stream: Arc<TcpStream>, why: WireError) {
    if REFUSING.fetch_add(1, Ordering::SeqCst) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Ordering::SeqCst);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("rfserve-refuse".into())
        .spawn(move || {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let mut s = &*stream;
            let _ = rfmount_proto::write_frame(&mut s, &ServerMsg::Fatal(why));
            let _ = stream.shutdown(Shutdown::Write);
            // Give the peer a moment to read the refusal before the close.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut sink = [0u8; 4096];
            let _ = io::Read::read(&mut s, &mut sink);
            REFUSING.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        REFUSING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Waits up to `timeout` for a pending connection.
fn wait_readable(listener: &TcpListener, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(r > 0)
}
