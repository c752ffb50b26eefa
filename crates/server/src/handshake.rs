//! The first frames of a connection: the client's hello, our hello, and the
//! shared-secret challenge when a token is configured.
//!
//! The client's hello is decoded in two steps. A peer of another protocol
//! version may send a hello this build cannot decode in full, but its first
//! fields (variant 0, magic, version) are frozen forever; reading those from
//! the raw bytes lets us tell it which version we speak instead of calling
//! its hello garbage.

use std::io::{self, Read};

use rfmount_proto::{
    AuthKey, CHUNK_SIZE, ClientMsg, ErrorCode, FrameError, Limits, MAGIC, MAX_FRAME, Nonce,
    PROTOCOL_VERSION, ServerHello, ServerMsg, WireError, decode_payload, read_frame, read_payload,
};

use crate::config::ServerConfig;
use crate::session::{Conn, Ending};

/// Runs the handshake; `Ok` means requests may follow.
///
/// # Errors
/// How the connection ends when the peer is not a client we can serve.
pub(crate) fn run<R: Read>(reader: &mut R, conn: &Conn, cfg: &ServerConfig) -> Result<(), Ending> {
    let payload = read_payload(reader).map_err(|e| read_ending(&e, cfg, "hello"))?;
    let hello = match decode_payload::<ClientMsg>(&payload) {
        Ok(ClientMsg::Hello(hello)) => hello,
        Ok(_) => {
            return Err(Ending::fatal(
                ErrorCode::Protocol,
                "expected Hello as the first frame",
            ));
        }
        Err(e) => match frozen_version(&payload) {
            Some(v) if v != PROTOCOL_VERSION => return Err(mismatch(conn, cfg, v)),
            _ => {
                return Err(Ending::fatal(
                    ErrorCode::Protocol,
                    format!("bad hello: {e}"),
                ));
            }
        },
    };
    if hello.magic != MAGIC {
        return Err(Ending::fatal(
            ErrorCode::Protocol,
            "bad magic: not an rfmount client",
        ));
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(mismatch(conn, cfg, hello.version));
    }
    let Some(key) = &cfg.auth else {
        send(conn, server_hello(conn, cfg, None))?;
        return Ok(());
    };
    let challenge = nonce()?;
    send(conn, server_hello(conn, cfg, Some(challenge)))?;
    let proof = match read_frame(reader) {
        Ok(ClientMsg::Auth { proof }) => proof,
        Ok(_) => {
            return Err(Ending::fatal(
                ErrorCode::Protocol,
                "expected Auth: this export requires a token",
            ));
        }
        Err(e) => return Err(read_ending(&e, cfg, "authentication")),
    };
    verify(conn, key, &challenge, &hello.client_nonce, &proof)
}

fn verify(
    conn: &Conn,
    key: &AuthKey,
    server_nonce: &Nonce,
    client_nonce: &Nonce,
    proof: &[u8; 32],
) -> Result<(), Ending> {
    if key.verify(server_nonce, client_nonce, proof) {
        return send(conn, ServerMsg::AuthResult(Ok(())));
    }
    log::warn!("{}: authentication failed", conn.peer);
    let refusal = WireError::new(ErrorCode::Access, "authentication failed");
    let _ = conn.writer.send(&ServerMsg::AuthResult(Err(refusal)));
    Err(Ending {
        reason: "authentication failed".into(),
        fatal: None,
        abort: true,
    })
}

fn server_hello(conn: &Conn, cfg: &ServerConfig, challenge: Option<Nonce>) -> ServerMsg {
    ServerMsg::Hello(ServerHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        export_id: conn.store.export_id(),
        read_only: cfg.read_only,
        limits: Limits {
            max_frame: MAX_FRAME as u32,
            chunk_size: CHUNK_SIZE as u32,
            max_in_flight: cfg.max_in_flight,
            idle_timeout_secs: cfg.idle_secs(),
        },
        auth_challenge: challenge,
    })
}

/// Tells a peer of another version what we speak, then ends: both sides
/// can then report the two versions instead of a vague protocol error.
fn mismatch(conn: &Conn, cfg: &ServerConfig, theirs: u32) -> Ending {
    log::info!(
        "{}: client speaks protocol {theirs}, server speaks {PROTOCOL_VERSION}",
        conn.peer
    );
    let _ = conn.writer.send(&server_hello(conn, cfg, None));
    Ending::quiet(format!(
        "protocol version mismatch (client {theirs}, server {PROTOCOL_VERSION})"
    ))
}

fn send(conn: &Conn, msg: ServerMsg) -> Result<(), Ending> {
    conn.writer.send(&msg).map_err(|_| Ending {
        reason: "connection lost during handshake".into(),
        fatal: None,
        abort: true,
    })
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

/// The version in a hello's frozen prefix: variant index 0 (`u32`), the
/// magic, then the version (`u32`), all little-endian.
fn frozen_version(payload: &[u8]) -> Option<u32> {
    let variant = payload.get(0..4)?;
    let magic = payload.get(4..8)?;
    let version = payload.get(8..12)?;
    if variant != [0, 0, 0, 0] || magic != MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(version.try_into().ok()?))
}

fn read_ending(e: &FrameError, cfg: &ServerConfig, what: &str) -> Ending {
    match e {
        FrameError::Closed => Ending::quiet(format!("closed before {what}")),
        FrameError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ending::fatal(
                ErrorCode::Protocol,
                format!(
                    "no {what} within {} s",
                    cfg.handshake_timeout().as_secs_f32()
                ),
            )
        }
        FrameError::Io(io) => Ending {
            reason: format!("read failed during {what}: {io}"),
            fatal: None,
            abort: true,
        },
        other => Ending::fatal(ErrorCode::Protocol, format!("bad {what} frame: {other}")),
    }
}
