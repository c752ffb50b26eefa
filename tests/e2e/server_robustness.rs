//! `rfserve` against bad peers and bad luck: garbage and oversized frames,
//! silent connections, requests that skip the handshake or try to leave the
//! export, bad command lines, and a server killed in the middle of an upload.
//! Raw sockets speak the protocol through `rfmount_proto` alone, without the
//! client crate, so the server is checked against the wire format itself.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use rfmount_proto::{
    AuthKey, ClientHello, ClientMsg, ErrorCode, MAGIC, MAX_FRAME, Op, PROTOCOL_VERSION, RelPath,
    Reply, ServerHello, ServerMsg, Welcome, new_nonce, read_frame, write_frame,
};

use crate::util::*;

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// A raw TCP connection to `srv` with a 10 s read timeout.
fn raw(srv: &Server) -> TcpStream {
    let c = TcpStream::connect(srv.addr()).expect("connect to rfserve");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

fn client_hello(version: u32) -> ClientMsg {
    ClientMsg::Hello(ClientHello {
        magic: MAGIC,
        version,
        client_nonce: new_nonce(),
        subdir: None,
        client_id: None,
    })
}

/// Connects and sends a hello; returns the server's hello.
fn raw_hello(srv: &Server) -> (TcpStream, ServerHello) {
    let mut c = raw(srv);
    write_frame(&mut c, &client_hello(PROTOCOL_VERSION)).unwrap();
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Hello(h)) => {
            assert_eq!(h.magic, MAGIC);
            assert_eq!(h.version, PROTOCOL_VERSION);
            (c, h)
        }
        other => panic!("expected the server's hello, got {other:?}"),
    }
}

/// Connects and completes the handshake (no authentication).
fn raw_session(srv: &Server) -> (TcpStream, Welcome) {
    let (mut c, hello) = raw_hello(srv);
    assert!(hello.auth_challenge.is_none(), "unexpected challenge");
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Welcome(w)) => (c, w),
        other => panic!("expected the server's welcome, got {other:?}"),
    }
}

/// How a connection ended, as seen by a peer that only reads.
#[derive(Debug)]
struct Closed {
    after: Duration,
    /// Every byte the server sent before closing.
    bytes: Vec<u8>,
}

impl Closed {
    /// The frames the server sent before closing (undecodable rest ignored).
    fn frames(&self) -> Vec<ServerMsg> {
        let mut r = self.bytes.as_slice();
        let mut v = Vec::new();
        while let Ok(m) = read_frame::<_, ServerMsg>(&mut r) {
            v.push(m);
        }
        v
    }
}

/// Reads until the server closes the connection (EOF or reset); `Err` if it
/// is still open after `timeout`.
fn wait_closed(c: &mut TcpStream, timeout: Duration) -> Result<Closed, String> {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!(
                "connection still open after {timeout:?} ({} bytes received)",
                bytes.len()
            ));
        }
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match c.read(&mut buf) {
            Ok(0) => {
                return Ok(Closed {
                    after: start.elapsed(),
                    bytes,
                });
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                // Reset: closed as well.
                return Ok(Closed {
                    after: start.elapsed(),
                    bytes,
                });
            }
        }
    }
}

