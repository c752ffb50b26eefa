//! Who may connect: the table of live connections with its limits, and the
//! back-off of addresses that failed to authenticate.
//!
//! Connections that have not finished the handshake are cheap to make and
//! say nothing about who is on the other end, so they are never allowed to
//! crowd out real clients: they have their own, smaller cap, and when it is
//! reached the oldest handshake of the address holding the most is closed
//! to make room. A real client's handshake takes a round trip or two and is
//! one of few from its address, so a flood of silent or trickling
//! connections cannot keep it out; the flood churns through its own
//! connections. Sessions (past the handshake) have the big cap, and one
//! address may hold only so many connections of either kind.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::config::ServerConfig;
use crate::ratelog::{Kind, RateLog};

/// Descriptors kept free for everything but connections: standard streams,
/// the listener, the export root, and the files requests open.
const FD_RESERVE: u64 = 16;
/// Failures an address may have before the back-off starts, so that a
/// mistyped token or two does not lock a user out.
pub(crate) const FREE_FAILURES: u32 = 3;
/// A failure older than this no longer counts toward the back-off.
const FORGET_FAILURES: Duration = Duration::from_secs(15 * 60);
/// Addresses with failures remembered at most (the oldest go first).
const MAX_FAILING: usize = 10_000;

/// The unit of the per-address limits: an IPv4 address, or an IPv6 /64
/// (one host's allocation is usually a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AddrKey(IpAddr);

impl AddrKey {
    pub(crate) fn of(peer: &SocketAddr) -> AddrKey {
        match peer.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    AddrKey(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
            v4 => AddrKey(v4),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a connection is turned away.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Too many connections; the message says which limit.
    Busy(String),
    /// The address failed to authenticate recently; it may retry after this.
    Backoff(Duration),
    /// The server is shutting down.
    Stopping,
}

/// The connection table and back-off state, shared by the accept loop and
/// every session.
pub(crate) struct Gate {
    max_sessions: usize,
    max_handshakes: usize,
    max_per_address: usize,
    /// Connections of both kinds that fit in the descriptor limit.
    max_total: usize,
    backoff: Duration,
    backoff_max: Duration,
    state: Mutex<State>,
    gone: Condvar,
    /// Rate-limited lines about unauthenticated peers.
    pub(crate) log: RateLog,
}

#[derive(Default)]
struct State {
    next: u64,
    stopping: bool,
    conns: HashMap<u64, Entry>,
    /// Ids still in the handshake; ids grow, so the first is the oldest.
    handshaking: BTreeSet<u64>,
    sessions: usize,
    per_addr: HashMap<AddrKey, usize>,
    failing: HashMap<AddrKey, Failures>,
}

struct Entry {
    key: AddrKey,
    stream: Arc<TcpStream>,
}

struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

/// A connection's place in the table, released on drop.
pub(crate) struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    pub(crate) key: AddrKey,
    /// When the connection was accepted; the handshake deadline runs from here.
    pub(crate) accepted: Instant,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.release(self.id);
    }
}

