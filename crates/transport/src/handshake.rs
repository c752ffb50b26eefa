//! The TLS handshake, run to completion on the socket before the
//! connection is split, under one deadline for the whole exchange (a peer
//! that trickles a byte at a time must not stretch it).

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How many of the peer's first bytes a failure keeps, to tell a peer
/// that does not speak TLS from one that does and refused (and to read a
/// plain refusal frame).
const KEEP: usize = 512;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed, timed out or closed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The TLS exchange itself failed (a certificate refused, garbage).
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The deadline passed.
    #[error("no TLS handshake within {0:.1} s")]
    Timeout(f32),
}

/// A failed handshake and the first bytes the peer sent, if any.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {error}")]
pub struct HandshakeFailure {
    /// What went wrong.
    pub error: HandshakeError,
    /// Up to the first 512 bytes received from the peer.
    pub first_bytes: Vec<u8>,
}

/// Runs the handshake of `conn` over `tcp` until it completes or
/// `deadline` passes. The socket's read and write timeouts are restored
/// afterwards, whatever happens. On a TLS error the alert rustls prepared is
/// sent (best effort), so the peer learns why.
///
/// # Errors
/// As [`HandshakeError`], with the bytes the peer sent.
pub fn handshake(
    conn: &mut rustls::Connection,
    tcp: &TcpStream,
    deadline: Instant,
) -> Result<(), HandshakeFailure> {
    let saved = (tcp.read_timeout(), tcp.write_timeout());
    let mut seen = Capture {
        tcp,
        first: Vec::new(),
    };
    let result = run(conn, &mut seen, deadline);
    if let Err(HandshakeError::Tls(_)) = &result {
        let _ = tcp.set_write_timeout(Some(Duration::from_millis(500)));
        while conn.wants_write() {
            if conn.write_tls(&mut { tcp }).is_err() {
                break;
            }
        }
    }
    if let (Ok(r), Ok(w)) = saved {
        let _ = tcp.set_read_timeout(r);
        let _ = tcp.set_write_timeout(w);
    }
    result.map_err(|error| HandshakeFailure {
        error,
        first_bytes: seen.first,
    })
}

fn run(
    conn: &mut rustls::Connection,
    seen: &mut Capture<'_>,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let total = deadline.saturating_duration_since(Instant::now());
    let timeout = || HandshakeError::Timeout(total.as_secs_f32());
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        if d.is_zero() { Err(timeout()) } else { Ok(d) }
    };
    let is_timeout = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    };
    while conn.is_handshaking() || conn.wants_write() {
        while conn.wants_write() {
            seen.tcp.set_write_timeout(Some(left()?))?;
            match conn.write_tls(&mut { seen.tcp }) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(timeout()),
                Err(e) => return Err(e.into()),
            }
        }
        if !conn.is_handshaking() {
            break;
        }
        seen.tcp.set_read_timeout(Some(left()?))?;
        match conn.read_tls(seen) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the TLS handshake",
                )
                .into());
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timeout()),
            Err(e) => return Err(e.into()),
        }
        conn.process_new_packets()?;
    }
    Ok(())
}

/// Reads from the socket and keeps a copy of the first bytes.
struct Capture<'a> {
    tcp: &'a TcpStream,
    first: Vec<u8>,
}

impl Read for Capture<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&mut { self.tcp }).read(buf)?;
        let room = KEEP.saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}
