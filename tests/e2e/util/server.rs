//! A real `rfserve` on an ephemeral port (`Server`).

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
    /// Run as this (uid, gid) instead of the test's user.
    run_as: Option<(u32, u32)>,
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
            run_as: None,
        };
        if let Err(e) = s.spawn("127.0.0.1:0") {
            panic!("{e}");
        }
        s
    }

    /// As [`Server::start`], with rfserve running as user `uid` and group
    /// `gid` (the test must be root; the root must be usable by that user).
    pub fn start_as(root: impl AsRef<Path>, extra: &[&str], uid: u32, gid: u32) -> Server {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).unwrap();
        let logdir = TestDir::new("rfserve-log");
        let log_path = logdir.join("rfserve.log");
        let mut s = Server {
            child: None,
            root,
            port: 0,
            extra: extra.iter().map(OsString::from).collect(),
            env: vec![("RUST_LOG".into(), "debug".into())],
            logdir,
            log_path,
            stdout: Arc::new(Mutex::new(String::new())),
            starts: 0,
            run_as: Some((uid, gid)),
        };
        // The user must reach the binary: a checkout under a private
        // directory (mktemp -d makes them 0700) would refuse its exec.
        if let Some(dir) = rfserve_bin().parent() {
            super::identity::let_others_in(dir);
        }
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
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            // std drops the supplementary groups when it changes the uid.
            cmd.uid(uid).gid(gid);
        }
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
pub(crate) fn parse_listening_line(line: &str) -> Option<u16> {
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
