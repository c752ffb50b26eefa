//! The end-to-end harness: real `rfserve`, `rf` and `rfmount` processes on
//! temporary directories and ephemeral ports.
//!
//! Every guard here kills what it started by PID on drop and every wait has
//! a deadline, so a broken binary fails a test instead of hanging the suite.
//! When a test panics, the guards print the tail of their process's log to
//! stderr, which the test runner shows next to the failure.
//!
//! Summary:
//! - [`TestDir`]: a unique temporary directory with file helpers and
//!   deterministic random content ([`Rng`], [`TestDir::write_random`]).
//! - [`Server`]: `rfserve --root ROOT --listen 127.0.0.1:0 ...` with its port,
//!   its log ([`Server::log`], [`Server::count`]), [`Server::kill`] and
//!   [`Server::restart`]; [`Server::rf`] builds an `rf` command aimed at it.
//! - [`TestCommand`]: any command with a timeout; [`TestCommand::ok`],
//!   [`TestCommand::fails`], [`TestCommand::run`] panic with the command,
//!   its cwd, status, output and the server's log tail when something is off.
//! - [`Mount`]: `rfmount ADDR MNT -f --cache-dir ...` that is waited for in
//!   the mount table and unmounted on drop; [`require_fuse`] decides whether
//!   mount tests run (always in CI) or are skipped with a note.

#![allow(dead_code)] // Not every test module uses every helper.

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

/// How long a server or a mount may take to come up.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Default limit for one command run by a test.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

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

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A unique temporary directory, removed on drop (unless [`TestDir::keep`]
/// was called, or the directory may still hold a live mount).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    leak: bool,
}

impl TestDir {
    /// A fresh directory named after `name` (used only to make the path
    /// recognisable).
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rfmount-e2e-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        TestDir {
            dir: Some(dir),
            leak: false,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("directory already released")
            .path()
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Creates `rel` (and parents) and returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Writes `content` to `rel` (creating parents) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Writes `size` deterministic random bytes from `seed` to `rel`.
    pub fn write_random(&self, rel: impl AsRef<Path>, size: u64, seed: u64) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        write_random_file(&p, size, seed);
        p
    }

    /// The content of `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        let p = self.join(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Sets the permission bits of `rel`.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) {
        let p = self.join(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    }

