//! "Returns once mounted": the parent forks, the child mounts and reports
//! through a pipe, and the parent exits 0 only once the mount is up (or
//! prints the child's error and exits 1). Forking must happen before any
//! thread exists, so it is the first thing `run` does.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The child's end of the status pipe.
pub(crate) struct StatusPipe(std::fs::File);

const READY: u8 = 0;
const FAILED: u8 = 1;

impl StatusPipe {
    /// The mount is up: release the parent and detach from its terminal.
    pub(crate) fn ready(mut self) {
        let _ = self.0.write_all(&[READY]);
        detach_stdio();
    }

    /// Mounting failed: the parent prints `msg` and exits 1.
    pub(crate) fn fail(mut self, msg: &str) {
        let mut buf = vec![FAILED];
        buf.extend_from_slice(msg.as_bytes());
        let _ = self.0.write_all(&buf);
    }
}

fn detach_stdio() {
    // SAFETY: plain syscalls on valid descriptors; /dev/null is opened here
    // and closed after dup2 copies it over 0, 1 and 2.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if fd >= 0 {
            libc::dup2(fd, 0);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

/// Forks. In the parent this never returns: it waits for the child's
/// status and exits. In the child it returns the status pipe.
pub(crate) fn daemonize(timeout: Duration) -> io::Result<StatusPipe> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (checked by the caller's design:
    // fork is the first thing run does), so the child is consistent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(rd);
        // SAFETY: setsid has no memory effects; failure only means we already lead a session.
        unsafe { libc::setsid() };
        return Ok(StatusPipe(std::fs::File::from(wr)));
    }
    drop(wr);
    let code = wait_for_child(std::fs::File::from(rd), pid, timeout);
    std::process::exit(match code {
        c if c == ExitCode::SUCCESS => 0,
        _ => 1,
    });
}

fn wait_for_child(mut rd: std::fs::File, pid: i32, timeout: Duration) -> ExitCode {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // SAFETY: pid is our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            eprintln!(
                "rfmount: error: mount did not come up within {}s",
                timeout.as_secs()
            );
            return ExitCode::FAILURE;
        }
        let mut pfd = libc::pollfd {
            fd: rd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if n <= 0 {
            continue;
        }
        let mut chunk = [0u8; 4096];
        match rd.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                if buf.first() == Some(&READY) {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    match buf.split_first() {
        Some((&READY, _)) => ExitCode::SUCCESS,
        Some((_, msg)) => {
            eprintln!("rfmount: error: {}", String::from_utf8_lossy(msg));
            ExitCode::FAILURE
        }
        None => {
            eprintln!("rfmount: error: the mount process exited before the mount was ready");
            ExitCode::FAILURE
        }
    }
}
