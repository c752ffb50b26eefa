//! The `rfmount` command.
//!
//! `main` parses and checks arguments (exit 2 on bad usage), forks unless
//! `-f` was given, then [`run`] connects (or starts offline from a known
//! cache), opens the cache, mounts, and waits for Ctrl-C / SIGTERM (unmount
//! our own mount and exit) or the kernel ending the connection (any
//! unmount, an abort). Errors are one line and exit 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use fuser::{Config, INodeNo, MountOption, Session, SessionACL};
use log::{info, warn};
use rfmount_client::{ConnectConfig, Remote, RemoteError, TcpRemote};

use crate::daemon::{self, StatusPipe};
use crate::data_cache::DataCache;
use crate::fs::RemoteFs;
use crate::fuse::FuseFs;
use crate::known_exports;
use crate::options::{MountConfig, parse_size};
use crate::own_mount::{self, OwnMount, Unmount};

/// Command line of `rfmount`.
#[derive(Parser, Debug)]
#[command(name = "rfmount", version, about = "Mount an rfserve export with FUSE")]
struct Args {
    /// Server as HOST:PORT (port 9500 when omitted).
    server: String,
    /// Existing empty directory to mount on.
    mountpoint: PathBuf,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Mount options: ro, allow_other, default_permissions,
    /// attr_timeout=SECONDS, dir_timeout=SECONDS, timeout=SECONDS
    /// (comma-separated).
    #[arg(short = 'o', value_name = "OPTS")]
    options: Vec<String>,
    /// Cache directory (default $XDG_CACHE_HOME/rfmount or ~/.cache/rfmount).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Bound of the data cache, e.g. 512M or 4G.
    #[arg(long, default_value = "1G")]
    cache_size: String,
    /// File holding the export's shared secret.
    #[arg(long, env = "RF_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Threads serving kernel requests.
    #[arg(long, default_value_t = 16)]
    threads: usize,
}

/// Entry point of the `rfmount` binary.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let cfg = match check(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rfmount: error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let status = if args.foreground {
        None
    } else {
        match daemon::daemonize(Duration::from_secs(30)) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("rfmount: error: cannot fork: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    // fuser warns when its own unmount finds the mount already gone (after
    // `fusermount3 -u`), which is the normal way to stop: keep it quiet.
    let level = if args.foreground {
        "info,fuser=error"
    } else {
        "warn,fuser=error"
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .try_init();
    let background = status.is_some();
    match run(&args, cfg, status) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // In the background the parent prints what the status pipe
            // carried; printing here too would show the error twice.
            if !background {
                eprintln!("rfmount: error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Everything that can be checked before connecting.
fn check(args: &Args) -> Result<MountConfig> {
    let mp = &args.mountpoint;
    let md = std::fs::metadata(mp).with_context(|| format!("mount point {}", mp.display()))?;
    if !md.is_dir() {
        bail!("mount point {} is not a directory", mp.display());
    }
    let canon = mp
        .canonicalize()
        .with_context(|| format!("mount point {}", mp.display()))?;
    if is_mounted(&canon) {
        bail!("{} is already a mount point", canon.display());
    }
    if !Path::new("/dev/fuse").exists() {
        bail!("FUSE is not available: /dev/fuse is missing (load the fuse module, install fuse3)");
    }
    let cache_dir = match &args.cache_dir {
        Some(d) => d.clone(),
        None => default_cache_dir()?,
    };
    let mut cfg = MountConfig::new(cache_dir);
    for o in &args.options {
        cfg.apply_options(o).map_err(|e| anyhow!(e))?;
    }
    cfg.cache_size = parse_size(&args.cache_size).map_err(|e| anyhow!("--cache-size: {e}"))?;
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(cfg)
}

fn default_cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("rfmount"));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow!("neither XDG_CACHE_HOME nor HOME is set; use --cache-dir"))?;
    Ok(PathBuf::from(home).join(".cache").join("rfmount"))
}

/// True when `path` is a mount point in this namespace.
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape_mount_path(m) == want)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn with_default_port(server: &str) -> String {
    if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:{}", rfmount_proto::DEFAULT_PORT)
    }
}

