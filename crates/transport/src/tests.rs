//! The halves over real loopback sockets: data both ways at once, timeouts,
//! shutdown, the handshake deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::*;

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    }
}

fn configs(p: &Pki) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let server = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(TLS_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![p.leaf.clone()], p.key.clone_key())
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca.clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(TLS_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// A connected pair of TLS halves: (client reader, client writer, server
/// reader, server writer).
fn tls_pair() -> (ReadHalf, WriteHalf, ReadHalf, WriteHalf) {
    let (server_cfg, client_cfg) = configs(&pki());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut conn = rustls::Connection::from(rustls::ServerConnection::new(server_cfg).unwrap());
        handshake(&mut conn, &tcp, soon()).unwrap();
        tls(tcp, conn).unwrap()
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn =
        rustls::Connection::from(rustls::ClientConnection::new(client_cfg, name).unwrap());
    handshake(&mut conn, &tcp, soon()).unwrap();
    let (cr, cw) = tls(tcp, conn).unwrap();
    let (sr, sw) = server.join().unwrap();
    (cr, cw, sr, sw)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

fn read_all(mut r: ReadHalf, len: usize) -> Vec<u8> {
    let mut got = vec![0u8; len];
    r.read_exact(&mut got).unwrap();
    got
}

#[test]
fn both_directions_at_once_without_deadlock() {
    // Each side writes far more than the socket buffers hold before it
    // reads: with a lock held across a blocking write this would hang.
    let (cr, cw, sr, sw) = tls_pair();
    let len = 32 << 20;
    let (a, b) = (pattern(len, 1), pattern(len, 2));
    let (a2, b2) = (a.clone(), b.clone());
    let client_send = thread::spawn(move || {
        for part in a2.chunks(300_000) {
            (&cw).write_all(part).unwrap();
        }
        cw
    });
    let server_send = thread::spawn(move || {
        for part in b2.chunks(256 * 1024 + 4) {
            (&sw).write_all(part).unwrap();
        }
        sw
    });
    let server_got = thread::spawn(move || read_all(sr, len));
    let client_got = read_all(cr, len);
    assert!(
        server_got.join().unwrap() == a,
        "server received other bytes"
    );
    assert!(client_got == b, "client received other bytes");
    let _ = (client_send.join().unwrap(), server_send.join().unwrap());
}

#[test]
fn read_timeout_fires_and_the_stream_survives_it() {
    let (mut cr, _cw, _sr, sw) = tls_pair();
    cr.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 10];
    let e = cr.read(&mut buf).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    (&sw).write_all(b"after the timeout").unwrap();
    cr.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = [0u8; 17];
    cr.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after the timeout");
}

#[test]
fn shutdown_wakes_a_blocked_reader_and_close_reads_as_end() {
    let (cr, cw, mut sr, sw) = tls_pair();
    let blocked = thread::spawn(move || {
        let mut cr = cr;
        let mut buf = [0u8; 10];
        cr.read(&mut buf)
    });
    thread::sleep(Duration::from_millis(100));
    cw.shutdown(Shutdown::Both).unwrap();
    let r = blocked.join().unwrap();
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    // The server sees the client's close as the end of the stream.
    let mut buf = [0u8; 10];
    assert_eq!(sr.read(&mut buf).unwrap(), 0);
    drop(sw);
}

#[test]
fn plain_halves_pass_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut r, w) = plain(TcpStream::connect(addr).unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (&w).write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    (&peer).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    (&peer).write_all(b"pong").unwrap();
    r.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
    assert!(!r.is_tls());
}

#[test]
fn read_vec_takes_exactly_its_length_on_either_kind_and_reports_a_short_end() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (mut r, _w) = plain(TcpStream::connect(addr).unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    let data = pattern(300_000, 7);
    let sender = thread::spawn(move || {
        (&peer).write_all(&data).unwrap();
        (&peer).write_all(b"tail").unwrap();
        peer
    });
    assert_eq!(r.read_vec(300_000).unwrap(), pattern(300_000, 7));
    let peer = sender.join().unwrap();
    drop(peer);
    // Four bytes left, then the close: not enough for eight.
    let e = r.read_vec(8).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(r.drained(), Some(300_004));

    let (mut cr, _cw, _sr, sw) = tls_pair();
    let sent = pattern(100_000, 3);
    let writer = thread::spawn(move || (&sw).write_all(&sent).unwrap());
    assert_eq!(cr.read_vec(100_000).unwrap(), pattern(100_000, 3));
    writer.join().unwrap();
}

#[test]
fn handshake_has_one_deadline_and_keeps_what_a_plain_peer_said() {
    let (_, client_cfg) = configs(&pki());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A peer that answers with something else than TLS, then goes quiet.
    let peer = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        (&tcp).write_all(b"\x2a\0\0\0not tls at all").unwrap();
        thread::sleep(Duration::from_millis(300));
        drop(tcp);
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn =
        rustls::Connection::from(rustls::ClientConnection::new(client_cfg, name).unwrap());
    let f = handshake(&mut conn, &tcp, soon()).unwrap_err();
    assert!(matches!(f.error, HandshakeError::Tls(_)), "{:?}", f.error);
    assert!(f.first_bytes.starts_with(b"\x2a\0\0\0not tls"), "{f:?}");
    peer.join().unwrap();

    // A peer that says nothing: the deadline ends the wait.
    let (server_cfg, _) = configs(&pki());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = TcpStream::connect(addr).unwrap();
    let (tcp, _) = listener.accept().unwrap();
    let mut conn = rustls::Connection::from(rustls::ServerConnection::new(server_cfg).unwrap());
    let t = Instant::now();
    let f = handshake(&mut conn, &tcp, Instant::now() + Duration::from_millis(300)).unwrap_err();
    assert!(matches!(f.error, HandshakeError::Timeout(_)), "{f:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn fingerprints_print_and_parse() {
    let f = Fingerprint::of(b"certificate");
    let s = f.to_string();
    assert_eq!(s.len(), 64);
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(s.parse::<Fingerprint>().unwrap(), f);
    let colons = s
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        format!("SHA256:{colons}").parse::<Fingerprint>().unwrap(),
        f
    );
    assert!("abc".parse::<Fingerprint>().is_err());
    assert!(format!("{}+f", &s[..62]).parse::<Fingerprint>().is_err());
    assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
    assert!(!looks_like_tls(&[0x2c, 0, 0, 0]));
}
