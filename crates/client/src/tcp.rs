//! `TcpRemote`: the [`Remote`] over a TCP connection to `rfserve`, which
//! reconnects when the connection has died.
//!
//! Requests are never blindly re-sent: a mutating request whose connection
//! broke after it was sent fails with a transport error, because the server
//! may or may not have applied it. Only read-only requests (`LIST`, `STAT`,
//! `STATFS`) are retried once on a fresh connection.
//!
//! Once the server is known unreachable (a request timed out, the
//! connection broke, a connect was refused) the remote is *down*: requests
//! fail at once with a transport error instead of each waiting for its own
//! timeout, and a background thread reconnects with exponential back-off.
//! A server that refuses or resets is retried with exponential back-off,
//! and a request made while the reconnector sleeps wakes it and waits a
//! moment for that attempt, so the first request after the server is back
//! works. A server that is silent (stopped, or a link dropping packets) is
//! retried at once after each attempt times out, so an attempt is nearly
//! always waiting on it and succeeds the moment it answers again; requests
//! wait only a moment (100 ms) for those attempts.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};
use parking_lot::{Condvar, Mutex};
use rfmount_proto::{
    CHUNK_SIZE, ClientMsg, DirEntry, ErrorCode, FileKind, Hasher, LockHolder, Meta, Op, Owner,
    PutExt, PutLayout, RelPath, Reply, ServerMsg, SetAttr, StatFs, Version, WireError,
};

use crate::connection::{Call, ConnectConfig, Connection};
use crate::error::RemoteError;
use crate::remote::{
    ExportInfo, GetOutcome, GetSink, LockRequest, PutOptions, Remote, Uploaded, write_zeros,
};
use crate::stats::RequestStats;

/// First pause between reconnect attempts; doubled after each failure that
/// was not a timeout.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// How often a waiting lock request looks whether its caller gave up.
const LOCK_POLL: Duration = Duration::from_millis(100);
/// Longest pause between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a request made while the server is down waits for the
/// reconnect attempt it triggered (a refused connect fails far sooner).
const KICK_WAIT: Duration = Duration::from_millis(500);
/// The same for a silent server: an attempt on it finishes at once when it
/// answers again, or only after the whole timeout.
const SILENT_WAIT: Duration = Duration::from_millis(100);
/// How long an open served from a callback waits for frames already
/// arriving to be read, before it asks the server instead: a frame is read
/// in microseconds, but one chunk of a transfer can take milliseconds.
const SETTLE_WAIT: Duration = Duration::from_millis(20);

/// Whether a [`TcpRemote`] can reach its server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// A live connection exists.
    Online,
    /// Requests fail at once while a background thread reconnects.
    Down {
        /// When the server was found unreachable.
        since: SystemTime,
        /// Why: the last failure.
        reason: String,
        /// A reconnect attempt is running right now.
        reconnecting: bool,
    },
}

/// The real [`Remote`]: one multiplexed connection, reopened on demand.
#[derive(Debug)]
pub struct TcpRemote {
    info: ExportInfo,
    link: Arc<Link>,
}

#[derive(Debug)]
struct Link {
    cfg: ConnectConfig,
    export_id: String,
    state: Mutex<LinkState>,
    changed: Condvar,
    /// Told after every reconnect whether the server kept this client's
    /// locks (`Welcome.resumed`).
    on_reconnect: Mutex<Option<HookSlot>>,
}

struct HookSlot(ReconnectHook);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReconnectHook")
    }
}

/// See [`TcpRemote::on_reconnect`].
pub type ReconnectHook = Arc<dyn Fn(bool) + Send + Sync>;

#[derive(Debug)]
struct LinkState {
    conn: Option<Arc<Connection>>,
    /// Why the server is unreachable, while it is.
    down: Option<String>,
    /// Since when, while it is.
    down_since: Option<SystemTime>,
    /// A reconnect attempt is running.
    attempting: bool,
    /// A request asked for an attempt now.
    kick: bool,
    /// Attempts finished so far.
    attempts: u64,
    next_attempt: Instant,
    backoff: Duration,
    /// The last failure was a timeout: the server is silent, and a new
    /// attempt will most likely wait the whole timeout too.
    silent: bool,
    /// The attempt (by its number in `attempts`) that a request already
    /// waited for in vain: later requests fail at once instead of each
    /// waiting again, so that an outage costs one short wait per attempt,
    /// not one per request.
    waited_on: Option<u64>,
    reconnector: bool,
    stop: bool,
}

