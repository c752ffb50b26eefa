//! `LOCK` and `TESTLOCK`: the request's path resolved to the object it
//! names, then the shared lock table. A waiting `LOCK` blocks its worker
//! until granted or cancelled (see [`crate::locks`] for how to move that).

use std::sync::atomic::{AtomicBool, Ordering};

use rfmount_proto::{ErrorCode, FileKind, LockKind, Op, RelPath, Reply, WireError};

use crate::conn::Conn;
use crate::locks::LockReq;

/// Runs a `Lock` or `TestLock`.
pub(crate) fn run(conn: &Conn, op: Op, cancel: &AtomicBool) -> Result<Reply, WireError> {
    let table = conn.lease.table();
    let session = conn.lease.session();
    // Before the lookup: an upload replacing the file between the lookup
    // and the table must not hide its locks from this request.
    let pass = table.resolving();
    match op {
        Op::Lock {
            path,
            owner,
            flavor,
            kind,
            start,
            end,
            wait,
            pid,
        } => {
            let req = LockReq {
                file: file_of(conn, &path)?,
                owner,
                flavor,
                kind,
                start,
                end,
                pid,
            };
            check_range(start, end)?;
            let wait = wait && kind != LockKind::Unlock;
            table
                .lock_as(pass, session, &req, wait, &|| cancel.load(Ordering::SeqCst))
                .map(|()| Reply::Done)
        }
        Op::TestLock {
            path,
            owner,
            flavor,
            kind,
            start,
            end,
        } => {
            check_range(start, end)?;
            if kind == LockKind::Unlock {
                return Err(WireError::new(
                    ErrorCode::Invalid,
                    "TESTLOCK asks about a read or write lock",
                ));
            }
            let req = LockReq {
                file: file_of(conn, &path)?,
                owner,
                flavor,
                kind,
                start,
                end,
                pid: 0,
            };
            Ok(Reply::Lock(table.test_as(pass, session, &req)))
        }
        _ => Err(WireError::new(
            ErrorCode::Invalid,
            "internal error: not a lock request",
        )),
    }
}

/// The object a lock is about: the lock follows it across renames and is
/// shared by all its names.
fn file_of(conn: &Conn, path: &RelPath) -> Result<rfmount_proto::FileId, WireError> {
    let meta = conn.store.stat(path)?;
    if meta.kind == FileKind::Dir {
        return Err(WireError::new(
            ErrorCode::IsDir,
            format!("{path}: locks are for files, not directories"),
        ));
    }
    Ok(meta.file_id)
}

fn check_range(start: u64, end: u64) -> Result<(), WireError> {
    if end < start {
        return Err(WireError::new(
            ErrorCode::Invalid,
            format!("lock range ends ({end}) before it starts ({start})"),
        ));
    }
    Ok(())
}
