//! rfserve's availability limits against real processes and raw sockets:
//! floods of silent and slow-loris connections do not lock a real client out
//! and are closed within the handshake deadline, a server started under
//! `ulimit -n 1024` serves 1,000 sessions, a trickling upload cannot make
//! another upload hit ENOSPC, failed logins back off, peers of protocol
//! version 1 get a clear error either way, and a session confined to a
//! subdirectory sees nothing else.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use rfmount_client::{ConnectConfig, Remote, TcpRemote};
use rfmount_proto::{
    ClientHello, ClientMsg, ErrorCode, MAGIC, Op, PROTOCOL_VERSION, RelPath, Reply, ServerMsg,
    Welcome, new_nonce, read_frame, write_frame,
};

use crate::util::*;

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn hello_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    write_frame(
        &mut v,
        &ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce: new_nonce(),
            subdir: None,
            client_id: None,
        }),
    )
    .unwrap();
    v
}

/// A full handshake on a raw socket to `addr` (no token).
fn raw_session(addr: &str) -> (TcpStream, Welcome) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(&hello_bytes()).unwrap();
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Hello(h)) => assert!(h.auth_challenge.is_none()),
        other => panic!("expected hello, got {other:?}"),
    }
    match read_frame::<_, ServerMsg>(&mut c) {
        Ok(ServerMsg::Welcome(w)) => (c, w),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// Without blocking: has the server closed `c`? (Frames it sent are skipped.)
fn closed_now(c: &mut TcpStream) -> bool {
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break true,
        }
    };
    c.set_nonblocking(false).unwrap();
    closed
}

/// How long `rf ls` and `rf get` of `big` take against `srv`.
fn good_client_round(srv: &Server, local: &TestDir, big: &Path, tag: &str) -> Duration {
    let start = Instant::now();
    let listing = srv
        .rf("ls", [] as [&str; 0])
        .timeout(Duration::from_secs(60))
        .stdout();
    assert!(listing.contains("big.bin"), "{listing}");
    let copy = local.join(format!("big.{tag}"));
    srv.rf("get", ["big.bin", s(&copy)])
        .timeout(Duration::from_secs(60))
        .ok();
    assert_same_file(big, &copy);
    fs::remove_file(&copy).unwrap();
    start.elapsed()
}

#[test]
fn floods_of_silent_and_slow_connections_do_not_lock_clients_out() {
    raise_own_nofile();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let big = root.write_random("big.bin", 10 * MIB, 5);
    let deadline = Duration::from_secs(3);
    let srv = Server::start(root.path(), &["--handshake-timeout", "3"]);
    let idle_round = good_client_round(&srv, &local, &big, "idle");

    // 1,100 connections that never send a byte...
    let mut silent: Vec<(TcpStream, Instant)> = (0..1100)
        .map(|i| {
            let c = TcpStream::connect(srv.addr())
                .unwrap_or_else(|e| panic!("silent connection {i}: {e}"));
            (c, Instant::now())
        })
        .collect();
    // ...and 500 that send a hello one byte every 200 ms.
    let hello = hello_bytes();
    let mut loris: Vec<(TcpStream, Instant, usize, Option<Duration>)> = (0..500)
        .map(|i| {
            let c = TcpStream::connect(srv.addr())
                .unwrap_or_else(|e| panic!("slow connection {i}: {e}"));
            (c, Instant::now(), 0, None)
        })
        .collect();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            for (c, opened, sent, closed) in &mut loris {
                if closed.is_some() {
                    continue;
                }
                if closed_now(c) || c.write_all(&hello[*sent..*sent + 1]).is_err() {
                    *closed = Some(opened.elapsed());
                    continue;
                }
                *sent = (*sent + 1).min(hello.len() - 1);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        loris
    });

    // The real client keeps working throughout.
    let mut rounds = Vec::new();
    for i in 0..3 {
        rounds.push(good_client_round(&srv, &local, &big, &format!("flood{i}")));
    }
    let bound = (idle_round * 10).max(Duration::from_secs(10));
    for r in &rounds {
        assert!(
            *r < bound,
            "ls + get of 10 MiB took {r:?} under the flood ({idle_round:?} idle)"
        );
    }

    // Every slow-loris connection was closed within the handshake deadline
    // (plus the 200 ms this test takes to notice).
    let loris = trickle.join().unwrap();
    let slack = Duration::from_millis(1500);
    for (i, (_, _, sent, closed)) in loris.iter().enumerate() {
        let after = closed.unwrap_or_else(|| panic!("slow connection {i} still open after 12 s"));
        assert!(
            after < deadline + slack,
            "slow connection {i} closed after {after:?} ({sent} bytes sent)"
        );
    }
    // So was every silent one.
    for (i, (c, opened)) in silent.iter_mut().enumerate() {
        assert!(closed_now(c), "silent connection {i} still open");
        let _ = opened;
    }
    let log = srv.log();
    assert!(!log.contains("panicked"), "{}", tail(&log, 40));
    // Rate-limited: not two lines per flooding connection.
    let lines = log
        .lines()
        .filter(|l| l.contains("closed during the handshake"))
        .count();
    assert!(lines < 100, "{lines} lines about failed handshakes");
}

