//! The receiving half of PUT, run on the reader thread: data frames arrive
//! in order on the connection, so writing them where they are read keeps
//! them in order without a queue, and the socket's own flow control paces
//! the client to the disk. Only the commit (fsync, rename) goes to a pool thread,
//! so that a slow disk flush does not stall the connection's other requests.
//!
//! An upload that failed early (read-only, no space, bad path) is answered at
//! once and forgotten: its later `PutData` and `PutEnd` frames find no entry
//! and are dropped, so a failed upload costs no memory however long the
//! client keeps streaming before it notices.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use rfmount_proto::{
    Change, Checksum, ErrorCode, Hasher, Op, Owner, PutExt, RelPath, ServerMsg, Timestamp,
    WireError,
};

use crate::changed::changed;
use crate::conn::Conn;
use crate::pool::Lane;
use crate::replies::{Label, Outcome, cancelled, log_request, refuse, writable};
use crate::store::PendingPut;

struct Upload {
    label: Label,
    path: RelPath,
    /// Bytes of data that follow: `size`, or the sum of a layout's extents;
    /// unbounded for an open-ended upload.
    data_len: u64,
    /// The size was not known when the upload began (`PutExt.open_ended`):
    /// whatever arrives before `PutEnd` is the content.
    open_ended: bool,
    received: u64,
    hasher: Hasher,
    /// Dropping this deletes the temporary file.
    pending: Box<dyn PendingPut>,
    mode: Option<u32>,
    mtime: Option<Timestamp>,
}

impl Upload {
    /// Deletes the temporary file, then answers: a client that reads the
    /// error can rely on the temporary being gone.
    fn discard(self, conn: &Conn, id: u64, err: WireError) {
        let Upload { label, pending, .. } = self;
        drop(pending);
        refuse(conn, id, &label, err);
    }
}

/// The connection's uploads still receiving data, by request id.
#[derive(Default)]
pub(crate) struct Uploads {
    map: HashMap<u64, Upload>,
}

/// The fields of an `Op::Put`.
pub(crate) struct PutArgs {
    pub(crate) path: RelPath,
    pub(crate) size: u64,
    pub(crate) mode: Option<u32>,
    pub(crate) mtime: Option<Timestamp>,
    pub(crate) owner: Option<Owner>,
    pub(crate) ext: PutExt,
}

