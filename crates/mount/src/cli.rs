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

use crate::fs::PushSink;
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use fuser::{Config, INodeNo, SessionACL};
use log::{info, warn};
use rfmount_client::report::one_line;
use rfmount_client::{ConnectConfig, Remote, RemoteError, Source, TcpRemote, TlsArgs, TlsOptions};

use crate::cli_options::{CliOptions, KernelFlags};
use crate::daemon::{self, StatusPipe};
use crate::data_cache::DataCache;
use crate::fs::RemoteFs;
use crate::fuse::FuseFs;
use crate::kernel_mount::{MountSpec, MountedSession, Prepared};
use crate::known_exports;
use crate::logging::{self, LogTarget};
use crate::options::{MountConfig, parse_size};
use crate::own_mount::{self, OwnMount, Unmount};
use crate::through_mount::MountRoot;

const AFTER_HELP: &str = "\
SERVER is HOST[:PORT][:/SUBDIR] as with sshfs: the port is 9500 when omitted,
an IPv6 address goes in brackets ([::1]:9500), and :/SUBDIR mounts only that
subdirectory of the export (the server keeps the mount inside it).

Mount options (-o, comma-separated; also the options field of fstab):
  ro, rw                     read-only / read-write (a read-only export is always ro)
  allow_other                let other users use the mount (root, or user_allow_other)
  default_permissions        let the kernel check file modes
  acl, noacl                 POSIX ACLs (setfacl/getfacl), enforced and inherited (default noacl)
  attr_timeout=SECS          how long attributes are trusted (default 1)
  dir_timeout=SECS           how long a listing is reused (default 1)
  idmap=none|user            user: the export root's owner shows as you
  noprefetch                 do not fetch a directory's next small files ahead
  passthrough, nopassthrough let the kernel read clean cached files directly
                             (FUSE passthrough; default on where the kernel allows
                             it; pushed changes are copied into the cache file)
  uid=N, gid=N               show every file as owned by N
  conflict=keep|error|overwrite
                             when another writer changed a file since this mount's
                             version, close keeps this mount's data beside it as
                             NAME.conflict-HOST-STAMP (keep), fails with EIO
                             leaving it dirty in the cache (error), or replaces the
                             other writer's file (overwrite: last close wins);
                             default keep
  port=PORT                  the server's port, as -p
  writeback, nowriteback     as --writeback: close returns once the file is safe in
                             the local cache; uploads run in the background
  uploads=N                  uploads a write-back mount runs at once (default 4)
  flush=SECS                 a write-back close is on the cache disk within SECS (default 1)
  cache_dir=DIR, cache_size=SIZE, token_file=FILE, threads=N, log_file=FILE
                             as the --options of the same name
  loglevel=LEVEL             error, warn, info (default), debug or trace
  debug                      as -d: foreground, debug log on stderr
  nodev, nosuid (default), dev, suid, noexec, exec, noatime, atime, relatime,
  strictatime, nodiratime, sync, async, dirsync
                             applied to the mount as by any filesystem
  defaults, auto, noauto, user, users, nouser, owner, group, _netdev, nofail,
  x-*, comment=, subtype=, fsname=
                             for mount(8) and systemd; accepted and ignored
  reconnect                  accepted: rfmount always reconnects
  nonempty                   accepted: as with libfuse 3 and sshfs 3, a
                             non-empty directory can always be mounted over

Mounting with mount(8) and fstab (rfmount must be on PATH; mount.fuse3 runs it):
  mount -t fuse.rfmount HOST:9500:/sub /mnt/share -o allow_other
  mount -t fuse 'rfmount#HOST:9500' /mnt/share
/etc/fstab, mounted at boot or on first access:
  HOST:9500:/sub  /mnt/share  fuse.rfmount  _netdev,nofail,allow_other  0  0
  HOST:9500:/sub  /mnt/share  fuse.rfmount  _netdev,noauto,x-systemd.automount  0  0
umount /mnt/share (or fusermount3 -u) unmounts and ends the process.

`rfmount status [MOUNTPOINT] [--json] [--watch]` shows a running mount's connection
and round-trip time, cache use, files not yet uploaded, uploads in progress, retries,
failed write-back uploads, errors, and request counts with latency percentiles.

