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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use rfmount_proto::{ErrorCode, PutExpect, PutExt, RelPath};

    use crate::local::LocalStore;
    use crate::store::Store;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn ext(expect: PutExpect) -> PutExt {
        PutExt {
            expect,
            ..PutExt::default()
        }
    }

    fn code<T>(r: Result<T, rfmount_proto::WireError>) -> ErrorCode {
        r.err().expect("a refusal").code
    }

    #[test]
    fn a_put_lands_only_on_the_version_it_names() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("f"), "old").unwrap();
        let store = LocalStore::open(tmp.path()).unwrap();
        let v = store.stat(&p("f")).unwrap().version;

        // Refused up front: a new name that exists, a version that is not it.
        let absent = store.begin_put_ext(&p("f"), 1, None, &ext(PutExpect::Absent));
        assert_eq!(code(absent), ErrorCode::Conflict);
        let stale = store.begin_put_ext(&p("f"), 1, None, &ext(PutExpect::Version(v ^ 1)));
        assert_eq!(code(stale), ErrorCode::Conflict);
        let gone = store.begin_put_ext(&p("nothing"), 1, None, &ext(PutExpect::Version(v)));
        assert_eq!(code(gone), ErrorCode::Conflict);

        // Two uploads from one version: the first commit wins, the second
        // is refused at its commit and changes nothing.
        let mut a = store
            .begin_put_ext(&p("f"), 1, None, &ext(PutExpect::Version(v)))
            .unwrap();
        let mut b = store
            .begin_put_ext(&p("f"), 1, None, &ext(PutExpect::Version(v)))
            .unwrap();
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
        let won = a.commit(None, None).unwrap();
        assert_eq!(code(b.commit(None, None)), ErrorCode::Conflict);
        assert_eq!(fs::read(tmp.path().join("f")).unwrap(), b"a");
        assert_eq!(store.stat(&p("f")).unwrap().version, won.version);
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary is left: {names:?}");

        // Two creates of one new name: only the first gets it.
        let mut c = store
            .begin_put_ext(&p("n"), 1, None, &ext(PutExpect::Absent))
            .unwrap();
        let mut d = store
            .begin_put_ext(&p("n"), 1, None, &ext(PutExpect::Absent))
            .unwrap();
        c.write_all(b"c").unwrap();
        d.write_all(b"d").unwrap();
        c.commit(None, None).unwrap();
        assert_eq!(code(d.commit(None, None)), ErrorCode::Conflict);
        assert_eq!(fs::read(tmp.path().join("n")).unwrap(), b"c");

        // A changed-behind-its-back file on the server's disk is caught too.
        let v = store.stat(&p("n")).unwrap().version;
        let mut e = store
            .begin_put_ext(&p("n"), 1, None, &ext(PutExpect::Version(v)))
            .unwrap();
        e.write_all(b"e").unwrap();
        fs::write(tmp.path().join("n"), "local writer").unwrap();
        assert_eq!(code(e.commit(None, None)), ErrorCode::Conflict);
        assert_eq!(fs::read(tmp.path().join("n")).unwrap(), b"local writer");
    }
}
