//! Requests other than the streaming half of PUT, run on a worker thread:
//! listings cut into parts, downloads streamed in chunks, and the one-reply
//! operations.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use rfmount_proto::{
    CHUNK_SIZE, ErrorCode, Hasher, Op, RelPath, Reply, ServerMsg, Version, WireError,
};

use crate::changed::changed;
use crate::conn::Conn;
use crate::replies::{Label, Outcome, cancelled, log_request, writable};

/// A listing part is cut once its entries' estimated encoded size passes
/// this, keeping every part far below `MAX_FRAME`.
const LIST_PART_BYTES: usize = 256 * 1024;
/// Encoded size of an entry beyond its name and symlink target: the length
/// prefixes and the fixed-size part of `Meta` (about 110 bytes), rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// Runs request `id` to its last frame.
pub(crate) fn execute(conn: &Conn, id: u64, op: Op, cancel: &AtomicBool) -> Option<ServerMsg> {
    let label = Label::of(&op);
    match op {
        Op::List { path } => list(conn, id, &path, cancel, &label),
        Op::Get { path, have, .. } => get(conn, id, &path, have, cancel, &label),
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
            store.remove(&path).map(|()| changed(store, None, &[&path]))
        }
        Op::Rename { from, to, flags } => {
            writable(conn)?;
            store.rename(&from, &to, flags)?;
            // After an exchange `from` names an object too, but the reply
            // carries the one now at `to`, as for a plain rename.
            let meta = store.stat(&to).ok();
            Ok(changed(store, meta, &[&from, &to]))
        }
        Op::Mkdir { path, mode, owner } => {
            writable(conn)?;
            store
                .mkdir(&path, mode, owner)
                .map(|m| changed(store, Some(m), &[&path]))
        }
        Op::Rmdir { path } => {
            writable(conn)?;
            store.rmdir(&path).map(|()| changed(store, None, &[&path]))
        }
        Op::SetAttr { path, attr } => {
            writable(conn)?;
            store
                .setattr(&path, &attr)
                .map(|m| changed(store, Some(m), &[&path]))
        }
        Op::StatFs => store.statfs().map(Reply::StatFs),
        Op::Ping => Ok(Reply::Done),
        Op::Symlink {
            path,
            target,
            owner,
        } => {
            writable(conn)?;
            store
                .symlink(&path, &target, owner)
                .map(|m| changed(store, Some(m), &[&path]))
        }
        Op::ReadLink { path } => store.readlink(&path).map(Reply::Target),
        Op::Link { from, to } => {
            writable(conn)?;
            store
                .link(&from, &to)
                .map(|m| changed(store, Some(m), &[&to]))
        }
        Op::Mknod {
            path,
            kind,
            mode,
            rdev,
            owner,
        } => {
            writable(conn)?;
            store
                .mknod(&path, kind, mode, rdev, owner)
                .map(|m| changed(store, Some(m), &[&path]))
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
        // Not granted by this server yet: a client must not believe it holds
        // a lock nobody else can see.
        Op::Lock { .. } | Op::TestLock { .. } => Err(WireError::new(
            ErrorCode::NoLocks,
            "this server does not grant locks",
        )),
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
