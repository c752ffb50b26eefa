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
//!   session, signals and the retry loop for failed uploads; with it
//!   [`known_exports`] (so it can start offline from a cache), `own_mount`
//!   (telling its own FUSE connection from whatever else is mounted there),
//!   `cli_options` (sorting `-o` as mount(8) and fstab pass them),
//!   `kernel_mount` (the mount as type `fuse.rfmount`), `logging`, and
//!   `status` (`rfmount status` over a private Unix socket) with
//!   [`activity`] (uploads in progress, retries, failures), and
//!   [`through_mount`] (removals through the mount point, which the kernel
//!   reports to inotify watchers).
#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod activity;
mod caller_fds;
pub mod cli;
mod cli_options;
mod daemon;
pub mod data_cache;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod idmap;
pub mod inodes;
mod kernel_mount;
pub mod known_exports;
mod logging;
pub mod meta_cache;
pub mod options;
mod own_mount;
mod setgid_rule;
mod status;
mod sync;
pub mod through_mount;
pub mod trust;

pub use error::{FsError, FsResult};
pub use fs::RemoteFs;
pub use options::MountConfig;
