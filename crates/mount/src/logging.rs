//! Where rfmount's log goes: stderr in the foreground (`-f`, `-d`), a file
//! otherwise, since a background mount has no terminal. The file is
//! `--log-file` / `-o log_file=`, or by default `rfmount.log` in
//! `$XDG_STATE_HOME/rfmount`, `~/.local/state/rfmount`, or for root without
//! a home (fstab at boot) `/var/log/rfmount`. The level is `-o loglevel=`,
//! else `RUST_LOG`, else `info`; `-d` means `debug`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log destination, opened before forking so that a bad path is a
/// start error rather than a silent loss.
pub(crate) enum LogTarget {
    Stderr,
    File(PathBuf, File),
}

impl LogTarget {
    /// Opens `path` for appending, creating its directory.
    pub(crate) fn file(path: &Path) -> Result<LogTarget, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("log directory {}: {e}", dir.display()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("log file {}: {e}", path.display()))?;
        Ok(LogTarget::File(path.to_path_buf(), f))
    }
}

/// The default log file of a background mount.
pub(crate) fn default_log_file() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let dir = if let Some(x) = var("XDG_STATE_HOME") {
        PathBuf::from(x).join("rfmount")
    } else if let Some(h) = var("HOME") {
        PathBuf::from(h).join(".local/state/rfmount")
    } else {
        PathBuf::from("/var/log/rfmount")
    };
    dir.join("rfmount.log")
}

/// Installs the logger. `explicit` is `-o loglevel=` (or `debug` for `-d`).
pub(crate) fn init(target: LogTarget, explicit: Option<&str>) {
    let base = explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "info".to_owned());
    // fuser's per-request debug lines drown ours, and its warning about an
    // unmount that someone else already did is not news.
    let filters = format!("fuser=warn,{base},fuser::mnt=error");
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filters);
    if let LogTarget::File(_, f) = target {
        let pid = std::process::id();
        b.format(move |buf, r| {
            writeln!(
                buf,
                "{} rfmount[{pid}] {} {}: {}",
                buf.timestamp_seconds(),
                r.level(),
                r.target(),
                r.args()
            )
        });
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    let _ = b.try_init();
}