impl Link {
    fn new(cfg: ConnectConfig, export_id: String, conn: Option<Arc<Connection>>) -> Arc<Link> {
        Arc::new(Link {
            cfg,
            export_id,
            state: Mutex::new(LinkState {
                conn,
                down: None,
                down_since: None,
                attempting: false,
                kick: false,
                attempts: 0,
                next_attempt: Instant::now(),
                backoff: BACKOFF_START,
                silent: false,
                waited_on: None,
                reconnector: false,
                stop: false,
            }),
            changed: Condvar::new(),
            on_reconnect: Mutex::new(None),
        })
    }

    /// Marks the server unreachable (`silent`: it stopped answering) and
    /// makes sure the reconnector runs.
    fn go_down(self: &Arc<Self>, st: &mut LinkState, why: String, silent: bool) {
        st.conn = None;
        st.silent = silent;
        if st.down.is_none() {
            warn!(
                "server {} unreachable, answering from the cache until it is back: {why}",
                self.cfg.addr
            );
            st.next_attempt = Instant::now();
            st.backoff = BACKOFF_START;
        }
        st.down = Some(why);
        st.down_since.get_or_insert_with(SystemTime::now);
        if !st.reconnector {
            let link = self.clone();
            match std::thread::Builder::new()
                .name("rf-reconnect".into())
                .spawn(move || link.reconnect_loop())
            {
                Ok(_) => st.reconnector = true,
                Err(e) => warn!("cannot start the reconnect thread: {e}"),
            }
        }
        self.changed.notify_all();
    }

