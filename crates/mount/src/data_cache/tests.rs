use std::fs;
use std::sync::Arc;
use std::thread;

use super::*;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn fetch(c: &DataCache, path: &RelPath, data: &[u8], version: Version) {
    let mut t = c.begin_fetch(path).unwrap();
    t.write_all(data).unwrap();
    c.finish_fetch(path, t, version, data.len() as u64).unwrap();
}

/// A local write as the filesystem does it: record, make room, write.
fn write(c: &DataCache, path: &RelPath, data: &[u8]) -> io::Result<()> {
    c.note_change(path)?;
    let old = fs::metadata(c.data_path(path)).map_or(0, |m| m.len());
    c.reserve_write(path, old, data.len() as u64)?;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(c.data_path(path))?;
    f.write_all(data)
}

#[test]
fn entries_survive_reopen_and_dirty_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        fetch(&c, &p("a/b"), b"hello", 7);
        c.create_empty(&p("new"), Some(0o600)).unwrap();
        write(&c, &p("new"), b"data").unwrap();
        c.set_overrides(&p("new"), None, Some(Timestamp { secs: 5, nanos: 6 }))
            .unwrap();
        c.seal(&p("new")).unwrap();
    }
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    let e = c.entry(&p("a/b")).unwrap();
    assert_eq!((e.version, e.dirty, e.size), (Some(7), false, 5));
    assert_eq!(fs::read(c.data_path(&p("a/b"))).unwrap(), b"hello");
    let n = c.entry(&p("new")).unwrap();
    assert!(n.dirty && !n.writing);
    assert_eq!(n.size, 4, "a dirty entry's size is its content's");
    assert_eq!(n.mode, Some(0o600));
    assert_eq!(n.mtime, Some(Timestamp { secs: 5, nanos: 6 }));
    assert_eq!(c.dirty_paths(), vec![p("new")]);
    assert_eq!(c.total_size(), 9);
    // A different export never sees these entries.
    let other = DataCache::open(dir.path(), "other", 1 << 20).unwrap();
    assert!(other.entry(&p("a/b")).is_none());
}

#[test]
fn a_change_is_recorded_as_writing_until_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    fetch(&c, &p("f"), b"server", 3);
    assert!(!c.entry(&p("f")).unwrap().writing);
    c.note_change(&p("f")).unwrap();
    let e = c.entry(&p("f")).unwrap();
    assert!(e.dirty && e.writing);
    assert_eq!(e.version, Some(3), "the version it was based on is kept");
    c.seal(&p("f")).unwrap();
    let e = c.entry(&p("f")).unwrap();
    assert!(e.dirty && !e.writing);
    c.create_empty(&p("g"), None).unwrap();
    assert!(
        c.entry(&p("g")).unwrap().writing,
        "a created file is being written"
    );
}

#[test]
fn content_still_being_written_at_a_crash_is_moved_to_a_sibling() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        // Fetched, then rewritten in part by a writer that never closed.
        fetch(&c, &p("d/torn"), b"good server content", 4);
        write(&c, &p("d/torn"), b" + half").unwrap();
        // Closed before the crash (its upload failed): uploaded as it is.
        c.create_empty(&p("closed"), None).unwrap();
        write(&c, &p("closed"), b"whole").unwrap();
        c.seal(&p("closed")).unwrap();
        // Created and never written: nothing to recover.
        c.create_empty(&p("empty"), None).unwrap();
        // `drop` here is the crash: nothing is sealed on the way out.
    }
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    assert!(
        c.entry(&p("d/torn")).is_none(),
        "never uploaded over its name"
    );
    assert!(c.entry(&p("empty")).is_none());
    let closed = c.entry(&p("closed")).unwrap();
    assert!(closed.dirty && !closed.writing);
    let dirty = c.dirty_paths();
    assert_eq!(dirty.len(), 2, "{dirty:?}");
    let rec = dirty.iter().find(|d| **d != p("closed")).unwrap();
    let host = recovery::hostname();
    let prefix = format!("d/torn.recovered-{host}-");
    assert!(rec.as_str().starts_with(&prefix), "{rec}");
    let e = c.entry(rec).unwrap();
    assert!(e.dirty && !e.writing);
    assert_eq!(e.version, None, "uploaded as a new file");
    assert_eq!(
        fs::read(c.data_path(rec)).unwrap(),
        b"good server content + half"
    );
    // Recovered once: a second restart finds nothing more to move.
    drop(c);
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    let mut again = c.dirty_paths();
    again.sort();
    let mut before = dirty.clone();
    before.sort();
    assert_eq!(again, before);
}

