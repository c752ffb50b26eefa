//! Requests other than the streaming half of PUT, started on a quick
//! worker: the one-reply operations, listings cut into parts and downloads
//! streamed in chunks (those that need more than one frame continue on the
//! transfer lane).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rfmount_proto::{
    CHUNK_SIZE, Change, DATA_HEADER, DirEntry, ErrorCode, FileId, Hasher, Meta, Op,
    RENAME_EXCHANGE, RelPath, Reply, ServerMsg, Version, WireError, data_frame_buffer,
    seal_data_frame,
};

use crate::callbacks::Held;
use crate::changed::changed;
use crate::conn::{Conn, Responder};
use crate::pool::Lane;
use crate::replies::{Label, Outcome, cancelled, log_request, writable};
use crate::store::{Content, Listing};
use crate::writer::Broken;

/// A listing part is cut once its entries' estimated encoded size passes
/// this, keeping every part far below `MAX_FRAME`.
const LIST_PART_BYTES: usize = 256 * 1024;
/// Encoded size of an entry beyond its name and symlink target: the length
/// prefixes and the fixed-size part of `Meta` (about 110 bytes), rounded up.
const ENTRY_OVERHEAD: usize = 128;

/// Runs request `id` on a quick worker: answers it, or for a listing or
/// download too long for one frame, moves it to the transfer lane.
pub(crate) fn execute(conn: &Arc<Conn>, id: u64, op: Op, responder: Responder) {
    let label = Label::of(&op);
    match op {
        Op::List { path } => list(conn, id, &path, responder, label),
        Op::Get { path, have, sparse } => get(conn, id, &path, have, sparse, responder, label),
        op @ (Op::Lock { .. } | Op::TestLock { .. }) => lock(conn, id, op, responder, label),
        op => {
            let changes = changes_of(&op);
            let paths: Vec<&RelPath> = changes.iter().map(|(p, _)| p).collect();
            conn.callbacks.expect(&paths);
            let result = simple(conn, op);
            if let Ok(reply) = &result
                && !changes.is_empty()
            {
                // Before the reply goes out: when the writer learns its
                // change is done, every other session's invalidation is
                // already queued ahead of anything else on its connection.
                let id = match reply {
                    Reply::Meta(m) => m.file_id,
                    Reply::Changed { meta: Some(m), .. } => m.file_id,
                    _ => FileId::default(),
                };
                let with_id: Vec<_> = changes.into_iter().map(|(p, c)| (p, c, id)).collect();
                conn.callbacks.changed(&with_id);
            }
            let outcome = match &result {
                Ok(_) => Outcome::Ok,
                Err(e) => Outcome::Err(e),
            };
            log_request(conn, &label, outcome, "");
            responder.finish(Some(ServerMsg::Reply { id, result }));
        }
    }
}

/// What a successful `op` changes, for the sessions holding callbacks.
fn changes_of(op: &Op) -> Vec<(RelPath, Change)> {
    match op {
        Op::Remove { path } | Op::Rmdir { path } => vec![(path.clone(), Change::Removed)],
        Op::Rename { from, to, flags } => {
            let gone = if flags & RENAME_EXCHANGE != 0 {
                Change::Created
            } else {
                Change::Removed
            };
            vec![(from.clone(), gone), (to.clone(), Change::Created)]
        }
        Op::Mkdir { path, .. } | Op::Symlink { path, .. } | Op::Mknod { path, .. } => {
            vec![(path.clone(), Change::Created)]
        }
        Op::Link { to, .. } => vec![(to.clone(), Change::Created)],
        Op::SetAttr { path, attr } => {
            let change = if attr.size.is_some() {
                Change::Content
            } else {
                Change::Attr
            };
            vec![(path.clone(), change)]
        }
        Op::SetXattr { path, .. } | Op::RemoveXattr { path, .. } => {
            vec![(path.clone(), Change::Attr)]
        }
        _ => Vec::new(),
    }
}

fn simple(conn: &Conn, op: Op) -> Result<Reply, WireError> {
    let store = &*conn.store;
    match op {
        Op::Stat { path } => {
            conn.callbacks.hold(&path, Held::Object);
            store.stat(&path).map(Reply::Meta)
        }
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
            let meta = store.mkdir(&path, mode, owner)?;
            // The mount records the new directory as empty and complete: a
            // listing callback keeps that true (no LIST or STAT in it later).
            conn.callbacks.hold_new_dir(&path, || {
                store
                    .list(&path)
                    .is_ok_and(|mut entries| entries.next().is_none())
            });
            Ok(changed(store, Some(meta), &[&path]))
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
        Op::List { .. }
        | Op::Get { .. }
        | Op::Put { .. }
        | Op::Lock { .. }
        | Op::TestLock { .. } => Err(WireError::new(
            ErrorCode::Invalid,
            "internal error: streaming request on the wrong path",
        )),
    }
}