Write-back (-o writeback): fsync(2) of a file waits for its upload; sync(1) and
syncfs(2) do not reach FUSE daemons, so `rfmount sync MOUNTPOINT` waits until every
file closed so far is on the server (exit 1 if the server stays unreachable for 10 s).
Unmounting returns at once and rfmount exits once the pending uploads are done (after
10 s if the server is unreachable; the rest is uploaded at the next mount).

Without -f the process returns once the mount is up and logs to a file:
--log-file, else $XDG_STATE_HOME/rfmount/rfmount.log, ~/.local/state/rfmount/rfmount.log,
or /var/log/rfmount/rfmount.log. Files not yet uploaded stay in the cache and are
uploaded when the server is back, or at the next mount. SIGHUP and SIGUSR1 are ignored;
SIGTERM and Ctrl-C unmount.";

/// Command line of `rfmount`.
#[derive(Parser, Debug)]
#[command(
    name = "rfmount",
    version,
    about = "Mount a directory exported by rfserve, with a local cache",
    after_help = AFTER_HELP
)]
struct Args {
    /// Server: HOST[:PORT][:/SUBDIR].
    server: String,
    /// Existing directory to mount on.
    mountpoint: PathBuf,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Debug: stay in the foreground and log debug messages to stderr.
    #[arg(short = 'd', long)]
    debug: bool,
    /// The server's port (as HOST:PORT).
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Mount options, comma-separated; see below.
    #[arg(short = 'o', value_name = "OPTS")]
    options: Vec<String>,
    /// Cache directory (default $XDG_CACHE_HOME/rfmount, ~/.cache/rfmount,
    /// or /var/cache/rfmount for root without a home).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Bound of the data cache, e.g. 512M or 4G.
    #[arg(long, default_value = "1G")]
    cache_size: String,
    /// File holding the export's shared secret.
    #[arg(long, env = "RF_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Threads serving kernel requests.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Log file of a background mount.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Write-back: close returns once the file is safe in the local cache;
    /// uploads run in the background (as -o writeback).
    #[arg(long)]
    writeback: bool,
}

/// The clap definition of `rfmount`, for man pages and shell completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// What the command line asks for, checked before anything happens.
struct Plan {
    cfg: MountConfig,
    source: Source,
    flags: KernelFlags,
    foreground: bool,
    log: LogTarget,
    log_level: Option<String>,
    token_file: Option<PathBuf>,
    threads: usize,
    tls: Option<TlsOptions>,
}

/// Entry point of the `rfmount` binary.
pub fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "status") {
        return crate::status::main(std::env::args_os().skip(2));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "sync") {
        return crate::sync::main(std::env::args_os().skip(2));
    }
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let plan = match check(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rfmount: error: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if let (LogTarget::File(path, _), false) = (&plan.log, plan.foreground) {
        // SAFETY: isatty has no preconditions.
        if unsafe { libc::isatty(2) } == 1 {
            eprintln!(
                "rfmount: mounting {} on {} in the background; log: {}",
                plan.source,
                args.mountpoint.display(),
                path.display()
            );
        }
    }
    let status = if plan.foreground {
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
    let background = status.is_some();
    match run(&args, plan, status) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // In the background the parent prints what the status pipe
            // carried; printing here too would show the error twice.
            if !background {
                eprintln!("rfmount: error: {}", one_line(&e));
            }
            ExitCode::FAILURE
        }
    }
}