    /// Keeps the directory on disk after the test (for debugging).
    pub fn keep(&mut self) {
        self.leak = true;
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.leak {
            if let Some(d) = self.dir.take() {
                eprintln!("note: leaving {} on disk", d.path().display());
                // Forgetting the guard is what keeps the directory.
                std::mem::forget(d);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// A command run with a deadline whose failures are reported in full.
pub struct TestCommand {
    cmd: Command,
    display: String,
    cwd: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    logs: Vec<(String, PathBuf)>,
    group: bool,
}

impl TestCommand {
    /// `program` with no arguments yet. `RUST_LOG` and `RF_TOKEN_FILE` are
    /// removed from its environment so the test machine's settings cannot
    /// change what it prints or how it authenticates.
    pub fn new(program: impl AsRef<OsStr>) -> TestCommand {
        let program = program.as_ref();
        let mut cmd = Command::new(program);
        cmd.env_remove("RUST_LOG").env_remove("RF_TOKEN_FILE");
        TestCommand {
            cmd,
            display: quote(program),
            cwd: None,
            stdin: None,
            timeout: COMMAND_TIMEOUT,
            logs: Vec::new(),
            group: false,
        }
    }

    /// `bash -euo pipefail -c SCRIPT`, for pipelines of ordinary tools
    /// (`tar c . | tar x -C ...`). It runs in its own process group, and a
    /// timeout kills the whole group, not just bash.
    pub fn sh(script: &str) -> TestCommand {
        let mut c = TestCommand::new("bash");
        c.args(["-euo", "pipefail", "-c", script]);
        c.group = true;
        c
    }

    /// The `rf` binary.
    pub fn rf() -> TestCommand {
        TestCommand::new(rf_bin())
    }

    /// The `rfserve` binary.
    pub fn rfserve() -> TestCommand {
        TestCommand::new(rfserve_bin())
    }

    /// Appends an argument.
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.display.push(' ');
        self.display.push_str(&quote(a.as_ref()));
        self.cmd.arg(a);
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self.cmd.current_dir(dir);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    /// Feeds `input` on stdin (default: no stdin at all).
    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Self {
        self.stdin = Some(input.into());
        self
    }

    /// Kills the command after `t` (default [`COMMAND_TIMEOUT`]).
    pub fn timeout(&mut self, t: Duration) -> &mut Self {
        self.timeout = t;
        self
    }

    /// Adds the tail of the log file at `path` to failure reports.
    pub fn with_log(&mut self, what: &str, path: impl AsRef<Path>) -> &mut Self {
        self.logs
            .push((what.to_owned(), path.as_ref().to_path_buf()));
        self
    }

    /// Adds `server`'s log to failure reports.
    pub fn with_server(&mut self, server: &Server) -> &mut Self {
        self.with_log("rfserve log", server.log_path())
    }

    /// The command line as a shell would show it.
    pub fn command_line(&self) -> &str {
        &self.display
    }

    /// Runs to completion (or the timeout) whatever the exit status.
    ///
    /// # Panics
    /// If the command cannot be started or times out.
    pub fn run(&mut self) -> Output {
        let started = Instant::now();
        self.cmd
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.group {
            std::os::unix::process::CommandExt::process_group(&mut self.cmd, 0);
        }
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.display));
        if let Some(input) = self.stdin.clone() {
            let mut w = child.stdin.take().unwrap();
            // On a thread: the child may not read all of it, or only after
            // writing a lot of output.
            thread::spawn(move || {
                let _ = w.write_all(&input);
            });
        }
        let out_rx = drain(child.stdout.take().unwrap());
        let err_rx = drain(child.stderr.take().unwrap());
        let deadline = started + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("waiting for {}: {e}", self.display),
            }
        };
        let timed_out = status.is_none();
        let status = match status {
            Some(st) => st,
            None => {
                if self.group {
                    // SAFETY: plain syscall; the group is the one the child
                    // leads, created above.
                    unsafe {
                        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
                    }
                }
                let _ = child.kill();
                child.wait().expect("wait after kill")
            }
        };
        // A grandchild holding the pipes open must not hang us either.
        let grace = Duration::from_secs(if timed_out { 2 } else { 10 });
        let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
        let stderr = err_rx.recv_timeout(grace).unwrap_or_default();
        let out = Output {
            status,
            stdout,
            stderr,
        };
        if timed_out {
            panic!(
                "{}",
                self.report(
                    &format!("timed out after {:?} and was killed", self.timeout),
                    &out
                )
            );
        }
        out
    }

    /// Runs and expects exit status 0.
    #[track_caller]
    pub fn ok(&mut self) -> Output {
        let out = self.run();
        if !out.status.success() {
            panic!("{}", self.report("was expected to succeed", &out));
        }
        out
    }

    /// Runs, expects success and returns stdout as text.
    #[track_caller]
    pub fn stdout(&mut self) -> String {
        text(&self.ok().stdout)
    }

    /// Runs and expects a non-zero exit status (not death by a signal).
    #[track_caller]
    pub fn fails(&mut self) -> Output {
        let out = self.run();
        if out.status.success() || out.status.code().is_none() {
            panic!(
                "{}",
                self.report("was expected to fail with an exit code", &out)
            );
        }
        out
    }

    /// Runs and expects exactly exit code `code`.
    #[track_caller]
    pub fn code(&mut self, code: i32) -> Output {
        let out = self.run();
        if out.status.code() != Some(code) {
            panic!(
                "{}",
                self.report(&format!("was expected to exit with code {code}"), &out)
            );
        }
        out
    }

    /// Starts the command in the background with stdout and stderr going to
    /// files in `dir` (for tests that kill it mid-way).
    pub fn spawn_logged(&mut self, dir: &Path, name: &str) -> Background {
        let out_path = dir.join(format!("{name}.stdout"));
        let err_path = dir.join(format!("{name}.stderr"));
        self.cmd
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).unwrap())
            .stderr(File::create(&err_path).unwrap());
        let child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.display));
        Background {
            child: Some(child),
            display: self.display.clone(),
            out_path,
            err_path,
            logs: self.logs.clone(),
        }
    }

    /// A failure report: what ran, where, how it ended, what it printed.
    pub fn report(&self, what: &str, out: &Output) -> String {
        let mut s = format!(
            "\n==== command {what} ====\ncommand: {}\ncwd: {}\nstatus: {}\n---- stdout ----\n{}\n---- stderr ----\n{}\n",
            self.display,
            self.cwd.as_deref().map_or_else(
                || std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
                |d| d.display().to_string()
            ),
            out.status,
            show(&out.stdout, 4000),
            show(&out.stderr, 4000),
        );
        for (what, path) in &self.logs {
            let log = fs::read(path).unwrap_or_default();
            s.push_str(&format!(
                "---- {what} ({}) ----\n{}",
                path.display(),
                tail(&text(&log), 40)
            ));
        }
        s
    }
}