    fn reconnect_loop(&self) {
        loop {
            let mut st = self.state.lock();
            loop {
                if st.stop {
                    return;
                }
                let due = st.kick || Instant::now() >= st.next_attempt;
                if st.conn.is_none() && due {
                    break;
                }
                if st.conn.is_some() {
                    self.changed.wait(&mut st);
                } else {
                    let at = st.next_attempt;
                    self.changed.wait_until(&mut st, at);
                }
            }
            st.kick = false;
            st.attempting = true;
            drop(st);
            let started = Instant::now();
            let result = self.open();
            let timed_out = started.elapsed() >= self.cfg.connect_timeout / 2;
            let mut st = self.state.lock();
            st.attempting = false;
            st.attempts += 1;
            let mut resumed = None;
            match result {
                Ok(c) => {
                    info!("reconnected to {}", self.cfg.addr);
                    resumed = Some(c.welcome().resumed);
                    st.conn = Some(c);
                    st.down = None;
                    st.down_since = None;
                    st.silent = false;
                    st.backoff = BACKOFF_START;
                }
                Err(e) => {
                    log::debug!("reconnect to {} failed: {e}", self.cfg.addr);
                    if !e.is_transport() {
                        warn!("reconnect to {} failed: {e}", self.cfg.addr);
                    }
                    st.down = Some(e.to_string());
                    st.silent = timed_out && e.is_transport();
                    if st.silent {
                        // It cost a whole timeout already; waiting longer
                        // would only delay noticing that it is back.
                        st.next_attempt = Instant::now() + BACKOFF_START;
                    } else {
                        st.next_attempt = Instant::now() + st.backoff;
                        st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            self.changed.notify_all();
            drop(st);
            if let Some(resumed) = resumed {
                let hook = self.on_reconnect.lock().as_ref().map(|h| Arc::clone(&h.0));
                if let Some(hook) = hook {
                    hook(resumed);
                }
            }
        }
    }

    /// A fresh connection to the same export.
    fn open(&self) -> Result<Arc<Connection>, RemoteError> {
        let c = Connection::open(&self.cfg)?;
        if c.welcome().export_id != self.export_id {
            return Err(RemoteError::Protocol(format!(
                "server {} now serves a different export ({} instead of {})",
                self.cfg.addr,
                c.welcome().export_id,
                self.export_id
            )));
        }
        Ok(c)
    }
}

impl Drop for TcpRemote {
    fn drop(&mut self) {
        self.link.state.lock().stop = true;
        self.link.changed.notify_all();
    }
}

impl TcpRemote {
    /// Connects now, so that an unreachable server or bad token is reported
    /// at once.
    ///
    /// # Errors
    /// See [`Connection::open`].
    pub fn connect(cfg: ConnectConfig) -> Result<Self, RemoteError> {
        let conn = Connection::open(&cfg)?;
        let info = ExportInfo {
            export_id: conn.welcome().export_id.clone(),
            read_only: conn.welcome().read_only,
        };
        let link = Link::new(cfg, info.export_id.clone(), Some(conn));
        Ok(TcpRemote { info, link })
    }

    /// A remote for an export known from an earlier connection while its
    /// server is unreachable: every request fails with a transport error
    /// until a background reconnect reaches the server and finds the same
    /// export there.
    pub fn offline(cfg: ConnectConfig, info: ExportInfo, why: String) -> Self {
        let link = Link::new(cfg, info.export_id.clone(), None);
        {
            let mut st = link.state.lock();
            // The caller reports this start itself; no second warning.
            st.down = Some(why.clone());
            link.go_down(&mut st, why, false);
        }
        TcpRemote { info, link }
    }

    /// Calls `hook` on the reconnect thread after every reconnect, with
    /// whether the server kept this client's locks across it.
    pub fn on_reconnect(&self, hook: ReconnectHook) {
        *self.link.on_reconnect.lock() = Some(HookSlot(hook));
    }

    /// True while a live connection exists (the server answered lately).
    pub fn is_online(&self) -> bool {
        let st = self.link.state.lock();
        st.conn.as_ref().is_some_and(|c| c.dead_reason().is_none())
    }

    /// Whether the server is reachable now, for status reports. A
    /// connection found dead here is handled as a request would: the
    /// remote goes down and the reconnector starts.
    pub fn health(&self) -> Health {
        let link = &self.link;
        let mut st = link.state.lock();
        if let Some(c) = st.conn.clone() {
            match c.dead_reason() {
                None => return Health::Online,
                Some(why) => link.go_down(&mut st, why, c.timed_out()),
            }
        }
        Health::Down {
            since: st.down_since.unwrap_or_else(SystemTime::now),
            reason: st
                .down
                .clone()
                .unwrap_or_else(|| format!("server {} unreachable", link.cfg.addr)),
            reconnecting: st.attempting,
        }
    }

    /// Counts and latencies of the requests made so far, and the last
    /// keep-alive round trip.
    pub fn stats(&self) -> &RequestStats {
        &self.link.cfg.stats
    }

    /// The live connection. While the server is down this fails at once,
    /// after waking the reconnector and giving its attempt [`KICK_WAIT`]
    /// ([`SILENT_WAIT`] for a silent server) — unless an earlier request
    /// already waited for that same attempt in vain.
    fn conn(&self) -> Result<Arc<Connection>, RemoteError> {
        let link = &self.link;
        let mut st = link.state.lock();
        if let Some(c) = st.conn.clone() {
            match c.dead_reason() {
                None => return Ok(c),
                Some(why) => link.go_down(&mut st, why, c.timed_out()),
            }
        }
        // Wake the reconnector and give its attempt a moment: if the server
        // is back, this very request works.
        if !st.attempting {
            st.kick = true;
            link.changed.notify_all();
        }
        let seen = st.attempts;
        if st.waited_on != Some(seen) {
            let wait = if st.silent { SILENT_WAIT } else { KICK_WAIT };
            let until = Instant::now() + wait;
            while st.attempts == seen && !link.changed.wait_until(&mut st, until).timed_out() {}
            if st.attempts == seen {
                st.waited_on = Some(seen);
            }
        }
        if let Some(c) = st.conn.clone().filter(|c| c.dead_reason().is_none()) {
            return Ok(c);
        }
        Err(RemoteError::Transport(st.down.clone().unwrap_or_else(
            || format!("server {} unreachable", link.cfg.addr),
        )))
    }

    /// One request, one reply.
    fn simple(&self, op: Op) -> Result<Reply, RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(op)?;
        expect_reply(&call)
    }

    /// Like [`Self::simple`] but retried once on a fresh connection after a
    /// transport error; only for requests that change nothing.
    fn idempotent(&self, op: Op) -> Result<Reply, RemoteError> {
        match self.simple(op.clone()) {
            Err(e) if e.is_transport() => self.simple(op),
            r => r,
        }
    }
}

fn expect_reply(call: &Call<'_>) -> Result<Reply, RemoteError> {
    match call.next()? {
        ServerMsg::Reply { result, .. } => result.map_err(RemoteError::Service),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(msg: &ServerMsg) -> RemoteError {
    let what = match msg {
        ServerMsg::Hello(_) => "Hello",
        ServerMsg::AuthResult(_) => "AuthResult",
        ServerMsg::Reply { .. } => "Reply",
        ServerMsg::Data { .. } => "Data",
        ServerMsg::DataEnd { .. } => "DataEnd",
        ServerMsg::Fatal(_) => "Fatal",
        ServerMsg::Welcome(_) => "Welcome",
        ServerMsg::Invalidate(_) => "Invalidate",
        ServerMsg::DataHole { .. } => "DataHole",
    };
    RemoteError::Protocol(format!("unexpected {what} frame from server"))
}

fn wrong_reply(op: &str, r: &Reply) -> RemoteError {
    RemoteError::Protocol(format!("unexpected reply to {op}: {r:?}"))
}

/// A plain sink behind [`GetSink`]: a hole (never sent to a request
/// without `sparse`, but harmless) lands as zeros.
struct ZeroFill<'a>(&'a mut dyn Write);

impl Write for ZeroFill<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl GetSink for ZeroFill<'_> {
    fn hole(&mut self, len: u64) -> std::io::Result<()> {
        write_zeros(self.0, len)
    }
}

impl TcpRemote {
    /// One `GET`: the header, then `Data` and (for a `sparse` request)
    /// `DataHole` frames into `sink`, checked against the final checksum,
    /// which covers holes as zeros.
    fn get_inner(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn GetSink,
        sparse: bool,
    ) -> Result<GetOutcome, RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(Op::Get {
            path: path.clone(),
            have,
            sparse,
        })?;
        let meta = match expect_reply(&call)? {
            Reply::NotModified(m) => return Ok(GetOutcome::NotModified(m)),
            Reply::Get(m) => m,
            r => return Err(wrong_reply("GET", &r)),
        };
        started(&meta);
        let mut hasher = Hasher::new();
        let mut received = 0u64;
        loop {
            let landed = match call.next()? {
                ServerMsg::Data { data, .. } => {
                    hasher.update(&data);
                    received += data.len() as u64;
                    sink.chunk(data)
                }
                ServerMsg::DataHole { len, .. } if sparse => {
                    // A hole past the announced size would make the sink
                    // allocate (or seek) without bound.
                    if received.saturating_add(len) > meta.size {
                        let _ = call.conn().send(&ClientMsg::Cancel { id: call.id });
                        return Err(RemoteError::Protocol(format!(
                            "hole past the end of {path} ({len} bytes at {received} of {})",
                            meta.size
                        )));
                    }
                    hasher.update_zeros(len);
                    received += len;
                    sink.hole(len)
                }
                ServerMsg::DataEnd {
                    result: Ok(sum), ..
                } => {
                    if hasher.finish() != sum {
                        return Err(RemoteError::Protocol(format!(
                            "checksum mismatch receiving {path}: data corrupted in transit"
                        )));
                    }
                    return Ok(GetOutcome::Fetched(meta));
                }
                ServerMsg::DataEnd { result: Err(e), .. } => return Err(RemoteError::Service(e)),
                ServerMsg::Reply { result: Err(e), .. } => return Err(RemoteError::Service(e)),
                other => return Err(unexpected(&other)),
            };
            if let Err(e) = landed {
                let _ = call.conn().send(&ClientMsg::Cancel { id: call.id });
                return Err(RemoteError::local(format!("writing {path}"), e));
            }
        }
    }
}

impl Remote for TcpRemote {
    fn export(&self) -> ExportInfo {
        self.info.clone()
    }

