//! The end-to-end harness: real `rfserve`, `rf` and `rfmount` processes on
//! temporary directories and ephemeral ports.
//!
//! Every guard here kills what it started by PID on drop and every wait has
//! a deadline, so a broken binary fails a test instead of hanging the suite.
//! When a test panics, the guards print the tail of their process's log to
//! stderr, which the test runner shows next to the failure.
//!
//! Summary:
//! - [`TestDir`]: a unique temporary directory with file helpers and
//!   deterministic random content ([`Rng`], [`TestDir::write_random`]).
//! - [`Server`]: `rfserve --root ROOT --listen 127.0.0.1:0 ...` with its port,
//!   its log ([`Server::log`], [`Server::count`]), [`Server::kill`] and
//!   [`Server::restart`]; [`Server::rf`] builds an `rf` command aimed at it.
//! - [`TestCommand`]: any command with a timeout; [`TestCommand::ok`],
//!   [`TestCommand::fails`], [`TestCommand::run`] panic with the command,
//!   its cwd, status, output and the server's log tail when something is off.
//! - [`Mount`]: `rfmount ADDR MNT -f --cache-dir ...` that is waited for in
//!   the mount table and unmounted on drop; [`require_fuse`] decides whether
//!   mount tests run (always in CI) or are skipped with a note.

#![allow(dead_code)] // Not every test module uses every helper.

use std::time::Duration;

/// How long a server or a mount may take to come up.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Default limit for one command run by a test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[macro_use]
#[path = "util/files.rs"]
mod files;
pub use files::*;

#[macro_use]
#[path = "util/tempdir.rs"]
mod tempdir;
pub use tempdir::*;

#[macro_use]
#[path = "util/command.rs"]
mod command;
pub use command::*;

#[macro_use]
#[path = "util/server.rs"]
mod server;
pub use server::*;

#[macro_use]
#[path = "util/mount.rs"]
mod mount;
pub use mount::*;

#[path = "util/uploads.rs"]
mod uploads;
pub use uploads::*;

#[path = "util/identity.rs"]
mod identity;
pub use identity::*;

#[macro_use]
#[path = "util/tls.rs"]
mod tls;
pub use tls::*;
#[path = "util/limits.rs"]
mod limits;
pub use limits::*;

#[path = "util/outage.rs"]
mod outage;
pub use outage::*;

#[path = "util/system.rs"]
mod system;
pub use system::*;

// Request counting and bounded waits of the callback tests.
#[path = "util/callbacks.rs"]
mod callbacks;
pub use callbacks::*;
#[path = "util/locks.rs"]
mod locks;
pub use locks::*;
#[path = "util/traffic.rs"]
mod traffic;
pub use traffic::*;
// Allocation, holes and bytes sent of sparse-file tests.
#[path = "util/allocation.rs"]
mod allocation;
pub use allocation::*;

// The requests rfserve logged, as `OP path`, for counting round trips.
#[path = "util/requests.rs"]
mod requests;
pub use requests::*;
// inotifywait on a mount, for the tests of what its watchers are told.
#[path = "util/inotify.rs"]
mod inotify;
pub use inotify::*;

// Streamed uploads seen from the server: the size of its upload temporary.
#[path = "util/streaming.rs"]
mod streaming;
pub use streaming::*;
// `rfmount status --json` and its counters.
// Two mounts of one export with one file open on each, for the lock tests.
#[path = "util/lock_pair.rs"]
mod lock_pair;
pub use lock_pair::*;
// Write-back tests: a tree to copy in, sync, the wait for delivery.
#[path = "util/writeback.rs"]
mod writeback;
pub use writeback::*;
// rfmount status --json of a mount, and the wait for it to be online again.
#[path = "util/status.rs"]
mod status;
pub use status::*;
// A process held stopped (SIGSTOP) while a guard lives; a call bounded on its own thread.
#[path = "util/stopped.rs"]
mod stopped;
pub use stopped::*;
