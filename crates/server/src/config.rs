//! Policy knobs of a running server, shared read-only by every session.

use std::time::Duration;

use rfmount_proto::AuthKey;

use crate::tls::TlsServer;

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
    /// Refuse connections beyond this many with `Busy`.
    pub max_connections: usize,
    /// Requests one connection may have in flight; more get `Busy`.
    pub max_in_flight: u32,
    /// How long one frame may wait for a peer that stopped reading.
    pub write_timeout: Duration,
    /// Speak TLS with this certificate; plain TCP when `None`.
    pub tls: Option<TlsServer>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            read_only: false,
            auth: None,
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            max_in_flight: 64,
            write_timeout: Duration::from_secs(60),
            tls: None,
        }
    }
}

/// The hello must arrive within this, or within the idle timeout if shorter:
/// a connection that never speaks should not hold a slot for five minutes.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerConfig {
    pub(crate) fn idle_secs(&self) -> u32 {
        u32::try_from(self.idle_timeout.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    /// The idle timeout as a socket timeout (never zero, which std rejects).
    pub(crate) fn idle(&self) -> Duration {
        self.idle_timeout.max(Duration::from_millis(1))
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        HANDSHAKE_TIMEOUT.min(self.idle())
    }
}
