//! Mount configuration: the `-o` options and cache settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::idmap::IdMapMode;

/// Everything the filesystem core needs to know about how it is mounted.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// How long the kernel and we may trust a file's attributes. Zero would
    /// make the kernel re-stat every entry of every `ls`; 1 s is the default.
    pub attr_timeout: Duration,
    /// How long a directory listing may be reused for lookups and readdir.
    pub dir_timeout: Duration,
    /// Mounted read-only (`-o ro`, or the export is read-only).
    pub read_only: bool,
    /// `-o allow_other`.
    pub allow_other: bool,
    /// `-o default_permissions`: the kernel checks modes.
    pub default_permissions: bool,
    /// `-o acl`: POSIX ACLs are carried to the server. Off by default:
    /// `ls -l` asks for every file's ACL, one round trip each.
    pub acl: bool,
    /// Root of the on-disk cache (the export id is appended).
    pub cache_dir: PathBuf,
    /// Bound of the data cache in bytes, unsent changes included.
    pub cache_size: u64,
    /// How often files whose upload failed are retried.
    pub retry_interval: Duration,
    /// `-o writeback`: `close` returns once the file is durable in the
    /// cache, and uploads run in the background (see `fs::writeback`).
    pub writeback: bool,
    /// `-o stream` (default) / `-o nostream`: a big file written in order
    /// streams its upload while it is written (see `fs::upload_stream`).
    pub stream_uploads: bool,
    /// `-o uploads=N`: uploads a write-back mount runs at once.
    pub upload_workers: usize,
    /// `-o flush=SECS`: how long a write-back close waits at most for its
    /// file to be flushed to the cache disk (see `data_cache::flush`).
    pub flush_interval: Duration,
    /// `-o idmap=none|user` (see [`crate::idmap`]).
    pub idmap: IdMapMode,
    /// `-o uid=N`: every file appears owned by user N.
    pub uid: Option<u32>,
    /// `-o gid=N`: every file appears owned by group N.
    pub gid: Option<u32>,
    /// `-o timeout=SECS`: how long an operation waits for a server that
    /// shows no progress before the server counts as unreachable.
    pub timeout: Duration,
    /// Fetch the next small files of a directory ahead while a program
    /// reads them in order (`-o noprefetch` turns it off).
    pub prefetch: bool,
    /// `-o passthrough` (default) / `-o nopassthrough`: let the kernel read
    /// clean, fully cached files straight from the cache file (FUSE
    /// passthrough) where it can; a pushed change or a lock's new version
    /// is copied into that file (see `fs::backing_refresh`).
    pub passthrough: bool,
    /// `-o conflict=keep|error|overwrite`: what a close does when another
    /// writer changed the server's file since this mount's version.
    pub conflict: ConflictMode,
}

/// What to do with an upload the server refuses because its file changed
/// since the version the writer started from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictMode {
    /// Upload this mount's data beside the file as
    /// `NAME.conflict-HOST-STAMP`, log it, and let `close` succeed.
    #[default]
    Keep,
    /// Fail `close` with EIO; the data stays dirty in the cache.
    Error,
    /// Replace the server's file anyway (last close wins).
    Overwrite,
}