#[test]
fn recoveries_in_the_same_second_get_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    let now = SystemTime::now();
    for round in 0..2u8 {
        c.create_empty(&p("f"), None).unwrap();
        write(&c, &p("f"), &[round; 3]).unwrap();
        c.recover("h", now);
    }
    let mut d = c.dirty_paths();
    d.sort();
    let stamp = recovery::utc_stamp(now);
    assert_eq!(
        d,
        vec![
            p(&format!("f.recovered-h-{stamp}")),
            p(&format!("f.recovered-h-{stamp}-2"))
        ]
    );
}

#[test]
fn evicts_lru_clean_never_dirty_or_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 35).unwrap();
    fetch(&c, &p("old"), &[0; 10], 1);
    fetch(&c, &p("pinned"), &[0; 10], 2);
    c.pin(&p("pinned"));
    c.create_empty(&p("dirty"), None).unwrap();
    write(&c, &p("dirty"), &[1; 10]).unwrap();
    fetch(&c, &p("new"), &[0; 10], 3);
    assert!(
        c.entry(&p("old")).is_none(),
        "LRU clean entry should be evicted"
    );
    assert!(!c.data_path(&p("old")).exists());
    assert!(c.entry(&p("pinned")).is_some());
    assert!(c.entry(&p("dirty")).is_some());
    assert!(c.entry(&p("new")).is_some());
    assert_eq!(c.total_size(), 30);
}

#[test]
fn writes_past_the_limit_evict_clean_then_fail_with_enospc() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 100).unwrap();
    c.set_space_wait(Duration::from_millis(50));
    fetch(&c, &p("clean"), &[0; 60], 1);
    c.create_empty(&p("w"), None).unwrap();
    write(&c, &p("w"), &[1; 90]).unwrap();
    assert!(c.entry(&p("clean")).is_none(), "evicted to make room");
    assert_eq!(c.total_size(), 90);
    let err = write(&c, &p("w"), &[1; 11]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(c.total_size(), 90, "a refused write takes no space");
    write(&c, &p("w"), &[1; 10]).unwrap();
    assert_eq!(c.total_size(), 100);
    // Shrinking frees space at once.
    c.resize(&p("w"), 40);
    assert_eq!(c.total_size(), 40);
}

#[test]
fn a_waiting_writer_proceeds_once_an_upload_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(DataCache::open(dir.path(), "exp", 100).unwrap());
    c.set_space_wait(Duration::from_secs(20));
    c.create_empty(&p("sent"), None).unwrap();
    write(&c, &p("sent"), &[1; 80]).unwrap();
    c.seal(&p("sent")).unwrap();
    c.create_empty(&p("w"), None).unwrap();
    let writer = {
        let c = c.clone();
        thread::spawn(move || write(&c, &p("w"), &[2; 50]))
    };
    thread::sleep(Duration::from_millis(200));
    assert!(!writer.is_finished(), "the writer waits for space");
    // The upload of `sent` succeeds: it is clean, unpinned, evictable.
    c.mark_clean(&p("sent"), 9, 80).unwrap();
    writer.join().unwrap().unwrap();
    assert!(c.entry(&p("sent")).is_none());
    assert_eq!(c.total_size(), 50);
}

