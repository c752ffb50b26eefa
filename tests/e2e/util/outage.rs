//! Outages and mount lifecycles: a server frozen with SIGSTOP (the link
//! silently drops everything), timing one command, which FUSE connection a
//! mount point holds, and the fusectl filesystem that can abort one.

#![allow(dead_code, unused_imports)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// A process stopped with SIGSTOP until [`Frozen::thaw`] or drop (SIGCONT).
/// The kernel still accepts connections for it, so to its peers it looks
/// like a host behind a link that drops every packet.
pub struct Frozen {
    pid: u32,
    frozen: bool,
}

impl Frozen {
    /// Stops `pid` (a process this test started).
    /// Returns once every thread of it has stopped: kill(2) only queues the
    /// stop, and a thread still running could answer one more request.
    pub fn new(pid: u32) -> Frozen {
        send_signal(pid, libc::SIGSTOP);
        let frozen = Frozen { pid, frozen: true };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} did not stop within 10 s of SIGSTOP"
            );
            thread::sleep(Duration::from_millis(2));
        }
        frozen
    }

    /// Lets it run again.
    pub fn thaw(&mut self) {
        if self.frozen {
            send_signal(self.pid, libc::SIGCONT);
            self.frozen = false;
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// Whether every thread of `pid` is in the stopped state (`T` in
/// /proc/PID/task/TID/stat; the state follows the command name's `)`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

fn send_signal(pid: u32, sig: i32) {
    assert!(pid > 0, "no process to signal");
    // SAFETY: plain syscall with a PID this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `f` and says how long it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let v = f();
    (v, start.elapsed())
}

/// `major:minor` of the topmost mount at `mountpoint`, as mountinfo shows
/// it (for FUSE, `minor` is the connection number), or `None`.
pub fn mount_dev(mountpoint: &Path) -> Option<String> {
    let table = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_string_lossy();
    table
        .lines()
        .rev()
        .find(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mp| mp.replace("\\040", " ") == want)
        })
        .and_then(|l| l.split(' ').nth(2))
        .map(str::to_owned)
}

/// Waits up to `timeout` for `pid` to exit (a zombie counts as exited);
/// returns how long that took, or `None`.
pub fn wait_exited(pid: u32, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    wait_for(timeout, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let gone = stat.is_none_or(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|st| st == "Z" || st == "X")
        });
        gone.then(|| start.elapsed())
    })
}

/// The fusectl filesystem (`/sys/fs/fuse/connections`) mounted on a
/// temporary directory of our own, unmounted on drop.
pub struct FuseCtl {
    dir: TestDir,
    path: PathBuf,
}

impl FuseCtl {
    /// `None` (with a note) when it cannot be mounted here; in CI that is a
    /// failure.
    pub fn mount() -> Option<FuseCtl> {
        let dir = TestDir::new("fusectl");
        let path = dir.mkdir("ctl");
        let out = TestCommand::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(&path)
            .timeout(Duration::from_secs(20))
            .run();
        if out.status.success() {
            return Some(FuseCtl { dir, path });
        }
        let why = text(&out.stderr);
        if in_ci() {
            panic!("cannot mount fusectl in CI: {why}");
        }
        eprintln!("SKIPPED: cannot mount fusectl here (not root?): {why}");
        None
    }

    /// Aborts FUSE connection `id`, as the kernel does for a hung server.
    pub fn abort(&self, id: &str) {
        let f = self.path.join(id).join("abort");
        fs::write(&f, "1").unwrap_or_else(|e| panic!("writing {}: {e}", f.display()));
    }
}

impl Drop for FuseCtl {
    fn drop(&mut self) {
        let out = TestCommand::new("umount")
            .arg(&self.path)
            .timeout(Duration::from_secs(20))
            .run();
        if !out.status.success() {
            TestCommand::new("umount")
                .arg("-l")
                .arg(&self.path)
                .timeout(Duration::from_secs(20))
                .run();
        }
    }
}

/// A second `rfmount ADDR MOUNTPOINT -f` on a mount point that belongs to
/// another test guard (to mount over the path an older mount left). On
/// drop it unmounts its own mount (checked by device number) and is killed.
pub struct ExtraMount {
    child: Option<Child>,
    mountpoint: PathBuf,
    dev: String,
    dir: TestDir,
    log_path: PathBuf,
}

impl ExtraMount {
    /// Mounts and waits until a new mount shows at `mountpoint`.
    pub fn start(addr: &str, mountpoint: &Path) -> ExtraMount {
        let dir = TestDir::new("extra-mount");
        let cache = dir.mkdir("cache");
        let log_path = dir.join("rfmount.log");
        let log = fs::File::create(&log_path).unwrap();
        let before = mount_dev(mountpoint);
        let mut child = Command::new(rfmount_bin())
            .arg(addr)
            .arg(mountpoint)
            .arg("-f")
            .arg("--cache-dir")
            .arg(&cache)
            .env("RUST_LOG", "info,rfmount_mount=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rfmount: {e}"));
        let dev = wait_for(STARTUP_TIMEOUT, || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "rfmount exited ({st}) before mounting\n{}",
                    text(&fs::read(&log_path).unwrap_or_default())
                );
            }
            mount_dev(mountpoint).filter(|d| Some(d) != before.as_ref())
        });
        let Some(dev) = dev else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} was not mounted in time", mountpoint.display());
        };
        ExtraMount {
            child: Some(child),
            mountpoint: mountpoint.to_owned(),
            dev,
            dir,
            log_path,
        }
    }

    /// Its device number (`0:N`).
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        text(&fs::read(&self.log_path).unwrap_or_default())
    }
}

impl Drop for ExtraMount {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("---- extra rfmount log ----\n{}", tail(&self.log(), 40));
        }
        if mount_dev(&self.mountpoint).as_deref() == Some(self.dev.as_str()) {
            let _ = TestCommand::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .timeout(Duration::from_secs(20))
                .run();
        }
        if let Some(mut c) = self.child.take() {
            if wait_exited(c.id(), Duration::from_secs(5)).is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        if mount_dev(&self.mountpoint).as_deref() == Some(self.dev.as_str()) {
            let _ = TestCommand::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .timeout(Duration::from_secs(20))
                .run();
        }
    }
}

/// Freezes and thaws a process in a cycle (`frozen` stopped, `running`
/// running) from a background thread until [`Throttle::stop`] or drop: a
/// server that keeps making progress, with gaps.
pub struct Throttle {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<Duration>>,
}

impl Throttle {
    /// Starts cycling `pid` (a process this test started).
    pub fn start(pid: u32, frozen: Duration, running: Duration) -> Throttle {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut total = Duration::ZERO;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                send_signal(pid, libc::SIGSTOP);
                thread::sleep(frozen);
                send_signal(pid, libc::SIGCONT);
                total += frozen;
                thread::sleep(running);
            }
            total
        });
        Throttle {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops cycling (the process runs on) and returns how long it was
    /// frozen in all.
    pub fn stop(&mut self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread
            .take()
            .map_or(Duration::ZERO, |t| t.join().unwrap_or_default())
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        self.stop();
    }
}
