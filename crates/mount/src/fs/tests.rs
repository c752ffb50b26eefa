//! Core tests: the filesystem driven directly, over the in-memory remote,
//! with no kernel involved.

use std::sync::Arc;

use rfmount_client::mock::MemRemote;
use rfmount_proto::{FileKind, Meta, SetTime, Timestamp};

use super::*;
use crate::inodes::ROOT;

struct Fixture {
    remote: Arc<MemRemote>,
    fs: RemoteFs<MemRemote>,
    _dir: tempfile::TempDir,
}

fn fixture_with(remote: MemRemote, cache_size: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(remote);
    let mut cfg = MountConfig::new(dir.path().to_path_buf());
    cfg.cache_size = cache_size;
    let cache = Arc::new(DataCache::open(dir.path(), "mem-export", cache_size).unwrap());
    let fs = RemoteFs::new(remote.clone(), cfg, cache);
    Fixture {
        remote,
        fs,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(MemRemote::new(false), 1 << 30)
}

const RD: i32 = libc::O_RDONLY;
const WR: i32 = libc::O_WRONLY;

fn read_all(f: &Fixture, name: &str) -> Vec<u8> {
    let a = f.fs.lookup(ROOT, name).unwrap();
    let o = f.fs.open(a.ino, RD).unwrap();
    let data = f.fs.read(o.fh, 0, 1 << 20).unwrap().to_vec();
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    data
}

/// Waits until every fetch has ended and recorded what it brought, for a
/// test that then changes the cache directly, as no caller of the
/// filesystem can.
fn wait_for_fetches(f: &Fixture) {
    let states: Vec<_> = f.fs.files.lock().values().cloned().collect();
    for s in states.iter().filter_map(|st| st.stream.lock().clone()) {
        s.wait_end();
    }
}

struct Collect(Vec<(String, u64)>, usize);

impl DirSink for Collect {
    fn add(&mut self, ino: u64, _offset: u64, name: &str, _meta: &Meta) -> bool {
        if self.0.len() >= self.1 {
            return true;
        }
        self.0.push((name.to_owned(), ino));
        false
    }
}

#[test]
fn reads_fetch_once_then_revalidate_with_not_modified() {
    let f = fixture();
    f.remote.write_file("a.txt", b"hello");
    assert_eq!(read_all(&f, "a.txt"), b"hello");
    assert_eq!(read_all(&f, "a.txt"), b"hello");
    // Two opens, two GETs: the second was answered NotModified (MemRemote
    // writes nothing then); the content came from the cache.
    assert_eq!(f.remote.calls("get"), 2);
    f.remote.write_file("a.txt", b"changed!");
    assert_eq!(read_all(&f, "a.txt"), b"changed!");
}

#[test]
fn create_write_close_uploads_once_with_mode() {
    let f = fixture();
    let (a, o) = f.fs.create(ROOT, "new.bin", 0o640, 0o022, None).unwrap();
    assert_eq!(a.meta.kind, FileKind::File);
    assert_eq!(f.fs.write(o.fh, 0, b"abc").unwrap(), 3);
    assert_eq!(f.fs.write(o.fh, 3, b"def").unwrap(), 3);
    assert_eq!(
        f.remote.read_file("new.bin"),
        None,
        "nothing is sent before close"
    );
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.read_file("new.bin").unwrap(), b"abcdef");
    assert_eq!(f.remote.calls("put"), 1);
    let st = f.remote.stat(&RelPath::new("new.bin").unwrap()).unwrap();
    assert_eq!(st.mode, 0o640);
}

#[test]
fn open_close_without_writes_does_not_upload() {
    let f = fixture();
    f.remote.write_file("a", b"x");
    let a = f.fs.lookup(ROOT, "a").unwrap();
    let o = f.fs.open(a.ino, libc::O_RDWR).unwrap();
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.calls("put"), 0);
}

#[test]
fn append_keeps_old_content() {
    let f = fixture();
    f.remote.write_file("log", b"one\n");
    let a = f.fs.lookup(ROOT, "log").unwrap();
    let o = f.fs.open(a.ino, WR | libc::O_APPEND).unwrap();
    f.fs.write(o.fh, a.meta.size, b"two\n").unwrap();
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.read_file("log").unwrap(), b"one\ntwo\n");
}