#[track_caller]
fn assert_closed(c: &mut TcpStream, timeout: Duration, what: &str) -> Closed {
    match wait_closed(c, timeout) {
        Ok(cl) => cl,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// `rf ls` and a small round trip work, quickly, while bad peers are around.
fn assert_serves_others(srv: &Server, local: &TestDir, tag: &str) {
    let start = Instant::now();
    srv.rf("ls", [] as [&str; 0])
        .timeout(Duration::from_secs(20))
        .ok();
    let src = local.write_random(format!("{tag}.bin"), MIB, 77);
    srv.rf("put", [s(&src)])
        .timeout(Duration::from_secs(20))
        .ok();
    let copy = local.join(format!("{tag}.copy"));
    srv.rf("get", [&format!("{tag}.bin"), s(&copy)])
        .timeout(Duration::from_secs(20))
        .ok();
    assert_same_file(&src, &copy);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "other sessions were slowed down: {:?}",
        start.elapsed()
    );
}

#[track_caller]
fn assert_healthy(srv: &mut Server) {
    assert!(srv.is_running(), "rfserve died:\n{}", tail(&srv.log(), 40));
    let log = srv.log();
    assert!(
        !log.contains("panicked"),
        "rfserve panicked:\n{}",
        tail(&log, 40)
    );
}

#[test]
fn garbage_peers_are_closed_while_others_are_served() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let mut srv = Server::start(root.path(), &[]);

    // Slow or silent peers hold their connections open the whole time.
    let mut half_frame = raw(&srv);
    half_frame.write_all(&[40, 0]).unwrap();
    let (mut half_request, _) = raw_session(&srv);
    half_request.write_all(&[0, 1, 0, 0, 1, 2, 3]).unwrap();
    let _silent = raw(&srv);

    // Random bytes announced as a valid-looking frame.
    let mut junk = raw(&srv);
    let mut payload = Rng::from_name("junk").bytes(60);
    payload[0..4].copy_from_slice(&99u32.to_le_bytes()); // no such variant
    let mut frame = 60u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    junk.write_all(&frame).unwrap();
    assert_closed(&mut junk, Duration::from_secs(5), "garbage frame");

    // A length far above the limit: refused before any allocation.
    let mut huge = raw(&srv);
    huge.write_all(&u32::MAX.to_le_bytes()).unwrap();
    huge.write_all(&[0u8; 16]).unwrap();
    assert_closed(&mut huge, Duration::from_secs(5), "4 GiB frame length");
    let mut over = raw(&srv);
    over.write_all(&((MAX_FRAME as u32) + 1).to_le_bytes())
        .unwrap();
    assert_closed(
        &mut over,
        Duration::from_secs(5),
        "frame just over MAX_FRAME",
    );

    // Not even the magic.
    let mut http = raw(&srv);
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_closed(&mut http, Duration::from_secs(5), "HTTP request");

    // A request before the hello.
    let mut early = raw(&srv);
    write_frame(
        &mut early,
        &ClientMsg::Request {
            id: 1,
            op: Op::List {
                path: RelPath::root(),
            },
        },
    )
    .unwrap();
    let cl = assert_closed(&mut early, Duration::from_secs(5), "request before hello");
    assert!(
        !cl.frames()
            .iter()
            .any(|m| matches!(m, ServerMsg::Reply { result: Ok(_), .. })),
        "a request before the hello was answered: {:?}",
        cl.frames()
    );

    // A hello with the wrong magic.
    let mut bad_magic = raw(&srv);
    write_frame(
        &mut bad_magic,
        &ClientMsg::Hello(ClientHello {
            magic: *b"NOPE",
            version: PROTOCOL_VERSION,
            client_nonce: new_nonce(),
            subdir: None,
            client_id: None,
        }),
    )
    .unwrap();
    assert_closed(
        &mut bad_magic,
        Duration::from_secs(5),
        "hello with bad magic",
    );

    // A second hello in the middle of a session.
    let (mut twice, _) = raw_session(&srv);
    write_frame(&mut twice, &client_hello(PROTOCOL_VERSION)).unwrap();
    assert_closed(&mut twice, Duration::from_secs(5), "second hello");

    assert_serves_others(&srv, &local, "during-garbage");
    // The half-sent frames did not block anyone and are still pending.
    assert!(
        wait_closed(&mut half_frame, Duration::from_millis(100)).is_err(),
        "a slow (not idle-timed-out) peer was closed early"
    );
    assert_healthy(&mut srv);
}

