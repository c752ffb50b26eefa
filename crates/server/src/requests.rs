//! Requests other than the streaming half of PUT: admission on the reader
//! thread, then execution on a worker, and the one debug line per request.
//!
//! Per-request log lines have a stable shape that tests and operators grep:
//! `request op=GET path=/a/b result=data bytes=1234`,
//! `request op=GET path=/a/b result=not-modified`,
//! `request op=LIST path=/d result=ok`, `request op=STAT path=/x result=err code=NotFound`.
//! Anything extra (`bytes=`, `to=`, `entries=`) comes after `result=`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rfmount_proto::{
    CHUNK_SIZE, ErrorCode, Hasher, Op, RelPath, Reply, ServerMsg, Version, WireError,
};

use crate::config::ServerConfig;
use crate::session::{Conn, Ending};
use crate::upload::{PutArgs, Uploads};

/// Work for one request on a worker thread: returns the request's last
/// frame, or `None` when the connection is gone.
pub(crate) type Job = Box<dyn FnOnce(&Conn, &AtomicBool) -> Option<ServerMsg> + Send>;

/// A listing part is cut once its entries' estimated encoded size passes
/// this, keeping every part far below `MAX_FRAME`.
const LIST_PART_BYTES: usize = 256 * 1024;
/// Encoded size of an entry beyond its name and symlink target: the length
/// prefixes and the fixed-size part of `Meta` (about 110 bytes), rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// What a request was, for its log line.
#[derive(Clone)]
pub(crate) struct Label {
    pub(crate) op: &'static str,
    pub(crate) path: String,
    pub(crate) extra: String,
}

impl Label {
    pub(crate) fn of(op: &Op) -> Label {
        let (name, path, extra) = match op {
            Op::List { path } => ("LIST", path, String::new()),
            Op::Stat { path } => ("STAT", path, String::new()),
            Op::Get { path, .. } => ("GET", path, String::new()),
            Op::Put { path, .. } => ("PUT", path, String::new()),
            Op::Remove { path } => ("REMOVE", path, String::new()),
            Op::Rename { from, to, flags } => {
                let flags = if *flags == 0 {
                    String::new()
                } else {
                    format!(" flags={flags}")
                };
                ("RENAME", from, format!(" to={to}{flags}"))
            }
            Op::Mkdir { path, .. } => ("MKDIR", path, String::new()),
            Op::Rmdir { path } => ("RMDIR", path, String::new()),
            Op::SetAttr { path, .. } => ("SETATTR", path, String::new()),
            Op::StatFs => ("STATFS", &RelPath::root(), String::new()),
            Op::Ping => ("PING", &RelPath::root(), String::new()),
            Op::Symlink { path, .. } => ("SYMLINK", path, String::new()),
            Op::ReadLink { path } => ("READLINK", path, String::new()),
            Op::Link { from, to } => ("LINK", from, format!(" to={to}")),
            Op::Mknod { path, .. } => ("MKNOD", path, String::new()),
            Op::GetXattr { path, name } => ("GETXATTR", path, format!(" name={name}")),
            Op::ListXattr { path } => ("LISTXATTR", path, String::new()),
            Op::SetXattr { path, name, .. } => ("SETXATTR", path, format!(" name={name}")),
            Op::RemoveXattr { path, name } => ("REMOVEXATTR", path, format!(" name={name}")),
        };
        Label {
            op: name,
            path: path.to_string(),
            extra,
        }
    }
}

/// How a request ended, for its log line.
pub(crate) enum Outcome<'a> {
    Ok,
    Data(u64),
    NotModified,
    Aborted(u64),
    Err(&'a WireError),
}

/// Logs a finished request: one debug line always, and a warning when the
/// failure is the server's own trouble rather than an ordinary answer such
/// as `NotFound`.
pub(crate) fn log_request(conn: &Conn, label: &Label, outcome: Outcome<'_>, more: &str) {
    let Label { op, path, extra } = label;
    let result = match outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Data(n) => format!("data bytes={n}"),
        Outcome::NotModified => "not-modified".to_owned(),
        Outcome::Aborted(n) => format!("aborted bytes={n}"),
        Outcome::Err(e) => {
            let trouble = matches!(
                e.code,
                ErrorCode::Io | ErrorCode::NoSpace | ErrorCode::Quota | ErrorCode::Protocol
            );
            if trouble && *e != cancelled() {
                log::warn!("{}: {op} {path} failed: {e}", conn.peer);
            }
            format!("err code={:?}", e.code)
        }
    };
    log::debug!("request op={op} path={path} result={result}{more}{extra}");
}

