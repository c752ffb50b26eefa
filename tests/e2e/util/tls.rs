//! TLS helpers: an `rfserve --tls` with its own state directory and the
//! fingerprint it printed, a certificate authority made on the spot, and a
//! TCP relay that records every byte it forwards.

#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::*;

/// `rfserve --tls` of `root` with a self-signed pair kept in `state`, plus
/// `extra` arguments.
pub fn tls_server(root: impl AsRef<Path>, state: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<std::ffi::OsString> =
        vec!["--tls".into(), "--state-dir".into(), state.into()];
    args.extend(extra.iter().map(Into::into));
    Server::start_os(root, args)
}

/// The fingerprint the server printed at its first start (`rfserve
/// certificate sha256 HEX` on stdout, after the listening line).
pub fn printed_fingerprint(server: &Server) -> String {
    nth_fingerprint(server, 1)
}

/// The fingerprint printed at the `n`th start (1-based); waits for it a
/// little, since stdout is read on another thread.
pub fn nth_fingerprint(server: &Server, n: usize) -> String {
    wait_for(Duration::from_secs(10), || {
        server
            .extra_stdout()
            .lines()
            .filter_map(|l| l.strip_prefix("rfserve certificate sha256 "))
            .nth(n - 1)
            .map(str::to_owned)
    })
    .unwrap_or_else(|| {
        panic!(
            "rfserve printed no certificate fingerprint at start {n}; stdout: {:?}",
            server.extra_stdout()
        )
    })
}

/// PEM files of a certificate authority and of a server certificate it
/// signed for `names`.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Creates the files in `dir`, named `PREFIX-ca.pem`, `PREFIX-cert.pem`,
    /// `PREFIX-key.pem`.
    pub fn generate(dir: &Path, prefix: &str, names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{prefix} test CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let p = Pki {
            ca: dir.join(format!("{prefix}-ca.pem")),
            cert: dir.join(format!("{prefix}-cert.pem")),
            key: dir.join(format!("{prefix}-key.pem")),
        };
        std::fs::write(&p.ca, ca.pem()).unwrap();
        std::fs::write(&p.cert, cert.pem()).unwrap();
        std::fs::write(&p.key, key.serialize_pem()).unwrap();
        p
    }
}

/// Bytes one direction of one relayed connection carried.
type Recording = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on `127.0.0.1:0` to `target` that records, per connection,
/// every byte sent each way. Stops accepting on drop.
pub struct Relay {
    addr: String,
    stop: Arc<AtomicBool>,
    /// (client to server, server to client) per connection.
    streams: Arc<Mutex<Vec<(Recording, Recording)>>>,
}

impl Relay {
    /// Starts relaying to `target` (`HOST:PORT`).
    pub fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let target = target.to_owned();
        {
            let (stop, streams) = (stop.clone(), streams.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let Ok(server) = TcpStream::connect(&target) else {
                                continue;
                            };
                            let up = Arc::new(Mutex::new(Vec::new()));
                            let down = Arc::new(Mutex::new(Vec::new()));
                            streams.lock().unwrap().push((up.clone(), down.clone()));
                            pump(client.try_clone().unwrap(), server.try_clone().unwrap(), up);
                            pump(server, client, down);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Relay {
            addr,
            stop,
            streams,
        }
    }

    /// `127.0.0.1:PORT` to connect to instead of the target.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything recorded so far: (client to server, server to client),
    /// one pair per connection.
    pub fn recorded(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .map(|(u, d)| (u.lock().unwrap().clone(), d.lock().unwrap().clone()))
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread, recording the bytes; passes a close
/// on as a half-close.
fn pump(mut from: TcpStream, to: TcpStream, record: Recording) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if (&to).write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
        let _ = from.shutdown(Shutdown::Read);
    });
}

/// True when `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
