//! A process held stopped (`SIGSTOP`) for as long as a guard lives, and
//! continued on drop also when the test fails: what a process can do while
//! the FUSE daemon answers nothing is what the kernel did alone.

use std::sync::mpsc;
use std::time::Duration;

/// Keeps process `pid` stopped until dropped.
pub struct Stopped(u32);

impl Stopped {
    /// Stops `pid` (a process this test started).
    pub fn new(pid: u32) -> Stopped {
        signal(pid, libc::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) has no memory effects; pid is a child of this test.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `f` on a thread of its own and returns its result if it finishes
/// within `within`; `None` if it is still blocked then (the thread is left
/// to finish once whatever blocks it lets go).
pub fn finishes_within<T: Send + 'static>(
    within: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(within).ok()
}
