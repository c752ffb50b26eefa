//! TLS on the client: which server certificates to trust, and the
//! handshake that turns a connected socket into the connection's halves.
//!
//! Three ways to trust a server, chosen on the command line:
//! - `--tls-ca FILE`: the chain must lead to a certificate in FILE and name
//!   the host the user gave;
//! - `--tls-fingerprint SHA256`: exactly that certificate (its key signs
//!   the handshake, so a copy of the certificate is not enough);
//! - neither: trust on first use, like ssh. The first certificate seen for
//!   `host:port` is remembered in the known-servers file; a different one
//!   later is refused until the user deletes that line.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use log::warn;
use parking_lot::Mutex;
use rfmount_proto::{ErrorCode, ServerMsg, read_frame};
use rfmount_transport::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use rfmount_transport::rustls::crypto::WebPkiSupportedAlgorithms;
use rfmount_transport::rustls::pki_types::pem::PemObject;
use rfmount_transport::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rfmount_transport::rustls::{self, DigitallySignedStruct, SignatureScheme};
use rfmount_transport::{Fingerprint, HandshakeError, ReadHalf, WriteHalf};

use crate::error::RemoteError;

/// Environment-independent name of the known-servers file, under
/// `$XDG_CONFIG_HOME/rfmount/` (or `~/.config/rfmount/`).
pub const KNOWN_SERVERS: &str = "known_servers";

/// How the client decides whether to trust the server's certificate.
#[derive(Clone)]
pub enum Trust {
    /// The chain must lead to one of these roots and name the host.
    Ca {
        /// The roots.
        roots: Arc<rustls::RootCertStore>,
        /// Where they came from, for error messages.
        file: PathBuf,
    },
    /// Exactly the certificate with this fingerprint.
    Pinned(Fingerprint),
    /// Trust on first use, remembered in this file.
    KnownServers(PathBuf),
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Ca { file, .. } => write!(f, "Ca({})", file.display()),
            Trust::Pinned(fp) => write!(f, "Pinned({fp})"),
            Trust::KnownServers(file) => write!(f, "KnownServers({})", file.display()),
        }
    }
}

/// TLS settings of a connection.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Whom to trust.
    pub trust: Trust,
}

impl TlsOptions {
    /// Trusts the certificate authorities in a PEM file.
    ///
    /// # Errors
    /// The file cannot be read or holds no usable certificate.
    pub fn ca_file(path: &Path) -> Result<TlsOptions, RemoteError> {
        let bad = |why: String| RemoteError::Auth(format!("--tls-ca {}: {why}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad("holds no usable PEM certificate".into()));
        }
        Ok(TlsOptions {
            trust: Trust::Ca {
                roots: Arc::new(roots),
                file: path.to_path_buf(),
            },
        })
    }

    /// Trusts exactly the certificate with this fingerprint.
    pub fn pinned(fingerprint: Fingerprint) -> TlsOptions {
        TlsOptions {
            trust: Trust::Pinned(fingerprint),
        }
    }

    /// Trusts on first use, remembering certificates in `known_servers`.
    pub fn trust_on_first_use(known_servers: PathBuf) -> TlsOptions {
        TlsOptions {
            trust: Trust::KnownServers(known_servers),
        }
    }
}

/// `$XDG_CONFIG_HOME/rfmount/known_servers`, or
/// `~/.config/rfmount/known_servers`.
///
/// # Errors
/// When neither variable is set.
pub fn default_known_servers() -> Result<PathBuf, RemoteError> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("rfmount").join(KNOWN_SERVERS));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            RemoteError::Auth(
                "neither XDG_CONFIG_HOME nor HOME is set, so there is no known_servers file; \
                 use --tls-fingerprint, --tls-ca or --tls-known-servers"
                    .into(),
            )
        })?;
    Ok(PathBuf::from(home)
        .join(".config")
        .join("rfmount")
        .join(KNOWN_SERVERS))
}