    fn list(&self, dir: &RelPath) -> Result<Vec<DirEntry>, RemoteError> {
        let attempt = || -> Result<Vec<DirEntry>, RemoteError> {
            let conn = self.conn()?;
            let call = conn.start(Op::List { path: dir.clone() })?;
            let mut all = Vec::new();
            loop {
                match expect_reply(&call)? {
                    Reply::Entries { entries, more } => {
                        all.extend(entries);
                        if !more {
                            return Ok(all);
                        }
                    }
                    r => return Err(wrong_reply("LIST", &r)),
                }
            }
        };
        match attempt() {
            Err(e) if e.is_transport() => attempt(),
            r => r,
        }
    }

    fn stat(&self, path: &RelPath) -> Result<Meta, RemoteError> {
        match self.idempotent(Op::Stat { path: path.clone() })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("STAT", &r)),
        }
    }

    fn get_streamed(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn Write,
    ) -> Result<GetOutcome, RemoteError> {
        self.get_inner(path, have, started, &mut ZeroFill(sink), false)
    }

    fn get_sparse(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn GetSink,
    ) -> Result<GetOutcome, RemoteError> {
        self.get_inner(path, have, started, sink, true)
    }

    fn put(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        size: u64,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(put_op(path, size, opts, None, false))?;
        let mut hasher = Hasher::new();
        send_chunks(&call, size, &mut |buf: &mut [u8]| {
            read_full(src, buf)
                .map_err(|e| RemoteError::local(format!("reading the source of {path}"), e))?;
            hasher.update(buf);
            Ok(())
        })?;
        conn.send(&ClientMsg::PutEnd {
            id: call.id,
            checksum: hasher.finish(),
        })?;
        uploaded(expect_reply(&call)?)
    }

    fn put_open_ended(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(put_op(path, 0, opts, None, true))?;
        let mut hasher = Hasher::new();
        let cancel = || {
            let _ = conn.send(&ClientMsg::Cancel { id: call.id });
        };
        loop {
            // A refusal (conflict, no space) may arrive while the data
            // flows: stop sending what the server is going to discard.
            if let Some(msg) = call.try_next() {
                cancel();
                return match msg {
                    ServerMsg::Reply { result: Err(e), .. } => Err(RemoteError::Service(e)),
                    other => Err(unexpected(&other)),
                };
            }
            let mut buf = vec![0u8; CHUNK_SIZE];
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    cancel();
                    return Err(RemoteError::local(
                        format!("reading the source of {path}"),
                        e,
                    ));
                }
            };
            buf.truncate(n);
            hasher.update(&buf);
            conn.send(&ClientMsg::PutData {
                id: call.id,
                data: buf,
            })?;
        }
        conn.send(&ClientMsg::PutEnd {
            id: call.id,
            checksum: hasher.finish(),
        })?;
        uploaded(expect_reply(&call)?)
    }

    fn put_layout(
        &self,
        path: &RelPath,
        src: &std::fs::File,
        size: u64,
        layout: PutLayout,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
        let local =
            |e: std::io::Error| RemoteError::local(format!("reading the source of {path}"), e);
        // Before the request: the server holds the upload's temporary
        // (a clone of the old file) only while the data flows.
        let checksum = crate::layout::checksum_of(src, size).map_err(local)?;
        let extents = layout.extents.clone();
        let conn = self.conn()?;
        let call = conn.start(put_op(path, size, opts, Some(layout), false))?;
        for e in extents {
            let mut at = e.offset;
            send_chunks(&call, e.len, &mut |buf: &mut [u8]| {
                crate::layout::read_exact_at(src, buf, at).map_err(local)?;
                at += buf.len() as u64;
                Ok(())
            })?;
        }
        conn.send(&ClientMsg::PutEnd {
            id: call.id,
            checksum,
        })?;
        uploaded(expect_reply(&call)?)
    }

    fn remove(&self, path: &RelPath) -> Result<(), RemoteError> {
        done("REMOVE", self.simple(Op::Remove { path: path.clone() })?)
    }

    fn rename(&self, from: &RelPath, to: &RelPath, flags: u32) -> Result<(), RemoteError> {
        done(
            "RENAME",
            self.simple(Op::Rename {
                from: from.clone(),
                to: to.clone(),
                flags,
            })?,
        )
    }

    fn settled(&self) -> bool {
        let conn = self.link.state.lock().conn.clone();
        conn.is_some_and(|c| c.dead_reason().is_none() && c.settled(SETTLE_WAIT))
    }

    fn rename_changed(
        &self,
        from: &RelPath,
        to: &RelPath,
        flags: u32,
    ) -> Result<Option<Meta>, RemoteError> {
        match self.simple(Op::Rename {
            from: from.clone(),
            to: to.clone(),
            flags,
        })? {
            Reply::Done => Ok(None),
            Reply::Changed { meta, .. } => Ok(meta),
            r => Err(wrong_reply("RENAME", &r)),
        }
    }

    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> Result<Meta, RemoteError> {
        changed_meta(
            "MKDIR",
            self.simple(Op::Mkdir {
                path: path.clone(),
                mode,
                owner,
            })?,
        )
    }

    fn mkdir_changed(
        &self,
        path: &RelPath,
        mode: u32,
        owner: Option<Owner>,
    ) -> Result<Uploaded, RemoteError> {
        match self.simple(Op::Mkdir {
            path: path.clone(),
            mode,
            owner,
        })? {
            Reply::Changed {
                meta: Some(meta),
                parents,
            } => Ok(Uploaded { meta, parents }),
            r => changed_meta("MKDIR", r).map(|meta| Uploaded {
                meta,
                parents: Vec::new(),
            }),
        }
    }

    fn rmdir(&self, path: &RelPath) -> Result<(), RemoteError> {
        done("RMDIR", self.simple(Op::Rmdir { path: path.clone() })?)
    }

    fn setattr(&self, path: &RelPath, attr: SetAttr) -> Result<Meta, RemoteError> {
        changed_meta(
            "SETATTR",
            self.simple(Op::SetAttr {
                path: path.clone(),
                attr,
            })?,
        )
    }

    fn statfs(&self) -> Result<StatFs, RemoteError> {
        match self.idempotent(Op::StatFs)? {
            Reply::StatFs(s) => Ok(s),
            r => Err(wrong_reply("STATFS", &r)),
        }
    }

    fn symlink(
        &self,
        path: &RelPath,
        target: &str,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError> {
        changed_meta(
            "SYMLINK",
            self.simple(Op::Symlink {
                path: path.clone(),
                target: target.to_owned(),
                owner,
            })?,
        )
    }

    fn readlink(&self, path: &RelPath) -> Result<String, RemoteError> {
        match self.idempotent(Op::ReadLink { path: path.clone() })? {
            Reply::Target(t) => Ok(t),
            r => Err(wrong_reply("READLINK", &r)),
        }
    }

    fn link(&self, from: &RelPath, to: &RelPath) -> Result<Meta, RemoteError> {
        changed_meta(
            "LINK",
            self.simple(Op::Link {
                from: from.clone(),
                to: to.clone(),
            })?,
        )
    }

    fn getxattr(&self, path: &RelPath, name: &str) -> Result<Vec<u8>, RemoteError> {
        match self.idempotent(Op::GetXattr {
            path: path.clone(),
            name: name.to_owned(),
        })? {
            Reply::Xattr(v) => Ok(v),
            r => Err(wrong_reply("GETXATTR", &r)),
        }
    }

    fn listxattr(&self, path: &RelPath) -> Result<Vec<String>, RemoteError> {
        match self.idempotent(Op::ListXattr { path: path.clone() })? {
            Reply::XattrNames(v) => Ok(v),
            r => Err(wrong_reply("LISTXATTR", &r)),
        }
    }

    fn setxattr(
        &self,
        path: &RelPath,
        name: &str,
        value: &[u8],
        flags: u32,
    ) -> Result<(), RemoteError> {
        done(
            "SETXATTR",
            self.simple(Op::SetXattr {
                path: path.clone(),
                name: name.to_owned(),
                value: value.to_vec(),
                flags,
            })?,
        )
    }

    fn removexattr(&self, path: &RelPath, name: &str) -> Result<(), RemoteError> {
        done(
            "REMOVEXATTR",
            self.simple(Op::RemoveXattr {
                path: path.clone(),
                name: name.to_owned(),
            })?,
        )
    }

    fn mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError> {
        changed_meta(
            "MKNOD",
            self.simple(Op::Mknod {
                path: path.clone(),
                kind,
                mode,
                rdev,
                owner,
            })?,
        )
    }

    fn lock(
        &self,
        path: &RelPath,
        req: &LockRequest,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(Op::Lock {
            path: path.clone(),
            owner: req.owner,
            flavor: req.flavor,
            kind: req.kind,
            start: req.start,
            end: req.end,
            wait: req.wait,
            pid: req.pid,
        })?;
        let mut cancel_sent = false;
        let msg = loop {
            if let Some(msg) = call.next_within(LOCK_POLL)? {
                break msg;
            }
            if !cancel_sent && cancelled() {
                cancel_sent = true;
                conn.send(&ClientMsg::Cancel { id: call.id })?;
            }
        };
        match msg {
            ServerMsg::Reply { result, .. } => done("LOCK", result.map_err(RemoteError::Service)?),
            other => Err(unexpected(&other)),
        }
    }

    fn test_lock(
        &self,
        path: &RelPath,
        req: &LockRequest,
    ) -> Result<Option<LockHolder>, RemoteError> {
        match self.simple(Op::TestLock {
            path: path.clone(),
            owner: req.owner,
            flavor: req.flavor,
            kind: req.kind,
            start: req.start,
            end: req.end,
        })? {
            Reply::Lock(h) => Ok(h),
            r => Err(wrong_reply("TESTLOCK", &r)),
        }
    }
}