#[test]
fn stalled_readers_and_writers_do_not_block_others() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let big = root.write_random("big.bin", 64 * MIB, 3);
    let mut srv = Server::start(root.path(), &[]);

    // A: asks for 64 MiB and never reads a byte of it.
    let (mut a, _) = raw_session(&srv);
    write_frame(
        &mut a,
        &ClientMsg::Request {
            id: 1,
            op: Op::Get {
                path: RelPath::new("big.bin").unwrap(),
                have: None,
                sparse: false,
            },
        },
    )
    .unwrap();
    // B: starts a 10 MiB upload of stall.bin, sends 256 KiB and stops.
    let (mut b, _) = raw_session(&srv);
    write_frame(
        &mut b,
        &ClientMsg::Request {
            id: 1,
            op: Op::Put {
                path: RelPath::new("stall.bin").unwrap(),
                size: 10 * MIB,
                mode: None,
                mtime: None,
                owner: None,
                ext: Default::default(),
            },
        },
    )
    .unwrap();
    write_frame(
        &mut b,
        &ClientMsg::PutData {
            id: 1,
            data: vec![0xAB; 256 * 1024],
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // Everyone else: the same big file, and a complete upload to the very
    // path B is stuck on.
    let start = Instant::now();
    let copy = local.join("big.copy");
    srv.rf("get", ["big.bin", s(&copy)])
        .timeout(Duration::from_secs(30))
        .ok();
    assert_same_file(&big, &copy);
    let mine = local.write_random("stall.bin", 3 * MIB, 4);
    srv.rf("put", [s(&mine)])
        .timeout(Duration::from_secs(30))
        .ok();
    assert_same_file(&mine, &root.join("stall.bin"));
    srv.rf("ls", [] as [&str; 0])
        .timeout(Duration::from_secs(30))
        .ok();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "others were held up: {:?}",
        start.elapsed()
    );

    // B gives up: its partial upload never replaces the good file.
    drop(b);
    drop(a);
    let clean = wait_for(Duration::from_secs(10), || {
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX)
            .is_empty()
            .then_some(())
    });
    assert!(
        clean.is_some(),
        "abandoned upload left {:?}",
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX)
    );
    assert_same_file(&mine, &root.join("stall.bin"));
    assert_healthy(&mut srv);
}

#[test]
fn version_mismatch_is_answered_then_closed() {
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    let mut c = raw(&srv);
    let theirs = 0xDEAD_BEEFu32;
    write_frame(&mut c, &client_hello(theirs)).unwrap();
    let cl = assert_closed(&mut c, Duration::from_secs(5), "version mismatch");
    let frames = cl.frames();
    match frames.first() {
        Some(ServerMsg::Hello(h)) => assert_eq!(h.version, PROTOCOL_VERSION),
        other => panic!("expected the server's hello before the close, got {other:?}"),
    }
    assert_eq!(frames.len(), 1, "{frames:?}");
    let log = srv.log();
    assert!(
        log.contains(&theirs.to_string()),
        "the server should log the client's version {theirs}:\n{}",
        tail(&log, 20)
    );
    assert_healthy(&mut srv);
}

/// The frame of `Stat { path }` for a path `RelPath` would refuse to build:
/// encode a valid path of the same length and patch the bytes.
fn stat_frame_with_raw_path(bad: &str) -> Vec<u8> {
    let placeholder: String = "q".repeat(bad.len());
    let msg = ClientMsg::Request {
        id: 5,
        op: Op::Stat {
            path: RelPath::new(&placeholder).unwrap(),
        },
    };
    let mut frame = Vec::new();
    write_frame(&mut frame, &msg).unwrap();
    let at = frame
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .unwrap();
    frame[at..at + bad.len()].copy_from_slice(bad.as_bytes());
    frame
}

#[test]
fn paths_that_leave_the_export_are_refused_on_the_wire() {
    let outside = TestDir::new("outside");
    outside.write("passwd", b"outside secret\n");
    let root = TestDir::new("root");
    root.write("inside", b"fine\n");
    let mut srv = Server::start(root.path(), &[]);

    // The frames are built correctly apart from the path.
    let good = stat_frame_with_raw_path("inside");
    let (mut c, _) = raw_session(&srv);
    c.write_all(&good).unwrap();
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Reply {
            id: 5,
            result: Ok(Reply::Meta(m)),
        }) => assert_eq!(m.size, 5),
        other => panic!("a well-formed STAT failed: {other:?}"),
    }

    let up = format!(
        "../{}/passwd",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let abs = format!("{}/passwd", outside.path().display());
    for bad in [
        up.as_str(),
        "..",
        "a/../../b",
        abs.as_str(),
        "/etc/passwd",
        "a\0b",
        "./../x",
    ] {
        let (mut c, _) = raw_session(&srv);
        c.write_all(&stat_frame_with_raw_path(bad)).unwrap();
        let cl = assert_closed(&mut c, Duration::from_secs(5), &format!("bad path {bad:?}"));
        for m in cl.frames() {
            match m {
                ServerMsg::Fatal(_) | ServerMsg::Reply { result: Err(_), .. } => {}
                other => panic!("bad path {bad:?} got an answer: {other:?}"),
            }
        }
    }
    assert_healthy(&mut srv);
    srv.rf("ls", [] as [&str; 0]).ok();
}

