//! Partial and sparse uploads ([`PutLayout`]): the temporary file is built
//! from the current file (when the layout names a base version) or starts
//! as one hole of the final size, and only the layout's extents arrive as
//! data, each written at its offset. Holes stay holes: the old file is
//! cloned (`FICLONE`) up front where the filesystem can share extents;
//! else, once the data has arrived, its data segments outside the extents
//! (found with `SEEK_DATA`/`SEEK_HOLE`) are copied with `copy_file_range`
//! on the commit's worker, never on the connection's reader, and nothing
//! is written between them.
//!
//! The client's checksum covers the whole new content, not just the bytes
//! that travelled, so it is checked against the finished temporary file:
//! a base that changed in place under the upload, or a wrong extent, is a
//! checksum mismatch and the old file stays as it was. The commit is the
//! plain upload's ([`LocalPut`]): same atomic replacement.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use rfmount_proto::{
    Checksum, ErrorCode, Extent, Hasher, Meta, PutLayout, RelPath, Timestamp, WireError,
};

use super::put::LocalPut;
use super::{meta, sys};
use crate::store::{PendingPut, StoreResult};

/// `FICLONE` (`_IOW(0x94, 9, int)`), which the libc crate does not name.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Largest piece handed to one `copy_file_range`.
const COPY_STEP: u64 = 64 << 20;

/// A [`LocalPut`] fed by extents instead of one sequential stream.
pub(super) struct LayoutPut {
    inner: LocalPut,
    path: RelPath,
    /// The base whose bytes outside the extents are still to be copied
    /// (when it could not be cloned whole up front).
    base: Option<File>,
    extents: Vec<Extent>,
    /// The extent being filled and how much of it has arrived.
    next: usize,
    filled: u64,
}

