//! Log lines about unauthenticated peers, rate-limited per address: a flood
//! of failed logins or silent connections must not flood the log as well.
//! The first line of a kind from an address goes out at once; within the
//! next [`WINDOW`] further ones are counted, and the count rides along on
//! the next line that goes out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::peers::AddrKey;

/// One line per address and kind at most this often.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// Addresses remembered; beyond this, the table is cleared (and the next
/// line from every address goes out at once).
const MAX_KEYS: usize = 4096;

/// Kinds of lines limited separately, so that one kind cannot hide another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Handshakes that failed or were cut short.
    Handshake,
    /// Failed authentications.
    Auth,
    /// Connections turned away or evicted.
    Refused,
}

#[derive(Default)]
pub(crate) struct RateLog {
    seen: Mutex<HashMap<(AddrKey, Kind), Slot>>,
}

struct Slot {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    /// Logs `line` at `level` unless a line of this kind from this address
    /// went out less than [`WINDOW`] ago.
    pub(crate) fn log(&self, level: log::Level, key: AddrKey, kind: Kind, line: &str) {
        if !log::log_enabled!(level) {
            return;
        }
        let now = Instant::now();
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, s| s.last.is_some_and(|t| now.duration_since(t) < WINDOW));
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        let slot = seen.entry((key, kind)).or_insert(Slot {
            last: None,
            suppressed: 0,
        });
        if slot.last.is_some_and(|t| now.duration_since(t) < WINDOW) {
            slot.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut slot.suppressed);
        slot.last = Some(now);
        drop(seen);
        // Under the crate's name: the module that wrote the line is not
        // what an operator filters on.
        if suppressed == 0 {
            log::log!(target: "rfmount_server", level, "{line}");
        } else {
            log::log!(
                target: "rfmount_server",
                level,
                "{line} (and {suppressed} more like it from {key} since the last such line)"
            );
        }
    }
}
