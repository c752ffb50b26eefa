//! `rfmount status [MNT] [--json] [--watch]`: what a running mount holds
//! and does — its server, whether it is reachable and how far away
//! (the last keep-alive's round trip), the cache's size and limit, clean
//! files, files not yet uploaded, uploads in progress with the share sent,
//! upload retries, files recovered at start, failures since the mount
//! started, and request counts with latency percentiles per operation.
//! The JSON field names are stable; README's `rfmount status` section
//! lists them.
//!
//! Each mount answers on a Unix socket private to its user:
//! `$XDG_RUNTIME_DIR/rfmount/` (else `/tmp/rfmount-UID/`), directory 0700,
//! socket 0600, named by a hash of the mount point. A client connects,
//! sends `json`, `text` or `sync` (see [`crate::sync`]) and a newline, and
//! reads the answer until EOF.
//! Not a file inside the mount: nothing there can be confused with data.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use rfmount_client::{Health, OpStats, TcpRemote};

use crate::activity::{self, UploadProgress};
use crate::fs::{FailedUpload, RemoteFs};

/// The directory holding this user's status sockets.
fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("rfmount"),
        // SAFETY: getuid has no preconditions.
        None => std::env::temp_dir().join(format!("rfmount-{}", unsafe { libc::getuid() })),
    }
}

pub(crate) fn socket_path(mountpoint: &Path) -> PathBuf {
    let h = blake3::hash(mountpoint.as_os_str().as_encoded_bytes());
    socket_dir().join(format!("{}.sock", &h.to_hex()[..16]))
}

/// The serving side; removes its socket when dropped.
pub(crate) struct StatusServer {
    path: PathBuf,
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts answering status requests for the mount on `mountpoint`.
///
/// # Errors
/// The socket directory or socket cannot be created.
pub(crate) fn serve(
    fs: Arc<RemoteFs<TcpRemote>>,
    remote: Arc<TcpRemote>,
    source: String,
    mountpoint: &Path,
) -> io::Result<StatusServer> {
    let dir = socket_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = socket_path(mountpoint);
    // A socket left by a process that died is in the way; a live one
    // cannot exist, since the mount point was not mounted.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let info = Arc::new(Info {
        source,
        mountpoint: mountpoint.to_path_buf(),
        started: Instant::now(),
    });
    std::thread::Builder::new()
        .name("rf-status".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                // One thread each: `rfmount sync` waits for uploads, and
                // status requests must not wait behind it.
                let (fs, remote, info) = (fs.clone(), remote.clone(), info.clone());
                let _ = std::thread::Builder::new()
                    .name("rf-status-conn".into())
                    .spawn(move || {
                        let _ = answer(conn, &fs, &remote, &info);
                    });
            }
        })?;
    Ok(StatusServer { path })
}

struct Info {
    source: String,
    mountpoint: PathBuf,
    started: Instant,
}

struct Report {
    mountpoint: String,
    source: String,
    pid: u32,
    uptime_secs: u64,
    health: Health,
    /// The last keep-alive round trip, and how long ago it was.
    rtt: Option<(Duration, Duration)>,
    cache_bytes: u64,
    cache_limit: u64,
    clean_files: usize,
    pending: Vec<(String, u64)>,
    uploading: Vec<UploadProgress>,
    /// Write-back mode: uploads queued or running, and those that failed.
    writeback: Option<(usize, Vec<FailedUpload>)>,
    retries: u64,
    recovered: Vec<String>,
    errors: u64,
    recent_errors: Vec<(SystemTime, String)>,
    requests: Vec<OpStats>,
    /// Files prefetched, and opens they served.
    prefetched: (u64, u64),
}

