//! What each session has done: requests taken, bytes in and out, age.
//! The close line of a session reports its own; SIGUSR1 asks for every
//! live session's, through a [`SessionsHandle`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Counters of one session.
pub(crate) struct Traffic {
    peer: SocketAddr,
    started: Instant,
    requests: AtomicU64,
    /// Frame bytes read from the peer (length prefixes included).
    bytes_in: AtomicU64,
    /// Frame bytes written to the peer; shared with its writer.
    bytes_out: Arc<AtomicU64>,
}

impl Traffic {
    pub(crate) fn note_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_in(&self, frame_bytes: usize) {
        self.bytes_in
            .fetch_add(frame_bytes as u64, Ordering::Relaxed);
    }

    /// `N requests, X bytes in, Y bytes out`.
    pub(crate) fn counts(&self) -> String {
        let n = self.requests.load(Ordering::Relaxed);
        format!(
            "{n} request{}, {} bytes in, {} bytes out",
            if n == 1 { "" } else { "s" },
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed)
        )
    }
}

/// The live sessions of one server.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<BTreeMap<u64, Arc<Traffic>>>,
    next: AtomicU64,
}

/// A session's place in [`Sessions`]; dropping it removes the session.
pub(crate) struct Registered<'a> {
    sessions: &'a Sessions,
    id: u64,
    pub(crate) traffic: Arc<Traffic>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.sessions.live.lock().remove(&self.id);
    }
}

impl Sessions {
    /// Registers a session from `peer` whose writer counts its bytes in
    /// `bytes_out`.
    pub(crate) fn register(&self, peer: SocketAddr, bytes_out: Arc<AtomicU64>) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let traffic = Arc::new(Traffic {
            peer,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out,
        });
        self.live.lock().insert(id, traffic.clone());
        Registered {
            sessions: self,
            id,
            traffic,
        }
    }

    fn summary(&self) -> Vec<String> {
        self.live
            .lock()
            .values()
            .map(|t| {
                format!(
                    "session from {}: {:.1} s old, {}",
                    t.peer,
                    t.started.elapsed().as_secs_f32(),
                    t.counts()
                )
            })
            .collect()
    }
}

/// Reports a running server's sessions; cheap to clone, usable from a
/// signal-handling thread.
#[derive(Clone)]
pub struct SessionsHandle(pub(crate) Arc<Sessions>);

impl std::fmt::Debug for SessionsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsHandle").finish_non_exhaustive()
    }
}

impl SessionsHandle {
    /// One line per live session: peer, age, requests, bytes in and out.
    pub fn summary(&self) -> Vec<String> {
        self.0.summary()
    }

    /// Logs [`Self::summary`] at info level, headed by the count.
    pub fn log_summary(&self) {
        let lines = self.summary();
        log::info!("{} live session(s)", lines.len());
        for l in lines {
            log::info!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_counts_until_it_ends() {
        let s = Sessions::default();
        let out = Arc::new(AtomicU64::new(0));
        let peer: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let reg = s.register(peer, out.clone());
        reg.traffic.note_request();
        reg.traffic.note_in(10);
        out.fetch_add(7, Ordering::Relaxed);
        assert_eq!(reg.traffic.counts(), "1 request, 10 bytes in, 7 bytes out");
        let lines = s.summary();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("session from 127.0.0.1:5: "),
            "{lines:?}"
        );
        drop(reg);
        assert!(s.summary().is_empty());
    }
}
