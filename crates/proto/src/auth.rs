//! Shared-secret challenge-response. The secret never crosses the wire: each
//! side contributes a random nonce and the client proves it holds the key by
//! sending a keyed BLAKE3 MAC over both nonces; the server compares in
//! constant time (`blake3::Hash`'s `==`).

/// A 32-byte random challenge.
pub type Nonce = [u8; 32];

/// A fresh random nonce from the OS.
///
/// # Panics
/// Only if the operating system has no randomness source at all, in which
/// case no secure session is possible anyway.
pub fn new_nonce() -> Nonce {
    let mut n = [0u8; 32];
    fill_random(&mut n);
    n
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    // /dev/urandom keeps this crate free of another dependency; it exists on
    // every Linux this project targets.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("the OS randomness source /dev/urandom is unavailable");
}

/// The key derived from a token file's content.
#[derive(Clone)]
pub struct AuthKey([u8; 32]);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

impl AuthKey {
    /// Derives the key from a token. Surrounding whitespace is ignored so a
    /// trailing newline in the token file does not matter.
    pub fn from_token(token: &[u8]) -> Self {
        let token = token.trim_ascii();
        AuthKey(blake3::derive_key(
            "rfmount 2026-11 shared-token auth v1",
            token,
        ))
    }

    /// The proof a client sends for this pair of nonces.
    pub fn proof(&self, server_nonce: &Nonce, client_nonce: &Nonce) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"client-proof");
        h.update(server_nonce);
        h.update(client_nonce);
        *h.finalize().as_bytes()
    }

    /// Checks a client's proof in constant time.
    pub fn verify(&self, server_nonce: &Nonce, client_nonce: &Nonce, proof: &[u8; 32]) -> bool {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"client-proof");
        h.update(server_nonce);
        h.update(client_nonce);
        h.finalize() == blake3::Hash::from_bytes(*proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_with_same_token_and_nonces() {
        let k = AuthKey::from_token(b"secret\n");
        let (s, c) = (new_nonce(), new_nonce());
        let p = k.proof(&s, &c);
        assert!(k.verify(&s, &c, &p));
        assert!(AuthKey::from_token(b"secret").verify(&s, &c, &p));
        assert!(!AuthKey::from_token(b"other").verify(&s, &c, &p));
        assert!(!k.verify(&c, &s, &p));
        assert_ne!(s, c);
    }
}
