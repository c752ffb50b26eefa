//! Waiting for uploads: `rfmount sync MOUNTPOINT`, and unmount of a
//! write-back mount.
//!
//! The kernel does not forward `syncfs(2)` (so neither `sync` nor
//! `sync -f`) to a FUSE daemon on `/dev/fuse`: it sends `FUSE_SYNCFS` only
//! to virtiofs. `rfmount sync` asks the mount over its status socket
//! instead, and returns once every file closed (or fsynced) so far is on
//! the server.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use log::info;
use rfmount_client::TcpRemote;

use crate::fs::RemoteFs;

/// How long a wait for uploads goes on without progress while the server
/// is unreachable or refuses them.
pub(crate) const DOWN_WAIT: Duration = Duration::from_secs(10);

/// Why a wait for uploads gave up.
pub(crate) enum Stuck {
    /// The server has been unreachable for [`DOWN_WAIT`].
    Unreachable(usize),
    /// The server answers, but refused every pending upload for
    /// [`DOWN_WAIT`] (a full disk, say); the last error.
    Failing(usize, String),
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stuck::Unreachable(n) => write!(
                f,
                "the server has been unreachable for {} s; {n} file(s) not uploaded yet",
                DOWN_WAIT.as_secs()
            ),
            Stuck::Failing(n, e) => write!(
                f,
                "uploads have been failing for {} s ({e}); {n} file(s) not uploaded yet",
                DOWN_WAIT.as_secs()
            ),
        }
    }
}

/// Waits until no closed file is owed to the server: for as long as the
/// uploads make progress (or one runs), and for [`DOWN_WAIT`] without
/// progress while the server is unreachable or refuses them.
pub(crate) fn wait_for_uploads(fs: &RemoteFs<TcpRemote>, remote: &TcpRemote) -> Result<(), Stuck> {
    let mut said = Instant::now();
    let mut retried = Instant::now();
    fs.retry_dirty();
    let mut best = usize::MAX;
    let mut progress = Instant::now();
    loop {
        let left = fs.pending_uploads();
        if left == 0 {
            return Ok(());
        }
        // A retry that fails at once shows as an upload too, briefly.
        let sending = remote.is_online() && !fs.activity().uploads().is_empty();
        if left < best || sending {
            best = best.min(left);
            progress = Instant::now();
        }
        if progress.elapsed() >= DOWN_WAIT {
            if !remote.is_online() {
                return Err(Stuck::Unreachable(left));
            }
            let failed = fs.failed_uploads();
            if let Some(f) = failed.first() {
                return Err(Stuck::Failing(left, format!("{}: {}", f.path, f.error)));
            }
            if !fs.config().writeback {
                return Err(Stuck::Failing(left, "the retries failed".into()));
            }
        }
        if said.elapsed() >= Duration::from_secs(5) {
            info!("waiting for {left} pending upload(s)");
            said = Instant::now();
        }
        if !fs.config().writeback && retried.elapsed() >= Duration::from_secs(1) {
            // A synchronous mount has no uploaders: what is pending failed
            // at close, and is tried again here.
            fs.retry_dirty();
            retried = Instant::now();
        }
        fs.wait_uploads(Duration::from_millis(100));
    }
}

/// The mount's side of `rfmount sync`: the answer to send back.
pub(crate) fn answer(fs: &RemoteFs<TcpRemote>, remote: &TcpRemote) -> String {
    match wait_for_uploads(fs, remote) {
        Ok(()) => "ok\n".into(),
        Err(stuck) => format!(
            "error: {stuck} (they stay in the cache and are uploaded when the server takes them)\n"
        ),
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "rfmount sync",
    about = "Wait until every file closed or fsynced on a mount is on the server"
)]
struct SyncArgs {
    /// Mount point.
    mountpoint: PathBuf,
}

/// `rfmount sync MOUNTPOINT` (argv without the program name and `sync`).
pub(crate) fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let args = match SyncArgs::try_parse_from(std::iter::once("rfmount sync".into()).chain(args)) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let mp = match args.mountpoint.canonicalize() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rfmount: error: {}: {e}", args.mountpoint.display());
            return ExitCode::from(2);
        }
    };
    let socket = crate::status::socket_path(&mp);
    let reply = UnixStream::connect(&socket).and_then(|mut c| {
        c.write_all(b"sync\n")?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    });
    match reply {
        Ok(r) if r.trim() == "ok" => ExitCode::SUCCESS,
        Ok(r) if r.is_empty() => {
            eprintln!("rfmount: error: the mount on {} exited", mp.display());
            ExitCode::FAILURE
        }
        Ok(r) => {
            eprintln!("rfmount: {}", r.trim_end());
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "rfmount: error: no rfmount of this user serves {}",
                mp.display()
            );
            ExitCode::FAILURE
        }
    }
}
