//! Reading client frames against the clock.
//!
//! A socket timeout alone restarts with every byte, so a peer that sends one
//! byte every few seconds could hold a connection forever. Here every wait
//! has an absolute deadline: the first byte of a frame must come before one
//! (the idle timeout, or the end of the handshake), and once it has come the
//! whole frame must be complete before another (the frame timeout, or the
//! end of the handshake). The announced length is checked against the
//! caller's limit before anything is allocated.

use std::io::{self, BufReader, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A byte stream whose reads can be bounded in time.
pub(crate) trait Timed: Read {
    /// Bounds the next blocking read (never called with zero).
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
}

/// A connection's socket, shared by its reader, its writer and the
/// connection table: one descriptor per connection.
pub(crate) struct Sock(pub(crate) Arc<TcpStream>);

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Timed for Sock {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.0.set_read_timeout(Some(timeout))
    }
}

/// Why no frame was read.
#[derive(Debug)]
pub(crate) enum ReadFail {
    /// The peer closed cleanly between frames.
    Closed,
    /// Nothing of a new frame arrived before the first deadline.
    Quiet,
    /// A frame started but was not complete by its deadline.
    Stalled,
    /// The announced length is above the limit.
    TooLarge { len: usize, limit: usize },
    /// The transport failed, or the peer closed inside a frame.
    Io(io::Error),
}

/// When the parts of one frame must have arrived.
#[derive(Clone, Copy)]
pub(crate) struct Deadlines {
    /// The first byte.
    pub(crate) start_by: Instant,
    /// The rest, counted from the first byte.
    pub(crate) complete_within: Duration,
    /// The rest, at the latest.
    pub(crate) complete_by: Option<Instant>,
}

pub(crate) struct FrameReader<T: Timed> {
    inner: BufReader<T>,
}

impl<T: Timed> FrameReader<T> {
    pub(crate) fn new(inner: T) -> Self {
        FrameReader {
            inner: BufReader::new(inner),
        }
    }

    /// Reads one frame's payload, at most `limit` bytes long.
    pub(crate) fn payload(&mut self, limit: usize, when: Deadlines) -> Result<Vec<u8>, ReadFail> {
        let mut len = [0u8; 4];
        let first = match self.read_by(&mut len, when.start_by) {
            Ok(0) => return Err(ReadFail::Closed),
            Ok(n) => n,
            Err(Timeout) => return Err(ReadFail::Quiet),
            Err(Failed(e)) => return Err(ReadFail::Io(e)),
        };
        let started = Instant::now();
        let mut by = started + when.complete_within;
        if let Some(hard) = when.complete_by {
            by = by.min(hard);
        }
        self.fill(&mut len[first..], by)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > limit {
            return Err(ReadFail::TooLarge { len, limit });
        }
        let mut payload = vec![0u8; len];
        self.fill(&mut payload, by)?;
        Ok(payload)
    }

    fn fill(&mut self, mut buf: &mut [u8], by: Instant) -> Result<(), ReadFail> {
        while !buf.is_empty() {
            match self.read_by(buf, by) {
                Ok(0) => return Err(ReadFail::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => buf = &mut buf[n..],
                Err(Timeout) => return Err(ReadFail::Stalled),
                Err(Failed(e)) => return Err(ReadFail::Io(e)),
            }
        }
        Ok(())
    }

    /// One read that gives up at `by`.
    fn read_by(&mut self, buf: &mut [u8], by: Instant) -> Result<usize, Wait> {
        loop {
            // Buffered bytes need no wait (and no system call).
            if self.inner.buffer().is_empty() {
                let left = by.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Timeout);
                }
                self.inner
                    .get_ref()
                    .set_read_timeout(left.max(Duration::from_millis(1)))
                    .map_err(Failed)?;
            }
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Look at the clock again: the timeout may round early.
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(Failed(e)),
            }
        }
    }
}

enum Wait {
    Timeout,
    Failed(io::Error),
}
use Wait::{Failed, Timeout};

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, FrameReader<Sock>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, FrameReader::new(Sock(Arc::new(s))))
    }

    fn within(d: Duration) -> Deadlines {
        Deadlines {
            start_by: Instant::now() + d,
            complete_within: d,
            complete_by: None,
        }
    }

    #[test]
    fn a_trickling_frame_is_cut_off_at_its_deadline() {
        let (mut c, mut r) = pair();
        let t = std::thread::spawn(move || {
            // One byte every 100 ms: each read succeeds, the frame never ends.
            for b in [10u8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8] {
                if c.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let got = r.payload(100, within(Duration::from_millis(350)));
        assert!(matches!(got, Err(ReadFail::Stalled)), "{got:?}");
        assert!(
            start.elapsed() < Duration::from_millis(700),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
    }

    #[test]
    fn length_is_checked_before_reading_the_payload() {
        let (mut c, mut r) = pair();
        c.write_all(&100_000u32.to_le_bytes()).unwrap();
        let got = r.payload(8192, within(Duration::from_secs(5)));
        assert!(
            matches!(
                got,
                Err(ReadFail::TooLarge {
                    len: 100_000,
                    limit: 8192
                })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn quiet_closed_and_complete_frames() {
        let (mut c, mut r) = pair();
        let got = r.payload(100, within(Duration::from_millis(100)));
        assert!(matches!(got, Err(ReadFail::Quiet)), "{got:?}");
        c.write_all(&[3, 0, 0, 0, 7, 8, 9]).unwrap();
        let got = r.payload(100, within(Duration::from_secs(5))).unwrap();
        assert_eq!(got, [7, 8, 9]);
        drop(c);
        let got = r.payload(100, within(Duration::from_secs(5)));
        assert!(matches!(got, Err(ReadFail::Closed)), "{got:?}");
    }
}
