//! An upload in progress: an unnamed file (`O_TMPFILE`) in the target's
//! directory, given a name only once it is complete and durable.
//!
//! Why unnamed: a temporary with a name lives in the user's namespace. It
//! either collides with a user's file of that name or must be hidden by a
//! naming rule, which makes such user names vanish; and a server killed
//! mid-upload would leave it behind for a startup sweep to find by name,
//! which on a read-only export is not allowed to run. An `O_TMPFILE` file has
//! no name at all: the kernel frees it when its last descriptor closes, also
//! when the server is killed, so there is nothing to hide and nothing to
//! sweep. It is created in the target's directory, so the final step stays
//! on one filesystem and inherits the directory's quota.
//!
//! The commit is: fchmod/futimens, fsync the data, then give it its name,
//! then fsync the directory, that last one shared by every upload renamed
//! into the directory meanwhile (group commit, see [`super::dirsync`]). A new name is made directly with `linkat`,
//! which never replaces anything. Replacing an existing file atomically needs
//! `rename`, and `rename` needs a source name, so for that case the file is
//! linked under a fresh random staging name (`linkat` fails rather than
//! replace a user's file of that name) and renamed over the target at once;
//! that name exists only between those two system calls.
//!
//! A regular file with more than one name (hard links) cannot be replaced:
//! a new inode would give only this name the new content. Its upload is
//! still received, checksummed and fsynced in the temporary first, and then
//! copied over the existing file in place and fsynced; readers on the server
//! may see that copy half done, as with any in-place write.
//!
//! Filesystems without `O_TMPFILE` (some network and FUSE filesystems) get a
//! named temporary created with `O_EXCL`, which is removed when the upload
//! ends without a commit; only such a server killed mid-upload leaves one.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rfmount_proto::{
    ErrorCode, FileKind, Meta, Owner, PutExpect, RelPath, SetTime, Timestamp, WireError, XattrValue,
};

use super::dirsync::DirSyncs;
use super::write_behind::WriteBehind;
use super::{condition, meta, sys};
use crate::store::{PendingPut, StoreResult, Succession};

/// How often to draw a new random name when one is taken.
const NAME_TRIES: usize = 8;

/// Where the data is being written before it gets its final name.
enum Temp {
    /// An `O_TMPFILE` file: no name until the commit.
    Unnamed,
    /// The fallback: a named temporary, unlinked on drop unless committed.
    Named(CString),
}

/// A file being filled; see the module documentation.
pub(super) struct LocalPut {
    dir: OwnedFd,
    temp: Temp,
    target: CString,
    path: RelPath,
    file: File,
    /// Permission bits of the file being replaced, to keep by default.
    old_mode: Option<u32>,
    /// The replaced file when it has several names: it is rewritten in
    /// place, as (dev, ino).
    in_place: Option<(u64, u64)>,
    /// The owner to give the file: the replaced file's, or the new file's
    /// creator; `None` when this server cannot give files away.
    owner: Option<Owner>,
    /// What the target must be at the commit (see [`condition`]).
    expect: PutExpect,
    /// Access time to give the new file (default: the commit's now).
    pub(super) atime: Option<Timestamp>,
    /// Extended attributes the upload carries (`PutExt::xattrs`).
    pub(super) xattrs: Vec<XattrValue>,
    committed: bool,
    syncs: Arc<DirSyncs>,
    /// Told when the commit replaces a file: its locks move to the new one.
    succession: Option<Arc<dyn Succession>>,
    /// Writeback started while the data arrives (see `write_behind.rs`).
    behind: WriteBehind,
}

/// A random name for a staging link or a fallback temporary. Never hidden
/// from anyone: it is chosen with `O_EXCL`/`linkat` semantics, so it can
/// only ever be a name nobody else holds.
fn temp_name() -> io::Result<CString> {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).map_err(|e| io::Error::other(format!("no randomness: {e}")))?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    sys::cstring(&format!(".rfserve-upload-{hex}.tmp"))
}

/// True when `e` says this filesystem has no `O_TMPFILE` (old kernels
/// answer EISDIR because they ignore the flag's extra bit).
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
    )
}

