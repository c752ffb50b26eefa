//! The last few chunks of a running fetch, kept in memory after they were
//! written to the cache file. The kernel's reads of a file being fetched
//! wait for the newest bytes, so nearly every one of them falls inside a
//! chunk that has just arrived: answering it from that buffer saves a
//! `pread` of the cache file per read (measured: a tenth of rfmount's CPU
//! in a cold read of a large file).
//!
//! Only bytes that have landed in the cache file are here, and they are
//! dropped when the fetch ends, before its file becomes the cache entry
//! that a writer may change: until then nothing else writes that file (an
//! open for writing waits for the fetch to end).

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::Arc;

/// Chunks kept per fetch (2 MiB of 256 KiB chunks): a read that waited
/// for its range is answered from the newest one; one that came late, when
/// the fetch runs ahead of the reader, from the few before it (the
/// kernel's read-ahead asks up to 1 MiB ahead); a reader further behind
/// reads the cache file.
const KEPT: usize = 8;

/// Recent chunks of one fetch, by offset in the file.
#[derive(Default)]
pub(super) struct RecentChunks {
    chunks: VecDeque<(u64, Arc<Vec<u8>>)>,
}

impl RecentChunks {
    /// `data` has landed at `offset`; the oldest chunk beyond [`KEPT`] is
    /// let go.
    pub(super) fn push(&mut self, offset: u64, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if self.chunks.len() == KEPT {
            self.chunks.pop_front();
        }
        self.chunks.push_back((offset, Arc::new(data)));
    }

    /// The bytes of `[offset, offset + len)` when one kept chunk holds all
    /// of them; at the end of the file (`size`) fewer, as a `pread` would
    /// return.
    pub(super) fn get(&self, offset: u64, len: usize, size: u64) -> Option<ReadBuf> {
        let want_end = offset.saturating_add(len as u64).min(size);
        if want_end <= offset {
            return None;
        }
        self.chunks.iter().rev().find_map(|(at, data)| {
            let end = at + data.len() as u64;
            if offset < *at || want_end > end {
                return None;
            }
            let start = usize::try_from(offset - at).ok()?;
            let stop = usize::try_from(want_end - at).ok()?;
            Some(ReadBuf::Chunk {
                chunk: Arc::clone(data),
                start,
                end: stop,
            })
        })
    }

    /// The fetch ended: nothing is answered from memory any more.
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
    }
}

/// What a read returns: its own buffer, or a range of a kept chunk.
pub enum ReadBuf {
    /// Read from the cache file.
    Owned(Vec<u8>),
    /// Part of a chunk that just arrived.
    Chunk {
        /// The chunk, shared with the fetch.
        chunk: Arc<Vec<u8>>,
        /// Where the read's bytes start in it.
        start: usize,
        /// Where they end.
        end: usize,
    },
}

impl Deref for ReadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Owned(v) => v,
            ReadBuf::Chunk { chunk, start, end } => &chunk[*start..*end],
        }
    }
}

impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadBuf({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(at: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| at.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn a_read_inside_one_kept_chunk_is_answered_from_it() {
        let mut r = RecentChunks::default();
        r.push(0, chunk(0, 100));
        r.push(100, chunk(100, 100));
        assert_eq!(&*r.get(110, 20, 1000).unwrap(), &chunk(110, 20)[..]);
        assert_eq!(&*r.get(0, 100, 1000).unwrap(), &chunk(0, 100)[..]);
        // Across two chunks, or beyond what arrived: the cache file.
        assert!(r.get(90, 20, 1000).is_none());
        assert!(r.get(150, 100, 1000).is_none());
        assert!(r.get(200, 1, 1000).is_none());
    }

    #[test]
    fn at_the_end_of_the_file_a_read_gets_what_is_there() {
        let mut r = RecentChunks::default();
        r.push(0, chunk(0, 100));
        assert_eq!(&*r.get(50, 4096, 100).unwrap(), &chunk(50, 50)[..]);
        assert!(r.get(100, 10, 100).is_none());
    }

    #[test]
    fn only_the_newest_chunks_are_kept_and_clear_drops_them() {
        let mut r = RecentChunks::default();
        for i in 0..(KEPT as u64 + 2) {
            r.push(i * 10, chunk(i as u8 * 10, 10));
        }
        assert!(r.get(0, 10, 1000).is_none());
        assert!(r.get(10, 10, 1000).is_none());
        let last = (KEPT as u64 + 1) * 10;
        assert!(r.get(last, 10, 1000).is_some());
        r.clear();
        assert!(r.get(last, 10, 1000).is_none());
    }
}