/// A lock request: one that may wait runs on a thread of its own, since
/// it can wait for minutes and must not hold a pool worker meanwhile (a
/// `Cancel` or the session's end sets its flag and wakes the lock table).
/// The session counts that thread and waits for it before it gives up its
/// locks, so that nothing is granted to a session that has ended.
fn lock(conn: &Arc<Conn>, id: u64, op: Op, responder: Responder, label: Label) {
    let waits = matches!(op, Op::Lock { wait: true, .. });
    let counted = waits.then(|| conn.own_thread());
    let conn = Arc::clone(conn);
    let run = move |responder: Responder| {
        let result = crate::lock_ops::run(&conn, op, responder.cancel_flag());
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::Err(e),
        };
        log_request(&conn, &label, outcome, "");
        responder.finish(Some(ServerMsg::Reply { id, result }));
    };
    if !waits {
        return run(responder);
    }
    // A failed spawn drops the responder, which answers with an error.
    if let Err(e) = std::thread::Builder::new()
        .name("rfserve-lock-wait".into())
        .spawn(move || {
            let _counted = counted;
            run(responder);
        })
    {
        log::warn!("cannot start a thread for a waiting lock: {e}");
    }
}

/// The first part of a listing is gathered on the quick worker; a listing
/// that needs more parts is streamed from the transfer lane, since each
/// part waits for the peer to take the one before.
fn list(conn: &Arc<Conn>, id: u64, path: &RelPath, responder: Responder, label: Label) {
    let fail = |responder: Responder, e: WireError| {
        log_request(conn, &label, Outcome::Err(&e), "");
        responder.finish(Some(ServerMsg::Reply { id, result: Err(e) }));
    };
    conn.callbacks.hold(path, Held::Listing);
    let mut listing = match conn.store.list(path) {
        Ok(l) => l,
        Err(e) => return fail(responder, e),
    };
    let mut total = 0u64;
    let (part, more) = match next_part(&mut listing, &mut total) {
        Ok(p) => p,
        Err(e) => return fail(responder, e),
    };
    if !more {
        log_request(conn, &label, Outcome::Ok, &format!(" entries={total}"));
        return responder.finish(Some(entries_msg(id, part, false)));
    }
    responder.continue_on(
        Lane::Transfer,
        Box::new(move |conn, responder| {
            let last = stream_list(
                conn,
                id,
                listing,
                part,
                total,
                responder.cancel_flag(),
                &label,
            );
            responder.finish(last);
        }),
    );
}

fn entries_msg(id: u64, entries: Vec<DirEntry>, more: bool) -> ServerMsg {
    ServerMsg::Reply {
        id,
        result: Ok(Reply::Entries { entries, more }),
    }
}

/// The next part of a listing, and whether entries are left after it.
fn next_part(listing: &mut Listing, total: &mut u64) -> Result<(Vec<DirEntry>, bool), WireError> {
    let (mut part, mut bytes) = (Vec::new(), 0);
    for item in listing.by_ref() {
        let entry = item?;
        bytes += entry.name.len() + ENTRY_OVERHEAD;
        *total += 1;
        part.push(entry);
        if bytes >= LIST_PART_BYTES {
            return Ok((part, true));
        }
    }
    Ok((part, false))
}

/// Sends `first` and the parts after it; the last part is returned.
fn stream_list(
    conn: &Conn,
    id: u64,
    mut listing: Listing,
    first: Vec<DirEntry>,
    mut total: u64,
    cancel: &AtomicBool,
    label: &Label,
) -> Option<ServerMsg> {
    let mut part = first;
    loop {
        if cancel.load(Ordering::SeqCst) {
            let e = cancelled();
            log_request(conn, label, Outcome::Err(&e), "");
            return Some(ServerMsg::Reply { id, result: Err(e) });
        }
        conn.writer.send(&entries_msg(id, part, true)).ok()?;
        match next_part(&mut listing, &mut total) {
            Ok((next, true)) => part = next,
            Ok((last, false)) => {
                log_request(conn, label, Outcome::Ok, &format!(" entries={total}"));
                return Some(entries_msg(id, last, false));
            }
            Err(e) => {
                log_request(conn, label, Outcome::Err(&e), "");
                return Some(ServerMsg::Reply { id, result: Err(e) });
            }
        }
    }
}

