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

    /// The checksum of everything fed so far.
    pub fn finish(&self) -> Checksum {
        Checksum(*self.0.finalize().as_bytes())
    }
}