/// Everything that can be checked before connecting.
fn check(args: &Args) -> Result<Plan> {
    let opts = CliOptions::parse(&args.options).map_err(|e| anyhow!(e))?;
    let mut source = Source::parse(&args.server)?;
    for port in [args.port, opts.port].into_iter().flatten() {
        source = source.with_port(port)?;
    }
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
    let cache_dir = match opts.cache_dir.as_ref().or(args.cache_dir.as_ref()) {
        Some(d) => d.clone(),
        None => default_cache_dir()?,
    };
    let mut cfg = MountConfig::new(cache_dir);
    cfg.apply_options(&opts.fs_options.join(","))
        .map_err(|e| anyhow!(e))?;
    cfg.writeback |= args.writeback;
    let size = opts.cache_size.as_deref().unwrap_or(&args.cache_size);
    cfg.cache_size = parse_size(size).map_err(|e| anyhow!("cache size: {e}"))?;
    let threads = opts.threads.unwrap_or(args.threads);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    // Checked now, before a fork, so that a typo is a usage error.
    let tls = TlsArgs {
        tls: args.tls.tls || opts.tls,
        tls_ca: opts.tls_ca.clone().or_else(|| args.tls.tls_ca.clone()),
        tls_fingerprint: opts
            .tls_fingerprint
            .clone()
            .or_else(|| args.tls.tls_fingerprint.clone()),
        tls_known_servers: opts
            .tls_known_servers
            .clone()
            .or_else(|| args.tls.tls_known_servers.clone()),
    };
    if tls.tls_ca.is_some() && tls.tls_fingerprint.is_some() {
        bail!("--tls-ca and --tls-fingerprint cannot be used together");
    }
    let tls = tls.options()?;
    let debug = args.debug || opts.debug;
    let foreground = args.foreground || debug;
    let log = match opts.log_file.as_ref().or(args.log_file.as_ref()) {
        Some(f) => LogTarget::file(f).map_err(|e| anyhow!(e))?,
        None if foreground => LogTarget::Stderr,
        None => LogTarget::file(&logging::default_log_file()).map_err(|e| anyhow!(e))?,
    };
    Ok(Plan {
        cfg,
        source,
        flags: opts.flags,
        foreground,
        log,
        log_level: if debug {
            Some("debug".into())
        } else {
            opts.log_level
        },
        token_file: opts.token_file.or_else(|| args.token_file.clone()),
        threads,
        tls,
    })
}

fn default_cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("rfmount"));
    }
    match std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("rfmount")),
        // SAFETY: geteuid has no preconditions.
        None if unsafe { libc::geteuid() } == 0 => Ok(PathBuf::from("/var/cache/rfmount")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set; use --cache-dir"),
    }
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

fn run(args: &Args, mut plan: Plan, status: Option<StatusPipe>) -> Result<()> {
    logging::init(
        std::mem::replace(&mut plan.log, LogTarget::Stderr),
        plan.log_level.as_deref(),
    );
    let result = mount(args, &plan);
    let mounted = match result {
        Ok(v) => v,
        Err(e) => {
            if let Some(s) = status {
                s.fail(&one_line(&e));
            }
            return Err(e);
        }
    };
    info!(
        "mounted {} on {} (FUSE connection {})",
        plan.source,
        args.mountpoint.display(),
        mounted.own.connection_id()
    );
    let _status = crate::status::serve(
        mounted.fs.clone(),
        mounted.remote.clone(),
        plan.source.to_string(),
        mounted.own.mountpoint(),
    )
    .inspect_err(|e| warn!("`rfmount status` will not see this mount: {e}"))
    .ok();
    if let Some(s) = status {
        s.ready();
    }
    serve(mounted)
}

