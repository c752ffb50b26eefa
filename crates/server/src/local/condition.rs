//! The condition of a PUT (`PutExpect`): no silent lost update.
//!
//! The check runs twice: once when the upload starts, so that a doomed
//! upload is refused before the client streams it, and once right before
//! the new content gets its name, under [`commit_guard`], so that two
//! uploads of this server that started from the same version cannot both
//! pass it. A process on the server machine writing the export directly is
//! not serialised by the guard; it is caught by the check unless it lands
//! in the few system calls between check and rename.

use std::ffi::CStr;
use std::io;
use std::os::fd::BorrowedFd;

use parking_lot::{Mutex, MutexGuard};
use rfmount_proto::{ErrorCode, FileKind, PutExpect, RelPath, WireError};

use super::{meta, sys};
use crate::store::StoreResult;

/// Held from the final check to the rename of every conditional upload.
static COMMITS: Mutex<()> = Mutex::new(());

/// Serialises check-and-rename; only taken for an upload with a condition,
/// so last-close-wins uploads never wait for each other here.
pub(super) fn commit_guard(expect: PutExpect) -> Option<MutexGuard<'static, ()>> {
    (expect != PutExpect::Any).then(|| COMMITS.lock())
}

/// Checks `expect` against what `name` in `dir` is now.
pub(super) fn check(
    dir: BorrowedFd<'_>,
    name: &CStr,
    expect: PutExpect,
    path: &RelPath,
) -> StoreResult<()> {
    if expect == PutExpect::Any {
        return Ok(());
    }
    check_stat(&sys::lstatat(dir, name), expect, path)
}

/// Checks `expect` against an `lstat` of the target already made.
pub(super) fn check_stat(
    st: &io::Result<libc::stat>,
    expect: PutExpect,
    path: &RelPath,
) -> StoreResult<()> {
    let found = match st {
        Ok(st) => Some(st),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
        Err(e) => return Err(WireError::from_io(e, path)),
    };
    let why = match (expect, found) {
        (PutExpect::Any, _) | (PutExpect::Absent, None) => return Ok(()),
        (PutExpect::Version(v), Some(st))
            if meta::kind_of(st) == FileKind::File && meta::version_of(st) == v =>
        {
            return Ok(());
        }
        (PutExpect::Absent, Some(_)) => "the name was created by another writer",
        (PutExpect::Version(_), None) => "the file was removed by another writer",
        (PutExpect::Version(_), Some(_)) => "the file was changed by another writer",
    };
    Err(WireError::new(
        ErrorCode::Conflict,
        format!("{path}: {why} since this upload's version; nothing was changed"),
    ))
}
