//! A real server on 127.0.0.1:0 over a scratch directory, and a raw-frame
//! client built only from `rfmount_proto` (never the client crate), so these
//! tests pin the server's wire behaviour on their own.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rfmount_proto::{
    AuthKey, Checksum, ClientHello, ClientMsg, FrameError, Hasher, MAGIC, Meta, Op,
    PROTOCOL_VERSION, RelPath, Reply, ServerHello, ServerMsg, Welcome, WireError, read_frame,
    write_frame,
};
use rfmount_server::{LocalStore, Server, ServerConfig, ShutdownHandle, Store};

/// Names the server makes itself: staging links and fallback temporaries.
pub const TEMP_PREFIX: &str = ".rfserve-upload-";

pub fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

pub struct Harness {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub export_id: String,
    pub stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub fn start(cfg: ServerConfig) -> Harness {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("export");
    std::fs::create_dir(&root).unwrap();
    let store = LocalStore::open(&root).unwrap();
    let export_id = store.export_id();
    let server = Server::bind("127.0.0.1:0", Arc::new(store), cfg).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    let thread = Some(std::thread::spawn(move || server.run()));
    Harness {
        addr,
        root,
        export_id,
        stop,
        thread,
        _dir: dir,
    }
}

impl Harness {
    pub fn client(&self) -> Client {
        let mut c = Client::connect(self.addr);
        let hello = c.hello();
        assert_eq!(hello.version, PROTOCOL_VERSION);
        assert!(hello.auth_challenge.is_none());
        c.welcome();
        c
    }