#[test]
fn symlinks_out_of_the_root_are_not_followed() {
    let outside = TestDir::new("outside");
    outside.write("secret.txt", b"outside secret\n");
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    symlink(outside.path(), root.join("out_dir")).unwrap();
    symlink(outside.join("secret.txt"), root.join("out_file")).unwrap();
    symlink("../../../../../../../../etc", root.join("etc_rel")).unwrap();
    let mut srv = Server::start(root.path(), &[]);

    for path in ["out_file", "out_dir/secret.txt", "etc_rel/passwd"] {
        let out = srv.rf("get", [path, "-"]).current_dir(local.path()).fails();
        assert!(
            out.stdout.is_empty(),
            "get {path} returned data from outside the export"
        );
    }
    for dir in ["out_dir", "etc_rel", "out_dir/"] {
        let out = srv.rf("ls", [dir]).run();
        let listing = text(&out.stdout);
        assert!(
            !listing.contains("secret.txt") && !listing.contains("passwd"),
            "ls {dir} listed outside the export:\n{listing}"
        );
    }
    let src = local.write("evil.txt", b"evil\n");
    srv.rf("put", [s(&src), "out_dir/evil.txt"]).fails();
    assert!(
        !outside.join("evil.txt").exists(),
        "put wrote outside the root"
    );
    srv.rf("rm", ["out_dir/secret.txt"]).fails();
    srv.rf("mkdir", ["out_dir/newdir"]).fails();
    srv.rf("mv", ["out_dir/secret.txt", "stolen.txt"]).fails();
    assert!(
        !outside.join("newdir").exists(),
        "mkdir created outside the root"
    );
    assert!(!root.join("stolen.txt").exists());
    assert_eq!(
        fs::read(outside.join("secret.txt")).unwrap(),
        b"outside secret\n"
    );
    // The root listing shows the links as links, with their targets as
    // text (never resolved by the server).
    let listing = srv.rf("ls", [] as [&str; 0]).stdout();
    for name in ["out_dir", "out_file", "etc_rel"] {
        let target = fs::read_link(root.join(name)).unwrap();
        let shown = format!(" {name} -> {}", target.display());
        let line = listing
            .lines()
            .find(|l| l.ends_with(&shown))
            .unwrap_or_else(|| panic!("{shown:?} missing from:\n{listing}"));
        assert!(line.starts_with('l'), "{line}");
    }
    assert_healthy(&mut srv);
}

#[test]
fn requests_before_authentication_are_refused() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("a.txt", b"private\n");
    let token = local.write("token", "t0ken\n");
    let mut srv = Server::start_os(
        root.path(),
        vec!["--token-file".into(), token.into_os_string()],
    );

    // Skipping the Auth frame.
    let (mut c, hello) = raw_hello(&srv);
    assert!(
        hello.auth_challenge.is_some(),
        "no challenge from a server with a token"
    );
    write_frame(
        &mut c,
        &ClientMsg::Request {
            id: 1,
            op: Op::List {
                path: RelPath::root(),
            },
        },
    )
    .unwrap();
    let cl = assert_closed(&mut c, Duration::from_secs(5), "request without auth");
    assert!(
        cl.frames()
            .iter()
            .all(|m| !matches!(m, ServerMsg::Reply { result: Ok(_), .. })),
        "answered without authentication: {:?}",
        cl.frames()
    );

    // A wrong proof.
    let (mut c, _) = raw_hello(&srv);
    write_frame(&mut c, &ClientMsg::Auth { proof: [7u8; 32] }).unwrap();
    let cl = assert_closed(&mut c, Duration::from_secs(5), "wrong proof");
    match cl.frames().first() {
        None => {}
        Some(ServerMsg::AuthResult(Err(e))) => assert_eq!(e.code, ErrorCode::Access),
        Some(other) => panic!("unexpected answer to a wrong proof: {other:?}"),
    }

    // The right proof, computed from the token as the protocol says.
    let mut c = raw(&srv);
    let nonce = new_nonce();
    write_frame(
        &mut c,
        &ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce: nonce,
            subdir: None,
            client_id: None,
        }),
    )
    .unwrap();
    let Ok(ServerMsg::Hello(h)) = read_frame::<_, ServerMsg>(&mut c) else {
        panic!("no hello")
    };
    let proof = AuthKey::from_token(b"t0ken").proof(&h.auth_challenge.unwrap(), &nonce);
    write_frame(&mut c, &ClientMsg::Auth { proof }).unwrap();
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::AuthResult(Ok(()))) => {}
        other => panic!("right proof refused: {other:?}"),
    }
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Welcome(w)) => assert_eq!(w.export_id.len(), 32, "{w:?}"),
        other => panic!("no welcome after authentication: {other:?}"),
    }
    write_frame(
        &mut c,
        &ClientMsg::Request {
            id: 9,
            op: Op::Stat {
                path: RelPath::new("a.txt").unwrap(),
            },
        },
    )
    .unwrap();
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Reply {
            id: 9,
            result: Ok(Reply::Meta(m)),
        }) => assert_eq!(m.size, 8),
        other => panic!("authenticated STAT failed: {other:?}"),
    }
    assert_healthy(&mut srv);
}

