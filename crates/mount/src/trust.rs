//! The one decision of what this mount may trust without asking: an answer
//! is a callback (valid until the server says otherwise) only when a
//! connection with callbacks is up and no invalidation arrived and no break
//! happened between sending the request and using its answer.
//!
//! Conservative on purpose: any invalidation, of any object, in that window
//! voids the grant. Invalidations arrive on the reader thread before any
//! reply that followed them, so checking the epoch after the reply is
//! enough; a busy export only costs a later revalidation, never a stale
//! read.

use parking_lot::Mutex;

/// Taken before a request; [`Trust::granted`] after its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(u64);

/// Whether callbacks are live, and the invalidation epoch.
#[derive(Default)]
pub struct Trust {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A connection whose server pushes invalidations is up.
    live: bool,
    /// Bumped by every invalidation, break and new connection.
    epoch: u64,
    /// A break happened since the last connection came up.
    broke: bool,
}

impl Trust {
    /// Before sending a request whose answer may become a callback.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.state.lock().epoch)
    }

    /// True when the answer to a request sent at `t` may be trusted until
    /// invalidated.
    pub fn granted(&self, t: Ticket) -> bool {
        let st = self.state.lock();
        st.live && st.epoch == t.0
    }

    /// Callbacks are in force now.
    pub fn live(&self) -> bool {
        self.state.lock().live
    }

    /// An invalidation arrived.
    pub fn invalidated(&self) {
        self.state.lock().epoch += 1;
    }

    /// The connection broke: nothing granted before is valid.
    pub fn broken(&self) {
        let mut st = self.state.lock();
        st.live = false;
        st.broke = true;
        st.epoch += 1;
    }

    /// A connection came up; returns true when one broke before it (what
    /// was read then may have changed unseen).
    pub fn connected(&self, callbacks: bool) -> bool {
        let mut st = self.state.lock();
        st.live = callbacks;
        st.epoch += 1;
        std::mem::take(&mut st.broke)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_trusted_only_without_invalidation_or_break_in_between() {
        let t = Trust::default();
        let before = t.ticket();
        assert!(!t.granted(before), "no connection with callbacks yet");
        assert!(!t.connected(true));
        let a = t.ticket();
        assert!(t.granted(a));
        t.invalidated();
        assert!(!t.granted(a), "an invalidation arrived before the answer");
        let b = t.ticket();
        t.broken();
        assert!(!t.granted(b));
        assert!(!t.live());
        assert!(t.connected(true), "the break is reported once");
        assert!(!t.granted(b), "an answer from before the break");
        assert!(t.granted(t.ticket()));
        assert!(!t.connected(false));
        assert!(!t.granted(t.ticket()), "a server without callbacks");
    }
}
