//! A session's reader loop: each frame off the wire goes to its handler —
//! a job on the shared pool for most requests, the upload table for PUT
//! data — and the loop
//! never waits for a request to finish, so a large GET streaming on a worker
//! does not hold up the next LIST. The loop also decides when the client
//! has been quiet for too long or stalls in the middle of a frame.

use std::sync::Arc;
use std::time::Instant;

use rfmount_proto::{ClientMsg, ErrorCode, MAX_FRAME, Op, WireError, decode_payload};

use crate::config::ServerConfig;
use crate::conn::Conn;
use crate::ending::Ending;
use crate::frames::{Deadlines, FrameReader, ReadFail, Timed};
use crate::pool::Lane;
use crate::replies::{Label, refuse};
use crate::requests;
use crate::upload::{PutArgs, Uploads};

/// Serves frames until the connection ends; returns why.
pub(crate) fn read_loop<T: Timed>(
    reader: &mut FrameReader<T>,
    conn: &Arc<Conn>,
    uploads: &mut Uploads,
    cfg: &ServerConfig,
) -> Ending {
    loop {
        let when = Deadlines {
            start_by: Instant::now() + cfg.idle(),
            complete_within: cfg.frame(),
            complete_by: None,
        };
        let payload = match reader.payload(MAX_FRAME, when) {
            Ok(p) => p,
            Err(ReadFail::Closed) => return Ending::quiet("client closed the connection"),
            Err(ReadFail::Quiet) => {
                // A client waiting on a long GET is not idle.
                if conn.in_flight() > 0 {
                    continue;
                }
                return Ending::fatal(
                    ErrorCode::Protocol,
                    format!("idle for {} s", cfg.idle_secs()),
                );
            }
            Err(ReadFail::Io(e)) if conn.writer.is_broken() => {
                return Ending::lost(format!("connection lost: {e}"));
            }
            Err(ReadFail::Stalled) => {
                return Ending::fatal(
                    ErrorCode::Protocol,
                    format!(
                        "peer stalled in the middle of a frame (not complete within {} s)",
                        cfg.frame().as_secs_f32()
                    ),
                );
            }
            Err(ReadFail::Io(e)) => return Ending::lost(format!("read failed: {e}")),
            Err(ReadFail::TooLarge { len, limit }) => {
                return Ending::fatal(
                    ErrorCode::Protocol,
                    format!("bad frame: frame of {len} bytes exceeds the {limit}-byte limit"),
                );
            }
        };
        // The length prefix is 4 bytes.
        conn.traffic.note_in(payload.len() + 4);
        let msg: ClientMsg = match decode_payload(&payload) {
            Ok(m) => m,
            Err(e) => return Ending::fatal(ErrorCode::Protocol, format!("bad frame: {e}")),
        };
        drop(payload);
        let step = match msg {
            ClientMsg::Request { id, op } => {
                conn.traffic.note_request();
                admit(conn, uploads, cfg, id, op)
            }
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

/// Takes a request off the wire: refuses it when the connection has too
/// much in flight, starts an upload, or hands it to a worker.
///
/// # Errors
/// An [`Ending`] when the request breaks the protocol badly enough that the
/// connection cannot go on (an id reused while in flight).
pub(crate) fn admit(
    conn: &Arc<Conn>,
    uploads: &mut Uploads,
    cfg: &ServerConfig,
    id: u64,
    op: Op,
) -> Result<(), Ending> {
    if conn.is_active(id) || uploads.contains(id) {
        return Err(Ending::fatal(
            ErrorCode::Protocol,
            format!("request id {id} reused while still in flight"),
        ));
    }
    let label = Label::of(&op);
    if conn.in_flight() + uploads.len() >= cfg.max_in_flight as usize {
        let err = WireError::new(
            ErrorCode::Busy,
            format!("more than {} requests in flight", cfg.max_in_flight),
        );
        refuse(conn, id, &label, err);
        return Ok(());
    }
    if let Op::Put {
        path,
        size,
        mode,
        mtime,
        owner,
        ext,
    } = op
    {
        let put = PutArgs {
            path,
            size,
            mode,
            mtime,
            owner,
            ext,
        };
        uploads.start(conn, id, put);
        return Ok(());
    }
    // Every request starts on the quick lane; one that turns out to stream
    // moves itself to the transfer lane (see `requests`).
    if let Err(err) = conn.spawn_parkable(
        id,
        Lane::Quick,
        Box::new(move |conn, responder| requests::execute(conn, id, op, responder)),
    ) {
        refuse(conn, id, &label, err);
    }
    Ok(())
}