#[test]
fn idle_connections_are_closed() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let mut srv = Server::start(root.path(), &["--idle-timeout", "1"]);

    // Silent after the handshake.
    let (mut quiet, hello) = raw_session(&srv);
    assert_eq!(hello.limits.idle_timeout_secs, 1);
    // Silent from the first byte.
    let mut mute = raw(&srv);
    // Busy: a ping every 400 ms must keep the connection alive.
    let (mut busy, _) = raw_session(&srv);

    let busy_thread = std::thread::spawn(move || {
        let start = Instant::now();
        let mut id = 100;
        while start.elapsed() < Duration::from_secs(4) {
            write_frame(&mut busy, &ClientMsg::Request { id, op: Op::Ping })
                .map_err(|e| format!("ping {id} after {:?}: {e}", start.elapsed()))?;
            match read_frame::<_, ServerMsg>(&mut busy) {
                Ok(ServerMsg::Reply {
                    id: got,
                    result: Ok(Reply::Done),
                }) if got == id => {}
                other => {
                    return Err(format!(
                        "ping {id} after {:?} got {other:?}",
                        start.elapsed()
                    ));
                }
            }
            id += 1;
            std::thread::sleep(Duration::from_millis(400));
        }
        Ok::<_, String>(())
    });

    let cl = assert_closed(&mut quiet, Duration::from_secs(3), "idle session");
    assert!(
        cl.after >= Duration::from_millis(500),
        "closed after {:?}, before the idle timeout",
        cl.after
    );
    for m in cl.frames() {
        assert!(matches!(m, ServerMsg::Fatal(_)), "unexpected frame {m:?}");
    }
    assert_closed(
        &mut mute,
        Duration::from_secs(3),
        "connection that never spoke",
    );
    busy_thread
        .join()
        .unwrap()
        .expect("a connection in use was closed by the idle timeout");

    // rf works against a server with a short idle timeout.
    assert_serves_others(&srv, &local, "after-idle");
    assert_healthy(&mut srv);
}

