//! Threads that run fetches, kept a while after one ends so the next fetch
//! reuses them. A cold read of a directory of small files starts one fetch
//! per file (most of them prefetches); a new thread for each cost a
//! `clone3`, a stack mapping and its unmapping per file, a tenth of the
//! mount's CPU time on such a read.
//!
//! Never a queue that makes a fetch wait: a job goes to a worker that is
//! idle, or else to a new thread, so a large file's fetch never waits
//! behind prefetches (their number is bounded by the prefetcher). A worker
//! idle for [`IDLE`] exits; it holds nothing of a filesystem meanwhile.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How long an idle worker waits for the next fetch before it exits: long
/// enough to span the gap between two files of a walk, short enough that a
/// burst leaves no threads behind for long.
pub(super) const IDLE: Duration = Duration::from_secs(2);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
}

#[derive(Default)]
struct Workers {
    queue: Mutex<Queue>,
    more: Condvar,
}

static WORKERS: LazyLock<Arc<Workers>> = LazyLock::new(Arc::default);

/// Runs `job` on a worker thread: an idle one, or a new one.
///
/// # Errors
/// No worker was idle and no thread could be started; `job` is dropped
/// unrun (its drop runs, as when a spawn fails).
pub(super) fn run(job: impl FnOnce() + Send + 'static) -> io::Result<()> {
    WORKERS.run(job)
}

impl Workers {
    fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        {
            let mut q = self.queue.lock();
            // Every job queued is one an idle worker has yet to take.
            if q.idle > q.jobs.len() {
                q.jobs.push_back(Box::new(job));
                self.more.notify_one();
                return Ok(());
            }
        }
        let w = Arc::clone(self);
        std::thread::Builder::new()
            .name("rf-fetch".into())
            .spawn(move || {
                job();
                w.serve();
            })?;
        Ok(())
    }

    /// Workers idle now.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.queue.lock().idle
    }

    /// Takes queued jobs until none came for [`IDLE`].
    fn serve(&self) {
        let mut q = self.queue.lock();
        loop {
            if let Some(job) = q.jobs.pop_front() {
                drop(q);
                job();
                q = self.queue.lock();
                continue;
            }
            q.idle += 1;
            let waited = self.more.wait_for(&mut q, IDLE);
            q.idle -= 1;
            if waited.timed_out() && q.jobs.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_finished_worker_runs_the_next_job_and_a_busy_one_gets_company() {
        // A pool of its own: other tests' fetches use the shared one.
        let pool = Arc::new(Workers::default());
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        pool.run(move || t.send(std::thread::current().id()).unwrap())
            .unwrap();
        let first = rx.recv().unwrap();
        // The worker is idle now (or about to be): wait until it is.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.idle() == 0 {
            assert!(std::time::Instant::now() < deadline, "no worker went idle");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Two jobs at once, the first blocking: the second must not wait
        // for it (it ran on another thread).
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let t = tx.clone();
        pool.run(move || {
            t.send(std::thread::current().id()).unwrap();
            block_rx.recv().unwrap();
        })
        .unwrap();
        let t = tx.clone();
        pool.run(move || t.send(std::thread::current().id()).unwrap())
            .unwrap();
        let a = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let b = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(a, b, "two jobs at once ran on one thread");
        assert!(a == first || b == first, "the idle worker was not reused");
        block_tx.send(()).unwrap();
    }
}
