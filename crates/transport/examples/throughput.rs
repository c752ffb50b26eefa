//! Moves 1 GiB one way over loopback in 256 KiB writes, plain and TLS, and
//! prints the wall and CPU time of each (both ends run in this process);
//! with `AEAD=1`, only the cost of sealing 1 GiB in 16 KiB records.
//!
//! `cargo run --release -p rfmount-transport --example throughput [MIB]`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rfmount_transport::rustls::pki_types::{PrivatePkcs8KeyDer, ServerName};
use rfmount_transport::{ReadHalf, WriteHalf, handshake, plain, rustls, tls};

fn cpu() -> Duration {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let t = |tv: libc::timeval| {
        Duration::from_micros((tv.tv_sec as u64) * 1_000_000 + tv.tv_usec as u64)
    };
    t(u.ru_utime) + t(u.ru_stime)
}

fn pair(use_tls: bool) -> ((ReadHalf, WriteHalf), (ReadHalf, WriteHalf)) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    if !use_tls {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = listener.accept().unwrap();
        return (plain(c).unwrap(), plain(s).unwrap());
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let server_cfg =
        rustls::ServerConfig::builder_with_provider(rfmount_transport::crypto_provider())
            .with_protocol_versions(rfmount_transport::TLS_VERSIONS)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_cfg =
        rustls::ClientConfig::builder_with_provider(rfmount_transport::crypto_provider())
            .with_protocol_versions(rfmount_transport::TLS_VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut conn =
            rustls::Connection::from(rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap());
        handshake(&mut conn, &s, deadline).unwrap();
        tls(s, conn).unwrap()
    });
    let c = TcpStream::connect(addr).unwrap();
    let mut conn = rustls::Connection::from(
        rustls::ClientConnection::new(
            Arc::new(client_cfg),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap(),
    );
    handshake(&mut conn, &c, deadline).unwrap();
    (tls(c, conn).unwrap(), server.join().unwrap())
}

fn main() {
    if std::env::var_os("AEAD").is_some() {
        raw_aead();
        return;
    }
    let mib: usize = std::env::args().nth(1).map_or(1024, |a| a.parse().unwrap());
    for use_tls in [false, true, false, true] {
        let ((mut cr, _cw), (_sr, sw)) = pair(use_tls);
        let (t0, c0) = (Instant::now(), cpu());
        let sender = thread::spawn(move || {
            let chunk = vec![7u8; 256 * 1024 + 4];
            for _ in 0..mib * 4 {
                (&sw).write_all(&chunk).unwrap();
            }
            sw
        });
        let mut buf = vec![0u8; 256 * 1024 + 4];
        for _ in 0..mib * 4 {
            cr.read_exact(&mut buf[..4]).unwrap();
            cr.read_exact(&mut buf[4..]).unwrap();
        }
        drop(sender.join().unwrap());
        println!(
            "{:5} {mib} MiB: {:.2} s wall, {:.2} s cpu",
            if use_tls { "tls" } else { "plain" },
            t0.elapsed().as_secs_f64(),
            (cpu() - c0).as_secs_f64()
        );
    }
}

#[allow(dead_code)]
fn raw_aead() {
    use aws_lc_rs::aead;
    for alg in [&aead::AES_128_GCM, &aead::AES_256_GCM] {
        let key =
            aead::LessSafeKey::new(aead::UnboundKey::new(alg, &vec![1u8; alg.key_len()]).unwrap());
        let mut rec = vec![3u8; 16 * 1024];
        let t = Instant::now();
        for i in 0..65536u64 {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&i.to_be_bytes());
            let _tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(n),
                    aead::Aad::empty(),
                    &mut rec,
                )
                .unwrap();
        }
        println!(
            "{:?}: 1 GiB sealed in {:.2} s",
            alg,
            t.elapsed().as_secs_f64()
        );
    }
}