#[test]
fn slow_loris_connections_are_closed_at_the_handshake_deadline() {
    // Fewer than the per-address cap, so none is closed to make room: each
    // must be closed by the deadline itself, not by the bytes stopping.
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &["--handshake-timeout", "2"]);
    let hello = hello_bytes();
    let mut conns: Vec<(TcpStream, Instant, usize, Option<Duration>)> = (0..50)
        .map(|_| {
            (
                TcpStream::connect(srv.addr()).unwrap(),
                Instant::now(),
                0,
                None,
            )
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) && conns.iter().any(|c| c.3.is_none()) {
        for (c, opened, sent, closed) in &mut conns {
            if closed.is_some() {
                continue;
            }
            if closed_now(c) || c.write_all(&hello[*sent..*sent + 1]).is_err() {
                *closed = Some(opened.elapsed());
                continue;
            }
            *sent = (*sent + 1).min(hello.len() - 1);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (i, (_, _, sent, closed)) in conns.iter().enumerate() {
        let after = closed.unwrap_or_else(|| panic!("connection {i} still open after 8 s"));
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_millis(3500),
            "connection {i} closed after {after:?} ({sent} bytes sent)"
        );
    }
    // The server said why, once per 10 s rather than 50 times.
    let n = srv.wait_count(
        "handshake not complete within 2 s",
        1,
        Duration::from_secs(5),
    );
    assert!((1..=5).contains(&n), "{n} lines\n{}", tail(&srv.log(), 20));
    srv.rf("ls", [] as [&str; 0]).ok();
}

#[test]
fn a_server_under_ulimit_1024_serves_1000_sessions() {
    raise_own_nofile();
    let root = TestDir::new("root");
    root.write("f", b"x");
    let srv = LimitedServer::start(root.path(), 1024, &["--max-per-address", "2000"]);
    let limits = fs::read_to_string(format!("/proc/{}/limits", srv.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1024", "1024"],
        "{line}"
    );
    let mut sessions: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let (c, _) = raw_session(&srv.addr());
            let _ = i;
            c
        })
        .collect();
    // All 1,000 at once, each answering.
    for (i, c) in sessions.iter_mut().enumerate() {
        write_frame(
            c,
            &ClientMsg::Request {
                id: 1,
                op: Op::Stat {
                    path: RelPath::new("f").unwrap(),
                },
            },
        )
        .unwrap();
        match read_frame::<_, ServerMsg>(c) {
            Ok(ServerMsg::Reply {
                result: Ok(Reply::Meta(m)),
                ..
            }) => assert_eq!(m.size, 1),
            other => panic!("session {i}: {other:?}"),
        }
    }
    assert!(
        !srv.log().contains("accept failed"),
        "{}",
        tail(&srv.log(), 20)
    );
}

#[test]
fn a_trickling_put_cannot_make_another_upload_fail_with_enospc() {
    let Some(disk) = SmallDisk::mount(20) else {
        assert!(!in_ci(), "CI runs as root and must mount a tmpfs");
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let local = TestDir::new("local");
    let srv = Server::start(disk.path(), &[]);
    // The trickler announces 15 MiB of a 20 MiB disk and sends 4 KiB every
    // 100 ms.
    let (mut slow, _) = raw_session(&srv.addr());
    write_frame(
        &mut slow,
        &ClientMsg::Request {
            id: 1,
            op: Op::Put {
                path: RelPath::new("slow.bin").unwrap(),
                size: 15 * MIB,
                mode: None,
                mtime: None,
                owner: None,
                ext: Default::default(),
            },
        },
    )
    .unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..30 {
            if write_frame(
                &mut slow,
                &ClientMsg::PutData {
                    id: 1,
                    data: vec![1; 4096],
                },
            )
            .is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        slow
    });
    // The trickler's upload is under way before the real one starts.
    let started = wait_for(Duration::from_secs(10), || {
        server_has_open_upload(srv.pid(), disk.path()).then_some(())
    });
    assert!(started.is_some(), "the trickling upload did not start");
    let mine = local.write_random("mine.bin", 10 * MIB, 9);
    srv.rf("put", [s(&mine)])
        .timeout(Duration::from_secs(60))
        .ok();
    assert_same_file(&mine, &disk.path().join("mine.bin"));
    let slow = trickle.join().unwrap();
    drop(slow);
    let clean = wait_for(Duration::from_secs(10), || {
        (!server_has_open_upload(srv.pid(), disk.path())
            && find_with_prefix(disk.path(), UPLOAD_TEMP_PREFIX).is_empty())
        .then_some(())
    });
    assert!(clean.is_some(), "the trickler's temporary was left behind");
    assert!(!disk.path().join("slow.bin").exists());
}