fn run(args: &Args, cfg: MountConfig, status: Option<StatusPipe>) -> Result<()> {
    let result = mount(args, cfg);
    let mounted = match result {
        Ok(v) => v,
        Err(e) => {
            if let Some(s) = status {
                s.fail(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    info!(
        "mounted {} on {} (FUSE connection {})",
        args.server,
        args.mountpoint.display(),
        mounted.own.connection_id()
    );
    if let Some(s) = status {
        s.ready();
    }
    serve(mounted)
}

struct Mounted {
    session: fuser::BackgroundSession,
    fs: Arc<RemoteFs<TcpRemote>>,
    remote: Arc<TcpRemote>,
    own: OwnMount,
}

/// Connects, or, when the server is unreachable but this cache directory
/// knows the export from an earlier mount, starts offline.
fn connect(server: &str, conn: ConnectConfig, cache_dir: &Path) -> Result<TcpRemote> {
    match TcpRemote::connect(conn.clone()) {
        Ok(remote) => {
            if let Err(e) = known_exports::remember(cache_dir, &conn, &remote.export()) {
                warn!("cannot record the export in {}: {e}", cache_dir.display());
            }
            Ok(remote)
        }
        Err(RemoteError::Transport(why)) => match known_exports::recall(cache_dir, &conn) {
            Some(info) => {
                // One line, also in the background (stderr is still the
                // terminal until the mount is up).
                eprintln!(
                    "rfmount: warning: server {server} unreachable ({why}); \
                     serving the cache and going online when it answers"
                );
                Ok(TcpRemote::offline(conn, info, why))
            }
            None => Err(anyhow!("cannot reach server {server}: {why}")),
        },
        Err(other) => Err(anyhow!("server {server}: {other}")),
    }
}

fn mount(args: &Args, mut cfg: MountConfig) -> Result<Mounted> {
    let server = with_default_port(&args.server);
    let mut conn = ConnectConfig::new(server.clone()).with_timeout(cfg.timeout);
    if let Some(t) = &args.token_file {
        conn = conn.with_token_file(t)?;
    }
    let remote = Arc::new(connect(&server, conn, &cfg.cache_dir)?);
    let export = remote.export();
    if export.read_only && !cfg.read_only {
        info!("the export is read-only; mounting read-only");
        cfg.read_only = true;
    }
    let cache = DataCache::open(&cfg.cache_dir, &export.export_id, cfg.cache_size)
        .with_context(|| format!("cache directory {}", cfg.cache_dir.display()))?;
    let mut fuse_cfg = Config::default();
    fuse_cfg.mount_options = vec![
        MountOption::FSName(format!("rfmount:{server}")),
        MountOption::Subtype("rfmount".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if cfg.read_only {
        fuse_cfg.mount_options.push(MountOption::RO);
    }
    if cfg.default_permissions {
        fuse_cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    if cfg.allow_other {
        fuse_cfg.acl = SessionACL::All;
    }
    fuse_cfg.n_threads = Some(args.threads);
    let fs = Arc::new(RemoteFs::new(remote.clone(), cfg, Arc::new(cache)));
    let mountpoint = args
        .mountpoint
        .canonicalize()
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let fds_before = own_mount::fuse_fds();
    let session = Session::new(FuseFs::new(fs.clone()), &mountpoint, &fuse_cfg)
        .with_context(|| format!("cannot mount on {}", args.mountpoint.display()))?;
    let own = OwnMount::record(&mountpoint, &fds_before).context("after mounting")?;
    let notifier = session.notifier();
    fs.set_invalidator(Box::new(move |ino| {
        if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
            log::debug!("invalidating inode {ino}: {e}");
        }
    }));
    let session = session.spawn().context("starting the FUSE session")?;
    Ok(Mounted {
        session,
        fs,
        remote,
        own,
    })
}

/// How long a signalled rfmount waits for its session to wind down after
/// unmounting before it exits anyway.
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// How long the last upload try at exit may take.
const LAST_RETRY: Duration = Duration::from_millis(500);

/// Runs until a signal or until the kernel ends the connection (unmount by
/// any route, abort); retries failed uploads meanwhile.
fn serve(m: Mounted) -> Result<()> {
    let Mounted {
        session,
        fs,
        remote,
        own,
    } = m;
    let (tx, rx) = channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the signal handler")?;

    let stop = Arc::new(AtomicBool::new(false));
    let retry = {
        let (fs, stop) = (fs.clone(), stop.clone());
        std::thread::Builder::new()
            .name("rf-retry".into())
            .spawn(move || {
                let interval = fs.config().retry_interval;
                while !stop.load(Ordering::SeqCst) {
                    fs.retry_dirty();
                    let mut waited = Duration::ZERO;
                    while waited < interval && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(100));
                        waited += Duration::from_millis(100);
                    }
                }
            })?
    };

    let ended = || session.guard.is_finished() || own.ended();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => {
                info!("signal received, unmounting");
                match own.unmount() {
                    Ok(Unmount::Done) => {}
                    Ok(Unmount::NotOurs) => warn!(
                        "{} no longer holds this mount; leaving what is mounted there alone",
                        own.mountpoint().display()
                    ),
                    Err(e) => warn!("unmounting {}: {e}", own.mountpoint().display()),
                }
                let deadline = Instant::now() + EXIT_GRACE;
                while !ended() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                break;
            }
            Err(RecvTimeoutError::Timeout) if ended() => {
                info!("unmounted");
                // After an abort the dead mount stays in the table
                // ("Transport endpoint is not connected"): take it away if
                // it is still ours.
                match own.unmount() {
                    Ok(Unmount::Done) => info!("removed the dead mount"),
                    Ok(Unmount::NotOurs) => {}
                    Err(e) => warn!("removing the dead mount: {e}"),
                }
                break;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = retry.join();
    // A last try, bounded so that the process still exits promptly: what
    // is not uploaded stays in the cache for the next mount (an upload cut
    // short by the exit never replaces the server's file).
    if remote.is_online() && !fs.cache().dirty_paths().is_empty() {
        let (done_tx, done_rx) = channel();
        let fs = fs.clone();
        let _ = std::thread::Builder::new()
            .name("rf-last-retry".into())
            .spawn(move || {
                fs.retry_dirty();
                let _ = done_tx.send(());
            });
        let _ = done_rx.recv_timeout(LAST_RETRY);
    }
    let left = fs.cache().dirty_paths().len();
    if left > 0 {
        warn!(
            "{left} file(s) could not be uploaded; they stay in the cache and are uploaded at the next mount"
        );
    }
    // Never let fuser unmount on drop: it unmounts by path, which may now
    // be someone else's mount. Worker threads still busy end with the
    // process.
    std::mem::forget(session);
    Ok(())
}
