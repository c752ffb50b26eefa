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

/// How long a wait for uploads goes on while the server is unreachable.
pub(crate) const DOWN_WAIT: Duration = Duration::from_secs(10);

/// Waits until no closed file is owed to the server: for as long as the
/// server is reachable, and for `down_wait` while it is not. Returns how
/// many files are still pending (0: all delivered).
pub(crate) fn wait_for_uploads(
    fs: &RemoteFs<TcpRemote>,
    remote: &TcpRemote,
    down_wait: Duration,
) -> usize {
    let mut down_since: Option<Instant> = None;
    let mut said = Instant::now();
    let mut retried = Instant::now();
    fs.retry_dirty();
    loop {
        let left = fs.pending_uploads();
        if left == 0 {
            return 0;
        }
        if remote.is_online() {
            down_since = None;
        } else if down_since.get_or_insert_with(Instant::now).elapsed() >= down_wait {
            return left;
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
    match wait_for_uploads(fs, remote, DOWN_WAIT) {
        0 => "ok\n".into(),
        left => format!(
            "error: the server is unreachable; {left} file(s) not uploaded yet \
             (they stay in the cache and are uploaded when it is back)\n"
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