impl LocalPut {
    /// Creates the temporary in `dir` (the target's parent, opened for
    /// reading so it can be fsynced), if `size` bytes fit on its filesystem.
    pub(super) fn create(
        dir: OwnedFd,
        target: CString,
        path: &RelPath,
        size: u64,
        owner: Option<Owner>,
        syncs: Arc<DirSyncs>,
        expect: PutExpect,
    ) -> StoreResult<LocalPut> {
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        let mut owner = owner;
        let mut in_place = None;
        let old = sys::lstatat(dir.as_fd(), &target);
        // Refused before the client streams data that could not land.
        condition::check_stat(&old, expect, path)?;
        let old_mode = match old {
            Ok(st) if meta::kind_of(&st) == FileKind::Dir => {
                return Err(WireError::new(
                    ErrorCode::IsDir,
                    format!("{path}: is a directory"),
                ));
            }
            Ok(st) if meta::kind_of(&st) == FileKind::File => {
                // A replaced file keeps its owner where this server can.
                if sys::can_chown() {
                    owner = Some(Owner {
                        uid: st.st_uid,
                        gid: st.st_gid,
                    });
                }
                if st.st_nlink > 1 {
                    in_place = Some((st.st_dev, st.st_ino));
                }
                Some(st.st_mode & 0o7777)
            }
            Ok(_) => None,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(io_err(e)),
        };
        // Readable too: an in-place commit copies from it.
        let (temp, fd) = match sys::openat(dir.as_fd(), c".", libc::O_TMPFILE | libc::O_RDWR, 0o600)
        {
            Ok(fd) => (Temp::Unnamed, fd),
            Err(e) if no_tmpfile(&e) => {
                let (name, fd) = create_named(&dir).map_err(io_err)?;
                (Temp::Named(name), fd)
            }
            Err(e) => return Err(io_err(e)),
        };
        let put = LocalPut {
            dir,
            temp,
            target,
            path: path.clone(),
            file: File::from(fd),
            old_mode,
            in_place,
            owner,
            expect,
            atime: None,
            xattrs: Vec::new(),
            committed: false,
            syncs,
            succession: None,
            behind: WriteBehind::default(),
        };
        // Nothing is reserved: only data that has arrived takes space, so
        // an upload that trickles in cannot make other uploads fail with
        // ENOSPC. One that cannot fit in what is free now is still refused
        // before the client streams it.
        if libc::off_t::try_from(size).is_err() {
            return Err(io_err(io::Error::from_raw_os_error(libc::EFBIG)));
        }
        if let Ok(free) = sys::free_bytes(put.dir.as_fd()) {
            if size > free {
                return Err(WireError::new(
                    ErrorCode::NoSpace,
                    format!(
                        "{path}: {size} bytes do not fit in the {free} bytes free on the server"
                    ),
                ));
            }
        }
        Ok(put)
    }

    /// The temporary file being filled.
    pub(super) fn file(&self) -> &File {
        &self.file
    }

    fn finish(&mut self, mode: Option<u32>, mtime: Option<Timestamp>) -> StoreResult<Meta> {
        let mode = mode.or(self.old_mode).unwrap_or(0o644);
        if let Some(id) = self.in_place {
            // Held through the copy: the check and the overwrite are one step.
            let _guard = condition::commit_guard(self.expect);
            if let Some(meta) = self.rewrite_in_place(id, mode, mtime)? {
                return Ok(meta);
            }
        }
        let path = &self.path;
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        // Before the chmod: chown clears setuid/setgid.
        if let Some(o) = self.owner {
            sys::chown_fd(self.file.as_fd(), Some(o.uid), Some(o.gid)).map_err(io_err)?;
        }
        // The replaced file's extended attributes belong to the file, not
        // to this version of its content: carry them over.
        if self.old_mode.is_some() {
            let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
            if let Ok(old) = sys::openat(self.dir.as_fd(), &self.target, flags, 0) {
                super::xattr::copy_all(old.as_fd(), self.file.as_fd()).map_err(io_err)?;
            }
        }
        // Before the name is given: the file appears with them.
        super::xattr::set_carried(self.file.as_fd(), path, &self.xattrs)?;
        sys::fchmod(self.file.as_fd(), mode).map_err(io_err)?;
        set_times(&self.file, self.atime, mtime).map_err(io_err)?;
        self.file.sync_all().map_err(io_err)?;
        // Checked last, right before the name is given, while no other
        // conditional upload of this server can rename in between.
        let guard = condition::commit_guard(self.expect);
        condition::check(self.dir.as_fd(), &self.target, self.expect, path)?;
        match &self.temp {
            Temp::Unnamed => self.name_unnamed().map_err(io_err)?,
            Temp::Named(name) => self.rename_over_target(name).map_err(io_err)?,
        }
        self.committed = true;
        drop(guard);
        // Without this the new name itself may be lost in a crash, and the
        // client would have been told its data is safe. Shared with the
        // other uploads renamed into this directory meanwhile.
        self.syncs.sync(self.dir.as_fd()).map_err(io_err)?;
        let st = sys::fstat(self.file.as_fd()).map_err(io_err)?;
        Ok(meta::meta_of(&st))
    }