/// Reads a pipe to the end on a thread; the result arrives on the channel.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A command running in the background, killed by PID on drop.
pub struct Background {
    child: Option<Child>,
    display: String,
    out_path: PathBuf,
    err_path: PathBuf,
    logs: Vec<(String, PathBuf)>,
}

impl Background {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends SIGKILL and reaps it; returns how it ended (a command that had
    /// already finished reports its real exit status).
    pub fn kill(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("already reaped");
        let _ = child.kill();
        let st = child.wait().expect("wait after kill");
        self.child = None;
        st
    }

    /// Waits up to `timeout` for it to end by itself; kills it and panics
    /// with a report if it does not.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                self.child = None;
                return st;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{}",
                    self.report(&format!("did not end within {timeout:?} and was killed"))
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        text(&fs::read(&self.out_path).unwrap_or_default())
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        text(&fs::read(&self.err_path).unwrap_or_default())
    }

    /// A report of what ran and what it printed.
    pub fn report(&self, what: &str) -> String {
        let mut s = format!(
            "\n==== background command {what} ====\ncommand: {}\n---- stdout ----\n{}\n---- stderr ----\n{}\n",
            self.display,
            show(self.stdout().as_bytes(), 4000),
            show(self.stderr().as_bytes(), 4000),
        );
        for (what, path) in &self.logs {
            let log = fs::read(path).unwrap_or_default();
            s.push_str(&format!(
                "---- {what} ({}) ----\n{}",
                path.display(),
                tail(&text(&log), 40)
            ));
        }
        s
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends SIGKILL to `pid` (one process, never a group or a name).
pub fn kill_pid(pid: u32) {
    // SAFETY: plain syscall with a PID we started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

// ---------------------------------------------------------------------------
// rfserve
// ---------------------------------------------------------------------------

/// A running `rfserve` on `127.0.0.1` and an ephemeral port, killed on drop.
pub struct Server {
    child: Option<Child>,
    root: PathBuf,
    port: u16,
    extra: Vec<OsString>,
    env: Vec<(String, String)>,
    logdir: TestDir,
    log_path: PathBuf,
    stdout: Arc<Mutex<String>>,
    starts: u32,
}

impl Server {
    /// Serves `root` (created if missing) with `extra` arguments such as
    /// `--read-only`, at debug log level.
    pub fn start(root: impl AsRef<Path>, extra: &[&str]) -> Server {
        Server::start_os(root, extra.iter().map(OsString::from).collect())
    }

    /// As [`Server::start`], with arguments that may be paths.
    pub fn start_os(root: impl AsRef<Path>, extra: Vec<OsString>) -> Server {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).unwrap();
        let logdir = TestDir::new("rfserve-log");
        let log_path = logdir.join("rfserve.log");
        let mut s = Server {
            child: None,
            root,
            port: 0,
            extra,
            env: vec![("RUST_LOG".into(), "debug".into())],
            logdir,
            log_path,
            stdout: Arc::new(Mutex::new(String::new())),
            starts: 0,
        };
        if let Err(e) = s.spawn("127.0.0.1:0") {
            panic!("{e}");
        }
        s
    }

    /// Starts rfserve listening on `listen`; `Err` with a full report if it
    /// does not announce its port in time.
    fn spawn(&mut self, listen: &str) -> Result<(), String> {
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        writeln!(
            log,
            "==== test harness: start #{} of rfserve on {listen} ====",
            self.starts
        )
        .unwrap();
        let mut cmd = Command::new(rfserve_bin());
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--listen")
            .arg(listen)
            .args(&self.extra)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let display = format!(
            "{} --root {} --listen {listen} {}",
            rfserve_bin().display(),
            self.root.display(),
            self.extra
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {display}: {e}"))?;
        let stdout = child.stdout.take().unwrap();
        let rx = read_first_line(stdout, self.stdout.clone());
        let line = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(line)) => line,
            Ok(None) => {
                let st = child.wait().ok();
                return Err(format!(
                    "rfserve ended without announcing its port\ncommand: {display}\nstatus: {st:?}\n---- log ----\n{}",
                    tail(&self.log(), 40)
                ));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "rfserve did not announce its port within {STARTUP_TIMEOUT:?}\ncommand: {display}\n---- log ----\n{}",
                    tail(&self.log(), 40)
                ));
            }
        };
        let port = parse_listening_line(&line).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rfserve's first stdout line should be `rfserve listening on 127.0.0.1:PORT`, got {line:?}\ncommand: {display}"
            )
        });
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    /// `127.0.0.1:PORT`, as `rf` and `rfmount` take it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The exported directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Where its stderr goes (all starts of this server append to it).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything it logged so far, across restarts.
    pub fn log(&self) -> String {
        text(&fs::read(&self.log_path).unwrap_or_default())
    }

    /// What it printed on stdout beyond the `listening` line.
    pub fn extra_stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Number of log lines containing `pattern` (a plain substring), e.g.
    /// `count("op=GET path=/a result=data")`.
    pub fn count(&self, pattern: &str) -> usize {
        self.log().lines().filter(|l| l.contains(pattern)).count()
    }

    /// Waits up to `timeout` until [`Server::count`] of `pattern` reaches
    /// `n` (log lines are written asynchronously to the client's view).
    pub fn wait_count(&self, pattern: &str, n: usize, timeout: Duration) -> usize {
        wait_for(timeout, || {
            let c = self.count(pattern);
            (c >= n).then_some(c)
        })
        .unwrap_or_else(|| self.count(pattern))
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; kills it
    /// and panics if it does not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("rfserve is not running");
        // SAFETY: plain syscall with a PID we started and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let st = wait_for(timeout, || child.try_wait().ok().flatten());
        match st {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "rfserve did not exit within {timeout:?} of SIGTERM\n---- log ----\n{}",
                    tail(&self.log(), 40)
                );
            }
        }
    }

    /// SIGKILL, then reap. A no-op when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it if running and starts it again on the same root with the
    /// same arguments, on the same port if that can be bound again within a
    /// few seconds (else on a new port, with a note on stderr).
    pub fn restart(&mut self) {
        self.kill();
        let listen = format!("127.0.0.1:{}", self.port);
        let mut last = String::new();
        for _ in 0..25 {
            match self.spawn(&listen) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "note: could not restart rfserve on {listen}, using a new port; last attempt:\n{last}"
        );
        if let Err(e) = self.spawn("127.0.0.1:0") {
            panic!("{e}");
        }
    }

    /// An `rf SUBCOMMAND ADDR ARGS...` command aimed at this server, whose
    /// failure report includes this server's log.
    pub fn rf<I, S>(&self, sub: &str, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = TestCommand::rf();
        c.arg(sub).arg(self.addr()).args(args).with_server(self);
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!(
                "---- rfserve log ({}) ----\n{}",
                self.log_path.display(),
                tail(&self.log(), 60)
            );
        }
    }
}

