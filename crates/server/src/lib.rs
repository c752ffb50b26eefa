//! `rfserve`, the server side of rfmount: it accepts connections, runs the
//! handshake (version check, optional shared-secret authentication), and
//! answers requests from a [`Store`] — by default [`LocalStore`], a local
//! directory.
//!
//! # What this crate owns
//! - admission: a connection table with separate caps for connections still
//!   in the handshake (the oldest is closed to make room) and for sessions,
//!   a per-address cap, a handshake deadline that trickling cannot extend,
//!   and a back-off for addresses that fail to authenticate;
//! - sessions: a reader and a writer thread per connection; requests run
//!   on a bounded pool shared by all sessions, in two lanes (quick
//!   metadata requests; streaming transfers and commits) so that slow
//!   clients never take the workers others need, and a large GET never
//!   holds up a LIST for more than one chunk;
//!   uploads written to a temporary file and renamed into place only when
//!   complete, checksummed and fsynced;
//! - TLS: the certificate (given, or self-signed and kept in the state
//!   directory) and the handshake before the protocol's hello;
//! - policy: read-only exports, authentication, idle timeouts, limits on
//!   connections and requests in flight, the per-request log line;
//! - path confinement: [`LocalStore`] resolves every path beneath its root
//!   with `openat2(RESOLVE_BENEATH)`, so no `..`, absolute path or symlink
//!   can reach outside the export;
//! - the [`Store`] trait, the seam where another backend (an object store)
//!   plugs in without touching sessions or framing.
//!
//! # What it must not know
//! Anything of the client side: it depends on `rfmount-proto` for the wire
//! format and never on `rfmount-client` or `rfmount-mount`. Byte encoding
//! stays in `rfmount-proto`; sessions know only the [`Store`] trait, and a
//! store knows nothing of connections.
//!
//! # Running one in-process
//! ```no_run
//! use std::sync::Arc;
//! use rfmount_server::{LocalStore, Server, ServerConfig};
//! let store = LocalStore::open("/srv/share".as_ref())?;
//! let server = Server::bind("127.0.0.1:0", Arc::new(store), ServerConfig::default())?;
//! let addr = server.local_addr()?;
//! let stop = server.shutdown_handle();
//! let thread = std::thread::spawn(move || server.run());
//! // ... talk to `addr` ...
//! stop.shutdown();
//! thread.join().expect("server thread")?;
//! # Ok::<(), anyhow::Error>(())
//! ```
#![deny(missing_docs)]

mod callbacks;
mod changed;
pub mod cli;
mod config;
mod conn;
mod dispatch;
mod ending;
pub mod fdlimit;
mod frames;
mod handshake;
mod listener;
mod local;
mod lock_ids;
mod lock_ops;
mod locks;
mod peers;
mod pool;
mod ratelog;
mod replies;
mod requests;
mod session;
mod store;
pub mod tls;
mod traffic;
mod upload;
mod watch;
mod writer;

pub use config::{DEFAULT_TRANSFERS, ServerConfig};
pub use listener::{Server, ShutdownHandle};
pub use local::LocalStore;
pub use pool::default_workers;
pub use store::{Content, ContentRead, Listing, PendingPut, Store, StoreResult};
pub use tls::TlsServer;
pub use traffic::SessionsHandle;
