//! Why and how a connection ends: what the log says, what (if anything) the
//! peer is told, and whether work in flight is stopped.

use rfmount_proto::{ErrorCode, WireError};

pub(crate) struct Ending {
    /// For the log line.
    pub(crate) reason: String,
    /// Sent to the peer, best effort, before closing.
    pub(crate) fatal: Option<WireError>,
    /// Stop work in flight rather than letting it finish.
    pub(crate) abort: bool,
}

impl Ending {
    /// The peer left, or we close without a word; running requests may finish.
    pub(crate) fn quiet(reason: impl Into<String>) -> Ending {
        Ending {
            reason: reason.into(),
            fatal: None,
            abort: false,
        }
    }

    /// The connection is unusable; nothing more is sent, work stops.
    pub(crate) fn lost(reason: impl Into<String>) -> Ending {
        Ending {
            reason: reason.into(),
            fatal: None,
            abort: true,
        }
    }

    /// The peer is told why with a `Fatal`, and work stops.
    pub(crate) fn fatal(code: ErrorCode, message: impl Into<String>) -> Ending {
        let message = message.into();
        Ending {
            reason: message.clone(),
            fatal: Some(WireError::new(code, message)),
            abort: true,
        }
    }
}
