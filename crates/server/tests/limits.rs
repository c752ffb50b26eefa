//! Admission and the handshake's limits over real TCP with raw frames:
//! nothing about the export before authentication, the pre-auth frame
//! limit, the total handshake deadline, the failed-authentication back-off,
//! version-1 peers, the caps on handshakes and per address, and sessions
//! confined to a subdirectory.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::{Client, p, start};
use rfmount_proto::{
    AuthKey, ClientMsg, ErrorCode, MAGIC, Op, PROTOCOL_VERSION, Reply, ServerMsg, read_frame,
};
use rfmount_server::ServerConfig;

fn token_config(token: &str) -> ServerConfig {
    ServerConfig {
        auth: Some(AuthKey::from_token(token.as_bytes())),
        ..ServerConfig::default()
    }
}

/// True when the server has closed `s` (EOF or reset within 500 ms).
fn is_closed(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Everything the server sends until it closes (or 10 s pass).
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn nothing_about_the_export_before_authentication() {
    let h = start(token_config("s3cret"));
    let mut c = Client::connect(h.addr);
    c.send_hello_in(PROTOCOL_VERSION, Some(p("missing-subdir")));
    match c.recv() {
        ServerMsg::Hello(hello) => assert!(hello.auth_challenge.is_some()),
        other => panic!("{other:?}"),
    }
    // A wrong proof: the refusal, then the close, and not one byte of the
    // export's id (nor whether the subdirectory exists) on the way.
    c.send(&ClientMsg::Auth { proof: [1; 32] });
    let rest = read_all(&mut c.s);
    let mut r = rest.as_slice();
    let mut frames = Vec::new();
    while let Ok(m) = read_frame::<_, ServerMsg>(&mut r) {
        frames.push(m);
    }
    assert!(
        matches!(frames.as_slice(), [ServerMsg::AuthResult(Err(e))] if e.code == ErrorCode::Access),
        "{frames:?}"
    );
    let id = h.export_id.as_bytes();
    assert!(
        !rest.windows(id.len()).any(|w| w == id),
        "export id sent before authentication"
    );

    // After the right proof, the welcome carries the export.
    let mut c = Client::connect(h.addr);
    let challenge = c.hello().auth_challenge.unwrap();
    assert_eq!(c.auth(b"s3cret", &challenge), Ok(()));
    let welcome = c.welcome();
    assert_eq!(welcome.export_id, h.export_id);
    assert_eq!(welcome.limits.idle_timeout_secs, 300);
}

#[test]
fn an_oversized_frame_before_authentication_is_refused_unread() {
    let h = start(token_config("s3cret"));
    // A length of 100 KiB announced for the hello, and nothing else sent:
    // the refusal must come from the length alone.
    let mut c = Client::connect(h.addr);
    c.send_raw(&(100 * 1024u32).to_le_bytes());
    let fatal = c.expect_closed().expect("a Fatal");
    assert_eq!(fatal.code, ErrorCode::Protocol);
    assert!(
        fatal
            .message
            .contains("102400 bytes exceeds the 8192-byte limit"),
        "{fatal:?}"
    );
    // The same for the Auth frame.
    let mut c = Client::connect(h.addr);
    c.hello();
    c.send_raw(&(9000u32).to_le_bytes());
    let fatal = c.expect_closed().expect("a Fatal");
    assert!(fatal.message.contains("before authentication"), "{fatal:?}");
    // After authentication, ordinary frames up to MAX_FRAME are fine.
    let mut c = Client::connect(h.addr);
    let challenge = c.hello().auth_challenge.unwrap();
    c.auth(b"s3cret", &challenge).unwrap();
    c.welcome();
    assert!(matches!(
        c.put(1, "f", &vec![7; 1 << 20], 1 << 20),
        Ok(Reply::Changed { meta: Some(_), .. })
    ));
}

#[test]
fn a_trickled_hello_is_cut_off_at_the_handshake_deadline() {
    let h = start(ServerConfig {
        handshake_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    });
    let mut c = Client::connect(h.addr);
    let mut hello = Vec::new();
    rfmount_proto::write_frame(
        &mut hello,
        &ClientMsg::Hello(rfmount_proto::ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce: [0; 32],
            subdir: None,
            client_id: None,
        }),
    )
    .unwrap();
    let start = Instant::now();
    let writer = c.s.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        // One byte every 100 ms: each arrives well within any per-read
        // timeout, the whole never within the deadline.
        let mut w = writer;
        for b in hello {
            if std::io::Write::write_all(&mut w, &[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let fatal = c.expect_closed().expect("a Fatal");
    let after = start.elapsed();
    assert!(
        fatal.message.contains("handshake not complete"),
        "{fatal:?}"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    t.join().unwrap();
}

#[test]
fn failed_authentications_back_off_per_address() {
    let h = start(ServerConfig {
        auth_backoff: Duration::from_secs(30),
        ..token_config("s3cret")
    });
    let attempt = |token: &[u8]| {
        let mut c = Client::connect(h.addr);
        c.send_hello(PROTOCOL_VERSION);
        match c.recv() {
            ServerMsg::Hello(hello) => c.auth(token, &hello.auth_challenge.unwrap()),
            ServerMsg::Fatal(e) => Err(e),
            other => panic!("{other:?}"),
        }
    };
    // A few mistakes are free.
    for _ in 0..3 {
        assert_eq!(attempt(b"guess").unwrap_err().code, ErrorCode::Access);
    }
    // A connection that got its challenge before the back-off began.
    let mut early = Client::connect(h.addr);
    let early_challenge = early.hello().auth_challenge.unwrap();
    assert_eq!(attempt(b"guess").unwrap_err().code, ErrorCode::Access);
    // Now even the right token is turned away, before its hello...
    let e = attempt(b"s3cret").unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{e:?}");
    assert!(
        e.message
            .contains("too many failed authentications from 127.0.0.1"),
        "{e:?}"
    );
    // ...and on the early connection without its proof being looked at.
    let e = early.auth(b"s3cret", &early_challenge).unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{e:?}");
    // Four failures, one log line: the rest are counted for the next one.
    common::wait_logged(": authentication failed");
    let lines: Vec<_> = common::logged(": authentication failed")
        .into_iter()
        .filter(|l| l.starts_with("WARN"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
}

#[test]
fn version_1_clients_get_a_hello_they_can_decode() {
    let h = start(ServerConfig::default());
    // Version 1's ClientHello (its golden bytes): no subdir field.
    let mut frame = 44u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&1u32.to_le_bytes());
    frame.extend_from_slice(&[7; 32]);
    let mut c = Client::connect(h.addr);
    c.send_raw(&frame);
    let bytes = read_all(&mut c.s);
    // The version-1 ServerHello layout: prefix, empty export id, read-only
    // false, zero limits, no challenge; version 2 in the version field.
    let mut want = 38u32.to_le_bytes().to_vec();
    want.extend_from_slice(&[0, 0, 0, 0]);
    want.extend_from_slice(&MAGIC);
    want.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    want.extend_from_slice(&[0; 8 + 1 + 16 + 1]);
    assert_eq!(bytes, want);
    common::wait_logged(&format!(
        "client speaks protocol 1, server speaks {PROTOCOL_VERSION}"
    ));
}

#[test]
fn handshakes_make_room_for_real_clients() {
    let h = start(ServerConfig {
        max_handshakes: 8,
        max_per_address: 1000,
        ..ServerConfig::default()
    });
    // 50 connections that never speak, far over the cap of 8.
    let mut mute: Vec<_> = (0..50)
        .map(|_| TcpStream::connect(h.addr).unwrap())
        .collect();
    for _ in 0..3 {
        let mut c = h.client();
        assert_eq!(c.request(1, Op::Ping), Ok(Reply::Done));
    }
    // Most of the silent ones were closed to make room, long before the
    // 10 s handshake deadline.
    let closed = mute.iter_mut().map(is_closed).filter(|c| *c).count();
    assert!(
        closed >= 40,
        "only {closed} of 50 silent connections closed"
    );
}

#[test]
fn the_per_address_cap_refuses_sessions_beyond_it() {
    let h = start(ServerConfig {
        max_per_address: 3,
        ..ServerConfig::default()
    });
    let mut sessions: Vec<_> = (0..3).map(|_| h.client()).collect();
    let mut c = Client::connect(h.addr);
    let fatal = c.expect_closed().expect("a refusal");
    assert_eq!(fatal.code, ErrorCode::Busy);
    assert!(fatal.message.contains("from 127.0.0.1"), "{fatal:?}");
    for s in &mut sessions {
        assert_eq!(s.request(1, Op::Ping), Ok(Reply::Done));
    }
    drop(sessions.pop());
    std::thread::sleep(Duration::from_millis(300));
    let mut c = h.client();
    assert_eq!(c.request(1, Op::Ping), Ok(Reply::Done));
}

#[test]
fn a_subdir_session_sees_only_its_subdirectory() {
    let h = start(ServerConfig::default());
    let root = &h.root;
    std::fs::create_dir_all(root.join("sub/inner")).unwrap();
    std::fs::write(root.join("sub/inner/f"), "inside").unwrap();
    std::fs::write(root.join("secret"), "outside").unwrap();
    symlink("../secret", root.join("sub/up")).unwrap();
    symlink(root.join("secret"), root.join("sub/abs")).unwrap();
    symlink("inner", root.join("sub/alias")).unwrap();
    std::fs::write(root.join("plain"), "x").unwrap();

    let mut c = Client::connect(h.addr);
    c.send_hello_in(PROTOCOL_VERSION, Some(p("sub")));
    c.recv_hello();
    let welcome = c.welcome();
    assert_ne!(
        welcome.export_id, h.export_id,
        "subdir shares the root's id"
    );
    let names = |c: &mut Client, id, dir: &str| match c.request(id, Op::List { path: p(dir) }) {
        Ok(Reply::Entries { entries, .. }) => {
            let mut n: Vec<_> = entries.into_iter().map(|e| e.name).collect();
            n.sort();
            n
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(names(&mut c, 1, ""), ["abs", "alias", "inner", "up"]);
    assert_eq!(names(&mut c, 2, "alias"), ["f"]);
    let (_, data) = c.get(3, "inner/f");
    assert_eq!(data, b"inside");
    // Symlinks out of the subdirectory, relative or absolute, lead nowhere.
    for (id, path) in [(4, "up"), (5, "abs")] {
        c.send(&ClientMsg::Request {
            id,
            op: Op::Get {
                path: p(path),
                have: None,
                sparse: false,
            },
        });
        match c.recv() {
            ServerMsg::Reply { result: Err(e), .. } => {
                assert_eq!(e.code, ErrorCode::Access, "{path}: {e:?}")
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert_eq!(
        c.request(6, Op::Stat { path: p("secret") })
            .unwrap_err()
            .code,
        ErrorCode::NotFound
    );
    // Writes land inside it.
    assert!(matches!(
        c.put(7, "new", b"n", 1),
        Ok(Reply::Changed { meta: Some(_), .. })
    ));
    assert_eq!(std::fs::read(root.join("sub/new")).unwrap(), b"n");
    // The root of the session cannot be removed or renamed either.
    assert_eq!(
        c.request(8, Op::Rmdir { path: p("") }).unwrap_err().code,
        ErrorCode::Busy
    );

    // The same directory by another name has the same id; another one, another.
    let id_of = |dir: &str| {
        let mut c = Client::connect(h.addr);
        c.send_hello_in(PROTOCOL_VERSION, Some(p(dir)));
        c.recv_hello();
        c.welcome().export_id
    };
    assert_eq!(id_of("sub/alias"), id_of("sub/inner"));
    assert_ne!(id_of("sub/inner"), welcome.export_id);
    assert_eq!(id_of("sub"), welcome.export_id);

    // Subdirectories that cannot be served are refused at the handshake.
    for (dir, code) in [
        ("missing", ErrorCode::NotFound),
        ("plain", ErrorCode::NotDir),
        ("sub/up", ErrorCode::NotDir),
    ] {
        let mut c = Client::connect(h.addr);
        c.send_hello_in(PROTOCOL_VERSION, Some(p(dir)));
        c.recv_hello();
        let fatal = c.expect_closed().expect("a Fatal");
        assert_eq!(fatal.code, code, "{dir}: {fatal:?}");
    }

    // `..` and absolute paths cannot even be encoded as a RelPath; sent raw,
    // the hello does not decode and the connection is closed.
    for bad in ["../etc", "/etc", "sub/../.."] {
        let mut payload = vec![0, 0, 0, 0];
        payload.extend_from_slice(&MAGIC);
        payload.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        payload.extend_from_slice(&[3; 32]);
        payload.push(1);
        payload.extend_from_slice(&(bad.len() as u64).to_le_bytes());
        payload.extend_from_slice(bad.as_bytes());
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&payload);
        let mut c = Client::connect(h.addr);
        c.send_raw(&frame);
        let fatal = c.expect_closed().expect("a Fatal");
        assert_eq!(fatal.code, ErrorCode::Protocol, "{bad}: {fatal:?}");
        assert!(fatal.message.contains("bad hello"), "{bad}: {fatal:?}");
    }
}

#[test]
fn a_frame_must_complete_within_the_frame_timeout() {
    let h = start(ServerConfig {
        frame_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    });
    // Idle between complete frames for longer than the frame timeout: fine,
    // that is the idle timeout's business.
    let mut idle = h.client();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(idle.request(1, Op::Ping), Ok(Reply::Done));

    // A frame that starts and then trickles: closed at the frame timeout,
    // though every byte comes well within any per-read timeout.
    let mut c = h.client();
    let mut frame = Vec::new();
    rfmount_proto::write_frame(
        &mut frame,
        &ClientMsg::Request {
            id: 2,
            op: Op::Stat { path: p("f") },
        },
    )
    .unwrap();
    let mut w = c.s.try_clone().unwrap();
    let start = Instant::now();
    let t = std::thread::spawn(move || {
        for b in frame {
            if std::io::Write::write_all(&mut w, &[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let fatal = c.expect_closed().expect("a Fatal");
    let after = start.elapsed();
    assert!(
        fatal.message.contains("stalled in the middle of a frame"),
        "{fatal:?}"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    t.join().unwrap();
    assert_eq!(idle.request(3, Op::Ping), Ok(Reply::Done));
}
