//! The server's worker threads, shared by every session: two lanes, each a
//! queue with a bounded set of threads that start on demand and end after
//! a while idle.
//!
//! - **quick**: work that waits only for the disk. Every request starts
//!   here (STAT, MKDIR, RENAME, SETATTR, xattrs, upload commits, listings
//!   and downloads that fit in one frame). Its answer is handed to the
//!   connection's writer thread without waiting for the peer to read it, so
//!   a worker is busy only for as long as the disk takes, whatever the
//!   client does.
//! - **transfer**: work that waits for the peer: the rest of a listing or
//!   download longer than one frame. A streaming sender waits for its peer
//!   to take each chunk (that is its memory bound), so a slow reader holds
//!   its transfer thread; the lane has its own cap so that slow clients can
//!   fill it without ever taking a quick worker.
//!
//! A job that must wait for something other than the disk (a lock held by
//! another client) must not sit on either lane: it parks its
//! [`crate::conn::Responder`] (moves it into a waiter list) and returns,
//! and whoever releases the lock completes it later. See
//! docs/ARCHITECTURE.md, "Worker pool".

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Work for a pool thread.
pub(crate) type Task = Box<dyn FnOnce() + Send>;

/// Which set of threads runs a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Quick,
    Transfer,
}

/// An idle thread ends after this long without work; the next burst
/// starts threads again.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// The default number of quick workers: metadata operations block on the
/// disk rather than burn CPU, so a few per core keep the disk busy.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores * 4).clamp(8, 64)
}

/// The two lanes.
pub(crate) struct Pool {
    quick: Arc<LaneQueue>,
    transfer: Arc<LaneQueue>,
}

struct LaneQueue {
    name: &'static str,
    max: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Task>,
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
    /// Wake-ups sent that no idle thread has taken yet, so that a burst of
    /// submissions starts new threads instead of all counting on one.
    wakeups: usize,
    closing: bool,
}

/// No thread could be started and none is running; the job did not run.
#[derive(Debug)]
pub(crate) struct NoThread(pub(crate) std::io::Error);

impl Pool {
    /// A pool of at most `workers` quick and `transfers` transfer threads.
    pub(crate) fn new(workers: usize, transfers: usize) -> Pool {
        Pool {
            quick: LaneQueue::new("rfserve-work", workers),
            transfer: LaneQueue::new("rfserve-xfer", transfers),
        }
    }

    /// Queues `task` on `lane`; it runs as soon as a thread of the lane is
    /// free.
    ///
    /// # Errors
    /// When the lane has no thread and cannot start one; the task is
    /// dropped unrun.
    pub(crate) fn submit(&self, lane: Lane, task: Task) -> Result<(), NoThread> {
        let q = match lane {
            Lane::Quick => &self.quick,
            Lane::Transfer => &self.transfer,
        };
        LaneQueue::submit(q, task)
    }

    /// Threads alive now, quick and transfer.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> (usize, usize) {
        (
            self.quick.state.lock().threads,
            self.transfer.state.lock().threads,
        )
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for q in [&self.quick, &self.transfer] {
            q.state.lock().closing = true;
            q.wake.notify_all();
        }
    }
}

impl LaneQueue {
    fn new(name: &'static str, max: usize) -> Arc<LaneQueue> {
        Arc::new(LaneQueue {
            name,
            max: max.max(1),
            state: Mutex::default(),
            wake: Condvar::new(),
        })
    }

    fn submit(this: &Arc<LaneQueue>, task: Task) -> Result<(), NoThread> {
        let mut st = this.state.lock();
        st.jobs.push_back(task);
        if st.idle > st.wakeups {
            st.wakeups += 1;
            this.wake.notify_one();
            return Ok(());
        }
        if st.threads >= this.max {
            // Every thread is busy: the job waits its turn in the queue.
            return Ok(());
        }
        st.threads += 1;
        drop(st);
        let me = Arc::clone(this);
        let spawned = std::thread::Builder::new()
            .name(this.name.into())
            .spawn(move || me.work());
        if let Err(e) = spawned {
            let mut st = this.state.lock();
            st.threads -= 1;
            if st.threads == 0 {
                // Nobody would ever run what is queued: give it back.
                st.jobs.pop_back();
                return Err(NoThread(e));
            }
            log::warn!("cannot start another {} thread: {e}", this.name);
        }
        Ok(())
    }

    fn work(&self) {
        let mut st = self.state.lock();
        loop {
            if let Some(task) = st.jobs.pop_front() {
                drop(st);
                // A panicking handler must not take the thread's count with
                // it; its Responder, dropped while unwinding, answers.
                if std::panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                    log::error!("a request handler panicked");
                }
                st = self.state.lock();
                continue;
            }
            if st.closing {
                break;
            }
            st.idle += 1;
            let timed_out = self.wake.wait_for(&mut st, IDLE_EXIT).timed_out();
            st.idle -= 1;
            st.wakeups = st.wakeups.saturating_sub(1);
            if timed_out && st.jobs.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn a_lane_never_runs_more_than_its_cap_at_once() {
        let pool = Pool::new(3, 1);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..20 {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            pool.submit(
                Lane::Quick,
                Box::new(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    tx.send(()).unwrap();
                }),
            )
            .unwrap();
        }
        for _ in 0..20 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(pool.threads().0 <= 3);
    }

    #[test]
    fn a_full_transfer_lane_does_not_hold_up_quick_work() {
        let pool = Pool::new(2, 1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.submit(
            Lane::Transfer,
            Box::new(move || {
                let _ = release_rx.recv();
            }),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(Lane::Quick, Box::new(move || tx.send(7).unwrap()))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
        release_tx.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_leaves_the_lane_working() {
        let pool = Pool::new(1, 1);
        pool.submit(Lane::Quick, Box::new(|| panic!("handler bug")))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(Lane::Quick, Box::new(move || tx.send(()).unwrap()))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
