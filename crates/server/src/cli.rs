//! The `rfserve` command line: parse, check, bind, announce, serve.
//!
//! stdout carries one line, `rfserve listening on ADDR:PORT`, so scripts
//! and tests can read the bound port, and with `--tls` a second one,
//! `rfserve certificate sha256 HEX`, the fingerprint clients can pin;
//! everything else is logged to stderr. Bad arguments exit with status 2 and one `rfserve: error:` line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rfmount_proto::{AuthKey, DEFAULT_PORT};

use crate::{LocalStore, Server, ServerConfig, TlsServer};

/// Serve a directory to rfmount and rf clients.
#[derive(Debug, Parser)]
#[command(
    name = "rfserve",
    version,
    about = "Export a directory over TCP to rfmount and rf clients",
    long_about = None,
    after_help = "Prints `rfserve listening on ADDR:PORT` on stdout once it accepts \
                  connections; logs go to stderr (level from RUST_LOG, default info). \
                  Ctrl-C or SIGTERM stops it; SIGUSR1 logs a summary of the live sessions. Clients mount it with \
                  `rfmount HOST:PORT DIR` or use `rf ls HOST:PORT`."
)]
pub struct Args {
    /// Directory to export.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = format!("0.0.0.0:{DEFAULT_PORT}"))]
    pub listen: String,

    /// Refuse every change.
    #[arg(long)]
    pub read_only: bool,

    /// File holding the shared secret clients must prove they know.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Close connections silent for this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_timeout: u32,

    /// Keep the locks of a client whose connection died this many seconds,
    /// for it to reconnect and take them over (0: release at once).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub lock_grace: u32,

    /// Most sessions (connections past the handshake) served at once.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most connections still in the handshake at once; at the cap the
    /// oldest one from the address holding the most is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handshakes: u32,

    /// Most connections from one address (an IPv6 /64 counts as one).
    #[arg(long, value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_address: u32,

    /// Seconds from connecting to the end of the handshake (hello and
    /// authentication), however slowly the bytes arrive.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub handshake_timeout: u32,

    /// Largest frame accepted before authentication, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = rfmount_proto::MAX_HELLO as u32,
          value_parser = clap::value_parser!(u32).range(1024..=rfmount_proto::MAX_FRAME as i64))]
    pub max_handshake_frame: u32,

    /// Seconds a frame may take from its first byte to its last.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub frame_timeout: u32,

    /// Milliseconds an address must wait after its fourth failed
    /// authentication in a row, doubled with every further failure.
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_backoff_ms: u32,

    /// Longest wait after failed authentications, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_backoff_max: u32,

    /// Encrypt every connection with TLS (1.3). Without --tls-cert and
    /// --tls-key, a self-signed certificate is created in --state-dir on
    /// first use and kept.
    #[arg(long)]
    pub tls: bool,

    /// Certificate chain to present, PEM, leaf first (implies --tls).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert, PEM (implies --tls).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Worker threads for quick requests (stat, mkdir, rename, xattrs...),
    /// shared by all sessions. Default: 4 per core, between 8 and 64.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,

    /// Most threads streaming at once (downloads, listings, upload
    /// commits), shared by all sessions; more wait their turn. Slow
    /// clients hold these, never the quick workers.
    #[arg(long, value_name = "N", default_value_t = crate::DEFAULT_TRANSFERS as u32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_transfers: u32,

    /// Where rfserve keeps its state (the self-signed TLS pair). Default:
    /// /var/lib/rfserve as root, else $XDG_STATE_HOME/rfserve or
    /// ~/.local/state/rfserve.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The clap definition of `rfserve`, for man pages and shell completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Runs `rfserve` with the process's arguments; the binary's whole `main`.