fn done(op: &str, r: Reply) -> Result<(), RemoteError> {
    match r {
        // Older servers answer `Done`; this one what changed.
        Reply::Done | Reply::Changed { .. } => Ok(()),
        r => Err(wrong_reply(op, &r)),
    }
}

/// The `Put` request of an upload: every path (whole, partial, sparse)
/// sends the same attributes and condition, so none loses the conflict
/// check or the times the others keep.
fn put_op(
    path: &RelPath,
    size: u64,
    opts: PutOptions,
    layout: Option<PutLayout>,
    open_ended: bool,
) -> Op {
    Op::Put {
        path: path.clone(),
        size,
        mode: opts.mode,
        mtime: opts.mtime,
        owner: opts.owner,
        ext: PutExt {
            atime: opts.atime,
            expect: opts.expect,
            layout,
            open_ended,
            xattrs: opts.xattrs,
        },
    }
}

/// Sends `len` bytes of the upload `call` as `PutData` chunks, each filled
/// by `fill`. A refusal (read-only, no space) may arrive while the data
/// flows: the upload stops there rather than send what the server is going
/// to discard; a failure of `fill` cancels it.
fn send_chunks(
    call: &Call<'_>,
    len: u64,
    fill: &mut dyn FnMut(&mut [u8]) -> Result<(), RemoteError>,
) -> Result<(), RemoteError> {
    let cancel = || {
        let _ = call.conn().send(&ClientMsg::Cancel { id: call.id });
    };
    let mut sent = 0u64;
    while sent < len {
        if let Some(msg) = call.try_next() {
            cancel();
            return match msg {
                ServerMsg::Reply { result: Err(e), .. } => Err(RemoteError::Service(e)),
                other => Err(unexpected(&other)),
            };
        }
        let want = (len - sent).min(CHUNK_SIZE as u64) as usize;
        let mut buf = vec![0u8; want];
        if let Err(e) = fill(&mut buf) {
            cancel();
            return Err(e);
        }
        sent += want as u64;
        call.conn().send(&ClientMsg::PutData {
            id: call.id,
            data: buf,
        })?;
    }
    Ok(())
}