/// Sends an error answer from the reader thread and logs it.
pub(crate) fn refuse(conn: &Conn, id: u64, label: &Label, err: WireError) {
    log_request(conn, label, Outcome::Err(&err), "");
    let _ = conn.writer.send(&ServerMsg::Reply {
        id,
        result: Err(err),
    });
}

/// The refusal of every change on a read-only export.
pub(crate) fn writable(conn: &Conn) -> Result<(), WireError> {
    if conn.read_only {
        Err(WireError::new(ErrorCode::ReadOnly, "export is read-only"))
    } else {
        Ok(())
    }
}

pub(crate) fn cancelled() -> WireError {
    WireError::new(ErrorCode::Io, "request cancelled by the client")
}

/// Takes a request off the wire: refuses it when the connection has too
/// much in flight, starts an upload, or hands it to a worker.
///
/// # Errors
/// An [`Ending`] when the request breaks the protocol badly enough that the
/// connection cannot go on (an id reused while in flight).
pub(crate) fn admit(
    conn: &Arc<Conn>,
    uploads: &mut Uploads,
    cfg: &ServerConfig,
    id: u64,
    op: Op,
) -> Result<(), Ending> {
    if conn.is_active(id) || uploads.contains(id) {
        return Err(Ending::fatal(
            ErrorCode::Protocol,
            format!("request id {id} reused while still in flight"),
        ));
    }
    let label = Label::of(&op);
    if conn.in_flight() + uploads.len() >= cfg.max_in_flight as usize {
        let err = WireError::new(
            ErrorCode::Busy,
            format!("more than {} requests in flight", cfg.max_in_flight),
        );
        refuse(conn, id, &label, err);
        return Ok(());
    }
    if let Op::Put {
        path,
        size,
        mode,
        mtime,
        owner,
    } = op
    {
        let put = PutArgs {
            path,
            size,
            mode,
            mtime,
            owner,
        };
        uploads.start(conn, id, put);
        return Ok(());
    }
    if let Err(err) = conn.spawn(
        id,
        Box::new(move |conn, cancel| execute(conn, id, op, cancel)),
    ) {
        refuse(conn, id, &label, err);
    }
    Ok(())
}

fn execute(conn: &Conn, id: u64, op: Op, cancel: &AtomicBool) -> Option<ServerMsg> {
    let label = Label::of(&op);
    match op {
        Op::List { path } => list(conn, id, &path, cancel, &label),
        Op::Get { path, have } => get(conn, id, &path, have, cancel, &label),
        op => {
            let result = simple(conn, op);
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            };
            log_request(conn, &label, outcome, "");
            Some(ServerMsg::Reply { id, result })
        }
    }
}

fn simple(conn: &Conn, op: Op) -> Result<Reply, WireError> {
    let store = &*conn.store;
    match op {
        Op::Stat { path } => store.stat(&path).map(Reply::Meta),
        Op::Remove { path } => {
            writable(conn)?;
            store.remove(&path).map(|()| Reply::Done)
        }
        Op::Rename { from, to, flags } => {
            writable(conn)?;
            store.rename(&from, &to, flags).map(|()| Reply::Done)
        }
        Op::Mkdir { path, mode, owner } => {
            writable(conn)?;
            store.mkdir(&path, mode, owner).map(Reply::Meta)
        }
        Op::Rmdir { path } => {
            writable(conn)?;
            store.rmdir(&path).map(|()| Reply::Done)
        }
        Op::SetAttr { path, attr } => {
            writable(conn)?;
            store.setattr(&path, &attr).map(Reply::Meta)
        }
        Op::StatFs => store.statfs().map(Reply::StatFs),
        Op::Ping => Ok(Reply::Done),
        Op::Symlink {
            path,
            target,
            owner,
        } => {
            writable(conn)?;
            store.symlink(&path, &target, owner).map(Reply::Meta)
        }
        Op::ReadLink { path } => store.readlink(&path).map(Reply::Target),
        Op::Link { from, to } => {
            writable(conn)?;
            store.link(&from, &to).map(Reply::Meta)
        }
        Op::Mknod {
            path,
            kind,
            mode,
            rdev,
            owner,
        } => {
            writable(conn)?;
            store.mknod(&path, kind, mode, rdev, owner).map(Reply::Meta)
        }
        Op::GetXattr { path, name } => store.getxattr(&path, &name).map(Reply::Xattr),
        Op::ListXattr { path } => store.listxattr(&path).map(Reply::XattrNames),
        Op::SetXattr {
            path,
            name,
            value,
            flags,
        } => {
            writable(conn)?;
            store
                .setxattr(&path, &name, &value, flags)
                .map(|()| Reply::Done)
        }
        Op::RemoveXattr { path, name } => {
            writable(conn)?;
            store.removexattr(&path, &name).map(|()| Reply::Done)
        }
        Op::List { .. } | Op::Get { .. } | Op::Put { .. } => Err(WireError::new(
            ErrorCode::Invalid,
            "internal error: streaming request on the wrong path",
        )),
    }
}