/// A download: opened, checked against the client's version, and for a
/// file of at most one chunk answered whole, on the quick worker (its
/// frames are queued, bounded by the requests in flight). A larger file
/// streams from the transfer lane.
fn get(
    conn: &Arc<Conn>,
    id: u64,
    path: &RelPath,
    have: Option<Version>,
    sparse: bool,
    responder: Responder,
    label: Label,
) {
    conn.callbacks.hold(path, Held::Object);
    let (meta, mut content) = match conn.store.open_read(path) {
        Ok(opened) => opened,
        Err(e) => {
            log_request(conn, &label, Outcome::Err(&e), "");
            return responder.finish(Some(ServerMsg::Reply { id, result: Err(e) }));
        }
    };
    if have == Some(meta.version) {
        log_request(conn, &label, Outcome::NotModified, "");
        return responder.finish(Some(ServerMsg::Reply {
            id,
            result: Ok(Reply::NotModified(meta)),
        }));
    }
    let head = ServerMsg::Reply {
        id,
        result: Ok(Reply::Get(meta.clone())),
    };
    if meta.size <= CHUNK_SIZE as u64 {
        let mut buf = vec![0u8; usize::try_from(meta.size).unwrap_or(CHUNK_SIZE)];
        let result = match read_full(&mut content, &mut buf) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(shrank(path)),
            Err(e) => Err(WireError::from_io(&e, path)),
        };
        if conn.writer.post(&head).is_err() {
            log_request(conn, &label, Outcome::Aborted(0), "");
            return responder.finish(None);
        }
        let end = match result {
            Ok(()) => {
                let mut hasher = Hasher::new();
                hasher.update(&buf);
                let sum = hasher.finish();
                if !buf.is_empty()
                    && conn
                        .writer
                        .post(&ServerMsg::Data { id, data: buf })
                        .is_err()
                {
                    log_request(conn, &label, Outcome::Aborted(0), "");
                    return responder.finish(None);
                }
                log_request(conn, &label, Outcome::Data(meta.size), "");
                Ok(sum)
            }
            Err(e) => {
                log_request(conn, &label, Outcome::Err(&e), "");
                Err(e)
            }
        };
        return responder.finish(Some(ServerMsg::DataEnd { id, result: end }));
    }
    let path = path.clone();
    responder.continue_on(
        Lane::Transfer,
        Box::new(move |conn, responder| {
            let last = stream_get(
                conn,
                id,
                &path,
                &meta,
                head,
                content,
                sparse,
                responder.cancel_flag(),
                &label,
            );
            responder.finish(last);
        }),
    );
}

fn shrank(path: &RelPath) -> WireError {
    WireError::new(
        ErrorCode::Io,
        format!("{path}: file shrank while being sent"),
    )
}

/// Streams the content after its header: `Data` chunks of at most
/// `CHUNK_SIZE` and, for a `sparse` request, one `DataHole` per hole of the
/// file, so that a mostly empty file costs on the wire what it stores.
#[allow(clippy::too_many_arguments)]
fn stream_get(
    conn: &Conn,
    id: u64,
    path: &RelPath,
    meta: &Meta,
    head: ServerMsg,
    mut content: Content,
    sparse: bool,
    cancel: &AtomicBool,
    label: &Label,
) -> Option<ServerMsg> {
    if conn.writer.send(&head).is_err() {
        log_request(conn, label, Outcome::Aborted(0), "");
        return None;
    }
    let mut hasher = Hasher::new();
    let mut sent = 0u64;
    // The chunk queued last, maybe still being written.
    let mut in_flight = None;
    // Where the data run being read ends; a non-sparse request reads one
    // run, the whole file.
    let mut run_end = if sparse { 0 } else { u64::MAX };
    // Exactly the size announced in the header: the client can trust it,
    // and a file growing while we read does not stream forever.
    let result = loop {
        if sent == meta.size {
            break Ok(hasher.finish());
        }
        if cancel.load(Ordering::SeqCst) {
            break Err(cancelled());
        }
        if sent >= run_end {
            let (start, end) = match content.data_run(sent) {
                Ok(run) => run,
                Err(e) => break Err(WireError::from_io(&e, path)),
            };
            let start = start.min(meta.size);
            if start > sent {
                let len = start - sent;
                hasher.update_zeros(len);
                sent = start;
                if conn.writer.send(&ServerMsg::DataHole { id, len }).is_err() {
                    log_request(conn, label, Outcome::Aborted(sent), "");
                    return None;
                }
                continue;
            }
            // No data where the size says there is some: the file shrank.
            if end <= sent {
                break Err(shrank(path));
            }
            run_end = end;
        }
        let left = (meta.size - sent).min(run_end - sent);
        let want = usize::try_from(left).map_or(CHUNK_SIZE, |n| n.min(CHUNK_SIZE));
        // Read straight into the frame: no copy between the file and the
        // socket but the kernel's.
        let mut frame = data_frame_buffer(want);
        match (&mut content as &mut dyn Read)
            .take(want as u64)
            .read_to_end(&mut frame)
        {
            Ok(0) => break Err(shrank(path)),
            Ok(n) => {
                hasher.update(&frame[DATA_HEADER..]);
                sent += n as u64;
                // One chunk is written while the next is read; waiting for
                // the one before keeps two per download in memory at most.
                let queued = seal_data_frame(&mut frame, id)
                    .map_err(|_| Broken)
                    .and_then(|()| conn.writer.queue_raw(frame));
                let written = match (queued, in_flight) {
                    (Ok(mine), Some(prev)) => {
                        in_flight = Some(mine);
                        conn.writer.wait_written(prev)
                    }
                    (Ok(mine), None) => {
                        in_flight = Some(mine);
                        Ok(())
                    }
                    (Err(e), _) => Err(e),
                };
                if written.is_err() {
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