impl MountConfig {
    /// Defaults with the cache under `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> Self {
        MountConfig {
            attr_timeout: Duration::from_secs(1),
            dir_timeout: Duration::from_secs(1),
            read_only: false,
            allow_other: false,
            default_permissions: false,
            acl: false,
            cache_dir,
            cache_size: 1 << 30,
            retry_interval: Duration::from_secs(5),
            writeback: false,
            stream_uploads: true,
            upload_workers: 4,
            flush_interval: crate::data_cache::FLUSH_INTERVAL,
            idmap: IdMapMode::None,
            uid: None,
            gid: None,
            timeout: rfmount_client::DEFAULT_TIMEOUT,
            prefetch: true,
            passthrough: true,
            conflict: ConflictMode::Keep,
        }
    }

    /// Applies a comma-separated `-o` string.
    ///
    /// # Errors
    /// An unknown option or a bad number, named in the message.
    pub fn apply_options(&mut self, opts: &str) -> Result<(), String> {
        for opt in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            match (key, value) {
                ("ro", None) => self.read_only = true,
                ("rw", None) => self.read_only = false,
                ("prefetch", None) => self.prefetch = true,
                ("noprefetch", None) => self.prefetch = false,
                ("passthrough", None) => self.passthrough = true,
                ("nopassthrough", None) => self.passthrough = false,
                ("allow_other", None) => self.allow_other = true,
                ("default_permissions", None) => self.default_permissions = true,
                ("writeback", None) => self.writeback = true,
                ("nowriteback", None) => self.writeback = false,
                ("stream", None) => self.stream_uploads = true,
                ("nostream", None) => self.stream_uploads = false,
                ("acl", None) => self.acl = true,
                ("noacl", None) => self.acl = false,
                ("attr_timeout", Some(v)) => self.attr_timeout = seconds(key, v)?,
                ("dir_timeout", Some(v)) => self.dir_timeout = seconds(key, v)?,
                ("idmap", Some("none")) => self.idmap = IdMapMode::None,
                ("idmap", Some("user")) => self.idmap = IdMapMode::User,
                ("idmap", v) => {
                    return Err(format!(
                        "idmap={}: must be idmap=none or idmap=user",
                        v.unwrap_or("")
                    ));
                }
                ("uploads", Some(v)) => {
                    self.upload_workers = match v.parse() {
                        Ok(n @ 1..=64) => n,
                        _ => return Err(format!("{key}={v}: must be a number from 1 to 64")),
                    }
                }
                ("flush", Some(v)) => {
                    let t = seconds(key, v)?;
                    if t < Duration::from_millis(10) {
                        return Err(format!("{key}={v}: must be at least 0.01 seconds"));
                    }
                    self.flush_interval = t;
                }
                ("conflict", Some("keep")) => self.conflict = ConflictMode::Keep,
                ("conflict", Some("error")) => self.conflict = ConflictMode::Error,
                ("conflict", Some("overwrite")) => self.conflict = ConflictMode::Overwrite,
                ("conflict", v) => {
                    return Err(format!(
                        "conflict={}: must be conflict=keep, conflict=error or conflict=overwrite",
                        v.unwrap_or("")
                    ));
                }
                ("uid", Some(v)) => self.uid = Some(id(key, v)?),
                ("gid", Some(v)) => self.gid = Some(id(key, v)?),
                ("timeout", Some(v)) => {
                    let t = seconds(key, v)?;
                    if t < Duration::from_millis(100) {
                        return Err(format!("{key}={v}: must be at least 0.1 seconds"));
                    }
                    self.timeout = t;
                }
                (
                    "attr_timeout" | "dir_timeout" | "timeout" | "uid" | "gid" | "uploads"
                    | "flush",
                    None,
                ) => {
                    return Err(format!("option {key} needs a value, e.g. {key}=1"));
                }
                _ => return Err(format!("unknown mount option {opt:?}")),
            }
        }
        Ok(())
    }
}

fn id(key: &str, v: &str) -> Result<u32, String> {
    v.parse()
        .map_err(|_| format!("{key}={v}: not a numeric id"))
}

fn seconds(key: &str, v: &str) -> Result<Duration, String> {
    let secs: f64 = v
        .parse()
        .map_err(|_| format!("{key}={v}: not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("{key}={v}: must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size like `512M`, `2G`, `1048576` or `10GiB`.
///
/// # Errors
/// A message naming the bad input.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("bad size unit in {s:?} (use K, M, G or T)")),
    };
    Ok((num * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let mut c = MountConfig::new(PathBuf::from("/tmp"));
        c.apply_options("ro,allow_other,attr_timeout=2.5,dir_timeout=0")
            .unwrap();
        assert!(c.read_only && c.allow_other && !c.default_permissions);
        assert_eq!(c.attr_timeout, Duration::from_millis(2500));
        assert_eq!(c.dir_timeout, Duration::ZERO);
        assert!(c.apply_options("bogus").is_err());
        assert!(c.apply_options("attr_timeout=x").is_err());
        assert!(c.apply_options("attr_timeout").is_err());
        c.apply_options("idmap=user,uid=1000,gid=100").unwrap();
        assert_eq!(
            (c.idmap, c.uid, c.gid),
            (IdMapMode::User, Some(1000), Some(100))
        );
        assert!(c.apply_options("idmap=file").is_err());
        assert!(c.apply_options("uid=bob").is_err());
        assert!(c.apply_options("gid").is_err());
        c.apply_options("timeout=2").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert!(c.apply_options("timeout=0").is_err());
        assert!(c.apply_options("timeout").is_err());
        assert!(!c.writeback);
        c.apply_options("writeback").unwrap();
        assert!(c.writeback);
        c.apply_options("nowriteback").unwrap();
        assert!(!c.writeback);
        assert!(c.apply_options("writeback=1").is_err());
        assert!(c.stream_uploads);
        c.apply_options("nostream").unwrap();
        assert!(!c.stream_uploads);
        c.apply_options("stream").unwrap();
        assert!(c.stream_uploads);
        c.apply_options("uploads=2").unwrap();
        assert_eq!(c.upload_workers, 2);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        c.apply_options("flush=30").unwrap();
        assert_eq!(c.flush_interval, Duration::from_secs(30));
        for bad in ["flush=0", "flush=x", "flush"] {
            assert!(c.apply_options(bad).is_err(), "{bad}");
        }
        for bad in ["uploads=0", "uploads=65", "uploads=x", "uploads"] {
            assert!(c.apply_options(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
    }
}
