//! An in-memory [`Remote`] for tests of the layers above the client: it
//! behaves like a small `rfserve` export, counts calls per operation, can
//! be taken "offline" to simulate a dead server, and lets a test change
//! files behind the client's back.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use rfmount_proto::{
    DirEntry, ErrorCode, FileKind, Meta, RelPath, SetAttr, SetTime, StatFs, Timestamp, Version,
    WireError,
};

use crate::error::RemoteError;
use crate::remote::{ExportInfo, GetOutcome, PutOptions, Remote};

struct Node {
    meta: Meta,
    data: Vec<u8>,
}

/// An export held in memory.
pub struct MemRemote {
    nodes: Mutex<BTreeMap<RelPath, Node>>,
    next_version: Mutex<Version>,
    offline: AtomicBool,
    read_only: bool,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl Default for MemRemote {
    fn default() -> Self {
        Self::new(false)
    }
}

fn err(code: ErrorCode, path: &RelPath) -> RemoteError {
    RemoteError::Service(WireError::new(code, path.to_string()))
}

fn now() -> Timestamp {
    Timestamp::from_system(SystemTime::now())
}

impl MemRemote {
    /// An empty export.
    pub fn new(read_only: bool) -> Self {
        let mut nodes = BTreeMap::new();
        let root = Meta {
            kind: FileKind::Dir,
            size: 0,
            mode: 0o755,
            mtime: now(),
            version: 1,
        };
        nodes.insert(
            RelPath::root(),
            Node {
                meta: root,
                data: Vec::new(),
            },
        );
        MemRemote {
            nodes: Mutex::new(nodes),
            next_version: Mutex::new(2),
            offline: AtomicBool::new(false),
            read_only,
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Makes every call fail with a transport error until set back.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    /// How many times `op` ("list", "get", ...) was called.
    pub fn calls(&self, op: &str) -> usize {
        self.calls.lock().get(op).copied().unwrap_or(0)
    }

    /// Writes a file behind the client's back (creating parents).
    pub fn write_file(&self, path: &str, data: &[u8]) {
        let path = RelPath::new(path).expect("valid test path");
        let mut parents = Vec::new();
        let mut p = path.parent();
        while let Some(d) = p {
            p = d.parent();
            parents.push(d);
        }
        let mut nodes = self.nodes.lock();
        for d in parents.into_iter().rev() {
            let v = self.version();
            nodes.entry(d).or_insert(Node {
                meta: Meta {
                    kind: FileKind::Dir,
                    size: 0,
                    mode: 0o755,
                    mtime: now(),
                    version: v,
                },
                data: Vec::new(),
            });
        }
        let v = self.version();
        let meta = Meta {
            kind: FileKind::File,
            size: data.len() as u64,
            mode: 0o644,
            mtime: now(),
            version: v,
        };
        nodes.insert(
            path,
            Node {
                meta,
                data: data.to_vec(),
            },
        );
    }

    /// A file's content, if it exists.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let path = RelPath::new(path).ok()?;
        self.nodes.lock().get(&path).map(|n| n.data.clone())
    }

    fn version(&self) -> Version {
        let mut v = self.next_version.lock();
        *v += 1;
        *v
    }

    fn enter(&self, op: &'static str) -> Result<(), RemoteError> {
        *self.calls.lock().entry(op).or_default() += 1;
        if self.offline.load(Ordering::SeqCst) {
            return Err(RemoteError::Transport("mock server is offline".into()));
        }
        Ok(())
    }

    fn writable(&self, path: &RelPath) -> Result<(), RemoteError> {
        if self.read_only {
            Err(err(ErrorCode::ReadOnly, path))
        } else {
            Ok(())
        }
    }

    fn parent_dir(nodes: &BTreeMap<RelPath, Node>, path: &RelPath) -> Result<(), RemoteError> {
        let parent = path.parent().ok_or_else(|| err(ErrorCode::Invalid, path))?;
        match nodes.get(&parent) {
            Some(n) if n.meta.kind == FileKind::Dir => Ok(()),
            Some(_) => Err(err(ErrorCode::NotDir, path)),
            None => Err(err(ErrorCode::NotFound, path)),
        }
    }
}

impl Remote for MemRemote {
    fn export(&self) -> ExportInfo {
        ExportInfo {
            export_id: "mem-export".into(),
            read_only: self.read_only,
        }
    }

    fn list(&self, dir: &RelPath) -> Result<Vec<DirEntry>, RemoteError> {
        self.enter("list")?;
        let nodes = self.nodes.lock();
        match nodes.get(dir) {
            None => return Err(err(ErrorCode::NotFound, dir)),
            Some(n) if n.meta.kind != FileKind::Dir => return Err(err(ErrorCode::NotDir, dir)),
            Some(_) => {}
        }
        Ok(nodes
            .iter()
            .filter(|(p, _)| !p.is_root() && p.parent().as_ref() == Some(dir))
            .map(|(p, n)| DirEntry {
                name: p.file_name().unwrap_or("").to_owned(),
                meta: n.meta,
            })
            .collect())
    }

    fn stat(&self, path: &RelPath) -> Result<Meta, RemoteError> {
        self.enter("stat")?;
        self.nodes
            .lock()
            .get(path)
            .map(|n| n.meta)
            .ok_or_else(|| err(ErrorCode::NotFound, path))
    }