#[test]
fn truncating_open_needs_no_fetch_and_uploads_even_without_writes() {
    let f = fixture();
    f.remote.write_file("t", b"old content");
    let a = f.fs.lookup(ROOT, "t").unwrap();
    let o = f.fs.open(a.ino, WR | libc::O_TRUNC).unwrap();
    assert_eq!(f.remote.calls("get"), 0);
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.read_file("t").unwrap(), b"");
}

#[test]
fn failed_upload_reports_error_keeps_data_and_retries() {
    let f = fixture();
    let (_, o) = f.fs.create(ROOT, "precious", 0o644, 0, None).unwrap();
    f.fs.write(o.fh, 0, b"do not lose me").unwrap();
    f.remote.set_offline(true);
    let err = f.fs.flush(o.fh).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    f.fs.release(o.fh);
    assert_eq!(f.fs.retry_dirty(), 1);
    f.remote.set_offline(false);
    assert_eq!(f.fs.retry_dirty(), 0);
    assert_eq!(f.remote.read_file("precious").unwrap(), b"do not lose me");
}

#[test]
fn server_errors_map_to_errno() {
    let f = fixture_with(MemRemote::new(true), 1 << 30);
    f.remote.write_file("ro", b"x");
    assert_eq!(
        f.fs.mkdir(ROOT, "d", 0o755, None).unwrap_err().errno(),
        libc::EROFS
    );
    assert_eq!(
        f.fs.lookup(ROOT, "missing").unwrap_err().errno(),
        libc::ENOENT
    );
    let a = f.fs.lookup(ROOT, "ro").unwrap();
    assert_eq!(f.fs.open(a.ino, WR).unwrap_err().errno(), libc::EROFS);
}

#[test]
fn readdir_snapshot_merges_unsent_files_and_counts_plus_lookups() {
    let f = fixture();
    f.remote.write_file("d/x", b"1");
    f.remote.write_file("d/y", b"2");
    let d = f.fs.lookup(ROOT, "d").unwrap();
    let (_, o) = f.fs.create(d.ino, "z", 0o644, 0, None).unwrap();
    let fh = f.fs.opendir(d.ino).unwrap();
    // A reply buffer that takes three entries: ".", "..", "x".
    let mut first = Collect(Vec::new(), 3);
    f.fs.readdir(fh, 0, true, &mut first).unwrap();
    let mut rest = Collect(Vec::new(), 100);
    f.fs.readdir(fh, 3, true, &mut rest).unwrap();
    f.fs.releasedir(fh);
    let mut names: Vec<String> = first
        .0
        .iter()
        .chain(&rest.0)
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "x", "y", "z"]);
    f.fs.release(o.fh);
}

#[test]
fn rename_moves_unsent_changes_with_the_file() {
    let f = fixture();
    f.fs.mkdir(ROOT, "dst", 0o755, None).unwrap();
    let (_, o) = f.fs.create(ROOT, "draft", 0o644, 0, None).unwrap();
    f.fs.write(o.fh, 0, b"text").unwrap();
    let dst = f.fs.lookup(ROOT, "dst").unwrap();
    // Never uploaded: the rename is local only.
    f.fs.rename(ROOT, "draft", dst.ino, "final", 0).unwrap();
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.read_file("dst/final").unwrap(), b"text");
    assert_eq!(f.remote.read_file("draft"), None);
}

#[test]
fn unlinked_open_file_is_not_resurrected() {
    let f = fixture();
    let (_, o) = f.fs.create(ROOT, "tmp", 0o644, 0, None).unwrap();
    f.fs.write(o.fh, 0, b"scratch").unwrap();
    f.fs.unlink(ROOT, "tmp").unwrap();
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    assert_eq!(f.remote.read_file("tmp"), None);
    assert_eq!(f.remote.calls("put"), 0);
}

#[test]
fn setattr_on_unsent_file_travels_with_upload() {
    let f = fixture();
    let (a, o) = f.fs.create(ROOT, "p", 0o644, 0, None).unwrap();
    f.fs.write(o.fh, 0, b"123456").unwrap();
    let t = Timestamp {
        secs: 1_000_000_000,
        nanos: 0,
    };
    let got =
        f.fs.setattr(
            a.ino,
            Some(0o600),
            Some(4),
            None,
            Some(SetTime::At(t)),
            (None, None),
        )
        .unwrap();
    assert_eq!(
        (got.meta.size, got.meta.mode, got.meta.mtime),
        (4, 0o600, t)
    );
    f.fs.flush(o.fh).unwrap();
    f.fs.release(o.fh);
    let st = f.remote.stat(&RelPath::new("p").unwrap()).unwrap();
    assert_eq!((st.size, st.mode, st.mtime), (4, 0o600, t));
    assert_eq!(f.remote.read_file("p").unwrap(), b"1234");
    // A clean file is changed on the server directly.
    f.fs.setattr(a.ino, Some(0o644), None, None, None, (None, None))
        .unwrap();
    assert_eq!(f.remote.calls("setattr"), 1);
}

