//! Policy knobs of a running server, shared read-only by every session.

use std::time::Duration;

use rfmount_proto::{AuthKey, MAX_HELLO};

use crate::tls::TlsServer;

/// Default cap on transfer threads: streaming requests in progress at
/// once across all sessions; more wait in the lane's queue.
pub const DEFAULT_TRANSFERS: usize = 128;

/// How a [`crate::Server`] treats its clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Refuse every change with `ReadOnly`.
    pub read_only: bool,
    /// Require clients to prove they hold this shared secret.
    pub auth: Option<AuthKey>,
    /// Close a connection that sends nothing for this long while no request
    /// of it is being worked on. Whole seconds, at least one.
    pub idle_timeout: Duration,
    /// Sessions (connections past the handshake) served at once; more are
    /// refused with `Busy`. Connections still in the handshake do not count.
    pub max_connections: usize,
    /// Connections still in the handshake at once. At the cap the oldest
    /// handshake of the address holding the most is closed to make room, so
    /// that a flood of silent connections churns through itself instead of
    /// keeping a real client out.
    pub max_handshakes: usize,
    /// Connections from one address (an IPv6 /64 counts as one), sessions
    /// and handshakes together. At the cap the address's oldest handshake
    /// is closed to make room; when all of them are sessions, the new one
    /// is refused with `Busy`.
    pub max_per_address: usize,
    /// The whole handshake (hello, authentication) must be over this long
    /// after the connection was accepted, however the bytes trickle in.
    pub handshake_timeout: Duration,
    /// Largest frame accepted before the handshake is over, in bytes.
    pub max_handshake_frame: usize,
    /// A frame that has started to arrive must be complete within this
    /// (or the idle timeout, if shorter).
    pub frame_timeout: Duration,
    /// After its fourth failed authentication in a row, an address may not
    /// try again for this long, doubled with every further failure up to
    /// [`ServerConfig::auth_backoff_max`].
    pub auth_backoff: Duration,
    /// The longest back-off after failed authentications.
    pub auth_backoff_max: Duration,
    /// Requests one connection may have in flight; more get `Busy`.
    pub max_in_flight: u32,
    /// How long one frame may wait for a peer that stopped reading.
    pub write_timeout: Duration,
    /// Speak TLS with this certificate; plain TCP when `None`.
    pub tls: Option<TlsServer>,
    /// Threads for quick requests (metadata, one-frame answers), shared by
    /// every session. At least one.
    pub workers: usize,
    /// Threads for streaming requests (GET, LIST) and upload commits,
    /// shared by every session; a slow client holds one of these, never a
    /// quick worker. At least one.
    pub max_transfers: usize,
    /// How long the locks of a client whose connection died are kept for
    /// it to reconnect and take them over; zero releases them at once.
    pub lock_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            read_only: false,
            auth: None,
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            max_handshakes: 256,
            max_per_address: 128,
            handshake_timeout: Duration::from_secs(10),
            max_handshake_frame: MAX_HELLO,
            frame_timeout: Duration::from_secs(60),
            auth_backoff: Duration::from_millis(500),
            auth_backoff_max: Duration::from_secs(60),
            max_in_flight: 64,
            write_timeout: Duration::from_secs(60),
            tls: None,
            workers: crate::pool::default_workers(),
            max_transfers: DEFAULT_TRANSFERS,
            lock_grace: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    pub(crate) fn idle_secs(&self) -> u32 {
        u32::try_from(self.idle_timeout.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    /// The idle timeout, never zero.
    pub(crate) fn idle(&self) -> Duration {
        self.idle_timeout.max(Duration::from_millis(1))
    }

    /// The handshake deadline: also never longer than the idle timeout, so a
    /// connection that never speaks never outlives one that went quiet.
    pub(crate) fn handshake(&self) -> Duration {
        self.handshake_timeout
            .min(self.idle())
            .max(Duration::from_millis(1))
    }

    /// How long one frame may take from its first byte to its last.
    pub(crate) fn frame(&self) -> Duration {
        self.frame_timeout
            .min(self.idle())
            .max(Duration::from_millis(1))
    }
}
