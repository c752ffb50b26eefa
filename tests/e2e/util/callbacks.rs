//! Helpers of the callback tests: requests counted from rfserve's request
//! log (never timed), and a bounded wait for a mount to show something.

use std::time::Duration;

use super::{Server, wait_for};

/// Mount options under which only pushed invalidation can explain
/// freshness: the kernel and the mount would otherwise trust for a minute.
pub const LONG_TIMEOUTS: &[&str] = &["-o", "attr_timeout=60,dir_timeout=60"];

/// Every request line rfserve logged so far, keep-alive pings excepted.
pub fn request_lines(srv: &Server) -> Vec<String> {
    srv.log()
        .lines()
        .filter(|l| l.contains("request op=") && !l.contains("op=PING"))
        .map(str::to_owned)
        .collect()
}

/// The request lines logged after the first `before`.
pub fn requests_since(srv: &Server, before: usize) -> Vec<String> {
    request_lines(srv).split_off(before)
}

/// Polls `f` until it returns true or `within` passes; true if it did.
pub fn seen_within(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(within, || f().then_some(())).is_some()
}
