//! An upload refused with `Conflict` whose content the server's file
//! already is: this mount's own earlier upload whose answer was lost (the
//! connection broke after the commit, and the retry still names the old
//! base), or another writer who wrote the very same bytes. Nothing would
//! be lost by taking the server's file as this upload's result, so no
//! conflict copy is made.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use log::{debug, info};
use rfmount_client::{GetOutcome, Remote};
use rfmount_proto::{FileKind, Meta, RelPath};

use super::RemoteFs;

/// A sink that compares what the server streams with the local copy and
/// stops the transfer at the first difference.
struct Compare {
    local: BufReader<File>,
    buf: Vec<u8>,
}

fn differs() -> io::Error {
    io::Error::other("the server's content differs from the local copy")
}

impl Write for Compare {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.resize(data.len(), 0);
        self.local
            .read_exact(&mut self.buf)
            .map_err(|_| differs())?;
        if self.buf != data {
            return Err(differs());
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Remote> RemoteFs<R> {
    /// The server's attributes of `path` when its content is byte for byte
    /// the local copy's (same size, then compared while streaming, in
    /// bounded memory); `None` when it differs or cannot be compared.
    pub(super) fn server_has_it(&self, path: &RelPath) -> Option<Meta> {
        let data = self.cache.data_path(path);
        let size = std::fs::metadata(&data).ok()?.len();
        let meta = self.remote.stat(path).ok()?;
        if meta.kind != FileKind::File || meta.size != size {
            return None;
        }
        let mut sink = Compare {
            local: BufReader::with_capacity(256 * 1024, File::open(&data).ok()?),
            buf: Vec::new(),
        };
        match self.remote.get(path, None, &mut sink) {
            Ok(GetOutcome::Fetched(m)) | Ok(GetOutcome::NotModified(m)) => {
                let mut rest = [0u8; 1];
                if m.size != size || sink.local.read(&mut rest).ok()? != 0 {
                    return None;
                }
                info!(
                    "{path}: the server's file already holds this mount's content; not a conflict"
                );
                Some(m)
            }
            Err(e) => {
                debug!("{path}: not the same as on the server: {e}");
                None
            }
        }
    }
}
