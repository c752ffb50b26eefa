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

use crate::locks::Lease;
use crate::store::Store;
use crate::traffic::Traffic;
use crate::writer::FrameWriter;

/// Work for one request on a worker thread: returns the request's last
/// frame, or `None` when the connection is gone.
pub(crate) type Job = Box<dyn FnOnce(&Conn, &AtomicBool) -> Option<ServerMsg> + Send>;

/// State of one session shared by its reader and its workers.
pub(crate) struct Conn {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) writer: FrameWriter,
    pub(crate) peer: SocketAddr,
    pub(crate) read_only: bool,
    /// Requests and bytes, for the close line and SIGUSR1.
    pub(crate) traffic: Arc<Traffic>,
    /// The session's locks.
    pub(crate) lease: Lease,
    /// Requests being worked on, with the flag that cancels each.
    requests: Mutex<HashMap<u64, Arc<AtomicBool>>>,
    /// Worker threads alive; the session waits for zero before it ends.
    workers: Mutex<usize>,
    workers_done: Condvar,
}

impl Conn {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        writer: FrameWriter,
        peer: SocketAddr,
        read_only: bool,
        traffic: Arc<Traffic>,
        lease: Lease,
    ) -> Conn {
        Conn {
            store,
            writer,
            peer,
            read_only,
            traffic,
            lease,
            requests: Mutex::new(HashMap::new()),
            workers: Mutex::new(0),
            workers_done: Condvar::new(),
        }
    }

    /// Requests currently being worked on.
    pub(crate) fn in_flight(&self) -> usize {
        self.requests.lock().len()
    }

    /// True when `id` names a request being worked on.
    pub(crate) fn is_active(&self, id: u64) -> bool {
        self.requests.lock().contains_key(&id)
    }

    pub(crate) fn cancel(&self, id: u64) {
        if let Some(flag) = self.requests.lock().get(&id) {
            flag.store(true, Ordering::SeqCst);
        }
        // A lock waiter looks at its flag only when woken.
        self.lease.table().wake();
    }

    pub(crate) fn cancel_all(&self) {
        for flag in self.requests.lock().values() {
            flag.store(true, Ordering::SeqCst);
        }
        self.lease.table().wake();
    }

    pub(crate) fn wait_workers(&self) {
        let mut n = self.workers.lock();
        while *n > 0 {
            self.workers_done.wait(&mut n);
        }
    }

    /// Runs `job` for request `id` on a new thread. The job returns the
    /// request's last frame; the id is released just before that frame
    /// goes out, so a client that reuses it at once is never refused.
    ///
    /// # Errors
    /// When no thread can be started; the job has not run.
    pub(crate) fn spawn(self: &Arc<Self>, id: u64, job: Job) -> Result<(), WireError> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.requests.lock().insert(id, Arc::clone(&cancel));
        *self.workers.lock() += 1;
        let conn = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("rfserve-req-{id}"))
            .spawn(move || {
                let _alive = WorkerGuard(&conn);
                let last = job(&conn, &cancel);
                conn.requests.lock().remove(&id);
                if let Some(msg) = last {
                    let _ = conn.writer.send(&msg);
                }
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                self.requests.lock().remove(&id);
                *self.workers.lock() -= 1;
                self.workers_done.notify_all();
                Err(WireError::new(
                    ErrorCode::Busy,
                    format!("server cannot start a worker: {e}"),
                ))
            }
        }
    }
}

/// Counts a worker out when its thread ends, even by unwinding.
struct WorkerGuard<'a>(&'a Conn);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.workers.lock();
        *n = n.saturating_sub(1);
        self.0.workers_done.notify_all();
    }
}