#[test]
fn failed_logins_back_off_and_say_so() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("a.txt", b"x");
    let token = local.write("token", "right\n");
    let wrong = local.write("wrong", "wrong\n");
    let srv = Server::start_os(
        root.path(),
        vec![
            "--token-file".into(),
            token.clone().into_os_string(),
            "--auth-backoff-ms".into(),
            "20000".into(),
        ],
    );
    for _ in 0..4 {
        srv.rf("ls", ["--token-file", s(&wrong)]).fails();
    }
    let out = srv.rf("ls", ["--token-file", s(&token)]).fails();
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("too many failed authentications from 127.0.0.1; try again in"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn version_1_peers_get_a_clear_error_both_ways() {
    // A version-1 server (its hello from the version-1 golden bytes:
    // export id "abc", read-only, default limits, no challenge).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let fake = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut len = [0u8; 4];
        c.read_exact(&mut len).unwrap();
        let mut hello = vec![0u8; u32::from_le_bytes(len) as usize];
        c.read_exact(&mut hello).unwrap();
        let mut frame = 41u32.to_le_bytes().to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(b"RFMT");
        frame.extend_from_slice(&1u32.to_le_bytes());
        frame.extend_from_slice(&3u64.to_le_bytes());
        frame.extend_from_slice(b"abc");
        frame.push(1);
        for v in [2_097_152u32, 262_144, 64, 300] {
            frame.extend_from_slice(&v.to_le_bytes());
        }
        frame.push(0);
        c.write_all(&frame).unwrap();
        // Version 1 closes quietly after a mismatch; so does this.
        hello
    });
    let mut rf = TestCommand::rf();
    rf.arg("ls").arg(&addr);
    let out = rf.fails();
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "server {addr} speaks protocol 1, this client speaks {PROTOCOL_VERSION}"
        )),
        "{err}"
    );
    let their_hello = fake.join().unwrap();
    assert_eq!(&their_hello[8..12], &PROTOCOL_VERSION.to_le_bytes());

    // A version-1 client (its hello: no subdir field) at a real rfserve
    // gets a hello in the version-1 layout naming version 2, then a close.
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let mut c = TcpStream::connect(srv.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut v1 = 44u32.to_le_bytes().to_vec();
    v1.extend_from_slice(&[0, 0, 0, 0]);
    v1.extend_from_slice(b"RFMT");
    v1.extend_from_slice(&1u32.to_le_bytes());
    v1.extend_from_slice(&[7; 32]);
    c.write_all(&v1).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert_eq!(got.len(), 4 + 38, "{got:?}");
    assert_eq!(
        &got[4..16],
        &[0, 0, 0, 0, b'R', b'F', b'M', b'T', 2, 0, 0, 0]
    );
    assert!(
        got[16..].iter().all(|b| *b == 0),
        "export details leaked: {got:?}"
    );
    let n = srv.wait_count(
        "client speaks protocol 1, server speaks 2",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(n, 1, "{}", tail(&srv.log(), 10));
}

#[test]
fn a_subdir_session_through_the_client_sees_only_its_subdirectory() {
    let root = TestDir::new("root");
    root.write("top-secret.txt", b"outside");
    root.write("share/doc.txt", b"inside");
    root.write("share/deep/f.txt", b"deeper");
    symlink("../top-secret.txt", root.join("share/escape")).unwrap();
    let srv = Server::start(root.path(), &[]);

    let whole = TcpRemote::connect(ConnectConfig::new(srv.addr())).unwrap();
    let sub = TcpRemote::connect(
        ConnectConfig::new(srv.addr())
            .with_subdir("/share/")
            .unwrap(),
    )
    .unwrap();
    assert_ne!(whole.export().export_id, sub.export().export_id);
    let mut names: Vec<_> = sub
        .list(&RelPath::root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, ["deep", "doc.txt", "escape"]);
    let err = sub
        .stat(&RelPath::new("top-secret.txt").unwrap())
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    let mut out = Vec::new();
    let err = sub
        .get(&RelPath::new("escape").unwrap(), None, &mut out)
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Access), "{err}");
    assert!(out.is_empty());
    let mut out = Vec::new();
    sub.get(&RelPath::new("deep/f.txt").unwrap(), None, &mut out)
        .unwrap();
    assert_eq!(out, b"deeper");
    assert!(ConnectConfig::new("x:1").with_subdir("../etc").is_err());

    // A subdirectory that is not there is one clear error.
    let err = TcpRemote::connect(ConnectConfig::new(srv.addr()).with_subdir("nope").unwrap())
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound), "{err}");
    assert!(
        err.to_string().contains("cannot serve subdirectory"),
        "{err}"
    );
}
