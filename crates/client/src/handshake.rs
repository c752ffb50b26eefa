//! The client's side of the handshake: our hello, the server's hello (its
//! frozen version prefix read before anything else is decoded), the token
//! proof when the server asks for one, and the server's welcome with the
//! export's details. Generic over the byte stream so that it does not care
//! what carries it.

use std::io::{Read, Write};

use rfmount_proto::{
    ClientHello, ClientMsg, ErrorCode, FrameError, MAGIC, PROTOCOL_VERSION, ServerHello, ServerMsg,
    Welcome, decode_payload, hello_version, new_nonce, read_frame, read_payload, write_frame,
};

use crate::connection::ConnectConfig;
use crate::error::RemoteError;

/// What the server said during the handshake.
pub(crate) struct Greeting {
    pub(crate) hello: ServerHello,
    pub(crate) welcome: Welcome,
}

/// Runs the handshake on a fresh connection to `cfg.addr`.
///
/// # Errors
/// `Protocol` for a peer that is not an rfserve of our version, `Auth` when
/// a token is missing or refused, `Service` when the server turns us away
/// (busy, back-off, a subdirectory it cannot serve), `Transport` when the
/// connection breaks.
pub(crate) fn run<R: Read, W: Write>(
    reader: &mut R,
    writer: &mut W,
    cfg: &ConnectConfig,
) -> Result<Greeting, RemoteError> {
    let addr = &cfg.addr;
    let client_nonce = new_nonce();
    let hello = ClientMsg::Hello(ClientHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        client_nonce,
        subdir: cfg.subdir.clone(),
        client_id: Some(cfg.client_id),
    });
    write_frame(writer, &hello).map_err(|e| RemoteError::from_frame(e, addr))?;
    let not_rfserve = || RemoteError::Protocol(format!("{addr} is not an rfserve server"));
    let payload = match read_payload(reader) {
        Ok(p) => p,
        Err(FrameError::TooLarge(_)) => return Err(not_rfserve()),
        Err(e) if crate::connection::is_timeout(&e) => {
            return Err(RemoteError::Transport(format!(
                "server {addr} did not answer the handshake within {} s",
                crate::connection::secs(cfg.connect_timeout)
            )));
        }
        Err(e) => return Err(RemoteError::from_frame(e, addr)),
    };
    let hello = match (
        hello_version(&payload),
        decode_payload::<ServerMsg>(&payload),
    ) {
        (Some(v), _) if v != PROTOCOL_VERSION => {
            return Err(RemoteError::Protocol(format!(
                "protocol version mismatch: server {addr} speaks protocol {v}, this client speaks {PROTOCOL_VERSION}"
            )));
        }
        (Some(_), Ok(ServerMsg::Hello(h))) => h,
        (None, Ok(ServerMsg::Fatal(e))) => return Err(RemoteError::Service(e)),
        _ => return Err(not_rfserve()),
    };
    if let Some(server_nonce) = hello.auth_challenge {
        let Some(key) = &cfg.token else {
            return Err(RemoteError::Auth(format!(
                "server {addr} requires a token (use --token-file)"
            )));
        };
        let proof = key.proof(&server_nonce, &client_nonce);
        write_frame(writer, &ClientMsg::Auth { proof })
            .map_err(|e| RemoteError::from_frame(e, addr))?;
        let refused = || RemoteError::Auth(format!("server {addr} refused the token"));
        match read_frame(reader) {
            Ok(ServerMsg::AuthResult(Ok(()))) => {}
            Ok(ServerMsg::AuthResult(Err(e))) if e.code == ErrorCode::Access => {
                return Err(refused());
            }
            // Turned away without a verdict (too many failures from here).
            Ok(ServerMsg::AuthResult(Err(e)) | ServerMsg::Fatal(e)) => {
                return Err(RemoteError::Service(e));
            }
            Ok(other) => {
                return Err(RemoteError::Protocol(format!(
                    "unexpected answer to authentication from {addr}: {}",
                    name(&other)
                )));
            }
            // The server closes the connection on a bad proof.
            Err(e) if e.is_transport() => return Err(refused()),
            Err(e) => return Err(RemoteError::from_frame(e, addr)),
        }
    }
    match read_frame(reader) {
        Ok(ServerMsg::Welcome(welcome)) => Ok(Greeting { hello, welcome }),
        Ok(ServerMsg::Fatal(e)) => Err(RemoteError::Service(e)),
        Ok(other) => Err(RemoteError::Protocol(format!(
            "unexpected {} frame from {addr} during the handshake",
            name(&other)
        ))),
        Err(e) => Err(RemoteError::from_frame(e, addr)),
    }
}

fn name(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Hello(_) => "Hello",
        ServerMsg::AuthResult(_) => "AuthResult",
        ServerMsg::Reply { .. } => "Reply",
        ServerMsg::Data { .. } => "Data",
        ServerMsg::DataEnd { .. } => "DataEnd",
        ServerMsg::Fatal(_) => "Fatal",
        ServerMsg::Welcome(_) => "Welcome",
        ServerMsg::Invalidate(_) => "Invalidate",
        ServerMsg::DataHole { .. } => "DataHole",
    }
}
