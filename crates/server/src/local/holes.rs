//! Holes of a file being downloaded, found with `SEEK_DATA`/`SEEK_HOLE`,
//! so that a sparse `GET` sends them as `DataHole` rather than zeros.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use super::layout::seek;
use crate::store::ContentRead;

impl ContentRead for File {
    fn data_run(&mut self, pos: u64) -> io::Result<(u64, u64)> {
        let fd = self.as_fd();
        let start = match seek(fd, pos, libc::SEEK_DATA) {
            Ok(Some(d)) => d,
            // Nothing but a hole from `pos` on, or the file shrank below
            // it: the caller tells the two apart by the length.
            Ok(None) => {
                let len = self.metadata()?.len();
                return Ok((len, len));
            }
            // A filesystem without hole reporting: all of it is data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok((pos, u64::MAX)),
            Err(e) => return Err(e),
        };
        // SEEK_DATA found data, so a hole (at worst the implicit one at the
        // end of the file) follows it; ENXIO means the file shrank meanwhile.
        let end = seek(fd, start, libc::SEEK_HOLE)?.unwrap_or(start);
        // Reading goes on from the start of the run.
        seek(fd, start, libc::SEEK_SET)?;
        Ok((start, end))
    }
}
