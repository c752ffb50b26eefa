//! The echo table driven directly: which pushed removals become echoes,
//! and which requests an echo answers (never the server's business).

use std::sync::Arc;

use parking_lot::Mutex;
use rfmount_client::callbacks::CallbackSink;
use rfmount_client::mock::MemRemote;
use rfmount_proto::{Change, FileId, Invalidation};

use super::super::{KernelNote, PushSink};
use super::*;
use crate::data_cache::DataCache;
use crate::inodes::ROOT;
use crate::options::MountConfig;

struct Fixture {
    remote: Arc<MemRemote>,
    fs: Arc<RemoteFs<MemRemote>>,
    notes: Arc<Mutex<Vec<KernelNote>>>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(MemRemote::new(false));
    let cfg = MountConfig::new(dir.path().to_path_buf());
    let cache = Arc::new(DataCache::open(dir.path(), "mem-export", 1 << 30).unwrap());
    let fs = Arc::new(RemoteFs::new(remote.clone(), cfg, cache));
    let notes = Arc::new(Mutex::new(Vec::new()));
    let sink = notes.clone();
    fs.set_kernel_notes(Box::new(move |n| sink.lock().push(n)));
    Fixture {
        remote,
        fs,
        notes,
        _dir: dir,
    }
}

fn me() -> u32 {
    // SAFETY: gettid has no preconditions.
    u32::try_from(unsafe { libc::gettid() }).unwrap()
}

fn removed(f: &Fixture, path: &str) {
    PushSink(Arc::downgrade(&f.fs)).invalidated(&[Invalidation {
        path: RelPath::new(path).unwrap(),
        file_id: FileId::default(),
        change: Change::Removed,
    }]);
}

fn echoes(f: &Fixture) -> Vec<Removal> {
    f.notes
        .lock()
        .iter()
        .filter_map(|n| match n {
            KernelNote::Echo(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_removal_elsewhere_is_echoed_and_answered_without_the_server() {
    let f = fixture();
    f.remote.write_file("gone.txt", b"x");
    let a = f.fs.lookup(ROOT, "gone.txt").unwrap();
    f.fs.echoes().serve_from_this_thread();
    removed(&f, "gone.txt");
    let r = echoes(&f);
    assert_eq!(r.len(), 1, "{:?}", f.notes.lock());
    assert_eq!((r[0].parent, r[0].child, r[0].dir), (ROOT, a.ino, false));

    // Another thread's unlink is no echo: it goes to the server.
    assert!(
        f.fs.echo_remove(me() + 1, ROOT, "gone.txt", false)
            .is_none()
    );
    // The echo thread's lookup finds the removed inode, with no request.
    let stats = f.remote.calls("stat");
    assert_eq!(f.fs.echo_lookup(me(), ROOT, "gone.txt").unwrap().ino, a.ino);
    assert_eq!(
        f.fs.echo_remove(me(), ROOT, "gone.txt", false)
            .map(|r| r.is_ok()),
        Some(true)
    );
    assert_eq!(f.remote.calls("remove"), 0);
    assert_eq!(f.remote.calls("stat"), stats);
    assert!(f.fs.is_unlinked(a.ino));
    // Answered once only.
    assert!(matches!(
        f.fs.echo_remove(me(), ROOT, "gone.txt", false),
        Some(Err(_))
    ));
}

#[test]
fn a_file_with_unsent_changes_or_a_name_looked_up_again_is_not_echoed() {
    let f = fixture();
    f.remote.write_file("busy.txt", b"x");
    f.remote.write_file("again.txt", b"x");
    f.fs.echoes().serve_from_this_thread();
    let busy = f.fs.lookup(ROOT, "busy.txt").unwrap();
    let o = f.fs.open(busy.ino, libc::O_WRONLY).unwrap();
    f.fs.write(o.fh, 0, b"local change").unwrap();
    removed(&f, "busy.txt");
    assert!(echoes(&f).is_empty(), "{:?}", f.notes.lock());
    assert!(
        f.notes
            .lock()
            .iter()
            .any(|n| matches!(n, KernelNote::Delete(..)))
    );
    f.fs.release(o.fh);

    let again = f.fs.lookup(ROOT, "again.txt").unwrap();
    removed(&f, "again.txt");
    assert_eq!(echoes(&f).len(), 1);
    // The name now leads to another inode: made anew on the server, then
    // forgotten and looked up again (the same server object would get its
    // old number back).
    f.remote.write_file("again.txt", b"made anew");
    f.fs.forget(again.ino, 1);
    assert_ne!(f.fs.lookup(ROOT, "again.txt").unwrap().ino, again.ino);
    assert!(matches!(
        f.fs.echo_remove(me(), ROOT, "again.txt", false),
        Some(Err(_))
    ));
}

#[test]
fn no_echo_once_stopped() {
    let f = fixture();
    f.remote.write_file("f.txt", b"x");
    f.fs.lookup(ROOT, "f.txt").unwrap();
    f.fs.echoes().serve_from_this_thread();
    f.fs.echoes().stop();
    removed(&f, "f.txt");
    assert!(echoes(&f).is_empty());
    assert!(f.fs.echo_remove(me(), ROOT, "f.txt", false).is_none());
}
