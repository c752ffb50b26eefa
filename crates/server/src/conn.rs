//! The narrow context every request handler gets: the session's store (its
//! subdirectory already applied), the connection's one writer, and the
//! bookkeeping of requests in flight. Handlers never see the reader, the
//! handshake or the connection table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};
use rfmount_proto::{ErrorCode, ServerMsg, WireError};

use crate::callbacks::Session as Callbacks;
use crate::locks::Lease;
use crate::pool::{Lane, Pool};
use crate::store::Store;
use crate::traffic::Traffic;
use crate::writer::FrameWriter;

/// Work for one request on a pool thread: returns the request's last
/// frame, or `None` when the connection is gone.
pub(crate) type Job = Box<dyn FnOnce(&Conn, &AtomicBool) -> Option<ServerMsg> + Send>;

/// Work for one request that may finish later, elsewhere: it gets the
/// request's [`Responder`] and may move it away (park it) instead of
/// answering before it returns.
pub(crate) type ParkableJob = Box<dyn FnOnce(&Arc<Conn>, Responder) + Send>;

/// Called when a parked request is cancelled (by the client, or because
/// its connection ends), so that whoever holds its [`Responder`] can
/// answer it now rather than when the awaited event comes.
pub(crate) type Waker = Box<dyn FnOnce() + Send>;

struct InFlight {
    cancel: Arc<AtomicBool>,
    waker: Option<Waker>,
}

/// State of one session shared by its reader and its workers.
pub(crate) struct Conn {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: Arc<FrameWriter>,
    /// The session's callbacks: what it read, and how others' changes
    /// reach it.
    pub(crate) callbacks: Callbacks,
    pub(crate) peer: SocketAddr,
    pub(crate) read_only: bool,
    /// Requests and bytes, for the close line and SIGUSR1.
    pub(crate) traffic: Arc<Traffic>,
    pool: Arc<Pool>,
    /// Requests queued, running or parked, with the flag that cancels each.
    requests: Mutex<HashMap<u64, InFlight>>,
    /// Jobs queued for or running on a pool thread; the session waits for
    /// zero before it ends. Parked requests do not count.
    running: Mutex<usize>,
    running_done: Condvar,
    /// Threads of their own answering requests (waiting locks): counted
    /// apart from the pool's jobs, since they wait until cancelled.
    own_threads: Mutex<usize>,
    own_threads_done: Condvar,
    /// The session's locks.
    pub(crate) lease: Lease,
}

impl Conn {
    // One argument per part of the session; a builder would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn Store>,
        writer: Arc<FrameWriter>,
        callbacks: Callbacks,
        peer: SocketAddr,
        read_only: bool,
        traffic: Arc<Traffic>,
        pool: Arc<Pool>,
        lease: Lease,
    ) -> Conn {
        Conn {
            store,
            writer,
            callbacks,
            peer,
            read_only,
            traffic,
            pool,
            lease,
            requests: Mutex::new(HashMap::new()),
            running: Mutex::new(0),
            running_done: Condvar::new(),
            own_threads: Mutex::new(0),
            own_threads_done: Condvar::new(),
        }
    }

    /// Requests currently in flight (queued, running or parked).
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.lock().len()
    }

    /// True when `id` names a request in flight.
    pub(crate) fn is_active(&self, id: u64) -> bool {
        self.requests.lock().contains_key(&id)
    }

    /// Cancels request `id`: its flag is set, and if it is parked, its
    /// waker runs (here, on the caller's thread).
    pub(crate) fn cancel(&self, id: u64) {
        let waker = self.requests.lock().get_mut(&id).and_then(|r| {
            r.cancel.store(true, Ordering::SeqCst);
            r.waker.take()
        });
        if let Some(w) = waker {
            w();
        }
        // A lock waiter looks at its flag only when woken.
        self.lease.table().wake();
    }

    pub(crate) fn cancel_all(&self) {
        let wakers: Vec<Waker> = self
            .requests
            .lock()
            .values_mut()
            .filter_map(|r| {
                r.cancel.store(true, Ordering::SeqCst);
                r.waker.take()
            })
            .collect();
        for w in wakers {
            w();
        }
        self.lease.table().wake();
    }

    /// Waits until no job of this connection is queued or running on the
    /// pool. Parked requests may still be waiting.
    pub(crate) fn wait_workers(&self) {
        let mut n = self.running.lock();
        while *n > 0 {
            self.running_done.wait(&mut n);
        }
    }

    /// Counts a thread of its own that answers a request of this session,
    /// until the returned guard drops.
    pub(crate) fn own_thread(self: &Arc<Self>) -> OwnThread {
        *self.own_threads.lock() += 1;
        OwnThread(Arc::clone(self))
    }

    /// Waits until every thread counted by [`Conn::own_thread`] is done;
    /// call after [`Conn::cancel_all`], which makes them finish.
    pub(crate) fn wait_own_threads(&self) {
        let mut n = self.own_threads.lock();
        while *n > 0 {
            self.own_threads_done.wait(&mut n);
        }
    }

    /// Runs `job` for request `id` on `lane` of the shared pool. The job
    /// returns the request's last frame; the id is released just before
    /// that frame is queued, so a client that reuses it at once is never
    /// refused.
    ///
    /// # Errors
    /// When the pool cannot run it; the job has not run.
    pub(crate) fn spawn(self: &Arc<Self>, id: u64, lane: Lane, job: Job) -> Result<(), WireError> {
        self.spawn_parkable(
            id,
            lane,
            Box::new(move |conn, responder| {
                let last = job(conn, responder.cancel_flag());
                responder.finish(last);
            }),
        )
    }

    /// As [`Conn::spawn`], for a job that may park its request: the job
    /// answers through its [`Responder`], before it returns or later from
    /// any thread.
    ///
    /// # Errors
    /// When the pool cannot run it; the job has not run.
    pub(crate) fn spawn_parkable(
        self: &Arc<Self>,
        id: u64,
        lane: Lane,
        job: ParkableJob,
    ) -> Result<(), WireError> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.requests.lock().insert(
            id,
            InFlight {
                cancel: Arc::clone(&cancel),
                waker: None,
            },
        );
        *self.running.lock() += 1;
        let conn = Arc::clone(self);
        let task = Box::new(move || {
            let _alive = RunningGuard(&conn);
            let responder = Responder {
                conn: Arc::clone(&conn),
                id,
                cancel,
                answered: false,
            };
            job(&conn, responder);
        });
        if let Err(e) = self.pool.submit(lane, task) {
            self.requests.lock().remove(&id);
            self.count_out();
            return Err(WireError::new(
                ErrorCode::Busy,
                format!("server cannot start a worker: {}", e.0),
            ));
        }
        Ok(())
    }

    fn count_out(&self) {
        let mut n = self.running.lock();
        *n = n.saturating_sub(1);
        self.running_done.notify_all();
    }
}