/// `rfserve ARGS` exits with code 2 and one `rfserve: error:` line.
#[track_caller]
fn assert_startup_error(args: &[&str], needles: &[&str]) {
    let out = TestCommand::rfserve()
        .args(args)
        .timeout(Duration::from_secs(20))
        .code(2);
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "rfserve {args:?}: expected one stderr line:\n{err}"
    );
    assert!(lines[0].starts_with("rfserve: error: "), "{err}");
    for n in needles {
        assert!(
            lines[0].to_lowercase().contains(&n.to_lowercase()),
            "rfserve {args:?}: error {err:?} should mention {n:?}"
        );
    }
    assert!(
        !text(&out.stdout).contains("listening"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn bad_startup_arguments_exit_2() {
    let d = TestDir::new("args");
    let file = d.write("plain-file", b"x");
    assert_startup_error(
        &[
            "--root",
            "/nonexistent/rfmount-e2e",
            "--listen",
            "127.0.0.1:0",
        ],
        &["/nonexistent/rfmount-e2e"],
    );
    assert_startup_error(
        &["--root", s(&file), "--listen", "127.0.0.1:0"],
        &["plain-file"],
    );

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    assert_startup_error(
        &["--root", s(d.path()), "--listen", &listen],
        &[&port.to_string()],
    );
    drop(taken);

    // Usage errors (clap) exit 2 too.
    for args in [
        vec!["--root", s(d.path()), "--bogus-flag"],
        vec!["--root", s(d.path()), "--idle-timeout", "soon"],
        vec!["--root", s(d.path()), "--listen", "not-an-address"],
    ] {
        let out = TestCommand::rfserve()
            .args(&args)
            .timeout(Duration::from_secs(20))
            .code(2);
        assert!(!out.stderr.is_empty(), "rfserve {args:?} printed no error");
    }
}

#[test]
fn server_killed_mid_put() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let old = root.write_random("big.bin", MIB, 1);
    let old_copy = local.write_random("old-copy", MIB, 1);
    let new = local.write_random("new.bin", 100 * MIB, 2);
    let mut srv = Server::start(root.path(), &[]);
    let export_before = raw_session(&srv).1.export_id;

    let mut put = srv
        .rf("put", [s(&new), "big.bin"])
        .spawn_logged(local.path(), "rf-put");
    let seen = wait_for(Duration::from_secs(20), || {
        if server_has_open_upload(srv.pid(), root.path()) {
            return Some(true);
        }
        put.try_wait().map(|_| false)
    });
    assert_eq!(
        seen,
        Some(true),
        "{}",
        put.report("rfserve never had an upload open in the server root")
    );
    srv.kill();

    let st = put.wait(Duration::from_secs(30));
    assert!(
        st.code().is_some_and(|c| c != 0),
        "{}",
        put.report(&format!(
            "should fail when the server dies, ended with {st}"
        ))
    );
    let err = put.stderr();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line:\n{err}");
    assert!(lines[0].starts_with("rf: error: put /big.bin"), "{err}");
    let lower = lines[0].to_lowercase();
    assert!(
        ["connection", "lost", "closed", "reset"]
            .iter()
            .any(|w| lower.contains(w)),
        "the error should say the connection broke: {err}"
    );

    assert_same_file(&old_copy, &old);
    // The upload had no name, so even a SIGKILLed server leaves nothing
    // behind, and no restart needs to sweep anything.
    assert_eq!(
        names_with_prefix(root.path(), ""),
        ["big.bin"],
        "a killed upload left a name on disk"
    );

    srv.restart();
    let listing = srv.rf("ls", [] as [&str; 0]).stdout();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(lines[0].contains(&format!(" {MIB} ")), "{listing}");
    assert_same_file(&old_copy, &old);
    assert_eq!(
        raw_session(&srv).1.export_id,
        export_before,
        "the export id changed across a restart"
    );

    // The same upload now succeeds.
    srv.rf("put", [s(&new), "big.bin"]).ok();
    assert_same_file(&new, &old);
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn sigterm_mid_put_shuts_down_cleanly() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let old = root.write_random("big.bin", MIB, 1);
    let old_copy = local.write_random("old-copy", MIB, 1);
    let new = local.write_random("new.bin", 100 * MIB, 2);
    let mut srv = Server::start(root.path(), &[]);

    let mut put = srv
        .rf("put", [s(&new), "big.bin"])
        .spawn_logged(local.path(), "rf-put");
    let seen = wait_for(Duration::from_secs(20), || {
        if server_has_open_upload(srv.pid(), root.path()) {
            return Some(true);
        }
        put.try_wait().map(|_| false)
    });
    assert_eq!(
        seen,
        Some(true),
        "{}",
        put.report("rfserve never had an upload open in the server root")
    );
    let st = srv.terminate(Duration::from_secs(15));
    assert!(st.success(), "rfserve should exit 0 on SIGTERM, got {st}");

    let st = put.wait(Duration::from_secs(30));
    assert!(
        st.code().is_some_and(|c| c != 0),
        "{}",
        put.report(&format!(
            "should fail when the server stops, ended with {st}"
        ))
    );
    assert_eq!(put.stderr().lines().count(), 1, "{}", put.stderr());
    assert_same_file(&old_copy, &old);
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new(),
        "a clean shutdown should remove partial uploads"
    );
}

#[test]
fn export_id_is_stable_per_root_and_distinct_across_roots() {
    let a = TestDir::new("root-a");
    let b = TestDir::new("root-b");
    let mut sa = Server::start(a.path(), &[]);
    let sb = Server::start(b.path(), &[]);
    let (_, ha) = raw_session(&sa);
    let (_, hb) = raw_session(&sb);
    assert!(!ha.export_id.is_empty());
    assert_ne!(ha.export_id, hb.export_id, "two roots share an export id");
    assert!(!ha.read_only);
    sa.restart();
    let (_, ha2) = raw_session(&sa);
    assert_eq!(ha.export_id, ha2.export_id, "export id changed on restart");

    let ro = Server::start(a.path(), &["--read-only"]);
    let (_, hro) = raw_session(&ro);
    assert!(hro.read_only, "--read-only not announced in the hello");
}
