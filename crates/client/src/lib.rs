//! The client side of rfmount: one TCP connection (plain or TLS, see
//! [`tls`]) with the handshake and request multiplexing ([`Connection`]),
//! the [`Remote`] API that the mount and the `rf` command program against,
//! [`TcpRemote`] (the real one, which reconnects), and the `rf` command
//! itself ([`cli`]).
//!
//! The [`Remote`] trait returns `rfmount_proto` types only: no FUSE types, no
//! sockets. Its errors say whether the server refused ([`RemoteError::Service`],
//! map it to an errno) or could not be reached ([`RemoteError::Transport`],
//! keep data and retry later).
//!
//! ```no_run
//! use rfmount_client::{Remote, TcpRemote, ConnectConfig};
//! use rfmount_proto::RelPath;
//! let remote = TcpRemote::connect(ConnectConfig::new("127.0.0.1:9500")).unwrap();
//! for e in remote.list(&RelPath::root()).unwrap() {
//!     println!("{} {}", e.name, e.meta.size);
//! }
//! ```
#![deny(missing_docs)]

pub mod callbacks;
pub mod cli;
mod connection;
mod error;
mod handshake;
mod layout;
#[cfg(test)]
mod liveness_tests;
#[cfg(any(test, feature = "mock"))]
#[doc(hidden)]
pub mod mock;
mod remote;
pub mod report;
pub mod source;
pub mod stats;
mod tcp;
pub mod tls;

pub use connection::{ConnectConfig, Connection, DEFAULT_TIMEOUT};
pub use error::RemoteError;
pub use remote::{
    ExportInfo, GetOutcome, GetSink, LockRequest, PutOptions, Remote, Uploaded, write_zeros,
};
pub use source::{Source, SourceError};
pub use stats::{OpStats, RequestStats};
pub use tcp::{Health, ReconnectHook, TcpRemote};
pub use tls::{TlsArgs, TlsOptions};
