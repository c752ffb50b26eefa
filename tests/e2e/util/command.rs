//! Commands run with a deadline (`TestCommand`) or in the background (`Background`).

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
pub(crate) fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

pub(crate) fn quote(s: &OsStr) -> String {
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
