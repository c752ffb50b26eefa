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
    DirEntry, ErrorCode, FileId, FileKind, Meta, Owner, PutExpect, RENAME_EXCHANGE,
    RENAME_NOREPLACE, RelPath, SetAttr, SetTime, StatFs, Timestamp, Version, WireError,
};

use crate::error::RemoteError;
use crate::remote::{ExportInfo, GetOutcome, PutOptions, Remote, Uploaded};

struct Node {
    meta: Meta,
    data: Vec<u8>,
    xattrs: BTreeMap<String, Vec<u8>>,
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

/// Attributes of a new object: its file id is its first version, which no
/// other object ever had.
fn new_meta(kind: FileKind, mode: u32, version: Version, owner: Option<Owner>) -> Meta {
    let t = now();
    let owner = owner.unwrap_or_default();
    Meta {
        kind,
        mode,
        mtime: t,
        atime: t,
        ctime: t,
        version,
        uid: owner.uid,
        gid: owner.gid,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        file_id: FileId {
            dev: 1,
            ino: version,
        },
        ..Meta::default()
    }
}

impl MemRemote {
    /// An empty export.
    pub fn new(read_only: bool) -> Self {
        let mut nodes = BTreeMap::new();
        let root = new_meta(FileKind::Dir, 0o755, 1, None);
        nodes.insert(
            RelPath::root(),
            Node {
                meta: root,
                data: Vec::new(),
                xattrs: BTreeMap::new(),
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
                meta: new_meta(FileKind::Dir, 0o755, v, None),
                data: Vec::new(),
                xattrs: BTreeMap::new(),
            });
        }
        let v = self.version();
        let meta = Meta {
            size: data.len() as u64,
            ..new_meta(FileKind::File, 0o644, v, None)
        };
        nodes.insert(
            path,
            Node {
                meta,
                data: data.to_vec(),
                xattrs: BTreeMap::new(),
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
                meta: n.meta.clone(),
            })
            .collect())
    }

    fn stat(&self, path: &RelPath) -> Result<Meta, RemoteError> {
        self.enter("stat")?;
        self.nodes
            .lock()
            .get(path)
            .map(|n| n.meta.clone())
            .ok_or_else(|| err(ErrorCode::NotFound, path))
    }

    fn get_streamed(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
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
                return Ok(GetOutcome::NotModified(n.meta.clone()));
            }
            (n.meta.clone(), n.data.clone())
        };
        started(&meta);
        sink.write_all(&data)
            .map_err(|e| RemoteError::local("mock sink", e))?;
        Ok(GetOutcome::Fetched(meta))
    }

    /// Hands the content over in chunks, as the TCP remote does, so that
    /// a sink keeping chunks is exercised by the mount's tests.
    fn get_sparse(
        &self,
        path: &RelPath,
        have: Option<Version>,
        started: &mut dyn FnMut(&Meta),
        sink: &mut dyn crate::GetSink,
    ) -> Result<GetOutcome, RemoteError> {
        let mut chunks = Chunked {
            sink,
            buf: Vec::new(),
        };
        let outcome = self.get_streamed(path, have, started, &mut chunks)?;
        chunks
            .flush()
            .map_err(|e| RemoteError::local("mock sink", e))?;
        Ok(outcome)
    }

    fn put(
        &self,
        path: &RelPath,
        src: &mut dyn Read,
        size: u64,
        opts: PutOptions,
    ) -> Result<Uploaded, RemoteError> {
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
        let current = nodes.get(path).map(|n| n.meta.version);
        let holds = match opts.expect {
            PutExpect::Any => true,
            PutExpect::Absent => current.is_none(),
            PutExpect::Version(v) => current == Some(v),
        };
        if !holds {
            return Err(err(ErrorCode::Conflict, path));
        }
        let (old, mut xattrs) = match nodes.get(path) {
            Some(n) if n.meta.kind == FileKind::Dir => return Err(err(ErrorCode::IsDir, path)),
            // A replaced file keeps its extended attributes, as on rfserve.
            Some(n) if n.meta.kind == FileKind::File => (Some(n.meta.clone()), n.xattrs.clone()),
            _ => (None, BTreeMap::new()),
        };
        for x in opts.xattrs {
            xattrs.insert(x.name, x.value);
        }
        let owner = old
            .as_ref()
            .map(|m| Owner {
                uid: m.uid,
                gid: m.gid,
            })
            .or(opts.owner);
        let mut meta = new_meta(
            FileKind::File,
            opts.mode.or(old.as_ref().map(|m| m.mode)).unwrap_or(0o644),
            self.version(),
            owner,
        );
        meta.size = size;
        if let Some(t) = opts.mtime {
            meta.mtime = t;
        }
        if let Some(t) = opts.atime {
            meta.atime = t;
        }
        nodes.insert(
            path.clone(),
            Node {
                meta: meta.clone(),
                data,
                xattrs,
            },
        );
        // No parent attributes: the caller learns them as from a server
        // that could not stat the directory.
        Ok(Uploaded {
            meta,
            parents: Vec::new(),
        })
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

    fn rename(&self, from: &RelPath, to: &RelPath, flags: u32) -> Result<(), RemoteError> {
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
        let subtree = |nodes: &BTreeMap<RelPath, Node>, root: &RelPath| -> Vec<RelPath> {
            nodes
                .keys()
                .filter(|p| p.starts_with(root))
                .cloned()
                .collect()
        };
        let moving = subtree(&nodes, from);
        if flags & RENAME_NOREPLACE != 0 && nodes.contains_key(to) {
            return Err(err(ErrorCode::Exists, to));
        }
        if flags & RENAME_EXCHANGE != 0 {
            if !nodes.contains_key(to) {
                return Err(err(ErrorCode::NotFound, to));
            }
            if from.starts_with(to) {
                return Err(err(ErrorCode::Invalid, from));
            }
            let back = subtree(&nodes, to);
            let mut taken: Vec<(RelPath, Node)> = Vec::new();
            for (list, a, b) in [(&moving, from, to), (&back, to, from)] {
                for p in list {
                    if let (Some(n), Some(np)) = (nodes.remove(p), p.rebase(a, b)) {
                        taken.push((np, n));
                    }
                }
            }
            nodes.extend(taken);
            return Ok(());
        }
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

    fn mkdir(&self, path: &RelPath, mode: u32, owner: Option<Owner>) -> Result<Meta, RemoteError> {
        self.enter("mkdir")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        Self::parent_dir(&nodes, path)?;
        if nodes.contains_key(path) {
            return Err(err(ErrorCode::Exists, path));
        }
        let meta = new_meta(FileKind::Dir, mode, self.version(), owner);
        nodes.insert(
            path.clone(),
            Node {
                meta: meta.clone(),
                data: Vec::new(),
                xattrs: BTreeMap::new(),
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
        if let Some(uid) = attr.uid {
            n.meta.uid = uid;
        }
        if let Some(gid) = attr.gid {
            n.meta.gid = gid;
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
        match attr.atime {
            Some(SetTime::Now) => n.meta.atime = now(),
            Some(SetTime::At(t)) => n.meta.atime = t,
            None => {}
        }
        n.meta.ctime = now();
        Ok(n.meta.clone())
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

    fn symlink(
        &self,
        path: &RelPath,
        target: &str,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError> {
        self.enter("symlink")?;
        self.writable(path)?;
        let mut meta = new_meta(FileKind::Symlink, 0o777, self.version(), owner);
        meta.size = target.len() as u64;
        meta.target = Some(target.to_owned());
        self.create(path, meta)
    }

    fn readlink(&self, path: &RelPath) -> Result<String, RemoteError> {
        self.enter("readlink")?;
        let nodes = self.nodes.lock();
        let n = nodes
            .get(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        n.meta
            .target
            .clone()
            .ok_or_else(|| err(ErrorCode::Invalid, path))
    }

    /// The mock keeps one node per name, so a link is a copy that shares
    /// the file id: enough for the layers above to see two names of one
    /// object, not for writes through one to show through the other.
    fn link(&self, from: &RelPath, to: &RelPath) -> Result<Meta, RemoteError> {
        self.enter("link")?;
        self.writable(to)?;
        let mut nodes = self.nodes.lock();
        Self::parent_dir(&nodes, to)?;
        if nodes.contains_key(to) {
            return Err(err(ErrorCode::Exists, to));
        }
        let n = nodes
            .get_mut(from)
            .ok_or_else(|| err(ErrorCode::NotFound, from))?;
        if n.meta.kind == FileKind::Dir {
            return Err(err(ErrorCode::Perm, from));
        }
        n.meta.nlink += 1;
        n.meta.ctime = now();
        let copy = Node {
            meta: n.meta.clone(),
            data: n.data.clone(),
            xattrs: n.xattrs.clone(),
        };
        let meta = copy.meta.clone();
        nodes.insert(to.clone(), copy);
        Ok(meta)
    }

    fn getxattr(&self, path: &RelPath, name: &str) -> Result<Vec<u8>, RemoteError> {
        self.enter("getxattr")?;
        let nodes = self.nodes.lock();
        let n = nodes
            .get(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        n.xattrs
            .get(name)
            .cloned()
            .ok_or_else(|| err(ErrorCode::NoData, path))
    }

    fn listxattr(&self, path: &RelPath) -> Result<Vec<String>, RemoteError> {
        self.enter("listxattr")?;
        let nodes = self.nodes.lock();
        let n = nodes
            .get(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        Ok(n.xattrs.keys().cloned().collect())
    }

    fn setxattr(
        &self,
        path: &RelPath,
        name: &str,
        value: &[u8],
        flags: u32,
    ) -> Result<(), RemoteError> {
        self.enter("setxattr")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        let n = nodes
            .get_mut(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        let exists = n.xattrs.contains_key(name);
        if flags & rfmount_proto::XATTR_CREATE != 0 && exists {
            return Err(err(ErrorCode::Exists, path));
        }
        if flags & rfmount_proto::XATTR_REPLACE != 0 && !exists {
            return Err(err(ErrorCode::NoData, path));
        }
        n.xattrs.insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    fn removexattr(&self, path: &RelPath, name: &str) -> Result<(), RemoteError> {
        self.enter("removexattr")?;
        self.writable(path)?;
        let mut nodes = self.nodes.lock();
        let n = nodes
            .get_mut(path)
            .ok_or_else(|| err(ErrorCode::NotFound, path))?;
        n.xattrs
            .remove(name)
            .map(drop)
            .ok_or_else(|| err(ErrorCode::NoData, path))
    }

    fn mknod(
        &self,
        path: &RelPath,
        kind: FileKind,
        mode: u32,
        rdev: u64,
        owner: Option<Owner>,
    ) -> Result<Meta, RemoteError> {
        self.enter("mknod")?;
        self.writable(path)?;
        if !kind.is_special() || kind == FileKind::Other {
            return Err(err(ErrorCode::Invalid, path));
        }
        let mut meta = new_meta(kind, mode & 0o7777, self.version(), owner);
        if matches!(kind, FileKind::CharDev | FileKind::BlockDev) {
            meta.rdev = rdev;
        }
        self.create(path, meta)
    }
}

impl MemRemote {
    /// Inserts a new node at a free `path` in an existing directory.
    fn create(&self, path: &RelPath, meta: Meta) -> Result<Meta, RemoteError> {
        let mut nodes = self.nodes.lock();
        Self::parent_dir(&nodes, path)?;
        if nodes.contains_key(path) {
            return Err(err(ErrorCode::Exists, path));
        }
        nodes.insert(
            path.clone(),
            Node {
                meta: meta.clone(),
                data: Vec::new(),
                xattrs: BTreeMap::new(),
            },
        );
        Ok(meta)
    }
}

/// Bytes of a mock download gathered into chunks of [`MOCK_CHUNK`] for a
/// [`crate::GetSink`]; `flush` hands over the last, shorter one.
struct Chunked<'a> {
    sink: &'a mut dyn crate::GetSink,
    buf: Vec<u8>,
}

/// Small, so that a test's few kilobytes still arrive in several chunks.
const MOCK_CHUNK: usize = 1000;

impl Write for Chunked<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(MOCK_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == MOCK_CHUNK {
            self.sink.chunk(std::mem::take(&mut self.buf))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.sink.chunk(std::mem::take(&mut self.buf))?;
        }
        self.sink.flush()
    }
}