/// Runs the TLS handshake on a connected socket and checks the server's
/// certificate; `addr` is the `host:port` the user gave.
///
/// # Errors
/// `Auth` for a certificate that is not trusted, `Protocol` for a server
/// that does not speak TLS, `Transport` when the link fails.
pub(crate) fn connect(
    tcp: Arc<TcpStream>,
    opts: &TlsOptions,
    addr: &str,
    deadline: Instant,
) -> Result<(ReadHalf, WriteHalf), RemoteError> {
    let provider = rfmount_transport::crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(rfmount_transport::TLS_VERSIONS)
        .map_err(|e| RemoteError::Protocol(format!("TLS setup: {e}")))?;
    let known = match &opts.trust {
        Trust::KnownServers(file) => Some(KnownServers::lookup(file, addr)?),
        _ => None,
    };
    let pin = match (&opts.trust, &known) {
        (Trust::Pinned(fp), _) => Some(Arc::new(Pin::new(Some(*fp), &provider))),
        (_, Some(k)) => Some(Arc::new(Pin::new(k.fingerprint, &provider))),
        _ => None,
    };
    let config = match (&opts.trust, &pin) {
        (Trust::Ca { roots, .. }, _) => builder
            .with_root_certificates(Arc::clone(roots))
            .with_no_client_auth(),
        (_, Some(pin)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(pin) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth(),
        _ => unreachable!("pinned and known-servers trust both have a verifier"),
    };
    let name = server_name(addr);
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map(rustls::Connection::from)
        .map_err(|e| RemoteError::Protocol(format!("TLS setup: {e}")))?;
    if let Err(f) = rfmount_transport::handshake(&mut conn, &tcp, deadline) {
        return Err(explain(f, opts, addr, pin.as_deref(), known.as_ref()));
    }
    if let (Some(k), Some(pin)) = (&known, &pin) {
        if k.fingerprint.is_none() {
            if let Some(seen) = *pin.seen.lock() {
                k.remember(addr, seen)?;
            }
        }
    }
    rfmount_transport::tls(tcp, conn).map_err(|e| RemoteError::Transport(format!("{addr}: {e}")))
}

/// The name the certificate must carry: the host part of `addr`, which may
/// be an IP address. A host that is no valid name (possible only where the
/// name is not checked) gets a placeholder.
fn server_name(addr: &str) -> ServerName<'static> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("rfserve.invalid").expect("a valid name"))
}

/// Turns a failed handshake into the one line the user needs.
fn explain(
    f: rfmount_transport::HandshakeFailure,
    opts: &TlsOptions,
    addr: &str,
    pin: Option<&Pin>,
    known: Option<&KnownServers>,
) -> RemoteError {
    let seen = pin.and_then(|p| *p.seen.lock());
    if let HandshakeError::Tls(rustls::Error::InvalidCertificate(e)) = &f.error {
        return match (&opts.trust, known, seen) {
            (Trust::Pinned(want), _, Some(got)) => RemoteError::Auth(format!(
                "the TLS certificate of {addr} has fingerprint {got}, not {want} as given with --tls-fingerprint"
            )),
            (Trust::KnownServers(file), Some(k), Some(got)) => RemoteError::Auth(format!(
                "the TLS certificate of {addr} has changed (sha256 now {got}, known {}); \
                 if it was replaced on purpose, delete line {} of {}",
                k.fingerprint.map(|f| f.to_string()).unwrap_or_default(),
                k.line,
                file.display()
            )),
            (Trust::Ca { file, .. }, _, _) => RemoteError::Auth(format!(
                "the TLS certificate of {addr} is not trusted by --tls-ca {}: {}",
                file.display(),
                f.error
            )),
            _ => RemoteError::Auth(format!("the TLS certificate of {addr} was refused: {e:?}")),
        };
    }
    if let Some(&first) = f.first_bytes.first() {
        // TLS records start with a content type of 20 to 23; anything else
        // came from a server speaking plain rfmount.
        if !(0x14..=0x17).contains(&first) {
            if let Ok(ServerMsg::Fatal(e)) = read_frame::<_, ServerMsg>(&mut &f.first_bytes[..]) {
                if e.code == ErrorCode::Busy {
                    return RemoteError::Service(e);
                }
            }
            return RemoteError::Protocol(format!(
                "server {addr} does not speak TLS: start rfserve with --tls, or connect without --tls"
            ));
        }
    }
    match f.error {
        HandshakeError::Tls(e) => {
            RemoteError::Protocol(format!("TLS handshake with {addr} failed: {e}"))
        }
        HandshakeError::Io(e) => {
            RemoteError::Transport(format!("TLS handshake with {addr} failed: {e}"))
        }
        HandshakeError::Timeout(secs) => RemoteError::Transport(format!(
            "TLS handshake with {addr} failed: no answer within {secs:.0} s"
        )),
    }
}