#[test]
fn fetches_evict_as_they_arrive_and_a_too_large_one_still_lands() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 100).unwrap();
    fetch(&c, &p("a"), &[0; 40], 1);
    fetch(&c, &p("b"), &[0; 40], 2);
    let mut f = c.begin_fetch(&p("c")).unwrap();
    f.write_all(&[0; 30]).unwrap();
    assert!(
        c.entry(&p("a")).is_none(),
        "room made before the bytes land"
    );
    assert!(c.entry(&p("b")).is_some());
    assert_eq!(c.total_size(), 70);
    drop(f);
    assert_eq!(c.total_size(), 40, "an abandoned fetch releases its bytes");
    // Larger than the whole cache: everything clean goes, the fetch lands.
    c.pin(&p("big"));
    let mut f = c.begin_fetch(&p("big")).unwrap();
    f.write_all(&[0; 150]).unwrap();
    c.finish_fetch(&p("big"), f, 5, 150).unwrap();
    assert!(c.entry(&p("b")).is_none());
    assert_eq!(c.total_size(), 150);
    c.unpin(&p("big"));
    assert_eq!(c.total_size(), 0, "back under the limit once closed");
}

#[test]
fn rename_moves_content_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    fetch(&c, &p("d/x"), b"xx", 1);
    c.note_change(&p("d/x")).unwrap();
    fetch(&c, &p("e"), b"old target", 2);
    c.rename(&p("d"), &p("e"));
    assert!(c.entry(&p("d/x")).is_none());
    let e = c.entry(&p("e/x")).unwrap();
    assert!(e.dirty && e.writing);
    assert_eq!(fs::read(c.data_path(&p("e/x"))).unwrap(), b"xx");
    assert!(c.entry(&p("e")).is_none());
    assert_eq!(c.total_size(), 2);
    drop(c);
    // The old record is gone from disk too: only the new name comes back.
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    assert!(c.entry(&p("d/x")).is_none());
}

#[test]
fn wrong_sized_clean_copies_and_orphan_data_are_discarded_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let (short, orphan) = {
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        fetch(&c, &p("f"), b"abc", 1);
        fetch(&c, &p("g"), b"abcdef", 1);
        (c.data_path(&p("g")), c.data_path(&p("never-recorded")))
    };
    // A clean copy whose content is not what its record says.
    fs::write(&short, "abc").unwrap();
    // Data no record names (its removal was cut short by a crash).
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, "stray").unwrap();
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    assert_eq!(c.entry(&p("f")).unwrap().size, 3);
    assert!(c.entry(&p("g")).is_none());
    assert!(!orphan.exists());
    assert_eq!(c.total_size(), 3);
}

#[test]
fn layout_1_meta_files_are_folded_into_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("exp").join(LAYOUT);
    let key = key_of(&p("old/file"));
    let sub = root.join(&key[..2]);
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join(&key), b"unsent").unwrap();
    fs::write(
        sub.join(format!("{key}.meta")),
        "rfmount-cache 1\nversion 3\ndirty 1\nsize 0\nmode 420\nmtime -\npath old/file\n",
    )
    .unwrap();
    {
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        let e = c.entry(&p("old/file")).unwrap();
        assert!(e.dirty && !e.writing, "layout 1 dirty entries were closed");
        assert_eq!((e.version, e.size, e.mode), (Some(3), 6, Some(0o644)));
        assert!(!sub.join(format!("{key}.meta")).exists());
    }
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    assert_eq!(c.dirty_paths(), vec![p("old/file")]);
}

#[test]
fn a_crash_keeps_every_record_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
        for i in 0..50 {
            fetch(&c, &p(&format!("f{i}")), b"x", i);
        }
        c.remove(&p("f7"));
        c.rename(&p("f8"), &p("moved"));
        c.create_empty(&p("w"), None).unwrap();
        write(&c, &p("w"), b"abc").unwrap();
        c.seal(&p("w")).unwrap();
        // Nothing in the cache runs on drop: this is what a crash leaves.
        drop(c);
    }
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    assert!(c.entry(&p("f7")).is_none());
    assert!(c.entry(&p("f8")).is_none());
    assert_eq!(c.entry(&p("moved")).unwrap().version, Some(8));
    assert_eq!(c.entry(&p("f49")).unwrap().version, Some(49));
    let w = c.entry(&p("w")).unwrap();
    assert!(w.dirty && !w.writing);
    assert_eq!(c.total_size(), 49 + 3);
}