    /// Copies the received content over the hard-linked target `id`, if it
    /// is still there with several names; `None` when it is not (then the
    /// upload replaces whatever is there now, as usual).
    fn rewrite_in_place(
        &mut self,
        id: (u64, u64),
        mode: u32,
        mtime: Option<Timestamp>,
    ) -> StoreResult<Option<Meta>> {
        let path = &self.path;
        let io_err = |e: io::Error| WireError::from_io(&e, path);
        self.file.sync_all().map_err(io_err)?;
        let flags = libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match sys::openat(self.dir.as_fd(), &self.target, flags, 0) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => {
                return Ok(None);
            }
            Err(e) => return Err(io_err(e)),
        };
        let st = sys::fstat(fd.as_fd()).map_err(io_err)?;
        if (st.st_dev, st.st_ino) != id || st.st_nlink < 2 {
            return Ok(None);
        }
        condition::check_stat(&Ok(st), self.expect, path)?;
        let mut out = File::from(fd);
        self.file.rewind().map_err(io_err)?;
        // std copies file to file with copy_file_range: in the kernel,
        // never all in memory.
        let size = io::copy(&mut self.file, &mut out).map_err(io_err)?;
        out.set_len(size).map_err(io_err)?;
        super::xattr::set_carried(out.as_fd(), path, &self.xattrs)?;
        sys::fchmod(out.as_fd(), mode).map_err(io_err)?;
        set_times(&out, self.atime, mtime).map_err(io_err)?;
        out.sync_all().map_err(io_err)?;
        // Not `committed`: a named fallback temporary is still to be removed.
        let st = sys::fstat(out.as_fd()).map_err(io_err)?;
        Ok(Some(meta::meta_of(&st)))
    }

    /// Gives the `O_TMPFILE` file the target's name: directly when the
    /// name is free, else through a staging name and `rename`.
    fn name_unnamed(&self) -> io::Result<()> {
        let dir = self.dir.as_fd();
        match sys::link_fd(self.file.as_fd(), dir, &self.target) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            done => return done,
        }
        let mut tries = 0;
        let staging = loop {
            let name = temp_name()?;
            match sys::link_fd(self.file.as_fd(), dir, &name) {
                Ok(()) => break name,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < NAME_TRIES => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.rename_over_target(&staging).inspect_err(|_| {
            if let Err(e) = sys::unlinkat(dir, &staging, 0) {
                log::warn!("{}: cannot remove staging name {staging:?}: {e}", self.path);
            }
        })
    }
}

impl LocalPut {
    /// Renames `from` (a name of the upload's file) over the target, with
    /// the replaced file's id told to the succession in the same step.
    fn rename_over_target(&self, from: &CStr) -> io::Result<()> {
        let dir = self.dir.as_fd();
        let mut rename = || {
            let old = sys::lstatat(dir, &self.target)
                .ok()
                .filter(|st| meta::kind_of(st) == FileKind::File)
                .map(|st| meta::meta_of(&st).file_id);
            sys::renameat(dir, from, dir, &self.target)?;
            Ok(old)
        };
        let Some(succession) = &self.succession else {
            return rename().map(|_| ());
        };
        let new = meta::meta_of(&sys::fstat(self.file.as_fd())?).file_id;
        succession.replace(new, &mut rename)
    }
}

/// Sets the times an upload names (an unnamed one stays as written).
fn set_times(f: &File, atime: Option<Timestamp>, mtime: Option<Timestamp>) -> io::Result<()> {
    if atime.is_none() && mtime.is_none() {
        return Ok(());
    }
    sys::futimens(f.as_fd(), atime.map(SetTime::At), mtime.map(SetTime::At))
}

/// The fallback temporary: a fresh random name, created exclusively.
fn create_named(dir: &OwnedFd) -> io::Result<(CString, OwnedFd)> {
    let mut tries = 0;
    loop {
        let name = temp_name()?;
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match sys::openat(dir.as_fd(), &name, flags, 0o600) {
            Ok(fd) => return Ok((name, fd)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && tries < NAME_TRIES => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Write for LocalPut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        // Data arrives in order; the position is where it has reached.
        if let Ok(end) = (&self.file).stream_position() {
            self.behind.wrote_to(self.file.as_fd(), end);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl PendingPut for LocalPut {
    fn commit(
        mut self: Box<Self>,
        mode: Option<u32>,
        mtime: Option<Timestamp>,
    ) -> StoreResult<Meta> {
        self.finish(mode, mtime)
    }

    fn set_succession(&mut self, succession: Arc<dyn Succession>) {
        self.succession = Some(succession);
    }
}

impl Drop for LocalPut {
    fn drop(&mut self) {
        // An unnamed file goes away with its descriptor.
        let Temp::Named(name) = &self.temp else {
            return;
        };
        if self.committed {
            return;
        }
        if let Err(e) = sys::unlinkat(self.dir.as_fd(), name, 0) {
            log::warn!(
                "{}: cannot remove temporary upload file {name:?}: {e}",
                self.path
            );
        }
    }
}