/// Accepts one known certificate (or, with none known yet, any), and still
/// checks that the server holds its key.
#[derive(Debug)]
struct Pin {
    expect: Option<Fingerprint>,
    seen: Mutex<Option<Fingerprint>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pin {
    fn new(expect: Option<Fingerprint>, provider: &rustls::crypto::CryptoProvider) -> Pin {
        Pin {
            expect,
            seen: Mutex::new(None),
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Pin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of(end_entity);
        *self.seen.lock() = Some(got);
        match self.expect {
            Some(want) if want != got => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What the known-servers file says about one `host:port`.
///
/// The file has one `host:port fingerprint` per line; blank lines and lines
/// starting with `#` are ignored; the first line for an address counts.
struct KnownServers {
    file: PathBuf,
    fingerprint: Option<Fingerprint>,
    /// 1-based line of the entry, for the "delete that line" advice.
    line: usize,
}

impl KnownServers {
    fn lookup(file: &Path, addr: &str) -> Result<KnownServers, RemoteError> {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(RemoteError::local(format!("reading {}", file.display()), e)),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            if fields.next() != Some(addr) {
                continue;
            }
            let fp = fields.next().and_then(|f| f.parse().ok()).ok_or_else(|| {
                RemoteError::Auth(format!(
                    "{} line {} is not `HOST:PORT SHA256`; fix or delete it",
                    file.display(),
                    i + 1
                ))
            })?;
            return Ok(KnownServers {
                file: file.to_path_buf(),
                fingerprint: Some(fp),
                line: i + 1,
            });
        }
        Ok(KnownServers {
            file: file.to_path_buf(),
            fingerprint: None,
            line: 0,
        })
    }

    fn remember(&self, addr: &str, fp: Fingerprint) -> Result<(), RemoteError> {
        let fail = |e: io::Error| {
            RemoteError::local(format!("recording {addr} in {}", self.file.display()), e)
        };
        if let Some(dir) = self.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.file)
            .map_err(fail)?;
        // One write of a whole line: concurrent first connections append
        // whole lines, never interleaved ones.
        f.write_all(format!("{addr} {fp}\n").as_bytes())
            .map_err(fail)?;
        warn!(
            "trusting the TLS certificate of {addr} on first use (sha256 {fp}); remembered in {}",
            self.file.display()
        );
        Ok(())
    }
}

/// The TLS options of `rf` and `rfmount`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Encrypt the connection with TLS. Without --tls-ca or
    /// --tls-fingerprint the server's certificate is trusted on first use
    /// and remembered in the known-servers file.
    #[arg(long, global = true)]
    pub tls: bool,
    /// Trust the certificate authorities in this PEM file; the certificate
    /// must name the host given (implies --tls).
    #[arg(
        long,
        value_name = "FILE",
        global = true,
        conflicts_with = "tls_fingerprint"
    )]
    pub tls_ca: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint, as
    /// rfserve prints it (implies --tls).
    #[arg(long, value_name = "SHA256", global = true)]
    pub tls_fingerprint: Option<String>,
    /// Known-servers file for trust on first use (default
    /// $XDG_CONFIG_HOME/rfmount/known_servers or
    /// ~/.config/rfmount/known_servers).
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_known_servers: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS options these arguments ask for; `None` for plain TCP.
    ///
    /// # Errors
    /// A bad fingerprint or CA file, or no place for the known-servers file.
    pub fn options(&self) -> Result<Option<TlsOptions>, RemoteError> {
        if let Some(ca) = &self.tls_ca {
            return TlsOptions::ca_file(ca).map(Some);
        }
        if let Some(fp) = &self.tls_fingerprint {
            let fp = fp
                .parse()
                .map_err(|e| RemoteError::Auth(format!("--tls-fingerprint: {e}")))?;
            return Ok(Some(TlsOptions::pinned(fp)));
        }
        if !self.tls {
            return Ok(None);
        }
        let file = match &self.tls_known_servers {
            Some(f) => f.clone(),
            None => default_known_servers()?,
        };
        Ok(Some(TlsOptions::trust_on_first_use(file)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_servers_finds_the_first_entry_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_servers");
        let a = Fingerprint::of(b"a");
        let b = Fingerprint::of(b"b");
        fs::write(
            &file,
            format!("# comment\n\nhost:1 {a}\n127.0.0.1:2 {b}\nhost:1 {b}\nbad:3 nonsense\n"),
        )
        .unwrap();
        let k = KnownServers::lookup(&file, "host:1").unwrap();
        assert_eq!((k.fingerprint, k.line), (Some(a), 3));
        let k = KnownServers::lookup(&file, "127.0.0.1:2").unwrap();
        assert_eq!(k.fingerprint, Some(b));
        assert_eq!(
            KnownServers::lookup(&file, "other:1").unwrap().fingerprint,
            None
        );
        let e = KnownServers::lookup(&file, "bad:3")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 6"), "{e}");
        // A missing file knows nothing; remembering creates it.
        let fresh = dir.path().join("sub/dir/known_servers");
        let k = KnownServers::lookup(&fresh, "h:9").unwrap();
        k.remember("h:9", a).unwrap();
        assert_eq!(
            KnownServers::lookup(&fresh, "h:9").unwrap().fingerprint,
            Some(a)
        );
    }

    fn failure(first_bytes: Vec<u8>) -> rfmount_transport::HandshakeFailure {
        rfmount_transport::HandshakeFailure {
            error: HandshakeError::Tls(rustls::Error::General("corrupt".into())),
            first_bytes,
        }
    }

    #[test]
    fn plain_answers_to_a_tls_hello_are_explained() {
        let opts = TlsOptions::pinned(Fingerprint::of(b"x"));
        let frame = |e: rfmount_proto::WireError| {
            let mut v = Vec::new();
            rfmount_proto::write_frame(&mut v, &ServerMsg::Fatal(e)).unwrap();
            v
        };
        // The connection cap refuses before TLS, in plain: say so.
        let busy = rfmount_proto::WireError::new(ErrorCode::Busy, "server busy");
        match explain(failure(frame(busy.clone())), &opts, "h:1", None, None) {
            RemoteError::Service(e) => assert_eq!(e, busy),
            other => panic!("{other}"),
        }
        // Any other plain answer: the server does not speak TLS.
        let other = rfmount_proto::WireError::new(ErrorCode::Protocol, "whatever");
        let e = explain(failure(frame(other)), &opts, "h:1", None, None).to_string();
        assert!(e.contains("h:1 does not speak TLS"), "{e}");
        // A TLS alert is a TLS problem, not a plain server.
        let e = explain(
            failure(vec![0x15, 3, 3, 0, 2, 2, 40]),
            &opts,
            "h:1",
            None,
            None,
        );
        assert!(
            e.to_string().contains("TLS handshake with h:1 failed"),
            "{e}"
        );
    }

    #[test]
    fn server_names_come_from_the_host_given() {
        assert_eq!(
            server_name("localhost:9500"),
            ServerName::try_from("localhost").unwrap()
        );
        assert_eq!(
            server_name("[::1]:9500"),
            ServerName::try_from("::1").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:1"),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn tls_arguments_choose_the_trust() {
        let args = TlsArgs {
            tls: true,
            tls_known_servers: Some("/k".into()),
            ..TlsArgs::default()
        };
        assert!(matches!(
            args.options().unwrap().unwrap().trust,
            Trust::KnownServers(ref f) if f == Path::new("/k")
        ));
        assert!(TlsArgs::default().options().unwrap().is_none());
        let fp = Fingerprint::of(b"x");
        let pinned = TlsArgs {
            tls_fingerprint: Some(fp.to_string()),
            ..TlsArgs::default()
        };
        assert!(matches!(
            pinned.options().unwrap().unwrap().trust,
            Trust::Pinned(f) if f == fp
        ));
    }
}
