//! Helpers of partial and sparse uploads ([`crate::Remote::put_layout`]):
//! reading a file by offset, and the checksum of its whole content.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use rfmount_proto::{Checksum, Hasher};

/// A sequential reader over a file shared by reference: reads by offset,
/// so it never moves (or depends on) the file's own position.
pub(crate) struct AtReader<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> AtReader<'a> {
    pub(crate) fn new(file: &'a File) -> Self {
        AtReader { file, pos: 0 }
    }
}

impl Read for AtReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Fills `buf` from `file` at `offset`; a file shorter than that is an
/// error (it shrank while being uploaded).
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "file shrank while being uploaded")
        } else {
            e
        }
    })
}

/// The checksum of the first `size` bytes of `file`, as the server computes
/// it over the content it builds.
pub(crate) fn checksum_of(file: &File, size: u64) -> io::Result<Checksum> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        read_exact_at(file, &mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finish())
}
