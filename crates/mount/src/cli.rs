//! The `rfmount` command.
//!
//! `main` parses and checks arguments (exit 2 on bad usage), forks unless
//! `-f` was given, then [`run`] connects, opens the cache, mounts, and waits
//! for Ctrl-C / SIGTERM (unmount and exit) or an external unmount
//! (`fusermount3 -u`, which ends the session). Errors are one line and exit 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use fuser::{Config, INodeNo, MountOption, Session, SessionACL};
use log::{info, warn};
use rfmount_client::{ConnectConfig, Remote, RemoteError, TcpRemote};

use crate::daemon::{self, StatusPipe};
use crate::data_cache::DataCache;
use crate::fs::RemoteFs;
use crate::fuse::FuseFs;
use crate::options::{MountConfig, parse_size};

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
    /// attr_timeout=SECONDS, dir_timeout=SECONDS, idmap=none|user, uid=N,
    /// gid=N (comma-separated).
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
    let (session, fs) = match result {
        Ok(v) => v,
        Err(e) => {
            if let Some(s) = status {
                s.fail(&format!("{e:#}"));
            }
            return Err(e);
        }
    };
    info!("mounted {} on {}", args.server, args.mountpoint.display());
    if let Some(s) = status {
        s.ready();
    }
    serve(session, fs)
}

type Mounted = (fuser::BackgroundSession, Arc<RemoteFs<TcpRemote>>);

fn mount(args: &Args, mut cfg: MountConfig) -> Result<Mounted> {
    let server = with_default_port(&args.server);
    let mut conn = ConnectConfig::new(server.clone());
    if let Some(t) = &args.token_file {
        conn = conn.with_token_file(t)?;
    }
    let remote = TcpRemote::connect(conn).map_err(|e| match e {
        RemoteError::Transport(_) => anyhow!("cannot reach server {server}: {e}"),
        other => anyhow!("server {server}: {other}"),
    })?;
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
    let fs = Arc::new(RemoteFs::new(Arc::new(remote), cfg, Arc::new(cache)));
    let session = Session::new(FuseFs::new(fs.clone()), &args.mountpoint, &fuse_cfg)
        .with_context(|| format!("cannot mount on {}", args.mountpoint.display()))?;
    let notifier = session.notifier();
    fs.set_invalidator(Box::new(move |ino| {
        if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
            log::debug!("invalidating inode {ino}: {e}");
        }
    }));
    let bg = session.spawn().context("starting the FUSE session")?;
    Ok((bg, fs))
}

/// Runs until a signal or an external unmount; retries failed uploads
/// meanwhile.
fn serve(session: fuser::BackgroundSession, fs: Arc<RemoteFs<TcpRemote>>) -> Result<()> {
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

    let result = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => {
                info!("signal received, unmounting");
                break session.umount_and_join().context("unmounting");
            }
            Err(RecvTimeoutError::Timeout) if session.guard.is_finished() => {
                info!("unmounted");
                break session.join().context("FUSE session");
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    stop.store(true, Ordering::SeqCst);
    let _ = retry.join();
    let left = fs.retry_dirty();
    if left > 0 {
        warn!(
            "{left} file(s) could not be uploaded; they stay in the cache and are uploaded at the next mount"
        );
    }
    result
}
