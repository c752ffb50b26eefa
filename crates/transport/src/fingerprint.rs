//! SHA-256 fingerprints of certificates, the way users see, pin and store
//! them.

use std::fmt;
use std::str::FromStr;

/// The SHA-256 digest of a certificate's DER encoding. Shown as 64
/// lowercase hex digits; parsed from that, in either case, with or without
/// colons and an optional `sha256:` prefix, so that `openssl x509 -noout
/// -fingerprint -sha256` output can be pasted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// A string that is not a SHA-256 fingerprint.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a SHA-256 fingerprint (expected 64 hex digits, colons allowed)")]
pub struct FingerprintError(String);

impl Fingerprint {
    /// The fingerprint of a certificate in DER form.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Fingerprint, FingerprintError> {
        let bad = || FingerprintError(s.to_owned());
        let t = s.trim();
        let t = match t.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sha256:") || p.eq_ignore_ascii_case("sha256=") => {
                &t[7..]
            }
            _ => t,
        };
        let digits: Vec<u8> = t.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            bytes[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(bytes))
    }
}