    /// The server's uploads in progress or left behind: its own names
    /// under the root, and the unnamed (`O_TMPFILE`) files this process
    /// holds open there, which the kernel shows as `DIR/#INODE (deleted)`.
    pub fn temp_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        walk(&self.root, &mut found);
        let root = self.root.canonicalize().unwrap();
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy().into_owned();
            if let Some(live) = t.strip_suffix(" (deleted)") {
                let live = Path::new(live);
                if live.starts_with(&root)
                    && live
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('#'))
                {
                    found.push(t.clone());
                }
            }
        }
        found
    }

    /// Waits (bounded) until no upload temporary remains anywhere.
    pub fn wait_no_temp_files(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.temp_files().is_empty() {
            assert!(
                Instant::now() < deadline,
                "temporaries left: {:?}",
                self.temp_files()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and waits for `run` to return.
    pub fn shutdown(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
    }
}

fn walk(dir: &Path, found: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            found.push(name);
        } else if e.file_type().unwrap().is_dir() {
            walk(&e.path(), found);
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Client {
    pub s: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        // No test may hang: a missing answer fails the read instead.
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s }
    }

    pub fn send_hello(&mut self, version: u32) {
        self.send_hello_in(version, None);
    }

    /// A hello asking for a session confined to `subdir`.
    pub fn send_hello_in(&mut self, version: u32, subdir: Option<RelPath>) {
        self.send(&ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version,
            client_nonce: [3; 32],
            subdir,
            client_id: None,
        }));
    }

    /// The last frame of the handshake.
    pub fn welcome(&mut self) -> Welcome {
        match self.recv() {
            ServerMsg::Welcome(w) => w,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub fn hello(&mut self) -> ServerHello {
        self.send_hello(PROTOCOL_VERSION);
        self.recv_hello()
    }

    pub fn recv_hello(&mut self) -> ServerHello {
        match self.recv() {
            ServerMsg::Hello(h) => h,
            other => panic!("expected hello, got {other:?}"),
        }
    }

    pub fn auth(&mut self, token: &[u8], challenge: &[u8; 32]) -> Result<(), WireError> {
        let proof = AuthKey::from_token(token).proof(challenge, &[3; 32]);
        self.send(&ClientMsg::Auth { proof });
        match self.recv() {
            ServerMsg::AuthResult(r) => r,
            other => panic!("expected auth result, got {other:?}"),
        }
    }

    pub fn send(&mut self, msg: &ClientMsg) {
        write_frame(&mut self.s, msg).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next frame, skipping pushed invalidations (unsolicited: a
    /// change made directly in the export may push one at any time).
    pub fn recv(&mut self) -> ServerMsg {
        loop {
            match read_frame(&mut self.s).unwrap() {
                ServerMsg::Invalidate(_) => continue,
                other => return other,
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<ServerMsg, FrameError> {
        read_frame(&mut self.s)
    }

    pub fn request(&mut self, id: u64, op: Op) -> Result<Reply, WireError> {
        self.send(&ClientMsg::Request { id, op });
        match self.recv() {
            ServerMsg::Reply { id: got, result } if got == id => result,
            other => panic!("expected reply {id}, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the `Fatal` it sent, if any.
    pub fn expect_closed(&mut self) -> Option<WireError> {
        let mut fatal = None;
        loop {
            match read_frame::<_, ServerMsg>(&mut self.s) {
                Ok(ServerMsg::Fatal(e)) => fatal = Some(e),
                Ok(other) => panic!("expected the connection to close, got {other:?}"),
                Err(FrameError::Closed) => return fatal,
                Err(FrameError::Io(e)) => {
                    assert!(
                        !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ),
                        "server did not close the connection"
                    );
                    return fatal;
                }
                Err(e) => panic!("undecodable frame from server: {e}"),
            }
        }
    }

    /// Uploads `data` in chunks of `chunk` bytes; returns the final reply.
    pub fn put(
        &mut self,
        id: u64,
        path: &str,
        data: &[u8],
        chunk: usize,
    ) -> Result<Reply, WireError> {
        self.send(&ClientMsg::Request {
            id,
            op: Op::Put {
                path: p(path),
                size: data.len() as u64,
                mode: None,
                mtime: None,
                owner: None,
                ext: Default::default(),
            },
        });
        for c in data.chunks(chunk) {
            self.send(&ClientMsg::PutData {
                id,
                data: c.to_vec(),
            });
        }
        self.send(&ClientMsg::PutEnd {
            id,
            checksum: checksum(data),
        });
        match self.recv() {
            ServerMsg::Reply { id: got, result } if got == id => result,
            other => panic!("expected PUT reply, got {other:?}"),
        }
    }

    /// Downloads `path`: its header meta, content and verified checksum.
    pub fn get(&mut self, id: u64, path: &str) -> (Meta, Vec<u8>) {
        self.send(&ClientMsg::Request {
            id,
            op: Op::Get {
                path: p(path),
                have: None,
                sparse: false,
            },
        });
        let meta = match self.recv() {
            ServerMsg::Reply {
                result: Ok(Reply::Get(m)),
                ..
            } => m,
            other => panic!("expected GET header, got {other:?}"),
        };
        let mut data = Vec::new();
        loop {
            match self.recv() {
                ServerMsg::Data { id: got, data: d } if got == id => data.extend_from_slice(&d),
                ServerMsg::DataEnd { id: got, result } if got == id => {
                    assert_eq!(result.unwrap(), checksum(&data));
                    return (meta, data);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

pub fn checksum(data: &[u8]) -> Checksum {
    let mut h = Hasher::new();
    h.update(data);
    h.finish()
}

/// Deterministic, incompressible-looking test content.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

static LOGS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Some(logs) = LOGS.get() {
            logs.lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    if LOGS.set(Mutex::new(Vec::new())).is_ok() {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// Log lines captured so far that contain `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    LOGS.get()
        .map(|l| {
            l.lock()
                .unwrap()
                .iter()
                .filter(|s| s.contains(needle))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) for a log line containing `needle`.
pub fn wait_logged(needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = logged(needle).pop() {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line with {needle:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn read_to_vec(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

/// Shrinks a socket's receive buffer.
pub fn set_rcvbuf(s: &TcpStream, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: `bytes` is a live c_int and we pass its exact size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const bytes).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}