impl Gate {
    pub(crate) fn new(cfg: &ServerConfig, fd_limit: u64) -> Gate {
        let max_total =
            usize::try_from(fd_limit.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
        Gate {
            max_sessions: cfg.max_connections,
            max_handshakes: cfg.max_handshakes.max(1),
            max_per_address: cfg.max_per_address.max(1),
            max_total,
            backoff: cfg.auth_backoff,
            backoff_max: cfg.auth_backoff_max.max(cfg.auth_backoff),
            state: Mutex::default(),
            gone: Condvar::new(),
            log: RateLog::default(),
        }
    }

    /// Takes a new connection in as a handshake, closing older handshakes
    /// when a limit demands it, or says why it cannot come in.
    pub(crate) fn admit(
        self: &Arc<Self>,
        stream: &Arc<TcpStream>,
        peer: &SocketAddr,
    ) -> Result<Ticket, Refusal> {
        let key = AddrKey::of(peer);
        let now = Instant::now();
        let mut evicted = Vec::new();
        let mut st = self.state.lock();
        if st.stopping {
            return Err(Refusal::Stopping);
        }
        if let Some(left) = backoff_left(&st, key, now) {
            return Err(Refusal::Backoff(left));
        }
        if st.sessions >= self.max_sessions {
            return Err(Refusal::Busy("server busy: too many connections".into()));
        }
        if st.per_addr.get(&key).copied().unwrap_or(0) >= self.max_per_address {
            let oldest = st
                .handshaking
                .iter()
                .copied()
                .find(|id| st.conns.get(id).is_some_and(|e| e.key == key));
            match oldest {
                Some(id) => evicted.push(evict(&mut st, id)),
                None => {
                    return Err(Refusal::Busy(format!(
                        "server busy: too many connections from {key}"
                    )));
                }
            }
        }
        while st.handshaking.len() >= self.max_handshakes || st.conns.len() >= self.max_total {
            match oldest_of_busiest(&st) {
                Some(id) => evicted.push(evict(&mut st, id)),
                None => return Err(Refusal::Busy("server busy: too many connections".into())),
            }
        }
        let id = st.next;
        st.next += 1;
        st.conns.insert(
            id,
            Entry {
                key,
                stream: Arc::clone(stream),
            },
        );
        st.handshaking.insert(id);
        *st.per_addr.entry(key).or_insert(0) += 1;
        drop(st);
        for (key, stream) in evicted {
            let _ = stream.shutdown(Shutdown::Both);
            self.log.log(
                log::Level::Info,
                key,
                Kind::Refused,
                &format!("{key}: closed an unfinished handshake to make room for a new connection"),
            );
        }
        Ok(Ticket {
            gate: Arc::clone(self),
            id,
            key,
            accepted: now,
        })
    }

    /// Moves a connection whose handshake is over into the sessions.
    ///
    /// # Errors
    /// The refusal to send when the sessions are full, or when the
    /// connection was closed to make room meanwhile.
    pub(crate) fn promote(&self, ticket: &Ticket) -> Result<(), String> {
        let mut st = self.state.lock();
        if !st.conns.contains_key(&ticket.id) {
            return Err("connection closed to make room for others".into());
        }
        if st.sessions >= self.max_sessions {
            return Err("server busy: too many connections".into());
        }
        st.handshaking.remove(&ticket.id);
        st.sessions += 1;
        Ok(())
    }

    /// How long `key` must still wait before it may authenticate again.
    pub(crate) fn backoff_left(&self, key: AddrKey) -> Option<Duration> {
        backoff_left(&self.state.lock(), key, Instant::now())
    }

    /// Records a failed authentication; returns the back-off it earned
    /// (zero for the first [`FREE_FAILURES`]).
    pub(crate) fn auth_failed(&self, key: AddrKey) -> Duration {
        let now = Instant::now();
        let mut st = self.state.lock();
        if st.failing.len() >= MAX_FAILING && !st.failing.contains_key(&key) {
            st.failing
                .retain(|_, f| now.duration_since(f.last) < FORGET_FAILURES);
            if st.failing.len() >= MAX_FAILING {
                if let Some(oldest) = st
                    .failing
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| *k)
                {
                    st.failing.remove(&oldest);
                }
            }
        }
        let f = st.failing.entry(key).or_insert(Failures {
            count: 0,
            until: now,
            last: now,
        });
        if now.duration_since(f.last) >= FORGET_FAILURES {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        let delay = match f.count.checked_sub(FREE_FAILURES + 1) {
            None => Duration::ZERO,
            Some(doublings) => self
                .backoff
                .saturating_mul(1u32 << doublings.min(16))
                .min(self.backoff_max),
        };
        f.until = now + delay;
        f.last = now;
        delay
    }

    /// Forgets the failures of an address that has just authenticated.
    pub(crate) fn auth_ok(&self, key: AddrKey) {
        self.state.lock().failing.remove(&key);
    }

    /// Refuses new connections and shuts every live one down; each session
    /// then ends by itself, dropping (and so deleting) its unfinished uploads.
    pub(crate) fn close_all(&self) {
        let mut st = self.state.lock();
        st.stopping = true;
        for e in st.conns.values() {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
    }

    /// Waits until every connection is gone or `deadline` passes; returns
    /// how many are left.
    pub(crate) fn wait_empty(&self, deadline: Instant) -> usize {
        let mut st = self.state.lock();
        while !st.conns.is_empty() {
            if self.gone.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        st.conns.len()
    }

    fn release(&self, id: u64) {
        let mut st = self.state.lock();
        if st.conns.contains_key(&id) {
            if !st.handshaking.contains(&id) {
                st.sessions -= 1;
            }
            evict(&mut st, id);
        }
        drop(st);
        self.gone.notify_all();
    }
}

/// Takes connection `id` out of the table (its counts included) and hands
/// back what is needed to close it.
fn evict(st: &mut State, id: u64) -> (AddrKey, Arc<TcpStream>) {
    let e = st
        .conns
        .remove(&id)
        .expect("evicting a connection in the table");
    st.handshaking.remove(&id);
    if let Some(n) = st.per_addr.get_mut(&e.key) {
        *n -= 1;
        if *n == 0 {
            st.per_addr.remove(&e.key);
        }
    }
    (e.key, e.stream)
}

/// The handshake to close when the handshakes are full: the oldest one of
/// the address holding the most, so that a flood from one place churns
/// through its own connections and a client elsewhere, holding one, is the
/// last to be touched.
fn oldest_of_busiest(st: &State) -> Option<u64> {
    let mut counts: HashMap<AddrKey, usize> = HashMap::new();
    for id in &st.handshaking {
        if let Some(e) = st.conns.get(id) {
            *counts.entry(e.key).or_insert(0) += 1;
        }
    }
    let most = counts.values().copied().max()?;
    st.handshaking
        .iter()
        .copied()
        .find(|id| st.conns.get(id).is_some_and(|e| counts[&e.key] == most))
}

/// The refusal of an address in back-off.
pub(crate) fn backoff_message(addr: impl fmt::Display, left: Duration) -> String {
    format!(
        "too many failed authentications from {addr}; try again in {:.1} s",
        left.as_secs_f32().max(0.1)
    )
}

fn backoff_left(st: &State, key: AddrKey, now: Instant) -> Option<Duration> {
    let f = st.failing.get(&key)?;
    (f.until > now).then(|| f.until - now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(l: &TcpListener) -> Arc<TcpStream> {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _ = l.accept().unwrap();
        Arc::new(c)
    }

    fn gate(cfg: ServerConfig) -> Arc<Gate> {
        Arc::new(Gate::new(&cfg, 1 << 20))
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn handshakes_make_room_oldest_first_and_sessions_stay() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = gate(ServerConfig {
            max_handshakes: 2,
            ..ServerConfig::default()
        });
        let s1 = pair(&l);
        let t1 = g.admit(&s1, &peer("10.0.0.1:1")).unwrap();
        g.promote(&t1).unwrap();
        let t2 = g.admit(&pair(&l), &peer("10.0.0.2:1")).unwrap();
        let _t3 = g.admit(&pair(&l), &peer("10.0.0.3:1")).unwrap();
        // A fourth evicts the oldest handshake (t2), never the session t1.
        let _t4 = g.admit(&pair(&l), &peer("10.0.0.4:1")).unwrap();
        assert!(g.promote(&t2).is_err(), "t2 should have been evicted");
        assert_eq!(g.state.lock().sessions, 1);
        drop(t2);
        assert_eq!(g.state.lock().sessions, 1);
        drop(t1);
        assert_eq!(g.state.lock().sessions, 0);
        assert_eq!(g.state.lock().conns.len(), 2);
    }

    #[test]
    fn a_flood_from_one_address_never_evicts_a_handshake_from_another() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = gate(ServerConfig {
            max_handshakes: 4,
            ..ServerConfig::default()
        });
        // The real client connects first, so it is the oldest handshake.
        let real = g.admit(&pair(&l), &peer("10.0.0.1:1")).unwrap();
        let flood: Vec<_> = (0..50)
            .map(|i| {
                g.admit(&pair(&l), &peer(&format!("10.9.9.9:{}", i + 1)))
                    .unwrap()
            })
            .collect();
        g.promote(&real)
            .expect("the real client's handshake survived");
        let alive = flood.iter().filter(|t| g.promote(t).is_ok()).count();
        assert_eq!(alive, 3);
    }

    #[test]
    fn per_address_limit_evicts_that_address_or_refuses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let g = gate(ServerConfig {
            max_per_address: 2,
            ..ServerConfig::default()
        });
        let a = g.admit(&pair(&l), &peer("10.0.0.1:1")).unwrap();
        let b = g.admit(&pair(&l), &peer("10.0.0.1:2")).unwrap();
        let other = g.admit(&pair(&l), &peer("10.0.0.9:1")).unwrap();
        g.promote(&a).unwrap();
        let _c = g.admit(&pair(&l), &peer("10.0.0.1:3")).unwrap();
        assert!(
            g.promote(&b).is_err(),
            "b was that address's oldest handshake"
        );
        g.promote(&other).unwrap();
        g.promote(&_c).unwrap();
        match g.admit(&pair(&l), &peer("10.0.0.1:4")) {
            Err(Refusal::Busy(m)) => assert!(m.contains("from 10.0.0.1"), "{m}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        // IPv6 addresses of one /64 share a limit.
        let x = g.admit(&pair(&l), &peer("[2001:db8::1]:1")).unwrap();
        let _y = g.admit(&pair(&l), &peer("[2001:db8::2]:1")).unwrap();
        let _z = g.admit(&pair(&l), &peer("[2001:db8::3]:1")).unwrap();
        assert!(g.promote(&x).is_err());
    }

    #[test]
    fn failed_authentication_backs_off_exponentially() {
        let g = gate(ServerConfig {
            auth_backoff: Duration::from_secs(1),
            auth_backoff_max: Duration::from_secs(5),
            ..ServerConfig::default()
        });
        let k = AddrKey::of(&peer("10.0.0.1:1"));
        assert_eq!(g.backoff_left(k), None);
        let delays: Vec<_> = (0..8).map(|_| g.auth_failed(k).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 5, 5]);
        assert!(g.backoff_left(k).is_some());
        assert_eq!(g.backoff_left(AddrKey::of(&peer("10.0.0.2:1"))), None);
        g.auth_ok(k);
        assert_eq!(g.backoff_left(k), None);
    }
}