/// Checks that `layout`'s extents are sorted, disjoint and within `size`.
fn check_extents(path: &RelPath, size: u64, layout: &PutLayout) -> StoreResult<()> {
    let mut end = 0u64;
    for e in &layout.extents {
        let stop = e.offset.checked_add(e.len);
        match stop {
            Some(stop) if e.offset >= end && stop <= size => end = stop,
            _ => {
                return Err(WireError::new(
                    ErrorCode::Invalid,
                    format!(
                        "{path}: extent {}+{} is out of order, overlapping or past the size {size}",
                        e.offset, e.len
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl LayoutPut {
    /// Prepares the temporary of `inner` as `layout` says: a copy of the
    /// current file `old` when it has the base version, else a hole of
    /// `size` bytes.
    pub(super) fn new(
        inner: LocalPut,
        path: &RelPath,
        size: u64,
        layout: &PutLayout,
        old: Option<File>,
    ) -> StoreResult<LayoutPut> {
        check_extents(path, size, layout)?;
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        let rest = if let Some(base) = layout.base {
            let conflict = |what: &str| {
                WireError::new(
                    ErrorCode::Conflict,
                    format!("{path}: {what}, not the base version {base:016x} of this upload"),
                )
            };
            let old = old.ok_or_else(|| conflict("no file there"))?;
            let st = sys::fstat(old.as_fd()).map_err(io_err)?;
            if meta::kind_of(&st) != rfmount_proto::FileKind::File {
                return Err(conflict("not a regular file"));
            }
            let have = meta::version_of(&st);
            if have != base {
                return Err(conflict(&format!("the file there is version {have:016x}")));
            }
            // A clone is a metadata operation, cheap enough for the
            // connection's reader; a copy is left for the worker (verify).
            // SAFETY: ioctl FICLONE with a descriptor argument.
            if unsafe { libc::ioctl(inner.file().as_raw_fd(), FICLONE as _, old.as_raw_fd()) } == 0
            {
                None
            } else {
                Some(old)
            }
        } else {
            None
        };
        inner.file().set_len(size).map_err(io_err)?;
        Ok(LayoutPut {
            inner,
            path: path.clone(),
            base: rest,
            extents: layout.extents.clone(),
            next: 0,
            filled: 0,
        })
    }

    /// The whole new content's checksum, read back from the temporary
    /// (holes hash as the zeros they read as).
    fn content_checksum(&self) -> io::Result<Checksum> {
        let file = self.inner.file();
        let size = file.metadata()?.len();
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        let zeros = vec![0u8; 1 << 20];
        while pos < size {
            // Holes need no read: hash zeros for them.
            let data = seek(file.as_fd(), pos, libc::SEEK_DATA)?.unwrap_or(size);
            while pos < data.min(size) {
                let n = (data.min(size) - pos).min(zeros.len() as u64) as usize;
                hasher.update(&zeros[..n]);
                pos += n as u64;
            }
            if pos >= size {
                break;
            }
            let hole = seek(file.as_fd(), pos, libc::SEEK_HOLE)?.unwrap_or(size);
            while pos < hole {
                let want = (hole - pos).min(buf.len() as u64) as usize;
                let n = file.read_at(&mut buf[..want], pos)?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                hasher.update(&buf[..n]);
                pos += n as u64;
            }
        }
        Ok(hasher.finish())
    }
}

/// `lseek` for `SEEK_DATA`/`SEEK_HOLE`; `None` past the last data (ENXIO).
pub(super) fn seek(fd: BorrowedFd<'_>, pos: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(pos).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: lseek on a descriptor borrowed for the call; no memory involved.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as u64))
}

/// Copies the data segments of `src` within `[from, to)` to the same
/// offsets of `dst`, leaving its holes unwritten.
fn copy_data_between(src: &File, dst: &File, from: u64, to: u64) -> io::Result<()> {
    let mut pos = from;
    while pos < to {
        let Some(data) = seek(src.as_fd(), pos, libc::SEEK_DATA)? else {
            break;
        };
        if data >= to {
            break;
        }
        let hole = seek(src.as_fd(), data, libc::SEEK_HOLE)?.unwrap_or(to);
        copy_range(src, dst, data, hole.min(to))?;
        pos = hole;
    }
    Ok(())
}

/// Copies `base`'s bytes outside `extents` (within both sizes) into
/// `dst`, whose extents hold the uploaded data.
fn fill_gaps(base: &File, dst: &File, extents: &[Extent], size: u64) -> io::Result<()> {
    let end = base.metadata()?.len().min(size);
    let mut pos = 0u64;
    for e in extents.iter().chain(std::iter::once(&Extent {
        offset: end,
        len: 0,
    })) {
        let stop = e.offset.min(end);
        if pos < stop {
            copy_data_between(base, dst, pos, stop)?;
        }
        pos = pos.max(e.offset + e.len);
        if pos >= end {
            break;
        }
    }
    Ok(())
}

/// Copies bytes `[from, to)` of `src` to the same offsets of `dst`.
fn copy_range(src: &File, dst: &File, from: u64, to: u64) -> io::Result<()> {
    let mut pos = from;
    while pos < to {
        let mut off_in = pos as libc::loff_t;
        let mut off_out = pos as libc::loff_t;
        let step = (to - pos).min(COPY_STEP) as usize;
        // SAFETY: both descriptors are open for the call and the offsets
        // are locals the kernel updates.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                step,
                0,
            )
        };
        match n {
            n if n > 0 => pos += n as u64,
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Across filesystems or where unsupported: copy by hand.
                    Some(libc::EXDEV | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                        return copy_by_hand(src, dst, pos, to);
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn copy_by_hand(src: &File, dst: &File, mut pos: u64, to: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while pos < to {
        let want = (to - pos).min(buf.len() as u64) as usize;
        let n = src.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        dst.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// Writes `data` at `offset` of `file`, or punches a hole there when it is
/// all zeros: a range the client punched or zeroed arrives as zeros when
/// the upload has a base, and stays a hole here (a clone of the base may
/// hold data there, so the range is punched rather than skipped).
fn place(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    if data.len() >= 4096 && data.iter().all(|&b| b == 0) {
        let (Ok(off), Ok(len)) = (
            libc::off_t::try_from(offset),
            libc::off_t::try_from(data.len()),
        ) else {
            return file.write_all_at(data, offset);
        };
        // SAFETY: fallocate on a descriptor `file` keeps open; no memory.
        let r = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        if r == 0 {
            return Ok(());
        }
        // A filesystem that cannot punch holes stores the zeros.
    }
    file.write_all_at(data, offset)
}

impl Write for LayoutPut {
    /// Places the next bytes of the data stream in the extent they belong
    /// to.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let Some(e) = self.extents.get(self.next) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: more data than the layout's extents hold", self.path),
                ));
            };
            let room = e.len - self.filled;
            let n = (buf.len() - done).min(usize::try_from(room).unwrap_or(usize::MAX));
            place(
                self.inner.file(),
                &buf[done..done + n],
                e.offset + self.filled,
            )?;
            done += n;
            self.filled += n as u64;
            if self.filled == e.len {
                self.next += 1;
                self.filled = 0;
            }
        }
        Ok(done)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PendingPut for LayoutPut {
    fn verify(&mut self, _streamed: Checksum, expected: Checksum) -> StoreResult<()> {
        if let Some(base) = self.base.take() {
            let size = self
                .inner
                .file()
                .metadata()
                .map_err(|e| WireError::from_io(&e, &self.path))?
                .len();
            fill_gaps(&base, self.inner.file(), &self.extents, size)
                .map_err(|e| WireError::from_io(&e, &self.path))?;
        }
        let have = self
            .content_checksum()
            .map_err(|e| WireError::from_io(&e, &self.path))?;
        if have == expected {
            Ok(())
        } else {
            Err(WireError::new(
                ErrorCode::Io,
                "checksum mismatch of the content built from the layout (the base \
                 changed under the upload, or data was corrupted); the old file is unchanged",
            ))
        }
    }

    fn commit(self: Box<Self>, mode: Option<u32>, mtime: Option<Timestamp>) -> StoreResult<Meta> {
        Box::new(self.inner).commit(mode, mtime)
    }

    fn set_succession(&mut self, succession: std::sync::Arc<dyn crate::store::Succession>) {
        self.inner.set_succession(succession);
    }
}
