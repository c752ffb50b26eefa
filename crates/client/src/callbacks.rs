//! Where pushed invalidations go: a [`CallbackHub`] in the
//! [`crate::ConnectConfig`] is shared by every connection opened with it
//! (reconnections included), and forwards to one subscriber (the mount).
//!
//! Everything is called on the connection's reader thread, in the order the
//! frames arrived: an invalidation is delivered before any reply that came
//! after it, so a subscriber that notes "an invalidation arrived" before
//! acting on a reply never trusts a reply older than a change.

use std::sync::Arc;

use parking_lot::Mutex;
use rfmount_proto::Invalidation;

/// Receives what the server says about callbacks. Calls must be quick and
/// never wait on the network: they run on the connection's reader thread.
pub trait CallbackSink: Send + Sync {
    /// Objects changed; the callbacks on them are gone.
    fn invalidated(&self, items: &[Invalidation]);
    /// A connection is up; `callbacks` says whether its server pushes
    /// invalidations (replies on it may be trusted as callbacks).
    fn connected(&self, callbacks: bool);
    /// The connection broke: every callback is void at once.
    fn broken(&self);
}

/// The shared hub; clones share the subscriber.
#[derive(Clone, Default)]
pub struct CallbackHub(Arc<Mutex<Hub>>);

#[derive(Default)]
struct Hub {
    sink: Option<Arc<dyn CallbackSink>>,
    /// The last connection state, replayed to a late subscriber.
    live: Option<bool>,
}

impl std::fmt::Debug for CallbackHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackHub").finish_non_exhaustive()
    }
}

impl CallbackHub {
    /// Sets the subscriber; it learns at once whether a connection with
    /// callbacks is up.
    pub fn subscribe(&self, sink: Arc<dyn CallbackSink>) {
        let mut hub = self.0.lock();
        if let Some(live) = hub.live {
            sink.connected(live);
        }
        hub.sink = Some(sink);
    }

    fn sink(&self) -> Option<Arc<dyn CallbackSink>> {
        self.0.lock().sink.clone()
    }

    pub(crate) fn invalidated(&self, items: &[Invalidation]) {
        if let Some(s) = self.sink() {
            s.invalidated(items);
        }
    }

    pub(crate) fn connected(&self, callbacks: bool) {
        let sink = {
            let mut hub = self.0.lock();
            hub.live = Some(callbacks);
            hub.sink.clone()
        };
        if let Some(s) = sink {
            s.connected(callbacks);
        }
    }

    pub(crate) fn broken(&self) {
        let sink = {
            let mut hub = self.0.lock();
            hub.live = Some(false);
            hub.sink.clone()
        };
        if let Some(s) = sink {
            s.broken();
        }
    }
}