#[test]
fn a_second_process_cannot_open_a_cache_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
    // flock conflicts between open file descriptions, so a second open in
    // this process stands in for a second rfmount.
    let err = DataCache::open(dir.path(), "exp", 1 << 20).err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
    assert!(err.to_string().contains("--cache-dir"), "{err}");
    // Another export's cache in the same directory is independent.
    let _other = DataCache::open(dir.path(), "other", 1 << 20).unwrap();
    drop(c);
    DataCache::open(dir.path(), "exp", 1 << 20).unwrap();
}

/// A write-back close of `path` with `data`, as the filesystem does it.
fn close_locally(c: &DataCache, path: &RelPath, data: &[u8]) {
    c.create_empty(path, Some(0o644)).unwrap();
    write(c, path, data).unwrap();
    let f = fs::File::open(c.data_path(path)).unwrap();
    c.seal_locally(path, &f).unwrap();
}

#[test]
fn a_local_close_survives_a_crash_of_rfmount_and_its_flush_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (boot, rebooted) = (Some(1), Some(2));
    {
        let c = DataCache::open_in_boot(dir.path(), "exp", 1 << 20, boot).unwrap();
        close_locally(&c, &p("flushed"), b"on disk");
        assert_eq!(c.flush_unsynced().unwrap(), 1);
        assert_eq!(c.flush_unsynced().unwrap(), 0, "nothing new to flush");
        close_locally(&c, &p("closed"), b"in the page cache");
        let e = c.entry(&p("closed")).unwrap();
        assert!(e.dirty && !e.writing && e.unsynced == boot);
        // Dropped without a flush: rfmount killed.
    }
    {
        // Same boot: the kernel kept the pages, both are uploaded as they are.
        let c = DataCache::open_in_boot(dir.path(), "exp", 1 << 20, boot).unwrap();
        assert!(c.recovered().is_empty(), "{:?}", c.recovered());
        let mut dirty = c.dirty_paths();
        dirty.sort();
        assert_eq!(dirty, vec![p("closed"), p("flushed")]);
        assert_eq!(
            fs::read(c.data_path(&p("closed"))).unwrap(),
            b"in the page cache"
        );
        close_locally(&c, &p("late"), b"never flushed");
    }
    // After a restart of the machine only what was flushed is trusted:
    // the rest is recovered aside, never uploaded over its name.
    let c = DataCache::open_in_boot(dir.path(), "exp", 1 << 20, rebooted).unwrap();
    let e = c.entry(&p("flushed")).unwrap();
    assert!(e.dirty && !e.writing && e.unsynced.is_none());
    let mut recovered: Vec<String> = c.recovered().iter().map(|r| r.to_string()).collect();
    recovered.sort();
    assert_eq!(recovered.len(), 2, "{recovered:?}");
    assert!(
        recovered[0].starts_with("/closed.recovered-"),
        "{recovered:?}"
    );
    assert!(
        recovered[1].starts_with("/late.recovered-"),
        "{recovered:?}"
    );
    assert!(c.entry(&p("closed")).is_none() && c.entry(&p("late")).is_none());
}

#[test]
fn a_file_sealed_again_while_it_is_flushed_stays_unsynced() {
    let dir = tempfile::tempdir().unwrap();
    let c = DataCache::open_in_boot(dir.path(), "exp", 1 << 20, Some(7)).unwrap();
    close_locally(&c, &p("f"), b"one");
    // A rename keeps the mark: the flusher finds the file under its new name.
    c.rename(&p("f"), &p("g"));
    assert_eq!(c.entry(&p("g")).unwrap().unsynced, Some(7));
    assert_eq!(c.flush_unsynced().unwrap(), 1);
    assert_eq!(c.entry(&p("g")).unwrap().unsynced, None);
    write(&c, &p("g"), b" two").unwrap();
    let f = fs::File::open(c.data_path(&p("g"))).unwrap();
    c.seal_locally(&p("g"), &f).unwrap();
    assert_eq!(c.entry(&p("g")).unwrap().unsynced, Some(7));
    // Uploaded before the flusher came: nothing left to flush.
    c.mark_clean(&p("g"), 3, 7).unwrap();
    assert_eq!(c.flush_unsynced().unwrap(), 0);
}