/// The answer to a `PUT`: the file's attributes and its parent's.
fn uploaded(r: Reply) -> Result<Uploaded, RemoteError> {
    match r {
        Reply::Changed {
            meta: Some(meta),
            parents,
        } => Ok(Uploaded { meta, parents }),
        r => changed_meta("PUT", r).map(|meta| Uploaded {
            meta,
            parents: Vec::new(),
        }),
    }
}

/// The object's attributes from the answer to a change: `Meta` from older
/// servers, `Changed` from this one.
fn changed_meta(op: &str, r: Reply) -> Result<Meta, RemoteError> {
    match r {
        Reply::Meta(m)
        | Reply::Changed {
            meta: Some(m),
            parents: _,
        } => Ok(m),
        r => Err(wrong_reply(op, &r)),
    }
}

/// Fills `buf` completely; a source that ends early changed under us.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    WireError::new(ErrorCode::Io, "file shrank while being uploaded"),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_server_that_accepts_but_never_answers_fails_the_connect_within_the_timeout() {
        // The kernel completes the TCP handshake; nobody ever reads.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let cfg = ConnectConfig::new(addr).with_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let e = TcpRemote::connect(cfg).unwrap_err();
        assert!(e.is_transport(), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_remote_that_is_down_fails_at_once_and_keeps_trying_in_the_background() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = ConnectConfig::new(format!("127.0.0.1:{port}"));
        let info = ExportInfo {
            export_id: "e".into(),
            read_only: false,
        };
        let r = TcpRemote::offline(cfg, info, "down for the test".into());
        assert!(!r.is_online());
        for _ in 0..5 {
            let start = Instant::now();
            let e = r.stat(&RelPath::root()).unwrap_err();
            assert!(e.is_transport(), "{e}");
            // A refused connect answers the kicked attempt at once.
            assert!(start.elapsed() < KICK_WAIT + Duration::from_millis(300));
        }
        let attempts = r.link.state.lock().attempts;
        assert!(attempts >= 1, "no reconnect attempt was made");
    }
}