/// Parses `rfserve listening on 127.0.0.1:PORT`.
fn parse_listening_line(line: &str) -> Option<u16> {
    let line = line.trim_end();
    if !line.starts_with("rfserve listening on ") {
        return None;
    }
    let addr = line.split_whitespace().last()?;
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Sends the first stdout line (or `None` at EOF) and keeps draining the
/// pipe into `rest` so rfserve never blocks or fails writing stdout.
fn read_first_line(
    stdout: ChildStdout,
    rest: Arc<Mutex<String>>,
) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 => {
                let _ = tx.send(Some(line));
            }
            _ => {
                let _ = tx.send(None);
                return;
            }
        }
        let mut more = String::new();
        while let Ok(n) = r.read_line(&mut more) {
            if n == 0 {
                break;
            }
            rest.lock().unwrap().push_str(&more);
            more.clear();
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// rfmount
// ---------------------------------------------------------------------------

/// Whether FUSE mounts can run here: `/dev/fuse` and `fusermount3` exist.
pub fn fuse_missing() -> Option<String> {
    let mut missing = Vec::new();
    if !Path::new("/dev/fuse").exists() {
        missing.push("/dev/fuse");
    }
    if which("fusermount3").is_none() {
        missing.push("fusermount3");
    }
    if missing.is_empty() {
        None
    } else {
        Some(missing.join(" and "))
    }
}

/// `true` when mount tests can run. In CI a missing FUSE is a failure
/// (panics); elsewhere the caller should skip — prefer the
/// [`skip_without_fuse!`] macro, which also prints that the test skipped.
pub fn require_fuse(test: &str) -> bool {
    match fuse_decision(fuse_missing(), in_ci()) {
        Ok(run) => {
            if !run {
                eprintln!(
                    "SKIPPED {test}: {} missing, so no FUSE mount is possible here \
                     (in CI this is a failure)",
                    fuse_missing().unwrap_or_default()
                );
            }
            run
        }
        Err(e) => panic!("{e} (test {test})"),
    }
}

/// Run (`Ok(true)`), skip (`Ok(false)`) or fail (`Err`) a mount test.
fn fuse_decision(missing: Option<String>, ci: bool) -> Result<bool, String> {
    match missing {
        None => Ok(true),
        Some(what) if ci => Err(format!("FUSE is required in CI, but {what} is missing")),
        Some(_) => Ok(false),
    }
}

/// Returns early from a mount test (printing `SKIPPED <test>`) when FUSE is
/// unavailable outside CI; panics in CI.
#[macro_export]
macro_rules! skip_without_fuse {
    () => {{
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        let name = name.strip_suffix("::here").unwrap_or(name);
        if !$crate::util::require_fuse(name) {
            return;
        }
    }};
}

/// The full path of `prog` found on `PATH`.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// True when `mountpoint` is in this process's mount table.
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(table) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.to_string_lossy();
    table.lines().any(|l| {
        // Field 5 is the mount point, with space, tab, newline and
        // backslash escaped in octal.
        l.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if octal {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running `rfmount ADDR MOUNTPOINT -f --cache-dir CACHE [extra]`,
/// unmounted and killed on drop.
///
/// Its directory holds `mnt/` (the mount point), `cache/` (the cache dir,
/// kept across [`Mount::remount`]) and `rfmount.log` (stderr of every start,
/// appended). If the mount cannot be removed on drop, the directory is
/// leaked rather than deleted through a live mount.
pub struct Mount {
    child: Option<Child>,
    addr: String,
    extra: Vec<OsString>,
    dir: TestDir,
    mountpoint: PathBuf,
    cache_dir: PathBuf,
    log_path: PathBuf,
    starts: u32,
}

impl Mount {
    /// Mounts `server`'s export with `extra` arguments (e.g. `-o`, ...).
    /// Call [`require_fuse`] / [`skip_without_fuse!`] first.
    ///
    /// # Panics
    /// If the mount does not appear in `/proc/self/mountinfo` within
    /// [`STARTUP_TIMEOUT`] or rfmount exits first (the panic shows its log).
    pub fn start(server: &Server, extra: &[&str]) -> Mount {
        Mount::start_addr(&server.addr(), extra)
    }

    /// As [`Mount::start`] for any `HOST:PORT`.
    pub fn start_addr(addr: &str, extra: &[&str]) -> Mount {
        if let Some(what) = fuse_missing() {
            panic!("cannot mount: {what} missing (call require_fuse first)");
        }
        let dir = TestDir::new("mount");
        // Canonical, as the mount table shows it.
        let mountpoint = dir.mkdir("mnt").canonicalize().unwrap();
        let cache_dir = dir.mkdir("cache");
        let log_path = dir.join("rfmount.log");
        let mut m = Mount {
            child: None,
            addr: addr.to_owned(),
            extra: extra.iter().map(OsString::from).collect(),
            dir,
            mountpoint,
            cache_dir,
            log_path,
            starts: 0,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "rfmount is already running");
        assert!(
            !is_mounted(&self.mountpoint),
            "{} is still mounted",
            self.mountpoint.display()
        );
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        writeln!(
            log,
            "==== test harness: start #{} of rfmount {} {} ====",
            self.starts,
            self.addr,
            self.mountpoint.display()
        )
        .unwrap();
        let mut cmd = Command::new(rfmount_bin());
        cmd.arg(&self.addr)
            .arg(&self.mountpoint)
            .arg("-f")
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(&self.extra)
            .env_remove("RF_TOKEN_FILE")
            .env(
                "RUST_LOG",
                "info,rfmount_mount=debug,rfmount_client=debug,rfmount=debug",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rfmount: {e}"));
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if is_mounted(&self.mountpoint) {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "rfmount exited ({st}) before {} was mounted\n---- rfmount log ----\n{}",
                    self.mountpoint.display(),
                    tail(&self.log(), 60)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = fusermount(&["-uz"], &self.mountpoint);
                panic!(
                    "{} was not mounted within {STARTUP_TIMEOUT:?}\n---- rfmount log ----\n{}",
                    self.mountpoint.display(),
                    tail(&self.log(), 60)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// `rel` inside the mount.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mountpoint.join(rel)
    }

    /// The cache directory (kept across remounts).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// rfmount's process id (0 when not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits up to `timeout` for rfmount to exit by itself (after a signal
    /// the test sent, say) and returns its exit status; `None` if it is
    /// still running (or was not running).
    pub fn wait_exited(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.wait_exit(timeout)
    }

    /// Where rfmount's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything rfmount logged so far, across restarts.
    pub fn log(&self) -> String {
        text(&fs::read(&self.log_path).unwrap_or_default())
    }

    /// A command run in the mount point whose failure report includes
    /// rfmount's log.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> TestCommand {
        let mut c = TestCommand::new(program);
        c.current_dir(&self.mountpoint)
            .with_log("rfmount log", &self.log_path);
        c
    }

    /// Unmounts with `fusermount3 -u` and waits (20 s) for rfmount to exit
    /// by itself; returns its exit status.
    ///
    /// # Panics
    /// If the unmount fails, rfmount does not exit, or the mount point is
    /// still in the mount table afterwards.
    pub fn unmount_and_wait(&mut self) -> ExitStatus {
        let out = fusermount(&["-u"], &self.mountpoint);
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            panic!(
                "fusermount3 -u {} failed: {}\n---- rfmount log ----\n{}",
                self.mountpoint.display(),
                match &out {
                    Ok(o) => format!("{}: {}", o.status, text(&o.stderr)),
                    Err(e) => e.clone(),
                },
                tail(&self.log(), 60)
            );
        }
        let st = self.wait_exit(STARTUP_TIMEOUT).unwrap_or_else(|| {
            self.kill_child();
            panic!(
                "rfmount did not exit within {STARTUP_TIMEOUT:?} after unmount\n---- rfmount log ----\n{}",
                tail(&self.log(), 60)
            )
        });
        assert!(
            !is_mounted(&self.mountpoint),
            "{} still mounted after unmount",
            self.mountpoint.display()
        );
        st
    }

    /// Mounts again (after [`Mount::unmount_and_wait`] or [`Mount::kill`])
    /// with the same cache dir and arguments, to `addr` (the server may have
    /// moved to a new port on restart).
    pub fn remount(&mut self, addr: &str) {
        self.addr = addr.to_owned();
        self.spawn();
    }

    /// SIGKILLs rfmount (a crash) and lazily detaches the dead mount so the
    /// mount point is free for [`Mount::remount`].
    pub fn kill(&mut self) {
        self.kill_child();
        if is_mounted(&self.mountpoint) {
            let _ = fusermount(&["-uz"], &self.mountpoint);
        }
        wait_for(Duration::from_secs(5), || {
            (!is_mounted(&self.mountpoint)).then_some(())
        });
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- rfmount log ({}) ----\n{}",
                self.log_path.display(),
                tail(&self.log(), 60)
            );
        }
        if is_mounted(&self.mountpoint) {
            let ok = fusermount(&["-u"], &self.mountpoint).is_ok_and(|o| o.status.success());
            if !ok {
                eprintln!(
                    "note: fusermount3 -u {} failed; detaching lazily",
                    self.mountpoint.display()
                );
                let _ = fusermount(&["-uz"], &self.mountpoint);
            }
        }
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            self.kill_child();
        }
        let gone = wait_for(Duration::from_secs(5), || {
            (!is_mounted(&self.mountpoint)).then_some(())
        });
        if gone.is_none() {
            eprintln!(
                "error: {} is still mounted after cleanup; leaving {} on disk",
                self.mountpoint.display(),
                self.dir.path().display()
            );
            self.dir.keep();
        }
    }
}

/// Runs `fusermount3 ARGS MOUNTPOINT` with a 20 s limit.
fn fusermount(args: &[&str], mountpoint: &Path) -> Result<Output, String> {
    let mut child = Command::new("fusermount3")
        .args(args)
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run fusermount3: {e}"))?;
    let out_rx = drain(child.stdout.take().unwrap());
    let err_rx = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("fusermount3 timed out".into());
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out_rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default(),
        stderr: err_rx
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod harness_tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_seed_sensitive() {
        assert_eq!(Rng::new(1).bytes(100), Rng::new(1).bytes(100));
        assert_ne!(Rng::new(1).bytes(100), Rng::new(2).bytes(100));
        let b = Rng::new(3).bytes(1 << 16);
        // Every byte value shows up in 64 KiB of decent random data.
        let mut seen = [false; 256];
        for x in b {
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn listening_line_is_parsed() {
        assert_eq!(
            parse_listening_line("rfserve listening on 127.0.0.1:41234\n"),
            Some(41234)
        );
        assert_eq!(parse_listening_line("listening on 127.0.0.1:1"), None);
        assert_eq!(
            parse_listening_line("rfserve listening on 127.0.0.1:x"),
            None
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert!(is_mounted(Path::new("/proc")));
        assert!(!is_mounted(Path::new("/definitely/not/mounted")));
    }

    #[test]
    fn compare_files_finds_the_first_difference() {
        let d = TestDir::new("cmp");
        let a = d.write_random("a", 3 << 20, 9);
        let b = d.write_random("b", 3 << 20, 9);
        assert!(compare_files(&a, &b).is_ok());
        let mut content = d.read("b");
        content[(2 << 20) + 5] ^= 1;
        d.write("b", &content);
        let err = compare_files(&a, &b).unwrap_err();
        assert!(err.contains(&format!("{}", (2 << 20) + 5)), "{err}");
        d.write("c", &content[..100]);
        assert!(compare_files(&a, &d.join("c")).is_err());
    }

    #[test]
    fn commands_time_out_instead_of_hanging() {
        let r = std::panic::catch_unwind(|| {
            TestCommand::new("sleep")
                .arg("30")
                .timeout(Duration::from_millis(300))
                .run()
        });
        let msg = r.expect_err("should have timed out");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("timed out") && msg.contains("sleep 30"),
            "{msg}"
        );
    }

    #[test]
    fn shell_pipelines_run_and_time_out_as_a_group() {
        let out = TestCommand::sh("printf 'a\\nb\\n' | sort -r | head -1").ok();
        assert_eq!(text(&out.stdout), "b\n");
        TestCommand::sh("false | true").fails();
        let d = TestDir::new("group");
        let marker = d.join("late");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let start = Instant::now();
        let r = std::panic::catch_unwind(|| {
            TestCommand::sh(&script)
                .timeout(Duration::from_millis(300))
                .run()
        });
        assert!(r.is_err(), "should have timed out");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // The background subshell died with the group.
        thread::sleep(Duration::from_millis(2500));
        assert!(!marker.exists(), "a grandchild survived the timeout");
    }

    #[test]
    fn fuse_is_required_in_ci_and_optional_elsewhere() {
        assert_eq!(fuse_decision(None, true), Ok(true));
        assert_eq!(fuse_decision(None, false), Ok(true));
        assert_eq!(fuse_decision(Some("/dev/fuse".into()), false), Ok(false));
        let e = fuse_decision(Some("/dev/fuse".into()), true).unwrap_err();
        assert!(e.contains("FUSE is required in CI"), "{e}");
    }

    #[test]
    fn mount_guard_mounts_unmounts_remounts_and_cleans_up() {
        skip_without_fuse!();
        let root = TestDir::new("root");
        root.write("hello.txt", "hi\n");
        let srv = Server::start(root.path(), &[]);
        let mut m = Mount::start(&srv, &[]);
        assert!(is_mounted(m.path()));
        assert_eq!(m.cmd("cat").arg("hello.txt").stdout(), "hi\n");
        let st = m.unmount_and_wait();
        assert!(
            st.success(),
            "rfmount exited with {st} after fusermount3 -u"
        );
        assert!(!is_mounted(m.path()));
        assert!(!m.path().join("hello.txt").exists());

        m.remount(&srv.addr());
        assert_eq!(fs::read(m.join("hello.txt")).unwrap(), b"hi\n");
        // A crash leaves a dead mount that kill() detaches.
        m.kill();
        assert!(!is_mounted(m.path()));
        m.remount(&srv.addr());
        assert_eq!(fs::read(m.join("hello.txt")).unwrap(), b"hi\n");

        let mountpoint = m.path().to_path_buf();
        drop(m);
        assert!(!is_mounted(&mountpoint), "still mounted after drop");
        assert!(!mountpoint.exists(), "mount directory not removed on drop");
    }
}
