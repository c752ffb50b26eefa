//! Real FUSE mounts (`Mount`) and whether they can run here.

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
    env: Vec<(OsString, OsString)>,
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
            env: Vec::new(),
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
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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

    /// The arguments and extra environment of the starts from the next
    /// [`Mount::remount`] on.
    pub fn set_next_start(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        self.extra = extra.iter().map(OsString::from).collect();
        self.env = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
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
