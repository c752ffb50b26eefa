//! The first frames of a connection, all before one deadline counted from
//! the accept: the client's hello, our hello, the shared-secret challenge
//! when a token is configured, the client's subdirectory, and finally the
//! [`Welcome`] with the export's details. Nothing about the export (its id,
//! read-only flag, limits, or whether a subdirectory exists) is said before
//! the client has authenticated.
//!
//! A hello is read as raw bytes first: its frozen prefix (variant 0, magic,
//! version) names the peer's version even when the rest does not decode in
//! this version, so a peer of another version is told what we speak instead
//! of being called garbage.

use std::net::SocketAddr;
use std::sync::Arc;

use rfmount_proto::{
    AuthKey, CHUNK_SIZE, ClientHello, ClientMsg, ErrorCode, Limits, MAGIC, MAX_FRAME, Nonce,
    PROTOCOL_VERSION, ServerHello, ServerMsg, Welcome, WireError, decode_payload, hello_version,
    v1_layout_server_hello,
};

use crate::config::ServerConfig;
use crate::ending::Ending;
use crate::frames::{Deadlines, FrameReader, ReadFail, Timed};
use crate::locks::{Lease, LockTable};
use crate::peers::{Gate, Ticket, backoff_message};
use crate::ratelog::Kind;
use crate::store::Store;
use crate::writer::FrameWriter;

/// What a finished handshake hands to the session.
pub(crate) struct Admitted {
    /// The store the session sees, confined to the client's subdirectory.
    pub(crate) store: Arc<dyn Store>,
    /// For the log: the subdirectory, if any.
    pub(crate) subdir: Option<String>,
    /// The session's place in the lock table.
    pub(crate) lease: Lease,
}

/// The parts of the server a handshake needs.
pub(crate) struct Ctx<'a> {
    pub(crate) cfg: &'a ServerConfig,
    pub(crate) gate: &'a Gate,
    pub(crate) ticket: &'a Ticket,
    pub(crate) peer: SocketAddr,
    pub(crate) writer: &'a FrameWriter,
    /// The session will be told of changes (Welcome.callbacks).
    pub(crate) callbacks: bool,
    pub(crate) locks: &'a Arc<LockTable>,
}

/// Runs the handshake; `Ok` means requests may follow.
///
/// # Errors
/// How the connection ends when the peer is not a client we can serve.
pub(crate) fn run<T: Timed>(
    reader: &mut FrameReader<T>,
    root: &Arc<dyn Store>,
    cx: &Ctx<'_>,
) -> Result<Admitted, Ending> {
    let hello = read_hello(reader, cx)?;
    if let Some(key) = &cx.cfg.auth {
        authenticate(reader, cx, key, &hello.client_nonce)?;
    } else {
        send(cx, &hello_msg(None))?;
    }
    let (store, subdir) = match hello.subdir.filter(|d| !d.is_root()) {
        None => (Arc::clone(root), None),
        Some(dir) => match root.confine(&dir) {
            Ok(store) => (store, Some(dir.to_string())),
            Err(e) => {
                // The client shows this line to its user: no OS error text.
                return Err(Ending::fatal(
                    e.code,
                    format!("cannot serve subdirectory {dir}: {}", e.code.describe()),
                ));
            }
        },
    };
    if let Err(why) = cx.gate.promote(cx.ticket) {
        return Err(Ending::fatal(ErrorCode::Busy, why));
    }
    let (lease, resumed) = cx.locks.attach(hello.client_id);
    let welcome = Welcome {
        export_id: store.export_id(),
        read_only: cx.cfg.read_only,
        limits: Limits {
            max_frame: MAX_FRAME as u32,
            chunk_size: CHUNK_SIZE as u32,
            max_in_flight: cx.cfg.max_in_flight,
            idle_timeout_secs: cx.cfg.idle_secs(),
        },
        callbacks: cx.callbacks,
        resumed,
    };
    send(cx, &ServerMsg::Welcome(welcome))?;
    Ok(Admitted {
        store,
        subdir,
        lease,
    })
}

fn read_hello<T: Timed>(reader: &mut FrameReader<T>, cx: &Ctx<'_>) -> Result<ClientHello, Ending> {
    let payload = read(reader, cx, "hello")?;
    match hello_version(&payload) {
        Some(PROTOCOL_VERSION) => {}
        Some(theirs) => return Err(mismatch(cx, theirs)),
        None => {
            return Err(match decode_payload::<ClientMsg>(&payload) {
                Ok(ClientMsg::Hello(_)) => {
                    Ending::fatal(ErrorCode::Protocol, "bad magic: not an rfmount client")
                }
                Ok(_) => Ending::fatal(ErrorCode::Protocol, "expected Hello as the first frame"),
                Err(e) => Ending::fatal(ErrorCode::Protocol, format!("bad hello: {e}")),
            });
        }
    }
    match decode_payload::<ClientMsg>(&payload) {
        Ok(ClientMsg::Hello(hello)) => Ok(hello),
        Ok(_) => Err(Ending::fatal(
            ErrorCode::Protocol,
            "expected Hello as the first frame",
        )),
        Err(e) => Err(Ending::fatal(
            ErrorCode::Protocol,
            format!("bad hello: {e}"),
        )),
    }
}

