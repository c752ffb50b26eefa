//! TLS on the server: the certificate and key (given, or a self-signed pair
//! created once and kept in the state directory), and the first step of
//! every connection, which turns the accepted socket into the halves the
//! session reads and writes.
//!
//! Every server looks at the first bytes a client sends. A plain client
//! at a TLS server gets a plain `Fatal` frame it can print ("requires TLS")
//! instead of a TLS alert it would call garbage; a TLS client at a plain
//! server gets the same kind of frame, which tells it the server does not
//! speak TLS.

use std::fs;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rfmount_proto::{ErrorCode, ServerMsg, WireError};
use rfmount_transport::rustls::pki_types::pem::PemObject;
use rfmount_transport::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rfmount_transport::{Fingerprint, ReadHalf, WriteHalf, looks_like_tls, rustls};

use crate::config::ServerConfig;
use crate::ratelog::Kind;

/// Name of the self-signed certificate in the state directory.
pub const CERT_FILE: &str = "tls-cert.pem";
/// Name of its private key in the state directory.
pub const KEY_FILE: &str = "tls-key.pem";

/// What a TLS server presents: its configuration and its certificate's
/// fingerprint, which clients pin.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Loads a certificate chain (leaf first) and its private key, both PEM.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the key does
    /// not belong to the certificate.
    pub fn from_pem_files(cert: &Path, key: &Path) -> anyhow::Result<TlsServer> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
        if chain.is_empty() {
            bail!("{} holds no PEM certificate", cert.display());
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read a private key from {}", key.display()))?;
        let fingerprint = Fingerprint::of(&chain[0]);
        let mut config =
            rustls::ServerConfig::builder_with_provider(rfmount_transport::crypto_provider())
                .with_protocol_versions(rfmount_transport::TLS_VERSIONS)
                .context("TLS setup")?
                .with_no_client_auth()
                .with_single_cert(chain, key_der)
                .with_context(|| {
                    format!(
                        "the key in {} does not fit the certificate in {}",
                        key.display(),
                        cert.display()
                    )
                })?;
        // Every connection runs a full handshake; tickets would only cost.
        config.send_tls13_tickets = 0;
        Ok(TlsServer {
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// The certificate and key kept in `state_dir`, created there (a
    /// self-signed pair, key readable by the owner only) on first use.
    /// Returns whether the pair was just created.
    ///
    /// # Errors
    /// The directory cannot be created or written, or only the certificate
    /// is there.
    pub fn self_signed(state_dir: &Path) -> anyhow::Result<(TlsServer, bool)> {
        let cert = state_dir.join(CERT_FILE);
        let key = state_dir.join(KEY_FILE);
        // The certificate is written last: without it, a key is a leftover
        // of an interrupted first start and is simply replaced.
        if cert.exists() {
            if !key.exists() {
                bail!(
                    "{} exists but {} does not; remove the certificate to have a new pair made",
                    cert.display(),
                    key.display()
                );
            }
            return Ok((TlsServer::from_pem_files(&cert, &key)?, false));
        }
        create_pair(state_dir, &cert, &key)?;
        Ok((TlsServer::from_pem_files(&cert, &key)?, true))
    }

    /// SHA-256 fingerprint of the certificate presented.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

fn create_pair(dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let mut names = vec!["localhost".to_owned()];
    if let Some(host) = hostname() {
        names.push(host);
    }
    let key_pair = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rfserve self-signed");
    let certificate = params
        .self_signed(&key_pair)
        .context("cannot make a self-signed certificate")?;
    write_new(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, certificate.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Writes `path` whole or not at all: a temporary file, fsynced, renamed.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let result = (|| -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn hostname() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "localhost").then(|| name.to_owned())
}

/// Why [`accept`] ended a connection: how loud, and the reason for the
/// session's log line (which goes through the rate-limited log: refused
/// connections may be a flood).
pub(crate) struct Refused {
    pub(crate) level: log::Level,
    /// Warnings are about TLS itself, the rest about the connection.
    pub(crate) kind: Kind,
    pub(crate) reason: String,
}

fn refused(level: log::Level, reason: impl Into<String>) -> Refused {
    Refused {
        level,
        kind: if level == log::Level::Warn {
            Kind::Tls
        } else {
            Kind::Handshake
        },
        reason: reason.into(),
    }
}

/// Turns an admitted socket into the session's halves: as it is for a
/// plain server, after the TLS handshake for a TLS one. Both halves share
/// `stream` (no descriptor is duplicated), so the connection table's
/// shutdown of it wakes them, and the TLS handshake too.
///
/// `deadline` is the end of the whole handshake, counted from the accept:
/// TLS takes its share of it rather than a fresh one. Either server first
/// waits (within it) for the client's first bytes, to answer a client of
/// the other kind with a plain `Fatal` frame it understands right away. A
/// plain server would otherwise read a TLS hello's first bytes as a frame
/// too large before authentication.
pub(crate) fn accept(
    stream: &Arc<TcpStream>,
    cfg: &ServerConfig,
    deadline: Instant,
) -> Result<(ReadHalf, WriteHalf), Refused> {
    let setup = |e: io::Error| refused(log::Level::Info, format!("cannot set up connection: {e}"));
    let limit = cfg.handshake();
    let no_hello = || {
        refused(
            log::Level::Info,
            format!("no hello within {} s", limit.as_secs_f32()),
        )
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(no_hello());
    }
    stream.set_read_timeout(Some(left)).map_err(setup)?;
    let mut first = [0u8; 2];
    let client_tls = match stream.peek(&mut first) {
        Ok(0) => return Err(refused(log::Level::Info, "closed before the hello")),
        Ok(n) => looks_like_tls(&first[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(no_hello());
        }
        Err(e) => {
            return Err(refused(
                log::Level::Info,
                format!("read failed before the hello: {e}"),
            ));
        }
    };
    let Some(tls) = &cfg.tls else {
        if client_tls {
            refuse(
                stream,
                "this server does not speak TLS: connect without --tls",
            );
            return Err(refused(
                log::Level::Warn,
                "refused: the client speaks TLS and this server runs without --tls",
            ));
        }
        return rfmount_transport::plain(Arc::clone(stream)).map_err(setup);
    };
    if !client_tls {
        refuse(stream, "this server requires TLS: connect with --tls");
        return Err(refused(
            log::Level::Warn,
            "refused: the client does not speak TLS and this server requires it",
        ));
    }
    let mut conn = rustls::ServerConnection::new(Arc::clone(&tls.config))
        .map(rustls::Connection::from)
        .map_err(|e| refused(log::Level::Warn, format!("TLS setup failed: {e}")))?;
    if let Err(f) = rfmount_transport::handshake(&mut conn, stream, deadline) {
        return Err(refused(
            log::Level::Warn,
            format!("TLS handshake failed: {}", f.error),
        ));
    }
    rfmount_transport::tls(Arc::clone(stream), conn).map_err(setup)
}

/// Answers a client of the other kind (plain or TLS) with a plain `Fatal`
/// frame: a plain client prints it, a TLS client sees that it is not TLS.
fn refuse(stream: &TcpStream, tell: &str) {
    let why = WireError::new(ErrorCode::Protocol, tell);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut s = stream;
    let _ = rfmount_proto::write_frame(&mut s, &ServerMsg::Fatal(why));
    crate::session::linger(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (first, created) = TlsServer::self_signed(&state).unwrap();
        assert!(created);
        let key_mode = fs::metadata(state.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o077, 0, "key readable by others: {key_mode:o}");
        let (again, created) = TlsServer::self_signed(&state).unwrap();
        assert!(!created);
        assert_eq!(first.fingerprint(), again.fingerprint());
        // The printed fingerprint is that of the file's certificate.
        let pem = fs::read(state.join(CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(Fingerprint::of(&der), first.fingerprint());
    }

    #[test]
    fn a_leftover_key_is_replaced_but_a_lone_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path();
        let (first, _) = TlsServer::self_signed(state).unwrap();
        // An interrupted first start leaves a key without certificate.
        fs::remove_file(state.join(CERT_FILE)).unwrap();
        let (second, created) = TlsServer::self_signed(state).unwrap();
        assert!(created);
        assert_ne!(first.fingerprint(), second.fingerprint());
        fs::remove_file(state.join(KEY_FILE)).unwrap();
        let e = format!("{:#}", TlsServer::self_signed(state).unwrap_err());
        assert!(e.contains("does not"), "{e}");
    }

    #[test]
    fn bad_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "not pem at all\n").unwrap();
        let (_, _) = TlsServer::self_signed(dir.path()).unwrap();
        let cert = dir.path().join(CERT_FILE);
        let e = format!("{:#}", TlsServer::from_pem_files(&junk, &cert).unwrap_err());
        assert!(e.contains("junk.pem"), "{e}");
        let e = format!("{:#}", TlsServer::from_pem_files(&cert, &junk).unwrap_err());
        assert!(e.contains("junk.pem"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = format!(
            "{:#}",
            TlsServer::from_pem_files(&missing, &cert).unwrap_err()
        );
        assert!(e.contains("missing.pem"), "{e}");
    }
}
