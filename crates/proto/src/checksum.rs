//! Whole-file checksums: BLAKE3, chosen because it runs at several GB/s on
//! one core (a transfer is never checksum-bound) and is a real hash, so a
//! mixed-up cache file cannot pass by accident.

use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 digest of a whole file's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Checksum(pub [u8; 32]);

impl std::fmt::Debug for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Incremental checksum over a stream of chunks.
#[derive(Default)]
pub struct Hasher(blake3::Hasher);

impl Hasher {
    /// A hasher over no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// Feeds `len` zero bytes: a hole of a sparse transfer, which the
    /// checksum covers as zeros.
    pub fn update_zeros(&mut self, mut len: u64) {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while len > 0 {
            let n = len.min(ZEROS.len() as u64) as usize;
            self.0.update(&ZEROS[..n]);
            len -= n as u64;
        }
    }

    /// The checksum of everything fed so far.
    pub fn finish(&self) -> Checksum {
        Checksum(*self.0.finalize().as_bytes())
    }
}
