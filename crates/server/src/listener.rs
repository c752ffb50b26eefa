//! The accept loop: one thread per connection, a cap on connections, and an
//! orderly shutdown that closes every session so that unfinished uploads
//! delete their temporary files before the process exits.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rfmount_proto::{ErrorCode, ServerMsg, WireError};

use crate::config::ServerConfig;
use crate::session;
use crate::store::Store;

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
    sessions: Arc<Sessions>,
}

/// Asks a running [`Server`] to stop; cheap to clone, usable from a signal
/// handler thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    sessions: Arc<Sessions>,
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
        self.sessions.close_all();
    }
}

/// Live connections, so that shutdown can close them all.
#[derive(Default)]
struct Sessions {
    live: Mutex<HashMap<u64, TcpStream>>,
    gone: Condvar,
    next: AtomicU64,
}

impl Sessions {
    /// Shuts every live connection down; each session then ends by itself,
    /// dropping (and so deleting) its unfinished uploads.
    fn close_all(&self) {
        for stream in self.live.lock().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Unregisters a session when its thread ends, however it ends.
struct Registered {
    sessions: Arc<Sessions>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.sessions.live.lock().remove(&self.id);
        self.sessions.gone.notify_all();
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
        Ok(Server {
            listener,
            store,
            config: Arc::new(config),
            stop: Arc::new(AtomicBool::new(false)),
            sessions: Arc::default(),
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
            sessions: Arc::clone(&self.sessions),
        }
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
        let clone = match stream.try_clone() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{peer}: cannot set up connection: {e}");
                return;
            }
        };
        let id = self.sessions.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut live = self.sessions.live.lock();
            // Checked under the lock that `close_all` takes: a connection
            // is either refused here or registered before the sweep.
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if live.len() >= self.config.max_connections {
                drop(live);
                log::warn!(
                    "{peer}: refused: already {} connections",
                    self.config.max_connections
                );
                refuse(stream);
                return;
            }
            live.insert(id, clone);
        }
        let registered = Registered {
            sessions: Arc::clone(&self.sessions),
            id,
        };
        let store = Arc::clone(&self.store);
        let config = Arc::clone(&self.config);
        let spawned = std::thread::Builder::new()
            .name(format!("rfserve-conn-{id}"))
            .spawn(move || {
                let _registered = registered;
                session::run(stream, peer, store, &config);
            });
        if let Err(e) = spawned {
            log::warn!("{peer}: cannot start a session thread: {e}");
        }
    }

    fn drain(&self) {
        self.sessions.close_all();
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut live = self.sessions.live.lock();
        while !live.is_empty() {
            if self
                .sessions
                .gone
                .wait_until(&mut live, deadline)
                .timed_out()
            {
                log::warn!(
                    "{} connections still closing after {} s; exiting anyway",
                    live.len(),
                    DRAIN_TIMEOUT.as_secs()
                );
                break;
            }
        }
    }
}

/// Turns away a connection over the cap, on a short-lived thread so that a
/// flood of them cannot slow the accept loop.
fn refuse(stream: TcpStream) {
    let _ = std::thread::Builder::new()
        .name("rfserve-refuse".into())
        .spawn(move || {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let busy = WireError::new(ErrorCode::Busy, "server busy: too many connections");
            let mut s = &stream;
            let _ = rfmount_proto::write_frame(&mut s, &ServerMsg::Fatal(busy));
            let _ = stream.shutdown(Shutdown::Write);
            // Give the peer a moment to read the refusal before the close.
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut sink = [0u8; 4096];
            let _ = io::Read::read(&mut s, &mut sink);
        });
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