pub fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits the mask and
    // SIGUSR1 reaches only the thread that waits for it.
    let usr1 = block_usr1();
    // clap prints usage errors itself and exits with status 2.
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match crate::fdlimit::raise() {
        Ok((old, new)) if new > old => log::info!("open-file limit raised from {old} to {new}"),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let server = match prepare(&args) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("rfserve: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    if usr1 {
        report_sessions_on_usr1(server.sessions_handle());
    } else {
        // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
        unsafe { libc::signal(libc::SIGUSR1, libc::SIG_IGN) };
    }
    let stop = server.shutdown_handle();
    if let Err(e) = ctrlc::set_handler(move || stop.shutdown()) {
        log::warn!("cannot handle Ctrl-C and SIGTERM, they will kill the server outright: {e}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rfserve: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks SIGUSR1 in the calling thread (and so in every thread it
/// starts later); false if that failed.
fn block_usr1() -> bool {
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before
    // use; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) == 0
    }
}

/// SIGUSR1 logs a summary of the live sessions (peer, age, requests,
/// bytes) and never ends the process: a thread takes the blocked signal
/// with sigwait, so no handler runs in signal context.
fn report_sessions_on_usr1(sessions: crate::SessionsHandle) {
    let spawned = std::thread::Builder::new()
        .name("rfserve-usr1".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is initialised by sigemptyset before use,
                // `sig` is a valid out-pointer for the call.
                let r = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&raw mut set);
                    libc::sigaddset(&raw mut set, libc::SIGUSR1);
                    libc::sigwait(&raw const set, &raw mut sig)
                };
                if r != 0 {
                    log::warn!("SIGUSR1 will not report sessions: sigwait failed ({r})");
                    return;
                }
                sessions.log_summary();
            }
        });
    if let Err(e) = spawned {
        log::warn!("SIGUSR1 will not report sessions: {e}");
    }
}

/// Checks the arguments, opens the export, binds, and announces the bound
/// address on stdout.
///
/// # Errors
/// Anything that makes the arguments unusable, described for the user.
pub fn prepare(args: &Args) -> anyhow::Result<Server> {
    let config = config(args)?;
    let server_tls = config.tls.clone();
    let store = LocalStore::open(&args.root).context("cannot export --root")?;
    let server = Server::bind(args.listen.as_str(), Arc::new(store), config)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server
        .local_addr()
        .context("cannot read the bound address")?;
    log::info!(
        "exporting {} ({}){}",
        args.root.display(),
        if args.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if args.token_file.is_some() {
            ", token required"
        } else {
            ""
        }
    );
    log::info!(
        "{} workers for quick requests, up to {} streaming at once",
        args.workers
            .map_or_else(crate::default_workers, |n| n as usize),
        args.max_transfers
    );
    let mut out = std::io::stdout().lock();
    // A closed stdout is the caller's choice, not a reason to refuse to serve.
    let _ = writeln!(out, "rfserve listening on {addr}").and_then(|()| out.flush());
    if let Some(tls) = &server_tls {
        log::info!("TLS certificate sha256 fingerprint {}", tls.fingerprint());
        let _ = writeln!(out, "rfserve certificate sha256 {}", tls.fingerprint())
            .and_then(|()| out.flush());
    }
    Ok(server)
}

