//! A connection split into a reading and a writing half.
//!
//! Both halves share the socket (one descriptor: a server counts its
//! connections against the descriptor limit). TLS: both halves share the
//! rustls state behind one mutex, held only while bytes already in memory
//! are encrypted or decrypted. The reader reads ciphertext from the socket
//! with the lock released and feeds it in under the lock; a writer encrypts
//! under the lock and writes the ciphertext with it released, holding only
//! the send lock that keeps records in order on the wire.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// Ciphertext read from the socket per system call.
const RAW_READ: usize = 64 * 1024;

/// The receiving half of a connection.
pub struct ReadHalf {
    tcp: Arc<TcpStream>,
    tls: Option<TlsRead>,
    /// Bytes read from the socket through this half.
    consumed: u64,
}

/// The sending half of a connection; `&WriteHalf` writes too, so several
/// threads can share one (each `write` call sends its bytes whole, in
/// order with other calls).
pub struct WriteHalf {
    tcp: Arc<TcpStream>,
    tls: Option<TlsWrite>,
}

struct TlsRead {
    conn: Arc<Mutex<rustls::Connection>>,
    raw: Box<[u8]>,
    /// Ciphertext read but not yet taken by rustls: `raw[start..end]`.
    start: usize,
    end: usize,
}

struct TlsWrite {
    conn: Arc<Mutex<rustls::Connection>>,
    /// The send lock, with the buffer ciphertext is staged in.
    wire: Mutex<Vec<u8>>,
}

/// Splits a plain TCP connection. The socket may be shared with others
/// (one that shuts it down wakes both halves).
///
/// # Errors
/// None today; kept so that both kinds split alike.
pub fn plain(tcp: impl Into<Arc<TcpStream>>) -> io::Result<(ReadHalf, WriteHalf)> {
    let tcp = tcp.into();
    let reader = ReadHalf {
        tcp: Arc::clone(&tcp),
        tls: None,
        consumed: 0,
    };
    Ok((reader, WriteHalf { tcp, tls: None }))
}

/// Splits a TLS connection whose handshake has completed (see
/// [`crate::handshake`]). The socket may be shared with others (one that
/// shuts it down wakes both halves).
///
/// # Errors
/// None today; kept so that both kinds split alike.
pub fn tls(
    tcp: impl Into<Arc<TcpStream>>,
    conn: impl Into<rustls::Connection>,
) -> io::Result<(ReadHalf, WriteHalf)> {
    let tcp = tcp.into();
    let conn = Arc::new(Mutex::new(conn.into()));
    let reader = ReadHalf {
        tcp: Arc::clone(&tcp),
        tls: Some(TlsRead {
            conn: Arc::clone(&conn),
            raw: vec![0u8; RAW_READ].into_boxed_slice(),
            start: 0,
            end: 0,
        }),
        consumed: 0,
    };
    let writer = WriteHalf {
        tcp,
        tls: Some(TlsWrite {
            conn,
            wire: Mutex::new(Vec::new()),
        }),
    };
    Ok((reader, writer))
}

impl ReadHalf {
    /// Sets the socket's read timeout: a read that gets no bytes from the
    /// peer for this long fails with `WouldBlock` / `TimedOut`, as on a
    /// plain socket. The socket option is shared with the writing half.
    ///
    /// # Errors
    /// As `setsockopt(2)`; zero is refused.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// Shuts the socket down, which also wakes a thread blocked on it.
    ///
    /// # Errors
    /// As `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// True when the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bytes read from the socket so far, when every one of them has
    /// been handed out by `read` (nothing buffered here or in TLS): the
    /// caller can then tell, from the socket's count of bytes received,
    /// whether anything arrived that it has not seen.
    pub fn drained(&self) -> Option<u64> {
        match &self.tls {
            None => Some(self.consumed),
            Some(tls) => tls.drained().then_some(self.consumed),
        }
    }

    /// The socket, for its counters.
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    /// Reads exactly `len` bytes into a new buffer. On a plain connection
    /// they go straight into its unused capacity: zeroing every chunk of
    /// a download first cost as much CPU as receiving it.
    ///
    /// # Errors
    /// As `read`; `UnexpectedEof` when the peer closes before `len` bytes.
    pub fn read_vec(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if self.tls.is_some() {
            let mut buf = vec![0u8; len];
            self.read_exact(&mut buf)?;
            return Ok(buf);
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*self.tcp);
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        while buf.len() < len {
            let got = buf.len();
            // SAFETY: the destination is the vector's spare capacity
            // (len - got bytes from its end); recv writes at most that many.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().add(got).cast(), len - got, 0) };
            match usize::try_from(n) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    // SAFETY: recv initialised exactly n more bytes.
                    unsafe { buf.set_len(got + n) };
                    self.consumed += n as u64;
                }
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Ok(buf)
    }
}

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => {
                let n = (&*self.tcp).read(buf)?;
                self.consumed += n as u64;
                Ok(n)
            }
            Some(tls) => tls.read(&self.tcp, buf, &mut self.consumed),
        }
    }
}

impl TlsRead {
    /// No ciphertext waiting here and no plaintext inside rustls.
    fn drained(&self) -> bool {
        if self.start != self.end {
            return false;
        }
        let mut conn = self.conn.lock();
        conn.process_new_packets()
            .is_ok_and(|s| s.plaintext_bytes_to_read() == 0)
    }

    fn read(&mut self, tcp: &TcpStream, buf: &mut [u8], consumed: &mut u64) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut conn = self.conn.lock();
                loop {
                    match conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        // A TCP close without close_notify: the frame layer
                        // notices a frame cut short, so treat it as a close.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                    if self.start == self.end {
                        break;
                    }
                    let mut pending = &self.raw[self.start..self.end];
                    let took = conn.read_tls(&mut pending)?;
                    self.start += took;
                    conn.process_new_packets().map_err(tls_error)?;
                }
            }
            // Blocking read with the lock released; the socket's read
            // timeout applies exactly as on a plain connection.
            let n = (&mut { tcp }).read(&mut self.raw)?;
            *consumed += n as u64;
            (self.start, self.end) = (0, n);
            if n == 0 {
                let mut conn = self.conn.lock();
                conn.read_tls(&mut io::empty())?;
                conn.process_new_packets().map_err(tls_error)?;
            }
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl WriteHalf {
    /// Sets the socket's write timeout: a write that cannot hand its bytes
    /// to the kernel for this long fails, as on a plain socket.
    ///
    /// # Errors
    /// As `setsockopt(2)`; zero is refused.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(timeout)
    }

    /// Shuts the socket down, which also wakes a thread blocked on it.
    ///
    /// # Errors
    /// As `shutdown(2)`.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// The socket, for options such as `TCP_NODELAY`. Writing to it
    /// directly would corrupt a TLS stream.
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            return (&*self.tcp).write_all(buf);
        };
        let mut wire = tls.wire.lock();
        let mut rest = buf;
        loop {
            {
                let mut conn = tls.conn.lock();
                if !rest.is_empty() {
                    // Accepts up to rustls's buffer limit (64 KiB) at a time.
                    let n = conn.writer().write(rest)?;
                    rest = &rest[n..];
                }
                // Also carries what the reader queued (a key update).
                while conn.wants_write() {
                    conn.write_tls(&mut *wire)?;
                }
            }
            if wire.is_empty() && rest.is_empty() {
                return Ok(());
            }
            let sent = (&*self.tcp).write_all(&wire);
            wire.clear();
            sent?;
        }
    }
}

impl Write for &WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for WriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.send(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
