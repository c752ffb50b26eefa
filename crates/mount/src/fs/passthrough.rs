//! FUSE passthrough: the kernel reads a clean, fully cached file straight
//! from its cache file, with no round trip through this process.
//!
//! The kernel keeps one I/O mode per inode: while any handle of an inode is
//! open in passthrough, every other handle must be opened in passthrough
//! too, with the same backing file; while a page-cache handle is open,
//! passthrough is refused. A wrong mode makes the kernel fail the
//! `open(2)` with `EIO`. So the choice is made per inode here, under one
//! lock:
//! - a new passthrough only for a read-only handle of content that is
//!   complete (no fetch still streaming into it) and clean (no unsent
//!   changes), with no writer and no page-cache handle open;
//! - while an inode is in passthrough, every new handle joins it. A
//!   writer's writes then go from the kernel straight to the cache file,
//!   unseen here, so such a handle marks the file changed and being
//!   written when it opens (before any byte can land, as every write
//!   does), and each of its closes uploads as if it had written, unless
//!   the cache file is as its last upload left it (`kernel_writes.rs`);
//!   the file is marked clean only once no such writer is open;
//! - everything else uses the page cache, as before.
//!
//! The backing file is registered with the kernel once per inode and kept
//! until its last passthrough handle closes. While it is, the kernel lets
//! no other file back the inode, so a new version the server pushes cannot
//! be put beside it (as a fetch does, by rename): it is copied into the
//! backing file itself (`backing_refresh.rs`), which is also the cache
//! file. The server's pushed-change count at registration tells whether it
//! is stale.

use std::any::Any;
use std::fs::File;
use std::sync::Arc;

use log::warn;
use parking_lot::Mutex;

/// The kernel's registration of a backing file, opaque to the core (the
/// FUSE adapter's `fuser::BackingId`).
pub type Backing = Arc<dyn Any + Send + Sync>;

/// Registers a file with the kernel as the backing file of an open.
pub type Backer<'a> = &'a dyn Fn(&File) -> std::io::Result<Backing>;

/// How the kernel is to do a handle's I/O.
#[derive(Clone)]
pub enum KernelIo {
    /// Through the page cache, with reads and writes coming here.
    Cached,
    /// The kernel reads and writes this backing file itself.
    Passthrough(Backing),
}

impl std::fmt::Debug for KernelIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KernelIo::Cached => "Cached",
            KernelIo::Passthrough(_) => "Passthrough",
        })
    }
}

/// The I/O mode of one inode's open handles.
#[derive(Default)]
pub(crate) struct InodeIo {
    st: Mutex<Modes>,
}

#[derive(Default)]
struct Modes {
    passthrough: u32,
    cached: u32,
    backing: Option<Backing>,
    /// The file behind `backing`, for a refresh in place.
    file: Option<Arc<File>>,
    /// The file's pushed-change count the backing's content reflects.
    pushed: u64,
}

/// What a handle was opened with, to undo at release.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Cached,
    Passthrough,
}

impl InodeIo {
    /// Chooses the mode of a new handle of `file`; `eligible`: the content
    /// is complete and clean and no writer has it open. `backer` is `None`
    /// where the kernel or the mount has no passthrough.
    /// `pushed`: the file's pushed-change count its content reflects.
    pub(crate) fn choose(
        &self,
        file: &File,
        eligible: bool,
        backer: Option<Backer<'_>>,
        pushed: u64,
    ) -> (Mode, KernelIo) {
        let mut st = self.st.lock();
        if let Some(b) = st.backing.clone() {
            st.passthrough += 1;
            return (Mode::Passthrough, KernelIo::Passthrough(b));
        }
        if let Some(backer) = backer.filter(|_| eligible && st.cached == 0) {
            let registered = file.try_clone().and_then(|own| Ok((backer(file)?, own)));
            match registered {
                Ok((b, own)) => {
                    st.backing = Some(b.clone());
                    st.file = Some(Arc::new(own));
                    st.pushed = pushed;
                    st.passthrough += 1;
                    return (Mode::Passthrough, KernelIo::Passthrough(b));
                }
                Err(e) => warn!("FUSE passthrough refused, reading through rfmount: {e}"),
            }
        }
        st.cached += 1;
        (Mode::Cached, KernelIo::Cached)
    }

    /// A handle opened with `mode` closed.
    pub(crate) fn release(&self, mode: Mode) {
        let mut st = self.st.lock();
        match mode {
            Mode::Cached => st.cached = st.cached.saturating_sub(1),
            Mode::Passthrough => {
                st.passthrough = st.passthrough.saturating_sub(1);
                if st.passthrough == 0 {
                    st.backing = None;
                    st.file = None;
                }
            }
        }
    }

    /// The backing file, when the inode is in passthrough and its content
    /// predates the file's pushed change `pushed`.
    pub(crate) fn stale(&self, pushed: u64) -> Option<Arc<File>> {
        let st = self.st.lock();
        st.file.clone().filter(|_| st.pushed != pushed)
    }

    /// The backing file, when the inode is in passthrough.
    pub(crate) fn backing_file(&self) -> Option<Arc<File>> {
        self.st.lock().file.clone()
    }

    /// The backing file now holds the content of pushed change `pushed`.
    pub(crate) fn refreshed(&self, pushed: u64) {
        let mut st = self.st.lock();
        if st.file.is_some() {
            st.pushed = pushed;
        }
    }
}