#[test]
fn offline_reads_serve_cached_copy() {
    let f = fixture();
    f.remote.write_file("doc", b"cached");
    assert_eq!(read_all(&f, "doc"), b"cached");
    f.remote.set_offline(true);
    assert_eq!(read_all(&f, "doc"), b"cached");
}

#[test]
fn listing_answers_lookups_without_stat() {
    let f = fixture();
    for i in 0..50 {
        f.remote.write_file(&format!("many/f{i}"), b"");
    }
    let d = f.fs.lookup(ROOT, "many").unwrap();
    let fh = f.fs.opendir(d.ino).unwrap();
    f.fs.releasedir(fh);
    let stats = f.remote.calls("stat");
    for i in 0..50 {
        f.fs.lookup(d.ino, &format!("f{i}")).unwrap();
    }
    assert_eq!(
        f.remote.calls("stat"),
        stats,
        "lookups after a LIST need no STAT"
    );
    assert_eq!(f.remote.calls("list"), 1);
}

#[test]
fn file_larger_than_the_cache_is_still_readable() {
    let f = fixture_with(MemRemote::new(false), 10);
    f.remote.write_file("big", &[7u8; 20]);
    f.remote.write_file("small", b"abc");
    assert_eq!(read_all(&f, "big"), vec![7u8; 20]);
    assert_eq!(read_all(&f, "small"), b"abc");
    // Once closed, the oversized entry is the first to go.
    assert!(f.fs.cache().entry(&RelPath::new("big").unwrap()).is_none());
}

#[test]
fn extracting_into_a_new_directory_needs_no_stat_per_file() {
    let f = fixture();
    let d = f.fs.mkdir(ROOT, "new", 0o755, None).unwrap();
    let stats = f.remote.calls("stat");
    for i in 0..20 {
        let name = format!("f{i}");
        // What the kernel does before create: a lookup that must say ENOENT.
        assert_eq!(f.fs.lookup(d.ino, &name).unwrap_err().errno(), libc::ENOENT);
        let (_, o) = f.fs.create(d.ino, &name, 0o644, 0, None).unwrap();
        f.fs.write(o.fh, 0, b"x").unwrap();
        f.fs.flush(o.fh).unwrap();
        f.fs.release(o.fh);
    }
    assert_eq!(
        f.remote.calls("stat"),
        stats,
        "the new directory's listing answers lookups"
    );
    assert_eq!(f.fs.lookup(d.ino, "f3").unwrap().meta.size, 1);
    f.fs.unlink(d.ino, "f3").unwrap();
    assert_eq!(f.fs.lookup(d.ino, "f3").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(
        f.remote.list(&RelPath::new("new").unwrap()).unwrap().len(),
        19
    );
}

/// A crash of rfmount: the filesystem and its cache are dropped with a
/// writer's handle still open (nothing is released), then a new mount opens
/// the same cache directory.
#[test]
fn after_a_crash_unclosed_content_is_recovered_beside_the_file_and_closed_content_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let remote = Arc::new(MemRemote::new(false));
    remote.write_file("doc", b"the server's good version");
    let mount = |remote: &Arc<MemRemote>| {
        let cfg = MountConfig::new(dir.path().to_path_buf());
        let cache = Arc::new(DataCache::open(dir.path(), "mem-export", 1 << 30).unwrap());
        RemoteFs::new(remote.clone(), cfg, cache)
    };
    {
        let fs = mount(&remote);
        // Closed while the server was unreachable: kept for upload.
        let (_, c) = fs.create(ROOT, "closed", 0o644, 0, None).unwrap();
        fs.write(c.fh, 0, b"closed content").unwrap();
        remote.set_offline(true);
        assert!(fs.flush(c.fh).is_err());
        fs.release(c.fh);
        remote.set_offline(false);
        // Half-written when rfmount dies.
        let a = fs.lookup(ROOT, "doc").unwrap();
        let o = fs.open(a.ino, libc::O_RDWR).unwrap();
        fs.write(o.fh, 0, b"HALF").unwrap();
        // Dropped without releasing anything: what is on disk is what a
        // kill -9 leaves (nothing in the cache runs on drop).
        drop(fs);
    }
    let fs = mount(&remote);
    assert_eq!(fs.retry_dirty(), 0);
    assert_eq!(
        remote.read_file("doc").unwrap(),
        b"the server's good version",
        "unclosed content never replaces the server's file"
    );
    assert_eq!(remote.read_file("closed").unwrap(), b"closed content");
    let listing = remote.list(&RelPath::root()).unwrap();
    let recovered: Vec<_> = listing
        .iter()
        .filter(|e| e.name.starts_with("doc.recovered-"))
        .collect();
    assert_eq!(recovered.len(), 1, "{listing:?}");
    assert_eq!(
        remote.read_file(&recovered[0].name).unwrap(),
        b"HALFserver's good version"
    );
}