fn authenticate<T: Timed>(
    reader: &mut FrameReader<T>,
    cx: &Ctx<'_>,
    key: &AuthKey,
    client_nonce: &Nonce,
) -> Result<(), Ending> {
    let challenge = nonce()?;
    send(cx, &hello_msg(Some(challenge)))?;
    let payload = read(reader, cx, "authentication")?;
    let proof = match decode_payload::<ClientMsg>(&payload) {
        Ok(ClientMsg::Auth { proof }) => proof,
        Ok(_) => {
            return Err(Ending::fatal(
                ErrorCode::Protocol,
                "expected Auth: this export requires a token",
            ));
        }
        Err(e) => {
            return Err(Ending::fatal(
                ErrorCode::Protocol,
                format!("bad authentication frame: {e}"),
            ));
        }
    };
    let addr = cx.ticket.key;
    // Checked again here, not only at accept: a burst of connections opened
    // before the first failure must not get a guess each.
    if let Some(left) = cx.gate.backoff_left(addr) {
        let refusal = WireError::new(ErrorCode::Busy, backoff_message(addr, left));
        let _ = cx.writer.send(&ServerMsg::AuthResult(Err(refusal)));
        return Err(Ending::lost("refused: authentication back-off"));
    }
    if key.verify(&challenge, client_nonce, &proof) {
        cx.gate.auth_ok(addr);
        return send(cx, &ServerMsg::AuthResult(Ok(())));
    }
    let delay = cx.gate.auth_failed(addr);
    let wait = if delay.is_zero() {
        String::new()
    } else {
        format!(
            "; {addr} must wait {:.1} s before trying again",
            delay.as_secs_f32()
        )
    };
    cx.gate.log.log(
        log::Level::Warn,
        addr,
        Kind::Auth,
        &format!("{}: authentication failed{wait}", cx.peer),
    );
    let refusal = WireError::new(ErrorCode::Access, "authentication failed");
    let _ = cx.writer.send(&ServerMsg::AuthResult(Err(refusal)));
    Err(Ending::lost("authentication failed"))
}

/// Reads one handshake frame under the handshake's limits.
fn read<T: Timed>(
    reader: &mut FrameReader<T>,
    cx: &Ctx<'_>,
    what: &str,
) -> Result<Vec<u8>, Ending> {
    let deadline = cx.ticket.accepted + cx.cfg.handshake();
    let when = Deadlines {
        start_by: deadline,
        complete_within: cx.cfg.handshake(),
        complete_by: Some(deadline),
    };
    reader
        .payload(cx.cfg.max_handshake_frame, when)
        .map_err(|e| match e {
            ReadFail::Closed => Ending::quiet(format!("closed before {what}")),
            ReadFail::Quiet | ReadFail::Stalled => Ending::fatal(
                ErrorCode::Protocol,
                format!(
                    "handshake not complete within {} s (no {what})",
                    cx.cfg.handshake().as_secs_f32()
                ),
            ),
            ReadFail::TooLarge { len, limit } => Ending::fatal(
                ErrorCode::Protocol,
                format!(
                    "bad {what} frame: frame of {len} bytes exceeds the {limit}-byte limit before authentication"
                ),
            ),
            ReadFail::Io(e) => Ending::lost(format!("read failed during {what}: {e}")),
        })
}

fn hello_msg(challenge: Option<Nonce>) -> ServerMsg {
    ServerMsg::Hello(ServerHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        auth_challenge: challenge,
    })
}

/// Tells a peer of another version what we speak, then ends: both sides
/// can then report the two versions instead of a vague protocol error. A
/// version-1 client decodes the whole hello before looking at its version,
/// so it gets one in the version-1 layout (saying nothing of the export).
fn mismatch(cx: &Ctx<'_>, theirs: u32) -> Ending {
    cx.gate.log.log(
        log::Level::Info,
        cx.ticket.key,
        Kind::Handshake,
        &format!(
            "{}: client speaks protocol {theirs}, server speaks {PROTOCOL_VERSION}",
            cx.peer
        ),
    );
    let _ = if theirs == 1 {
        cx.writer.send_raw(v1_layout_server_hello(PROTOCOL_VERSION))
    } else {
        cx.writer.send(&hello_msg(None))
    };
    Ending::quiet(format!(
        "protocol version mismatch (client {theirs}, server {PROTOCOL_VERSION})"
    ))
}

fn send(cx: &Ctx<'_>, msg: &ServerMsg) -> Result<(), Ending> {
    cx.writer
        .send(msg)
        .map_err(|_| Ending::lost("connection lost during handshake"))
}

fn nonce() -> Result<Nonce, Ending> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(|e| {
        Ending::fatal(
            ErrorCode::Io,
            format!("server has no randomness source: {e}"),
        )
    })?;
    Ok(n)
}
