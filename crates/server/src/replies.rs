//! What every request handler shares: the one debug line per request,
//! refusals sent from the reader thread, and the standard errors.
//!
//! Per-request log lines have a stable shape that tests and operators grep:
//! `request op=GET path=/a/b result=data bytes=1234`,
//! `request op=GET path=/a/b result=not-modified`,
//! `request op=LIST path=/d result=ok`, `request op=STAT path=/x result=err code=NotFound`.
//! Anything extra (`bytes=`, `to=`, `entries=`) comes after `result=`.

use rfmount_proto::{ErrorCode, Op, RelPath, ServerMsg, WireError};

use crate::conn::Conn;

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
            Op::Lock { path, kind, .. } => ("LOCK", path, format!(" kind={kind:?}")),
            Op::TestLock { path, kind, .. } => ("TESTLOCK", path, format!(" kind={kind:?}")),
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
