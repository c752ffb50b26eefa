//! `rfmount`: mounts an rfserve export with FUSE so that ordinary tools work
//! on it.
//!
//! - [`fs`] is the filesystem core: every operation as a plain method over
//!   a [`rfmount_client::Remote`]. It never opens a socket and never sees a
//!   FUSE type, so tests drive it with an in-memory remote.
//! - [`fuse`] adapts the core to `fuser`: unpack, call, reply.
//! - [`data_cache`] is the on-disk whole-file cache (bounded, unsent changes
//!   included; keyed by export id; dirty files kept until uploaded, and
//!   files left half-written by a crash recovered beside the original),
//!   [`meta_cache`] the
//!   short-lived attribute and listing caches, [`inodes`] the inode table.
//! - [`cli`] is the `rfmount` command: argument checks, daemonising, the
//!   session, signals and the retry loop for failed uploads;
//!   [`known_exports`] lets it start offline from a cache, and `own_mount`
//!   tells its own FUSE connection from whatever else is mounted there.
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod cli;
mod daemon;
pub mod data_cache;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod inodes;
pub mod known_exports;
pub mod meta_cache;
pub mod options;
mod own_mount;

pub use error::{FsError, FsResult};
pub use fs::RemoteFs;
pub use options::MountConfig;