#[test]
fn writes_get_enospc_when_the_cache_is_full_of_unsent_data() {
    let f = fixture_with(MemRemote::new(false), 1000);
    f.fs.cache()
        .set_space_wait(std::time::Duration::from_millis(20));
    f.remote.set_offline(true);
    let (_, a) = f.fs.create(ROOT, "a", 0o644, 0, None).unwrap();
    f.fs.write(a.fh, 0, &[1; 600]).unwrap();
    assert!(f.fs.flush(a.fh).is_err());
    f.fs.release(a.fh);
    let (_, b) = f.fs.create(ROOT, "b", 0o644, 0, None).unwrap();
    f.fs.write(b.fh, 0, &[2; 400]).unwrap();
    let err = f.fs.write(b.fh, 400, &[2; 1]).unwrap_err();
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!(f.fs.cache().total_size() <= 1000);
    assert!(f.fs.flush(b.fh).is_err());
    f.fs.release(b.fh);
    // Back online: everything closed is uploaded, and space is free again.
    f.remote.set_offline(false);
    assert_eq!(f.fs.retry_dirty(), 0);
    assert_eq!(f.remote.read_file("a").unwrap(), vec![1; 600]);
    assert_eq!(f.remote.read_file("b").unwrap(), vec![2; 400]);
    let (_, c) = f.fs.create(ROOT, "c", 0o644, 0, None).unwrap();
    f.fs.write(c.fh, 0, &[3; 900]).unwrap();
    f.fs.flush(c.fh).unwrap();
    f.fs.release(c.fh);
}

#[test]
fn only_fsync_and_the_last_release_seal_the_content() {
    let f = fixture();
    f.remote.set_offline(true);
    let (a, o) = f.fs.create(ROOT, "f", 0o644, 0, None).unwrap();
    let path = RelPath::new("f").unwrap();
    let writing = || f.fs.cache().entry(&path).unwrap().writing;
    let second = f.fs.open(a.ino, WR).unwrap();
    f.fs.write(o.fh, 0, b"one").unwrap();
    // A flush is any close(2), a dup's or an exec's too: not a seal.
    assert!(f.fs.flush(o.fh).is_err());
    assert!(writing());
    assert!(f.fs.fsync(o.fh).is_err());
    assert!(!writing(), "fsync declares the content");
    f.fs.write(o.fh, 3, b"two").unwrap();
    assert!(writing());
    // Released while another handle may still write: not sealed yet.
    f.fs.release(o.fh);
    assert!(writing());
    f.fs.release(second.fh);
    assert!(!writing(), "the last release seals");
    f.remote.set_offline(false);
    assert_eq!(f.fs.retry_dirty(), 0);
    assert_eq!(f.remote.read_file("f").unwrap(), b"onetwo");
}

#[test]
fn the_retry_loop_never_sends_content_that_was_not_sealed() {
    let f = fixture();
    f.remote.write_file("f", b"server");
    assert_eq!(read_all(&f, "f"), b"server");
    // The read returned once the bytes landed; the fetch's thread may still
    // be about to record them as the clean entry, over the change made
    // below behind the filesystem's back (a writer's open waits for it).
    wait_for_fetches(&f);
    // A change no close or fsync ever declared (as when recording a seal
    // failed): dirty, but never sent unasked.
    let path = RelPath::new("f").unwrap();
    f.fs.cache().note_change(&path).unwrap();
    std::fs::write(f.fs.cache().data_path(&path), b"torn").unwrap();
    assert_eq!(f.fs.retry_dirty(), 1);
    assert_eq!(f.remote.calls("put"), 0);
    assert_eq!(f.remote.read_file("f").unwrap(), b"server");
}