/// A thread of its own answering a request; see [`Conn::own_thread`].
pub(crate) struct OwnThread(Arc<Conn>);

impl Drop for OwnThread {
    fn drop(&mut self) {
        let mut n = self.0.own_threads.lock();
        *n = n.saturating_sub(1);
        self.0.own_threads_done.notify_all();
    }
}

/// Counts a job out when it returns, even by unwinding.
struct RunningGuard<'a>(&'a Conn);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.count_out();
    }
}

/// The right and duty to answer one request. A handler answers with
/// [`Responder::finish`] before it returns, or parks the request: moves the
/// responder into a waiter list, sets a [`Waker`] with
/// [`Responder::on_cancel`], and returns, freeing its worker; whoever takes
/// it from the list later (any thread) finishes it. Dropped unanswered (a
/// lost waiter, a panic), it answers with an error, so a request never
/// hangs and its id is never leaked.
pub(crate) struct Responder {
    conn: Arc<Conn>,
    id: u64,
    cancel: Arc<AtomicBool>,
    answered: bool,
}

impl Responder {
    /// The request's id.
    #[allow(dead_code)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The connection the request came on.
    #[allow(dead_code)]
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Set once the client cancelled the request or its connection ended.
    pub(crate) fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Runs `waker` when the request is cancelled from now on (at once if
    /// it already is). For a parked request: the waker should take the
    /// responder out of its waiter list and finish it with an error.
    #[allow(dead_code)]
    pub(crate) fn on_cancel(&self, waker: Waker) {
        let mut requests = self.conn.requests.lock();
        if self.cancel.load(Ordering::SeqCst) {
            drop(requests);
            waker();
            return;
        }
        if let Some(r) = requests.get_mut(&self.id) {
            r.waker = Some(waker);
        }
    }

    /// Moves the rest of the request to `lane`: `job` gets this responder
    /// there. For work that turns out to wait for the peer (a long
    /// download) after starting on a quick worker.
    pub(crate) fn continue_on(self, lane: Lane, job: ParkableJob) {
        let conn = Arc::clone(&self.conn);
        *conn.running.lock() += 1;
        let inner = Arc::clone(&conn);
        let task = Box::new(move || {
            let _alive = RunningGuard(&inner);
            job(&inner, self);
        });
        if let Err(e) = conn.pool.submit(lane, task) {
            // The task, with this responder, was dropped: it answered.
            log::warn!("{}: cannot continue a request: {}", conn.peer, e.0);
            conn.count_out();
        }
    }

    /// Answers the request with its last frame (`None`: the connection is
    /// gone, nothing to say) and releases its id.
    pub(crate) fn finish(mut self, last: Option<ServerMsg>) {
        self.answered = true;
        self.conn.requests.lock().remove(&self.id);
        if let Some(msg) = last {
            // A closed connection has nobody to tell.
            let _ = self.conn.writer.post(&msg);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        self.conn.requests.lock().remove(&self.id);
        let err = WireError::new(
            ErrorCode::Io,
            "internal error: the server dropped the request unanswered",
        );
        log::error!("{}: request {} dropped unanswered", self.conn.peer, self.id);
        let _ = self.conn.writer.post(&ServerMsg::Reply {
            id: self.id,
            result: Err(err),
        });
    }
}