struct Mounted {
    session: MountedSession,
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

fn mount(args: &Args, plan: &Plan) -> Result<Mounted> {
    // Already while mounting: the mount is visible (and a terminal's
    // SIGHUP or a SIGUSR1 may come) before `serve` installs its handlers.
    ignore_hup_and_usr1();
    let mut cfg = plan.cfg.clone();
    let server = plan.source.addr();
    let mut conn = plan.source.connect_config().with_timeout(cfg.timeout);
    if let Some(t) = &plan.token_file {
        conn = conn.with_token_file(t)?;
    }
    conn.tls = plan.tls.clone();
    let hub = conn.callbacks.clone();
    let remote = Arc::new(connect(&server, conn, &cfg.cache_dir)?);
    let export = remote.export();
    if export.read_only && !cfg.read_only {
        info!("the export is read-only; mounting read-only");
        cfg.read_only = true;
    }
    let cache = DataCache::open(&cfg.cache_dir, &export.export_id, cfg.cache_size)
        .with_context(|| format!("cache directory {}", cfg.cache_dir.display()))?;
    let mountpoint = args
        .mountpoint
        .canonicalize()
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let spec = MountSpec {
        mountpoint: &mountpoint,
        source: plan.source.to_string(),
        flags: plan.flags.clone(),
        read_only: cfg.read_only,
        default_permissions: cfg.default_permissions,
        acl: if cfg.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        },
    };
    let mut fuse_cfg = Config::default();
    fuse_cfg.n_threads = Some(plan.threads);
    let fs = Arc::new(RemoteFs::new(remote.clone(), cfg, Arc::new(cache)));
    let fds_before = own_mount::fuse_fds();
    let fuse = FuseFs::new(fs.clone());
    let mount_id = fuse.mount_id();
    let session = Prepared::mount(fuse, &spec, fuse_cfg)
        .with_context(|| format!("cannot mount on {}", args.mountpoint.display()))?;
    let own = OwnMount::record(&mountpoint, &fds_before).context("after mounting")?;
    if let Some(id) = own.mount_id() {
        let _ = mount_id.set(id);
    }
    let notifier = session.notifier();
    fs.set_invalidator(Box::new(move |ino| {
        if let Err(e) = notifier.inval_inode(INodeNo(ino), 0, 0) {
            log::debug!("invalidating inode {ino}: {e}");
        }
    }));
    if fs.config().writeback {
        fs.start_dir_attrs()
            .context("starting the sender of directory attributes")?;
        fs.start_uploaders().context("starting the uploaders")?;
        info!(
            "write-back mode: close returns once a file is safe in the cache; {} uploads at once",
            fs.config().upload_workers
        );
    }
    // Echoes of pushed removals need the mount's device to be sure they
    // remove through this mount and nothing beneath it.
    let echo = own
        .dev_numbers()
        .map(|dev| (MountRoot::new(&mountpoint, dev), fs.echoes().clone()));
    if echo.is_none() {
        info!("removals elsewhere are not reported to inotify watchers here");
    }
    fs.set_kernel_notes(crate::fuse::kernel_notes(session.notifier(), echo)?);
    hub.subscribe(Arc::new(PushSink(Arc::downgrade(&fs))));
    let weak = Arc::downgrade(&fs);
    remote.on_reconnect(Arc::new(move |resumed| {
        if let Some(fs) = weak.upgrade() {
            fs.reacquire_locks(resumed);
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
    ignore_hup_and_usr1();

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

    let ended = || session.is_finished() || own.ended();
    loop {
        // A mount holding locks notices a dead connection at once, so that
        // it reconnects and takes its locks over (or again) before another
        // client gets them, not only at its next request.
        if fs.holds_locks() {
            let _ = remote.health();
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) => {
                info!("signal received, unmounting");
                // An echo after this could remove beneath the mount point.
                fs.echoes().stop();
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
                fs.echoes().stop();
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
    if fs.config().writeback {
        drain_uploads(&fs, &remote);
    }
    stop.store(true, Ordering::SeqCst);
    let _ = retry.join();
    // A last try, bounded so that the process still exits promptly: what
    // is not uploaded stays in the cache for the next mount (an upload cut
    // short by the exit never replaces the server's file).
    let mut settled = true;
    if remote.is_online() && !fs.cache().dirty_paths().is_empty() {
        let (done_tx, done_rx) = channel();
        let fs = fs.clone();
        let _ = std::thread::Builder::new()
            .name("rf-last-retry".into())
            .spawn(move || {
                fs.retry_dirty();
                let _ = done_tx.send(());
            });
        settled = done_rx.recv_timeout(LAST_RETRY).is_ok();
    }
    fs.stop_fetches();
    // Write-back closes not flushed to the cache disk yet (uploads that
    // failed, or were cut short by the exit).
    if let Err(e) = fs.cache().flush_unsynced() {
        warn!("cache: flushing closed files to the cache disk: {e}");
    }
    // Remounting right after the unmount finds the cache free, unless
    // something may still write to it: an upload still running, or a
    // request handler (a lazily detached mount still in use); the
    // session ends once every handler thread has (no wait for it here:
    // a signalled rfmount exits promptly).
    if settled && fs.queued_uploads() == 0 && session.is_finished() {
        fs.cache().release();
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

/// Unmounted in write-back mode: waits for every pending upload, for as
/// long as the server is reachable, and a bounded time while it is not.
/// What is left stays in the cache for the next mount.
fn drain_uploads(fs: &RemoteFs<TcpRemote>, remote: &TcpRemote) {
    let left = fs.pending_uploads();
    if left == 0 {
        return;
    }
    info!("waiting for {left} pending upload(s) before exiting");
    match crate::sync::wait_for_uploads(fs, remote) {
        Ok(()) => info!("all uploads done"),
        Err(stuck) => {
            warn!("exiting: {stuck}; they stay in the cache and are uploaded at the next mount")
        }
    }
}

/// A mount outlives its terminal (SIGHUP), and SIGUSR1 asks daemons for a
/// report: neither may kill the process and leave a dead mount behind.
/// (ctrlc's handler covers SIGHUP too; this replaces it.)
fn ignore_hup_and_usr1() {
    for sig in [libc::SIGHUP, libc::SIGUSR1] {
        // SAFETY: setting a signal's disposition to SIG_IGN is always sound.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}
