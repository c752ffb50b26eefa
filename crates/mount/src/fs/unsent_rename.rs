//! A rename of a file that exists only here (created in write-back mode,
//! not uploaded yet) over a name the server has: the server's rename
//! cannot happen (it has no source), but the replaced file must still go,
//! or the new file's first upload, which expects the name to be free,
//! is refused as a conflict with this mount's own change.

use rfmount_client::Remote;
use rfmount_proto::{ErrorCode, RelPath};

use super::RemoteFs;
use crate::error::FsResult;

impl<R: Remote> RemoteFs<R> {
    /// False when this mount knows the server has no `path`: its parent's
    /// listing lacks the name, or the server just said so. Called before
    /// the rename changes what is cached.
    pub(super) fn server_may_have(&self, path: &RelPath) -> bool {
        let mc = self.meta.lock();
        if mc.known_absent(path) {
            return false;
        }
        let listed = path
            .parent()
            .and_then(|dir| mc.listing(&dir))
            .zip(path.file_name());
        !matches!(listed, Some((l, name)) if l.get(name).is_none())
    }

    /// The rename of the never uploaded file onto `to` replaced the
    /// server's `to`: it is removed there, as the rename would have.
    ///
    /// # Errors
    /// Remote errors other than `NotFound` (nothing was there).
    pub(super) fn replace_with_unsent(&self, to: &RelPath) -> FsResult<()> {
        match self.remote.remove(to) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
