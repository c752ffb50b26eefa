//! Request counts and latencies per operation, for `rfmount status`.
//!
//! Each operation kind (`LIST`, `STAT`, `GET`, `PUT`, ...) keeps a count and
//! a fixed histogram of log-spaced buckets (four per power of two of
//! microseconds, up to about 19 hours), so memory stays bounded however
//! many requests a mount makes, and a percentile is exact to within one
//! bucket (under 19 %). A request is timed from sending it to the end of
//! its answer, so a `GET` or `PUT` includes its transfer. The last
//! keep-alive ping's round trip is kept apart as the connection's RTT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rfmount_proto::Op;

/// Buckets per power of two.
const PER_OCTAVE: usize = 4;
/// 36 octaves of microseconds: 1 µs to 2^36 µs (19 h).
const BUCKETS: usize = 36 * PER_OCTAVE;

/// Counts and latency histograms, shared by every connection of a remote
/// (clones of a [`crate::ConnectConfig`] share one).
#[derive(Debug, Default)]
pub struct RequestStats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    ops: BTreeMap<String, Histogram>,
    rtt: Option<(Duration, Instant)>,
}

#[derive(Debug)]
struct Histogram {
    count: u64,
    buckets: Box<[u64; BUCKETS]>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            count: 0,
            buckets: Box::new([0; BUCKETS]),
        }
    }

    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.buckets[bucket_of(d)] += 1;
    }

    /// The upper bound of the bucket holding the `q`-quantile.
    fn quantile(&self, q: f64) -> Duration {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper_bound(i);
            }
        }
        upper_bound(BUCKETS - 1)
    }
}

fn bucket_of(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= 1.0 {
        return 0;
    }
    let i = (us.log2() * PER_OCTAVE as f64).ceil() as usize;
    i.min(BUCKETS - 1)
}

fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(2f64.powf(i as f64 / PER_OCTAVE as f64) / 1e6)
}

/// One operation's count and latency percentiles.
#[derive(Clone, Debug, PartialEq)]
pub struct OpStats {
    /// The operation as the protocol names it: `LIST`, `GET`, ...
    pub op: String,
    /// Requests answered (or failed) so far.
    pub count: u64,
    /// Median latency.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// The name of `op`'s kind, `SETATTR` for `Op::SetAttr { .. }`; taken from
/// its `Debug` form so that new operations are named without a table here.
pub(crate) fn op_name(op: &Op) -> String {
    let dbg = format!("{op:?}");
    let end = dbg
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(dbg.len());
    dbg[..end].to_ascii_uppercase()
}

impl RequestStats {
    /// Counts one finished request of kind `op` that took `took`.
    pub(crate) fn record(&self, op: &str, took: Duration) {
        let mut inner = self.inner.lock();
        match inner.ops.get_mut(op) {
            Some(h) => h.record(took),
            None => {
                let mut h = Histogram::new();
                h.record(took);
                inner.ops.insert(op.to_owned(), h);
            }
        }
    }

    /// Notes a keep-alive ping's round trip.
    pub(crate) fn record_rtt(&self, rtt: Duration) {
        self.inner.lock().rtt = Some((rtt, Instant::now()));
    }

    /// The last ping's round trip and how long ago it was measured.
    pub fn rtt(&self) -> Option<(Duration, Duration)> {
        self.inner.lock().rtt.map(|(d, at)| (d, at.elapsed()))
    }

    /// Every operation seen so far, by name.
    pub fn ops(&self) -> Vec<OpStats> {
        self.inner
            .lock()
            .ops
            .iter()
            .map(|(op, h)| OpStats {
                op: op.clone(),
                count: h.count,
                p50: h.quantile(0.5),
                p90: h.quantile(0.9),
                p99: h.quantile(0.99),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rfmount_proto::RelPath;

    use super::*;

    #[test]
    fn names_come_from_the_variant() {
        assert_eq!(op_name(&Op::Ping), "PING");
        assert_eq!(op_name(&Op::StatFs), "STATFS");
        assert_eq!(
            op_name(&Op::List {
                path: RelPath::root()
            }),
            "LIST"
        );
    }

    #[test]
    fn percentiles_fall_within_one_bucket_of_the_truth() {
        let s = RequestStats::default();
        for ms in 1..=100u64 {
            s.record("GET", Duration::from_millis(ms));
        }
        s.record("PUT", Duration::from_secs(3));
        let ops = s.ops();
        assert_eq!(ops.len(), 2);
        let get = &ops[0];
        assert_eq!((get.op.as_str(), get.count), ("GET", 100));
        let near = |d: Duration, ms: f64| {
            let v = d.as_secs_f64() * 1e3;
            assert!(v >= ms && v <= ms * 1.2, "{v} ms for {ms} ms");
        };
        near(get.p50, 50.0);
        near(get.p90, 90.0);
        near(get.p99, 99.0);
        near(ops[1].p99, 3000.0);
        // Extremes land in the end buckets instead of overflowing.
        s.record("X", Duration::ZERO);
        s.record("X", Duration::from_secs(1 << 40));
        assert_eq!(s.ops()[2].count, 2);
    }
}