/// The server policy the arguments describe.
///
/// # Errors
/// When the token file cannot be read or holds no token.
pub fn config(args: &Args) -> anyhow::Result<ServerConfig> {
    let auth = match &args.token_file {
        None => None,
        Some(path) => {
            let token = std::fs::read(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?;
            if token.trim_ascii().is_empty() {
                bail!("--token-file {} is empty", path.display());
            }
            Some(AuthKey::from_token(&token))
        }
    };
    let secs = |n: u32| Duration::from_secs(u64::from(n));
    Ok(ServerConfig {
        read_only: args.read_only,
        auth,
        tls: tls(args)?,
        idle_timeout: secs(args.idle_timeout),
        max_connections: args.max_connections as usize,
        max_handshakes: args.max_handshakes as usize,
        max_per_address: args.max_per_address as usize,
        handshake_timeout: secs(args.handshake_timeout),
        max_handshake_frame: args.max_handshake_frame as usize,
        frame_timeout: secs(args.frame_timeout),
        auth_backoff: Duration::from_millis(u64::from(args.auth_backoff_ms)),
        auth_backoff_max: secs(args.auth_backoff_max),
        workers: args
            .workers
            .map_or_else(crate::default_workers, |n| n as usize),
        max_transfers: args.max_transfers as usize,
        lock_grace: secs(args.lock_grace),
        ..ServerConfig::default()
    })
}

/// The TLS identity the arguments ask for, if any.
///
/// # Errors
/// When the certificate or key cannot be read or made.
pub fn tls(args: &Args) -> anyhow::Result<Option<TlsServer>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return TlsServer::from_pem_files(cert, key)
            .context("--tls-cert / --tls-key")
            .map(Some);
    }
    if !args.tls {
        return Ok(None);
    }
    let dir = match &args.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir()?,
    };
    let (tls, created) = TlsServer::self_signed(&dir)
        .with_context(|| format!("TLS certificate in the state directory {}", dir.display()))?;
    if created {
        log::info!(
            "created a self-signed TLS certificate in {}",
            dir.join(crate::tls::CERT_FILE).display()
        );
    }
    Ok(Some(tls))
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(PathBuf::from("/var/lib/rfserve"));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("rfserve"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("neither XDG_STATE_HOME nor HOME is set; use --state-dir")
        })?;
    Ok(PathBuf::from(home).join(".local/state/rfserve"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["rfserve"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    fn error_of(a: &Args) -> String {
        match prepare(a) {
            Ok(_) => panic!("accepted {a:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn defaults() {
        let a = args(&["--root", "/tmp"]).unwrap();
        assert_eq!(a.listen, "0.0.0.0:9500");
        assert_eq!(a.idle_timeout, 300);
        let c = config(&a).unwrap();
        let d = ServerConfig::default();
        assert_eq!(
            (c.max_connections, c.max_handshakes, c.max_per_address),
            (d.max_connections, d.max_handshakes, d.max_per_address)
        );
        assert_eq!(
            (c.handshake_timeout, c.frame_timeout, c.max_handshake_frame),
            (d.handshake_timeout, d.frame_timeout, d.max_handshake_frame)
        );
        assert_eq!(
            (c.auth_backoff, c.auth_backoff_max),
            (d.auth_backoff, d.auth_backoff_max)
        );
        assert!(args(&["--root", "/tmp", "--max-handshake-frame", "10"]).is_err());
        assert!(args(&["--root", "/tmp", "--handshake-timeout", "0"]).is_err());
        assert!(!a.read_only);
        assert!(args(&[]).is_err(), "--root is required");
        assert!(args(&["--root", "/tmp", "--idle-timeout", "0"]).is_err());
    }

    #[test]
    fn bad_arguments_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        let root = dir.path().to_str().unwrap();

        let missing = args(&["--root", "/nonexistent/rf", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(
            error_of(&missing).contains("No such file"),
            "{}",
            error_of(&missing)
        );
        let not_dir = args(&["--root", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]).unwrap();
        assert!(
            error_of(&not_dir).contains("not a directory"),
            "{}",
            error_of(&not_dir)
        );
        let no_token = args(&[
            "--root",
            root,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            "/nonexistent/t",
        ])
        .unwrap();
        assert!(error_of(&no_token).contains("cannot read --token-file"));
        let empty_token = args(&[
            "--root",
            root,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            empty.to_str().unwrap(),
        ])
        .unwrap();
        assert!(error_of(&empty_token).contains("is empty"));

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let busy = args(&["--root", root, "--listen", &addr]).unwrap();
        assert!(
            error_of(&busy).contains("cannot listen on"),
            "{}",
            error_of(&busy)
        );
    }
}
