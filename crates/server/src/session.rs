//! One connection from accept to close: the TLS step of [`tls`] (which
//! leaves a plain connection as it is), the handshake, then the reader loop
//! of [`dispatch`], then an orderly goodbye. The flow is one-way: this module
//! calls the handshake and the dispatcher, which call the handlers, and
//! nothing calls back up. Whatever ends the connection, unfinished uploads
//! are dropped on the way out, which deletes their temporary files.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rfmount_proto::{RelPath, ServerMsg};
use rfmount_transport::ReadHalf;

use crate::callbacks::Callbacks;
use crate::config::ServerConfig;
use crate::conn::Conn;
use crate::dispatch;
use crate::ending::Ending;
use crate::frames::{FrameReader, is_timeout};
use crate::handshake::{self, Ctx};
use crate::locks::LockTable;
use crate::peers::{Gate, Ticket};
use crate::pool::Pool;
use crate::ratelog::Kind;
use crate::store::Store;
use crate::tls;
use crate::traffic::Sessions;
use crate::upload::Uploads;
use crate::writer::FrameWriter;

/// What a session needs from the server.
pub(crate) struct Setup {
    pub(crate) stream: Arc<TcpStream>,
    pub(crate) peer: SocketAddr,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cfg: Arc<ServerConfig>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) ticket: Ticket,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) pool: Arc<Pool>,
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) locks: Arc<LockTable>,
}

/// Serves one accepted connection to its end and logs how it went. Only
/// connections that finished the handshake are logged at info level;
/// others, which may be a flood, go through the rate-limited log.
pub(crate) fn run(setup: Setup) {
    let Setup {
        stream,
        peer,
        store,
        cfg,
        gate,
        ticket,
        sessions,
        pool,
        callbacks,
        locks,
    } = setup;
    log::debug!("connection from {peer}");
    let _ = stream.set_nodelay(true);
    // TLS, when configured, comes first and counts against the handshake's
    // deadline from the accept, like the frames after it.
    let deadline = ticket.accepted + cfg.handshake();
    let (input, output) = match tls::accept(&stream, &cfg, deadline) {
        Ok(halves) => halves,
        Err(refused) => {
            gate.log.log(
                refused.level,
                ticket.key,
                refused.kind,
                &format!(
                    "connection from {peer} closed during the handshake: {}",
                    refused.reason
                ),
            );
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let writer = match FrameWriter::new(Arc::clone(&stream), output, cfg.write_timeout) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            log::debug!("{peer}: cannot set up connection: {e}");
            return;
        }
    };
    let mut reader = FrameReader::new(input);
    let mut held = callbacks.join(RelPath::root(), Arc::clone(&writer));
    let cx = Ctx {
        callbacks: held.active(),
        cfg: &cfg,
        gate: &gate,
        ticket: &ticket,
        peer,
        writer: &writer,
        locks: &locks,
    };
    let admitted = match handshake::run(&mut reader, &store, &cx) {
        Ok(a) => a,
        Err(ending) => {
            if let Some(fatal) = &ending.fatal {
                let _ = writer.send(&ServerMsg::Fatal(fatal.clone()));
            }
            linger(&stream);
            gate.log.log(
                log::Level::Info,
                ticket.key,
                Kind::Handshake,
                &format!(
                    "connection from {peer} closed during the handshake: {}",
                    ending.reason
                ),
            );
            return;
        }
    };
    let started = Instant::now();
    log::info!(
        "session from {peer}{}",
        admitted
            .subdir
            .as_deref()
            .map(|d| format!(" (subdirectory {d})"))
            .unwrap_or_default()
    );
    let registered = sessions.register(peer, writer.sent_counter());
    if let Some(dir) = admitted
        .subdir
        .as_deref()
        .and_then(|d| RelPath::new(d).ok())
    {
        held.set_prefix(dir);
    }
    let conn = Arc::new(Conn::new(
        admitted.store,
        writer,
        held,
        peer,
        cfg.read_only,
        registered.traffic.clone(),
        pool,
        admitted.lease,
    ));
    let ending = serve(&mut reader, &conn, &cfg);
    if let Some(fatal) = &ending.fatal {
        log::warn!("{peer}: closing connection: {}", fatal.message);
        let _ = conn.writer.send(&ServerMsg::Fatal(fatal.clone()));
    }
    // Whatever is queued goes out before the half-close.
    conn.writer.finish();
    linger(&stream);
    conn.wait_workers();
    // Only now: a lock granted by a worker that was still running belongs
    // to the session too.
    conn.lease.end();
    log::info!(
        "session from {peer} closed after {:.1} s ({}): {}",
        started.elapsed().as_secs_f32(),
        registered.traffic.counts(),
        ending.reason
    );
}

fn serve(reader: &mut FrameReader<ReadHalf>, conn: &Arc<Conn>, cfg: &ServerConfig) -> Ending {
    let mut uploads = Uploads::default();
    let ending = dispatch::read_loop(reader, conn, &mut uploads, cfg);
    // Before anything else: an unfinished upload must never outlive its
    // connection, even if the goodbye below blocks.
    drop(uploads);
    if ending.abort {
        conn.cancel_all();
    } else {
        // The peer only stopped sending (or the server is shutting down,
        // which has closed the socket already): answers in progress may
        // still reach it.
        conn.wait_workers();
    }
    // Requests parked waiting for something else (a lock) would wait for
    // a connection that is ending: answer them now, and wait until their
    // threads are done with the lock table.
    conn.cancel_all();
    conn.wait_own_threads();
    ending
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