impl Uploads {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.map.contains_key(&id)
    }

    /// Starts receiving request `id`, a `Put` with these fields, or
    /// refuses it at once.
    pub(crate) fn start(&mut self, conn: &Conn, id: u64, put: PutArgs) {
        let PutArgs {
            path,
            size,
            mode,
            mtime,
            owner,
            ext,
        } = put;
        let label = Label::of(&Op::Put {
            path: path.clone(),
            size,
            mode,
            mtime,
            owner,
            ext: Default::default(),
        });
        let open_ended = ext.open_ended;
        let data_len = match &ext.layout {
            _ if open_ended => u64::MAX,
            Some(l) => l.extents.iter().map(|e| e.len).sum(),
            None => size,
        };
        let pending = writable(conn).and_then(|()| match &ext.layout {
            Some(_) if open_ended => Err(WireError::new(
                ErrorCode::Invalid,
                format!("{path}: an open-ended upload cannot have a layout"),
            )),
            Some(_) => conn.store.begin_layout_put(&path, size, owner, &ext),
            // Nothing is known to check against the space free: what
            // arrives takes space as it is written, as for any upload.
            None if open_ended => conn.store.begin_put_ext(&path, 0, owner, &ext),
            None => conn.store.begin_put_ext(&path, size, owner, &ext),
        });
        match pending {
            Ok(mut pending) => {
                // A replaced file's locks stay with the file.
                pending.set_succession(Arc::clone(conn.lease.table()) as _);
                let upload = Upload {
                    label,
                    path,
                    data_len,
                    open_ended,
                    received: 0,
                    hasher: Hasher::new(),
                    pending,
                    mode,
                    mtime,
                };
                self.map.insert(id, upload);
            }
            Err(e) => refuse(conn, id, &label, e),
        }
    }

    /// Writes one chunk; a failure ends the upload with an answer now.
    pub(crate) fn data(&mut self, conn: &Conn, id: u64, data: &[u8]) {
        let Some(up) = self.map.get_mut(&id) else {
            return;
        };
        let len = data.len() as u64;
        let failure = if len > up.data_len - up.received {
            Some(WireError::new(
                ErrorCode::Invalid,
                format!(
                    "{}: more data than the {} bytes announced",
                    up.path, up.data_len
                ),
            ))
        } else {
            match up.pending.write_all(data) {
                Ok(()) => {
                    up.hasher.update(data);
                    up.received += len;
                    None
                }
                Err(e) => Some(WireError::from_io(&e, &up.path)),
            }
        };
        if let Some(err) = failure {
            if let Some(up) = self.map.remove(&id) {
                up.discard(conn, id, err);
            }
        }
    }

    /// Checks the upload and hands its commit to a worker.
    pub(crate) fn end(&mut self, conn: &Arc<Conn>, id: u64, checksum: Checksum) {
        let Some(mut up) = self.map.remove(&id) else {
            return;
        };
        let check = if !up.open_ended && up.received != up.data_len {
            Err(WireError::new(
                ErrorCode::Invalid,
                format!(
                    "{}: size mismatch: {} bytes announced, {} received; the old file is unchanged",
                    up.path, up.data_len, up.received
                ),
            ))
        } else {
            up.pending
                .flush()
                .map_err(|e| WireError::from_io(&e, &up.path))
        };
        if let Err(err) = check {
            up.discard(conn, id, err);
            return;
        }
        let label = up.label.clone();
        let streamed = up.hasher.finish();
        // On the worker: a store may have to read back (or finish building)
        // what it checks, which must not hold up the connection's reader.
        let job = Box::new(move |conn: &Conn, _: &_| {
            let bytes = up.received;
            // Whether the name is new decides what other sessions are told:
            // a new name changes the directory's listing too.
            let existed = conn.store.stat(&up.path).is_ok();
            let result = match up.pending.verify(streamed, checksum) {
                Ok(()) => {
                    conn.callbacks.expect(&[&up.path]);
                    up.pending.commit(up.mode, up.mtime)
                }
                Err(e) => {
                    // Dropped first: the temporary is gone when the client
                    // reads the error.
                    drop(up.pending);
                    Err(WireError::new(
                        e.code,
                        format!("{}: {}", up.path, e.message),
                    ))
                }
            };
            if let Ok(meta) = &result {
                let change = if existed {
                    Change::Content
                } else {
                    Change::Created
                };
                conn.callbacks
                    .changed(&[(up.path.clone(), change, meta.file_id)]);
            }
            match &result {
                Ok(_) => {
                    let how = if up.open_ended { " open_ended" } else { "" };
                    log_request(
                        conn,
                        &up.label,
                        Outcome::Ok,
                        &format!(" bytes={bytes}{how}"),
                    )
                }
                Err(e) => log_request(conn, &up.label, Outcome::Err(e), ""),
            }
            Some(ServerMsg::Reply {
                id,
                result: result.map(|m| changed(&*conn.store, Some(m), &[&up.path])),
            })
        });
        // The commit waits for the disk, never for the peer: quick lane.
        if let Err(err) = conn.spawn(id, Lane::Quick, job) {
            refuse(conn, id, &label, err);
        }
    }

    /// Abandons upload `id`, if it is one; true when it was.
    pub(crate) fn cancel(&mut self, conn: &Conn, id: u64) -> bool {
        match self.map.remove(&id) {
            Some(up) => {
                up.discard(conn, id, cancelled());
                true
            }
            None => false,
        }
    }
}
