//! Binaries, waiting, output formatting, deterministic random content and file comparison.

#![allow(dead_code, unused_imports)]

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// The `rfserve` binary cargo built for this test run.
pub fn rfserve_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rfserve"))
}

/// The `rf` binary cargo built for this test run.
pub fn rf_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rf"))
}

/// The `rfmount` binary cargo built for this test run.
pub fn rfmount_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rfmount"))
}

/// True when running in CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = String::new();
    if start > 0 {
        out.push_str(&format!("[... {start} earlier lines ...]\n"));
    }
    for l in &lines[start..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Bytes as text for a message, cut to the first and last `max / 2`
/// characters so a 100 MiB stdout does not drown the report.
pub fn show(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(bytes);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return s.into_owned();
    }
    let head: String = chars[..max / 2].iter().collect();
    let tail: String = chars[chars.len() - max / 2..].iter().collect();
    format!(
        "{head}\n[... {} characters left out ...]\n{tail}",
        chars.len() - max
    )
}

/// Lossy UTF-8 text of `bytes`.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// Deterministic random content
// ---------------------------------------------------------------------------

/// xorshift64* — small, fast and reproducible: the same seed always gives
/// the same bytes, so a failing test can be rerun with identical data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 once, so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// A generator seeded from a string, e.g. the test's name.
    pub fn from_name(name: &str) -> Rng {
        // FNV-1a.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Rng::new(h)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// Writes `size` random bytes from `seed` to `path`, streaming in 1 MiB
/// pieces so large files cost no memory.
pub fn write_random_file(path: &Path, size: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    f.sync_all().ok();
}

/// Panics unless the two files have identical bytes, naming the first
/// differing offset. Streams, so it works for files of any size.
#[track_caller]
pub fn assert_same_file(expected: &Path, actual: &Path) {
    if let Err(msg) = compare_files(expected, actual) {
        panic!(
            "{} and {} differ: {msg}",
            expected.display(),
            actual.display()
        );
    }
}

/// `Ok` when both files exist and hold the same bytes, else why not.
pub fn compare_files(a: &Path, b: &Path) -> Result<(), String> {
    let fa = File::open(a).map_err(|e| format!("open {}: {e}", a.display()))?;
    let fb = File::open(b).map_err(|e| format!("open {}: {e}", b.display()))?;
    let (la, lb) = (
        fa.metadata().map_err(|e| e.to_string())?.len(),
        fb.metadata().map_err(|e| e.to_string())?.len(),
    );
    if la != lb {
        return Err(format!("sizes {la} and {lb}"));
    }
    let (mut ra, mut rb) = (
        BufReader::with_capacity(1 << 20, fa),
        BufReader::with_capacity(1 << 20, fb),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_up_to(&mut ra, &mut ba).map_err(|e| e.to_string())?;
        let m = read_up_to(&mut rb, &mut bb).map_err(|e| e.to_string())?;
        if n != m {
            return Err(format!(
                "lengths diverge at offset {}",
                offset + n.min(m) as u64
            ));
        }
        if n == 0 {
            return Ok(());
        }
        if let Some(i) = (0..n).find(|&i| ba[i] != bb[i]) {
            return Err(format!(
                "first difference at byte offset {}",
                offset + i as u64
            ));
        }
        offset += n as u64;
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// SHA-256 of a file through the system's `sha256sum`, as hex.
pub fn sha256(path: &Path) -> String {
    let out = TestCommand::new("sha256sum").arg(path).ok();
    let s = text(&out.stdout);
    s.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("sha256sum printed nothing for {}", path.display()))
        .to_owned()
}

/// Names in `dir` (not recursive) that start with `prefix`.
pub fn names_with_prefix(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Names anywhere below `dir` (recursive, not following symlinks) that start
/// with `prefix`, as paths relative to `dir`.
pub fn find_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.strip_prefix(dir).unwrap_or(&p).to_path_buf());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}
