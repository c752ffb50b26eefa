//! The byte stream under rfmount's frames: a TCP socket, or TLS over one,
//! split into a [`ReadHalf`] for a connection's reader thread and a
//! [`WriteHalf`] shared by its writers.
//!
//! Both ends of rfmount keep one thread blocked reading a connection while
//! other threads write to it, and rely on socket options for their timing:
//! read timeouts for idle detection and keep-alive, write timeouts for a
//! peer that stopped reading, `shutdown(2)` to wake a blocked reader. The
//! halves keep all of that working with TLS because every blocking read
//! and write is still a plain call on the socket: TLS state sits behind a
//! mutex that is only held to encrypt or decrypt bytes already in memory,
//! never across a socket call. A reader blocked on a quiet socket therefore
//! never stops a writer, and a writer blocked on a full socket never stops
//! the reader from draining the other direction (which would deadlock two
//! peers that both send large streams at once).
//!
//! ```no_run
//! use std::io::Write;
//! use std::net::TcpStream;
//! let tcp = TcpStream::connect("127.0.0.1:9500")?;
//! let (mut reader, writer) = rfmount_transport::plain(tcp)?;
//! (&writer).write_all(b"...")?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

mod fingerprint;
mod handshake;
mod split;

pub use fingerprint::{Fingerprint, FingerprintError};
pub use handshake::{HandshakeError, HandshakeFailure, handshake};
pub use split::{ReadHalf, WriteHalf, plain, tls};

/// The TLS library, re-exported so that both ends build configurations
/// against the very version this crate drives.
pub use rustls;

/// The crypto provider every rfmount TLS configuration uses (aws-lc-rs: no
/// OpenSSL, builds with `cc` alone), preferring AES-128-GCM: the suite
/// TLS 1.3 requires everyone to implement, and with 10 AES rounds instead
/// of 14 the cheapest per byte on machines with AES instructions, which
/// matters when one core encrypts a whole file.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    std::sync::Arc::new(provider)
}

/// TLS versions rfmount speaks: 1.3 only. Both ends are ours, so there is
/// no older peer to accommodate, and 1.3 has one round trip less.
pub const TLS_VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// True when `bytes` (the first a peer sent) start a TLS handshake record:
/// content type 22, then a 3.x record version. An rfmount hello frame does
/// not start like that: its length (a little-endian `u32`) would be 790
/// bytes or more, and a hello is a few dozen.
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    match bytes {
        [] => false,
        [first] => *first == 0x16,
        [first, second, ..] => *first == 0x16 && *second == 0x03,
    }
}

#[cfg(test)]
mod tests;
