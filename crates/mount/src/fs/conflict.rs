//! No silent lost update: every upload names the server version its
//! writer started from, and an upload the server refuses with `Conflict`
//! (another writer's close landed first) is handled here as
//! `-o conflict=` says. The other writer's file stays as it is.

use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use log::warn;
use rfmount_client::{PutOptions, Remote, RemoteError};
use rfmount_proto::{ErrorCode, Meta, PutExpect, RelPath};

use super::RemoteFs;
use super::files::FileState;
use crate::data_cache::EntryInfo;
use crate::data_cache::recovery::{hostname, tagged_sibling, utc_stamp};
use crate::error::{FsError, FsResult};
use crate::options::ConflictMode;

/// How many `-N` suffixes are tried when conflict names are taken.
const NAME_TRIES: u32 = 100;

/// True for the server's answer to an upload whose condition failed.
pub(super) fn is_conflict(e: &FsError) -> bool {
    matches!(e, FsError::Remote(r) if r.code() == Some(ErrorCode::Conflict))
}

impl<R: Remote> RemoteFs<R> {
    /// The condition of an upload of `entry`: the version it was fetched
    /// (or last uploaded) at, or no file at all for one created here.
    pub(super) fn put_expectation(&self, entry: &EntryInfo) -> PutExpect {
        if self.cfg.conflict == ConflictMode::Overwrite {
            return PutExpect::Any;
        }
        entry.version.map_or(PutExpect::Absent, PutExpect::Version)
    }

    /// The server refused the upload of `path` (`err`, a conflict). Keeps
    /// the data aside, or fails, as configured.
    pub(super) fn on_conflict(
        &self,
        ino: u64,
        state: &FileState,
        path: &RelPath,
        entry: &EntryInfo,
        err: FsError,
    ) -> FsResult<()> {
        if self.cfg.conflict != ConflictMode::Keep {
            warn!(
                "{path}: not uploaded: changed on the server by another writer since this \
                 mount's version; the data stays in the cache (conflict=error): {err}"
            );
            return Err(err);
        }
        let kept = self.upload_aside(path, entry)?;
        warn!(
            "{path}: changed on the server by another writer since this mount's version; \
             kept the other writer's {path} and uploaded this mount's data as {kept}"
        );
        // Other descriptors may still write: their data must not go into
        // a discarded copy. The entry keeps its old version, so their
        // close conflicts again and is kept aside too.
        if state.open_count() > 1 {
            return Ok(());
        }
        // From now on this mount shows the winner's content.
        self.cache.remove(path);
        self.meta.lock().invalidate(path);
        *state.kernel_version.lock() = None;
        if let Some(inval) = self.invalidator.get() {
            inval(ino);
        }
        state.write_gen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Uploads the cached content of `path` under a fresh
    /// `NAME.conflict-HOST-STAMP[-N]`, never over an existing name.
    fn upload_aside(&self, path: &RelPath, entry: &EntryInfo) -> FsResult<RelPath> {
        let host = hostname();
        let stamp = utc_stamp(SystemTime::now());
        let owner = self.creators.lock().get(path).copied();
        for n in 1..=NAME_TRIES {
            let Some(aside) = tagged_sibling(path, "conflict", &host, &stamp, n) else {
                break;
            };
            let f = File::open(self.cache.data_path(path))
                .map_err(|e| FsError::cache(format!("opening cached {path}"), e))?;
            let size = f
                .metadata()
                .map_err(|e| FsError::cache(format!("{path}"), e))?
                .len();
            let opts = PutOptions {
                mode: entry.mode,
                mtime: entry.mtime,
                owner,
                expect: PutExpect::Absent,
                ..PutOptions::default()
            };
            let buffered = BufReader::with_capacity(256 * 1024, f);
            let mut src = self.activity.track(aside.to_string(), size, buffered);
            match self.remote.put(&aside, &mut src, size, opts) {
                Ok(up) => {
                    self.note_aside(&aside, up.meta);
                    return Ok(aside);
                }
                Err(e) if e.code() == Some(ErrorCode::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(FsError::Remote(RemoteError::Service(
            rfmount_proto::WireError::new(
                ErrorCode::Io,
                format!("{path}: no free name to keep this mount's conflicting data under"),
            ),
        )))
    }

    fn note_aside(&self, aside: &RelPath, meta: Meta) {
        self.meta.lock().note_entry(aside, meta);
        let parent = aside.parent().and_then(|d| self.inodes.lock().ino(&d));
        if let (Some(pino), Some(inval)) = (parent, self.invalidator.get()) {
            inval(pino);
        }
    }
}