fn answer(
    conn: UnixStream,
    fs: &RemoteFs<TcpRemote>,
    remote: &TcpRemote,
    info: &Info,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut want = String::new();
    BufReader::new(conn.try_clone()?)
        .take(64)
        .read_line(&mut want)?;
    if want.trim() == "sync" {
        let reply = crate::sync::answer(fs, remote);
        let mut conn = conn;
        return conn.write_all(reply.as_bytes());
    }
    let cache = fs.cache();
    let mut pending: Vec<(String, u64)> = cache
        .dirty_paths()
        .into_iter()
        .map(|p| {
            let bytes = std::fs::metadata(cache.data_path(&p)).map_or(0, |m| m.len());
            (p.to_string(), bytes)
        })
        .collect();
    pending.sort();
    let (errors, recent_errors) = activity::failures();
    let r = Report {
        mountpoint: info.mountpoint.display().to_string(),
        source: info.source.clone(),
        pid: std::process::id(),
        uptime_secs: info.started.elapsed().as_secs(),
        health: remote.health(),
        rtt: remote.stats().rtt(),
        cache_bytes: cache.total_size(),
        cache_limit: fs.config().cache_size,
        clean_files: cache.entries().iter().filter(|(_, e)| !e.dirty).count(),
        pending,
        uploading: fs.activity().uploads(),
        writeback: fs
            .config()
            .writeback
            .then(|| (fs.queued_uploads(), fs.failed_uploads())),
        retries: fs.activity().retries(),
        recovered: cache.recovered().iter().map(ToString::to_string).collect(),
        errors,
        recent_errors,
        requests: remote.stats().ops(),
        prefetched: (fs.prefetcher().started(), fs.prefetcher().used()),
    };
    let text = if want.trim() == "json" {
        json(&r)
    } else {
        human(&r)
    };
    let mut conn = conn;
    conn.write_all(text.as_bytes())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn json(r: &Report) -> String {
    let list = |items: Vec<String>| format!("[{}]", items.join(","));
    let connection = match &r.health {
        Health::Online => "{\"state\":\"online\"".to_string(),
        Health::Down {
            since,
            reason,
            reconnecting,
        } => format!(
            "{{\"state\":\"{}\",\"down_since\":{},\"reason\":{}",
            if *reconnecting {
                "reconnecting"
            } else {
                "down"
            },
            unix_secs(*since),
            quote(reason)
        ),
    };
    let rtt = match r.rtt {
        Some((d, age)) => format!(",\"rtt_ms\":{},\"rtt_age_secs\":{}}}", ms(d), age.as_secs()),
        None => ",\"rtt_ms\":null,\"rtt_age_secs\":null}".to_string(),
    };
    let pending = list(
        r.pending
            .iter()
            .map(|(p, b)| format!("{{\"path\":{},\"bytes\":{b}}}", quote(p)))
            .collect(),
    );
    let uploading = list(
        r.uploading
            .iter()
            .map(|u| {
                format!(
                    "{{\"path\":{},\"size\":{},\"sent\":{},\"percent\":{}}}",
                    quote(&u.path),
                    u.size,
                    u.sent,
                    u.percent()
                )
            })
            .collect(),
    );
    let writeback = match &r.writeback {
        None => "null".to_string(),
        Some((queued, failed)) => format!(
            "{{\"queued\":{queued},\"failed\":{}}}",
            list(
                failed
                    .iter()
                    .map(|f| format!(
                        "{{\"path\":{},\"attempts\":{},\"error\":{},\"at\":{}}}",
                        quote(&f.path),
                        f.attempts,
                        quote(&f.error),
                        unix_secs(f.at)
                    ))
                    .collect()
            )
        ),
    };
    let recovered = list(r.recovered.iter().map(|p| quote(p)).collect());
    let recent = list(
        r.recent_errors
            .iter()
            .map(|(t, m)| format!("{{\"at\":{},\"message\":{}}}", unix_secs(*t), quote(m)))
            .collect(),
    );
    let requests = list(
        r.requests
            .iter()
            .map(|o| {
                format!(
                    "{{\"op\":{},\"count\":{},\"p50_ms\":{},\"p90_ms\":{},\"p99_ms\":{}}}",
                    quote(&o.op),
                    o.count,
                    ms(o.p50),
                    ms(o.p90),
                    ms(o.p99)
                )
            })
            .collect(),
    );
    format!(
        "{{\"mountpoint\":{},\"server\":{},\"pid\":{},\"uptime_secs\":{},\"connection\":{connection}{rtt},\"cache_bytes\":{},\"cache_limit\":{},\"clean_files\":{},\"pending_files\":{},\"pending_bytes\":{},\"pending\":{pending},\"uploading\":{uploading},\"writeback\":{writeback},\"retries\":{},\"recovered\":{recovered},\"errors\":{},\"recent_errors\":{recent},\"prefetched\":{},\"prefetch_used\":{},\"requests\":{requests}}}\n",
        quote(&r.mountpoint),
        quote(&r.source),
        r.pid,
        r.uptime_secs,
        r.cache_bytes,
        r.cache_limit,
        r.clean_files,
        r.pending.len(),
        r.pending.iter().map(|(_, b)| b).sum::<u64>(),
        r.retries,
        r.errors,
        r.prefetched.0,
        r.prefetched.1,
    )
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn human(r: &Report) -> String {
    let bytes: u64 = r.pending.iter().map(|(_, b)| b).sum();
    let connection = match &r.health {
        Health::Online => "online".to_string(),
        Health::Down {
            since,
            reason,
            reconnecting,
        } => format!(
            "down for {} s{}: {reason}",
            since.elapsed().map_or(0, |d| d.as_secs()),
            if *reconnecting { ", reconnecting" } else { "" }
        ),
    };
    let rtt = match r.rtt {
        Some((d, age)) => format!(", rtt {} ms ({} s ago)", ms(d), age.as_secs()),
        None => String::new(),
    };
    let mut s = format!(
        "{}: {} (pid {}, up {}s)\n  connection: {connection}{rtt}\n  cache: {} of {}, {} clean file(s)\n  not yet uploaded: {} file(s), {}\n",
        r.mountpoint,
        r.source,
        r.pid,
        r.uptime_secs,
        size(r.cache_bytes),
        size(r.cache_limit),
        r.clean_files,
        r.pending.len(),
        size(bytes)
    );
    for (p, b) in &r.pending {
        s.push_str(&format!("    {p}  {}\n", size(*b)));
    }
    s.push_str(&format!("  uploading: {}\n", r.uploading.len()));
    for u in &r.uploading {
        s.push_str(&format!(
            "    {}  {}% of {}\n",
            u.path,
            u.percent(),
            size(u.size)
        ));
    }
    if let Some((queued, failed)) = &r.writeback {
        s.push_str(&format!(
            "  write-back: {queued} upload(s) queued or running, {} failed\n",
            failed.len()
        ));
        for f in failed {
            let ago = f.at.elapsed().map_or(0, |d| d.as_secs());
            s.push_str(&format!(
                "    {}  {} tries, last {ago} s ago: {}\n",
                f.path, f.attempts, f.error
            ));
        }
    }
    s.push_str(&format!("  upload retries: {}\n", r.retries));
    s.push_str(&format!(
        "  prefetched: {} file(s), {} used by an open\n",
        r.prefetched.0, r.prefetched.1
    ));
    if !r.recovered.is_empty() {
        s.push_str(&format!("  recovered at start: {}\n", r.recovered.len()));
        for p in &r.recovered {
            s.push_str(&format!("    {p}\n"));
        }
    }
    s.push_str(&format!("  errors since mount: {}\n", r.errors));
    for (t, m) in &r.recent_errors {
        let ago = t.elapsed().map_or(0, |d| d.as_secs());
        s.push_str(&format!("    {ago} s ago: {m}\n"));
    }
    if !r.requests.is_empty() {
        s.push_str("  requests:       count     p50 ms     p90 ms     p99 ms\n");
        for o in &r.requests {
            s.push_str(&format!(
                "    {:<10} {:>9} {:>10} {:>10} {:>10}\n",
                o.op,
                o.count,
                ms(o.p50),
                ms(o.p90),
                ms(o.p99)
            ));
        }
    }
    s
}

fn size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Command line of `rfmount status`.
#[derive(Parser, Debug)]
#[command(
    name = "rfmount status",
    about = "Show what running mounts hold and do: connection and RTT, cache use, files \
             not yet uploaded, uploads in progress, retries, errors, request latencies"
)]
struct StatusArgs {
    /// Mount point (all of this user's mounts when omitted).
    mountpoint: Option<PathBuf>,
    /// Machine-readable output, one JSON object per line and mount.
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    watch: bool,
}