    fn get(
        &self,
        path: &RelPath,
        have: Option<Version>,
        sink: &mut dyn Write,
    ) -> Result<GetOutcome, RemoteError> {
        self.enter("get")?;
        let (meta, data) = {
            let nodes = self.nodes.lock();
            let n = nodes
                .get(path)
                .ok_or_else(|| err(ErrorCode::NotFound, path))?;
            if n.meta.kind == FileKind::Dir {
                return Err(err(ErrorCode::IsDir, path));
            }
            if have == Some(n.meta.version) {
                return Ok(GetOutcome::NotModified(n.meta));
            }
            (n.meta, n.data.clone())
        };
        sink.write_all(&data)
            .map_err(|e| RemoteError::local("mock sink", e))?;
        Ok(GetOutcome::Fetched(meta))
    }

    fn put(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        size: u64,
        opts: PutOptions,
    ) -> Result<Meta, RemoteError> {
        self.enter("put")?;
        self.writable(path)?;
        let mut data = Vec::new();
        src.take(size)
            .read_to_end(&mut data)
            .map_err(|e| RemoteError::local("mock source", e))?;
        if data.len() as u64 != size {
            return Err(RemoteError::local(
                "mock source",
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let mut nodes = self.nodes.lock();
        Self::parent_dir(&nodes, path)?;
        let old_mode = match nodes.get(path) {
            Some(n) if n.meta.kind == FileKind::Dir => return Err(err(ErrorCode::IsDir, path)),
            Some(n) => Some(n.meta.mode),
            None => None,
        };
        let meta = Meta {
            kind: FileKind::File,
            size,
            mode: opts.mode.or(old_mode).unwrap_or(0o644),
            mtime: opts.mtime.unwrap_or_else(now),
            version: self.version(),
        };
        nodes.insert(path.clone(), Node { meta, data });
        Ok(meta)
    }

    fn remove(&self, path: &RelPath) -> Result<(), RemoteError> {
        self.enter("remove")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        match nodes.get(path) {
            None => Err(err(ErrorCode::NotFound, path)),
            Some(n) if n.meta.kind == FileKind::Dir => Err(err(ErrorCode::IsDir, path)),
            Some(_) => {
                nodes.remove(path);
                Ok(())
            }
        }
    }

    fn rename(&self, from: &RelPath, to: &RelPath) -> Result<(), RemoteError> {
        self.enter("rename")?;
        self.writable(from)?;
        let mut nodes = self.nodes.lock();
        if !nodes.contains_key(from) {
            return Err(err(ErrorCode::NotFound, from));
        }
        Self::parent_dir(&nodes, to)?;
        if to.starts_with(from) && to != from {
            return Err(err(ErrorCode::Invalid, to));
        }
        let moving: Vec<RelPath> = nodes
            .keys()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        if let Some(t) = nodes.get(to) {
            if t.meta.kind == FileKind::Dir && nodes.keys().any(|p| p.parent().as_ref() == Some(to))
            {
                return Err(err(ErrorCode::NotEmpty, to));
            }
        }
        nodes.remove(to);
        for p in moving {
            if let (Some(n), Some(np)) = (nodes.remove(&p), p.rebase(from, to)) {
                nodes.insert(np, n);
            }
        }
        Ok(())
    }

    fn mkdir(&self, path: &RelPath, mode: u32) -> Result<Meta, RemoteError> {
        self.enter("mkdir")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        Self::parent_dir(&nodes, path)?;
        if nodes.contains_key(path) {
            return Err(err(ErrorCode::Exists, path));
        }
        let meta = Meta {
            kind: FileKind::Dir,
            size: 0,
            mode,
            mtime: now(),
            version: self.version(),
        };
        nodes.insert(
            path.clone(),
            Node {
                meta,
                data: Vec::new(),
            },
        );
        Ok(meta)
    }

    fn rmdir(&self, path: &RelPath) -> Result<(), RemoteError> {
        self.enter("rmdir")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        match nodes.get(path) {
            None => return Err(err(ErrorCode::NotFound, path)),
            Some(n) if n.meta.kind != FileKind::Dir => return Err(err(ErrorCode::NotDir, path)),
            Some(_) => {}
        }
        if nodes.keys().any(|p| p.parent().as_ref() == Some(path)) {
            return Err(err(ErrorCode::NotEmpty, path));
        }
        nodes.remove(path);
        Ok(())
    }

    fn setattr(&self, path: &RelPath, attr: SetAttr) -> Result<Meta, RemoteError> {
        self.enter("setattr")?;
        self.writable(path)?;
        let v = self.version();
        let mut nodes = self.nodes.lock();
        let n = nodes
            .get_mut(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        if let Some(m) = attr.mode {
            n.meta.mode = m & 0o7777;
        }
        if let Some(s) = attr.size {
            n.data.resize(s as usize, 0);
            n.meta.size = s;
            n.meta.version = v;
        }
        match attr.mtime {
            Some(SetTime::Now) => n.meta.mtime = now(),
            Some(SetTime::At(t)) => n.meta.mtime = t,
            None => {}
        }
        Ok(n.meta)
    }

    fn statfs(&self) -> Result<StatFs, RemoteError> {
        self.enter("statfs")?;
        Ok(StatFs {
            blocks: 1 << 20,
            bfree: 1 << 19,
            bavail: 1 << 19,
            bsize: 4096,
            frsize: 4096,
            namelen: 255,
            ..StatFs::default()
        })
    }
}
