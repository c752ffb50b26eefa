//! `TcpRemote`: the [`Remote`] over a TCP connection to `rfserve`, which
//! reconnects when the connection has died.
//!
//! Requests are never blindly re-sent: a mutating request whose connection
//! broke after it was sent fails with a transport error, because the server
//! may or may not have applied it. Only read-only requests (`LIST`, `STAT`,
//! `STATFS`) are retried once on a fresh connection.

use std::io::{Read, Write};
use std::sync::Arc;

use log::info;
use parking_lot::Mutex;
use rfmount_proto::{
    CHUNK_SIZE, ClientMsg, DirEntry, ErrorCode, FileKind, Hasher, Meta, Op, Owner, RelPath, Reply,
    ServerMsg, SetAttr, StatFs, Version, WireError,
};

use crate::connection::{Call, ConnectConfig, Connection};
use crate::error::RemoteError;
use crate::remote::{ExportInfo, GetOutcome, PutOptions, Remote};

/// The real [`Remote`]: one multiplexed connection, reopened on demand.
#[derive(Debug)]
pub struct TcpRemote {
    cfg: ConnectConfig,
    info: ExportInfo,
    conn: Mutex<Option<Arc<Connection>>>,
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
            export_id: conn.hello().export_id.clone(),
            read_only: conn.hello().read_only,
        };
        Ok(TcpRemote {
            cfg,
            info,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The live connection, reconnecting if the last one died.
    fn conn(&self) -> Result<Arc<Connection>, RemoteError> {
        let mut slot = self.conn.lock();
        if let Some(c) = slot.as_ref() {
            if c.dead_reason().is_none() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        // Holding the slot lock while connecting keeps concurrent callers
        // from opening a connection each.
        let c = Connection::open(&self.cfg)?;
        if c.hello().export_id != self.info.export_id {
            return Err(RemoteError::Protocol(format!(
                "server {} now serves a different export ({} instead of {})",
                self.cfg.addr,
                c.hello().export_id,
                self.info.export_id
            )));
        }
        info!("reconnected to {}", self.cfg.addr);
        *slot = Some(c.clone());
        Ok(c)
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
    };
    RemoteError::Protocol(format!("unexpected {what} frame from server"))
}

fn wrong_reply(op: &str, r: &Reply) -> RemoteError {
    RemoteError::Protocol(format!("unexpected reply to {op}: {r:?}"))
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

    fn get(
        &self,
        path: &RelPath,
        have: Option<Version>,
        sink: &mut dyn Write,
    ) -> Result<GetOutcome, RemoteError> {
        let conn = self.conn()?;
        let call = conn.start(Op::Get {
            path: path.clone(),
            have,
        })?;
        let meta = match expect_reply(&call)? {
            Reply::NotModified(m) => return Ok(GetOutcome::NotModified(m)),
            Reply::Get(m) => m,
            r => return Err(wrong_reply("GET", &r)),
        };
        let mut hasher = Hasher::new();
        loop {
            match call.next()? {
                ServerMsg::Data { data, .. } => {
                    hasher.update(&data);
                    if let Err(e) = sink.write_all(&data) {
                        let _ = call.conn().send(&ClientMsg::Cancel { id: call.id });
                        return Err(RemoteError::local(format!("writing {path}"), e));
                    }
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
            }
        }
    }

    fn put(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        size: u64,
        opts: PutOptions,
    ) -> Result<Meta, RemoteError> {
        let conn = self.conn()?;
        let op = Op::Put {
            path: path.clone(),
            size,
            mode: opts.mode,
            mtime: opts.mtime,
            owner: opts.owner,
        };
        let call = conn.start(op)?;
        let cancel = |call: &Call<'_>| {
            let _ = call.conn().send(&ClientMsg::Cancel { id: call.id });
        };
        let mut hasher = Hasher::new();
        let mut sent = 0u64;
        while sent < size {
            // A refusal (read-only, no space) arrives while we stream: stop
            // sending data the server is going to discard.
            if let Some(msg) = call.try_next() {
                cancel(&call);
                return match msg {
                    ServerMsg::Reply { result: Err(e), .. } => Err(RemoteError::Service(e)),
                    other => Err(unexpected(&other)),
                };
            }
            let want = (size - sent).min(CHUNK_SIZE as u64) as usize;
            let mut buf = vec![0u8; want];
            if let Err(e) = read_full(src, &mut buf) {
                cancel(&call);
                return Err(RemoteError::local(
                    format!("reading the source of {path}"),
                    e,
                ));
            }
            hasher.update(&buf);
            sent += want as u64;
            conn.send(&ClientMsg::PutData {
                id: call.id,
                data: buf,
            })?;
        }
        conn.send(&ClientMsg::PutEnd {
            id: call.id,
            checksum: hasher.finish(),
        })?;
        match expect_reply(&call)? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("PUT", &r)),
        }
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

    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> Result<Meta, RemoteError> {
        match self.simple(Op::Mkdir {
            path: path.clone(),
            mode,
            owner,
        })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("MKDIR", &r)),
        }
    }

    fn rmdir(&self, path: &RelPath) -> Result<(), RemoteError> {
        done("RMDIR", self.simple(Op::Rmdir { path: path.clone() })?)
    }

    fn setattr(&self, path: &RelPath, attr: SetAttr) -> Result<Meta, RemoteError> {
        match self.simple(Op::SetAttr {
            path: path.clone(),
            attr,
        })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("SETATTR", &r)),
        }
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
        match self.simple(Op::Symlink {
            path: path.clone(),
            target: target.to_owned(),
            owner,
        })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("SYMLINK", &r)),
        }
    }

    fn readlink(&self, path: &RelPath) -> Result<String, RemoteError> {
        match self.idempotent(Op::ReadLink { path: path.clone() })? {
            Reply::Target(t) => Ok(t),
            r => Err(wrong_reply("READLINK", &r)),
        }
    }

    fn link(&self, from: &RelPath, to: &RelPath) -> Result<Meta, RemoteError> {
        match self.simple(Op::Link {
            from: from.clone(),
            to: to.clone(),
        })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("LINK", &r)),
        }
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
        match self.simple(Op::Mknod {
            path: path.clone(),
            kind,
            mode,
            rdev,
            owner,
        })? {
            Reply::Meta(m) => Ok(m),
            r => Err(wrong_reply("MKNOD", &r)),
        }
    }
}

fn done(op: &str, r: Reply) -> Result<(), RemoteError> {
    match r {
        Reply::Done => Ok(()),
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