/// `rfmount status ...` (argv without the program name and `status`).
pub(crate) fn main(args: impl Iterator<Item = std::ffi::OsString>) -> ExitCode {
    let args =
        match StatusArgs::try_parse_from(std::iter::once("rfmount status".into()).chain(args)) {
            Ok(a) => a,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
        };
    let sockets = match &args.mountpoint {
        Some(m) => match m.canonicalize() {
            Ok(c) => vec![socket_path(&c)],
            Err(e) => {
                eprintln!("rfmount: error: {}: {e}", m.display());
                return ExitCode::from(2);
            }
        },
        None => std::fs::read_dir(socket_dir())
            .map(|rd| {
                let mut v: Vec<PathBuf> = rd
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default(),
    };
    let want = if args.json { "json\n" } else { "text\n" };
    loop {
        let mut out = String::new();
        let mut any = false;
        for s in &sockets {
            if let Ok(t) = ask(s, want) {
                out.push_str(&t);
                any = true;
            }
        }
        if !any {
            match &args.mountpoint {
                Some(m) => eprintln!(
                    "rfmount: error: no rfmount of this user serves {}",
                    m.display()
                ),
                None => eprintln!("rfmount: error: no rfmount of this user is running"),
            }
            return ExitCode::FAILURE;
        }
        if args.watch {
            print!("\x1b[H\x1b[2J{out}");
        } else {
            print!("{out}");
        }
        let _ = io::stdout().flush();
        if !args.watch {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ask(socket: &Path, want: &str) -> io::Result<String> {
    let mut c = UnixStream::connect(socket)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(want.as_bytes())?;
    let mut s = String::new();
    c.read_to_string(&mut s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped_and_totals_add_up() {
        let r = Report {
            mountpoint: "/m".into(),
            source: "h:1".into(),
            pid: 7,
            uptime_secs: 3,
            health: Health::Down {
                since: UNIX_EPOCH + Duration::from_secs(100),
                reason: "server h:1 did not answer".into(),
                reconnecting: true,
            },
            rtt: Some((Duration::from_micros(1500), Duration::from_secs(2))),
            cache_bytes: 10,
            cache_limit: 20,
            clean_files: 1,
            pending: vec![("/a\"b\n".into(), 4), ("/c".into(), 6)],
            uploading: vec![UploadProgress {
                path: "/c".into(),
                size: 6,
                sent: 3,
            }],
            writeback: Some((
                3,
                vec![FailedUpload {
                    path: "/c".into(),
                    attempts: 2,
                    error: "no space".into(),
                    at: UNIX_EPOCH,
                }],
            )),
            retries: 2,
            recovered: vec!["/d.recovered-h-20260101-000000".into()],
            errors: 1,
            recent_errors: vec![(UNIX_EPOCH, "open: Input/output error".into())],
            requests: vec![OpStats {
                op: "PUT".into(),
                count: 2,
                p50: Duration::from_millis(2),
                p90: Duration::from_millis(3),
                p99: Duration::from_millis(4),
            }],
            prefetched: (5, 3),
        };
        let j = json(&r);
        assert!(
            j.contains("\"pending_files\":2,\"pending_bytes\":10"),
            "{j}"
        );
        assert!(j.contains("\"path\":\"/a\\\"b\\n\""), "{j}");
        assert!(j.contains("\"connection\":{\"state\":\"reconnecting\",\"down_since\":100,\"reason\":\"server h:1 did not answer\",\"rtt_ms\":1.500,\"rtt_age_secs\":2}"), "{j}");
        assert!(
            j.contains("\"uploading\":[{\"path\":\"/c\",\"size\":6,\"sent\":3,\"percent\":50}]"),
            "{j}"
        );
        assert!(j.contains("\"requests\":[{\"op\":\"PUT\",\"count\":2,\"p50_ms\":2.000,\"p90_ms\":3.000,\"p99_ms\":4.000}]"), "{j}");
        assert!(j.contains("\"retries\":2,\"recovered\":[\"/d.recovered-h-20260101-000000\"],\"errors\":1,\"recent_errors\":[{\"at\":0,"), "{j}");
        assert!(j.contains("\"writeback\":{\"queued\":3,\"failed\":[{\"path\":\"/c\",\"attempts\":2,\"error\":\"no space\",\"at\":0}]}"), "{j}");
        assert_eq!(size(1536), "1.5 KiB");
        let h = human(&r);
        assert!(h.contains("not yet uploaded: 2 file(s), 10 B"), "{h}");
        assert!(h.contains("/c  50% of 6 B"), "{h}");
        assert!(
            h.contains("prefetched: 5 file(s), 3 used by an open"),
            "{h}"
        );
        assert!(j.contains("\"prefetched\":5,\"prefetch_used\":3,"), "{j}");
        assert!(
            h.contains("write-back: 3 upload(s) queued or running, 1 failed"),
            "{h}"
        );
        assert!(h.contains("/c  2 tries, last "), "{h}");
        assert!(
            h.contains(", reconnecting: server h:1 did not answer, rtt 1.500 ms"),
            "{h}"
        );
    }
}