fn list(
    conn: &Conn,
    id: u64,
    path: &RelPath,
    cancel: &AtomicBool,
    label: &Label,
) -> Option<ServerMsg> {
    let fail = |e: WireError| {
        log_request(conn, label, Outcome::Err(&e), "");
        Some(ServerMsg::Reply { id, result: Err(e) })
    };
    let listing = match conn.store.list(path) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (mut part, mut bytes, mut total) = (Vec::new(), 0, 0u64);
    for item in listing {
        let entry = match item {
            Ok(entry) => entry,
            Err(e) => return fail(e),
        };
        bytes += entry.name.len() + ENTRY_OVERHEAD;
        total += 1;
        part.push(entry);
        if bytes >= LIST_PART_BYTES {
            if cancel.load(Ordering::SeqCst) {
                return fail(cancelled());
            }
            let entries = std::mem::take(&mut part);
            let msg = ServerMsg::Reply {
                id,
                result: Ok(Reply::Entries {
                    entries,
                    more: true,
                }),
            };
            conn.writer.send(&msg).ok()?;
            bytes = 0;
        }
    }
    log_request(conn, label, Outcome::Ok, &format!(" entries={total}"));
    Some(ServerMsg::Reply {
        id,
        result: Ok(Reply::Entries {
            entries: part,
            more: false,
        }),
    })
}

fn get(
    conn: &Conn,
    id: u64,
    path: &RelPath,
    have: Option<Version>,
    cancel: &AtomicBool,
    label: &Label,
) -> Option<ServerMsg> {
    let (meta, mut content) = match conn.store.open_read(path) {
        Ok(opened) => opened,
        Err(e) => {
            log_request(conn, label, Outcome::Err(&e), "");
            return Some(ServerMsg::Reply { id, result: Err(e) });
        }
    };
    if have == Some(meta.version) {
        log_request(conn, label, Outcome::NotModified, "");
        return Some(ServerMsg::Reply {
            id,
            result: Ok(Reply::NotModified(meta.clone())),
        });
    }
    let head = ServerMsg::Reply {
        id,
        result: Ok(Reply::Get(meta.clone())),
    };
    if conn.writer.send(&head).is_err() {
        log_request(conn, label, Outcome::Aborted(0), "");
        return None;
    }
    let mut hasher = Hasher::new();
    let mut sent = 0u64;
    // Exactly the size announced in the header: the client can trust it,
    // and a file growing while we read does not stream forever.
    let result = loop {
        if sent == meta.size {
            break Ok(hasher.finish());
        }
        if cancel.load(Ordering::SeqCst) {
            break Err(cancelled());
        }
        let want = usize::try_from(meta.size - sent).map_or(CHUNK_SIZE, |n| n.min(CHUNK_SIZE));
        let mut buf = vec![0u8; want];
        match read_full(&mut content, &mut buf) {
            Ok(0) => {
                break Err(WireError::new(
                    ErrorCode::Io,
                    format!("{path}: file shrank while being sent"),
                ));
            }
            Ok(n) => {
                buf.truncate(n);
                hasher.update(&buf);
                sent += n as u64;
                if conn
                    .writer
                    .send(&ServerMsg::Data { id, data: buf })
                    .is_err()
                {
                    log_request(conn, label, Outcome::Aborted(sent), "");
                    return None;
                }
            }
            Err(e) => break Err(WireError::from_io(&e, path)),
        }
    };
    match &result {
        Ok(_) => log_request(conn, label, Outcome::Data(sent), ""),
        Err(e) => log_request(conn, label, Outcome::Err(e), ""),
    }
    Some(ServerMsg::DataEnd { id, result })
}

/// Reads until `buf` is full or the content ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
