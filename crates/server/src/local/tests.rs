//! LocalStore against real directories: confinement under hostile symlinks,
//! and the atomic-upload contract.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use rfmount_proto::{ErrorCode, FileKind, RelPath, SetAttr, SetTime, Timestamp};

use super::{LocalStore, TEMP_PREFIX};
use crate::store::Store;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// A root inside a scratch directory, with a sibling `outside` directory
/// holding a secret that must never be reachable.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    store: LocalStore,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "secret").unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/inner.txt"), "inner").unwrap();
    fs::write(root.join("f.txt"), "hello").unwrap();
    symlink("/etc", root.join("etc")).unwrap();
    symlink("../outside", root.join("out")).unwrap();
    symlink("../outside/secret", root.join("secret_link")).unwrap();
    symlink("/tmp", root.join("d/sub")).unwrap();
    symlink("f.txt", root.join("good_link")).unwrap();
    symlink("../f.txt", root.join("d/up_link")).unwrap();
    symlink("d", root.join("dir_link")).unwrap();
    let store = LocalStore::open(&root).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        store,
    }
}

fn code<T>(r: Result<T, rfmount_proto::WireError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code,
    }
}

fn assert_escape<T: std::fmt::Debug>(r: Result<T, rfmount_proto::WireError>) {
    match r {
        Ok(v) => panic!("escaped the root: {v:?}"),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::Access, "{e}");
            assert!(e.message.contains("path escapes the export"), "{e}");
        }
    }
}

fn read_all(store: &LocalStore, path: &str) -> Vec<u8> {
    let (_, mut r) = store.open_read(&p(path)).unwrap();
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

fn put(
    store: &LocalStore,
    path: &str,
    data: &[u8],
) -> Result<rfmount_proto::Meta, rfmount_proto::WireError> {
    let mut w = store.begin_put(&p(path), data.len() as u64)?;
    w.write_all(data).unwrap();
    w.commit(None, None)
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

#[test]
fn symlink_to_etc_is_refused_for_every_operation() {
    let f = fixture();
    let s = &f.store;
    assert_escape(s.stat(&p("etc/passwd")));
    assert_escape(s.list(&p("etc")).map(|_| ()));
    assert_escape(s.open_read(&p("etc/passwd")).map(|(m, _)| m));
    assert_escape(s.begin_put(&p("etc/rfmount-test"), 1).map(|_| ()));
    assert_escape(s.remove(&p("etc/rfmount-test")));
    assert_escape(s.mkdir(&p("etc/rfmount-test"), 0o755));
    assert_escape(s.rename(&p("f.txt"), &p("etc/rfmount-test")));
    assert_escape(s.setattr(&p("etc/passwd"), &SetAttr::default()));
    assert!(!Path::new("/etc/rfmount-test").exists());
    // The link itself is visible for what it is, never followed.
    assert_eq!(s.stat(&p("etc")).unwrap().kind, FileKind::Symlink);
    // And opening it as a file follows it only beneath the root.
    assert_escape(s.open_read(&p("etc")).map(|(m, _)| m));
}

#[test]
fn relative_escapes_are_refused() {
    let f = fixture();
    let s = &f.store;
    assert_escape(s.list(&p("out")).map(|_| ()));
    assert_escape(s.open_read(&p("out/secret")).map(|(m, _)| m));
    assert_escape(s.open_read(&p("secret_link")).map(|(m, _)| m));
    assert_escape(s.setattr(
        &p("secret_link"),
        &SetAttr {
            mode: Some(0o777),
            ..SetAttr::default()
        },
    ));
    assert_escape(s.begin_put(&p("out/new"), 1).map(|_| ()));
    assert!(!f.root.join("../outside/new").exists());
    let secret = f.root.join("../outside/secret");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "secret");
}

#[test]
fn directory_symlink_out_of_the_root_is_refused_below_it() {
    let f = fixture();
    let s = &f.store;
    assert_escape(s.stat(&p("d/sub/x")));
    assert_escape(s.open_read(&p("d/sub/x")).map(|(m, _)| m));
    assert_escape(s.begin_put(&p("d/sub/x"), 0).map(|_| ()));
    assert_escape(s.list(&p("d/sub")).map(|_| ()));
}

#[test]
fn symlinks_inside_the_root_work_for_get() {
    let f = fixture();
    assert_eq!(read_all(&f.store, "good_link"), b"hello");
    assert_eq!(read_all(&f.store, "d/up_link"), b"hello");
    assert_eq!(read_all(&f.store, "dir_link/inner.txt"), b"inner");
    let names: Vec<String> = f
        .store
        .list(&p("dir_link"))
        .unwrap()
        .map(|e| e.unwrap().name)
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["inner.txt", "sub", "up_link"]);
}

#[test]
fn list_reports_kinds_and_hides_temporaries() {
    let f = fixture();
    fs::write(f.root.join(".rfput-0123.tmp"), "partial").unwrap();
    let mut entries: Vec<_> = f
        .store
        .list(&RelPath::root())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "d",
            "dir_link",
            "etc",
            "f.txt",
            "good_link",
            "out",
            "secret_link"
        ]
    );
    let kind = |n: &str| entries.iter().find(|e| e.name == n).unwrap().meta.kind;
    assert_eq!(kind("d"), FileKind::Dir);
    assert_eq!(kind("f.txt"), FileKind::File);
    assert_eq!(kind("etc"), FileKind::Symlink);
    let f_meta = entries.iter().find(|e| e.name == "f.txt").unwrap().meta;
    assert_eq!(f_meta, f.store.stat(&p("f.txt")).unwrap());
    assert_eq!(f_meta.size, 5);
}

#[test]
fn non_utf8_names_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let f = fixture();
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff");
    fs::write(f.root.join("d").join(bad), "x").unwrap();
    let names: Vec<String> = f
        .store
        .list(&p("d"))
        .unwrap()
        .map(|e| e.unwrap().name)
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("bad")), "{names:?}");
    assert!(names.contains(&"inner.txt".to_owned()));
}

#[test]
fn wrong_kinds_get_their_errno() {
    let f = fixture();
    let s = &f.store;
    assert_eq!(code(s.list(&p("f.txt")).map(|_| ())), ErrorCode::NotDir);
    assert_eq!(code(s.open_read(&p("d")).map(|(m, _)| m)), ErrorCode::IsDir);
    assert_eq!(code(s.remove(&p("d"))), ErrorCode::IsDir);
    assert_eq!(code(s.rmdir(&p("f.txt"))), ErrorCode::NotDir);
    assert_eq!(code(s.rmdir(&p("d"))), ErrorCode::NotEmpty);
    assert_eq!(code(s.stat(&p("nope"))), ErrorCode::NotFound);
    assert_eq!(code(s.mkdir(&p("d"), 0o755)), ErrorCode::Exists);
    assert_eq!(code(s.begin_put(&p("d"), 0).map(|_| ())), ErrorCode::IsDir);
    assert_eq!(code(s.rmdir(&RelPath::root())), ErrorCode::Busy);
    assert_eq!(code(s.rename(&RelPath::root(), &p("x"))), ErrorCode::Busy);
}

#[test]
fn put_replaces_atomically_and_keeps_mode() {
    let f = fixture();
    fs::set_permissions(f.root.join("f.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let before = f.store.stat(&p("f.txt")).unwrap();
    let mut w = f.store.begin_put(&p("f.txt"), 3).unwrap();
    w.write_all(b"new").unwrap();
    // Until the commit, readers see the old content and the temporary is
    // hidden from listings.
    assert_eq!(read_all(&f.store, "f.txt"), b"hello");
    assert_eq!(temp_files(&f.root).len(), 1);
    assert!(
        !f.store
            .list(&RelPath::root())
            .unwrap()
            .any(|e| e.unwrap().name.starts_with(TEMP_PREFIX))
    );
    let mtime = Timestamp {
        secs: 1_600_000_000,
        nanos: 5,
    };
    let meta = w.commit(None, Some(mtime)).unwrap();
    assert_eq!(meta.mode, 0o600);
    assert_eq!(meta.size, 3);
    assert_eq!(meta.mtime, mtime);
    assert_ne!(meta.version, before.version);
    assert_eq!(read_all(&f.store, "f.txt"), b"new");
    assert!(temp_files(&f.root).is_empty());
    // A new file gets 0644, or what the client asks for.
    assert_eq!(put(&f.store, "d/new", b"x").unwrap().mode, 0o644);
    let mut w = f.store.begin_put(&p("d/x"), 0).unwrap();
    w.flush().unwrap();
    assert_eq!(w.commit(Some(0o640), None).unwrap().mode, 0o640);
}

#[test]
fn dropped_put_leaves_old_file_and_no_temporary() {
    let f = fixture();
    let mut w = f.store.begin_put(&p("f.txt"), 10).unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    assert_eq!(read_all(&f.store, "f.txt"), b"hello");
    assert!(temp_files(&f.root).is_empty());
}

#[test]
fn put_onto_symlink_replaces_the_link_not_its_target() {
    let f = fixture();
    put(&f.store, "secret_link", b"mine").unwrap();
    assert_eq!(
        fs::read_to_string(f.root.join("../outside/secret")).unwrap(),
        "secret"
    );
    assert_eq!(
        f.store.stat(&p("secret_link")).unwrap().kind,
        FileKind::File
    );
}

#[test]
fn namespace_operations() {
    let f = fixture();
    let s = &f.store;
    let m = s.mkdir(&p("new"), 0o750).unwrap();
    assert_eq!((m.kind, m.mode), (FileKind::Dir, 0o750));
    s.rename(&p("f.txt"), &p("new/g.txt")).unwrap();
    assert_eq!(read_all(s, "new/g.txt"), b"hello");
    assert_eq!(code(s.rmdir(&p("new"))), ErrorCode::NotEmpty);
    s.remove(&p("new/g.txt")).unwrap();
    s.rmdir(&p("new")).unwrap();
    assert_eq!(code(s.stat(&p("new"))), ErrorCode::NotFound);
    // Removing a symlink removes the link, never its target.
    s.remove(&p("secret_link")).unwrap();
    assert!(f.root.join("../outside/secret").exists());
}

#[test]
fn setattr_changes_mode_size_and_times() {
    let f = fixture();
    let s = &f.store;
    let t = Timestamp {
        secs: 1_500_000_000,
        nanos: 7,
    };
    let attr = SetAttr {
        mode: Some(0o604),
        size: Some(2),
        atime: Some(SetTime::Now),
        mtime: Some(SetTime::At(t)),
    };
    let m = s.setattr(&p("f.txt"), &attr).unwrap();
    assert_eq!((m.mode, m.size, m.mtime), (0o604, 2, t));
    assert_eq!(read_all(s, "f.txt"), b"he");
    assert_eq!(s.stat(&p("f.txt")).unwrap(), m);
    let d = s
        .setattr(
            &p("d"),
            &SetAttr {
                mode: Some(0o700),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((d.kind, d.mode), (FileKind::Dir, 0o700));
    let trunc_dir = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(code(s.setattr(&p("d"), &trunc_dir)), ErrorCode::IsDir);
}

#[test]
fn export_id_is_stable_and_distinct() {
    let f = fixture();
    let again = LocalStore::open(&f.root).unwrap();
    assert_eq!(f.store.export_id(), again.export_id());
    assert_eq!(f.store.export_id().len(), 32);
    let other = LocalStore::open(&f.root.join("d")).unwrap();
    assert_ne!(f.store.export_id(), other.export_id());
    let s = f.store.statfs().unwrap();
    assert!(s.blocks > 0 && s.namelen > 0);
}

#[test]
fn fifo_is_refused_without_blocking() {
    let f = fixture();
    let fifo = f.root.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_eq!(
        code(f.store.open_read(&p("fifo")).map(|(m, _)| m)),
        ErrorCode::Invalid
    );
    assert_eq!(
        code(f.store.setattr(&p("fifo"), &SetAttr::default())),
        ErrorCode::Invalid
    );
    assert_eq!(f.store.stat(&p("fifo")).unwrap().kind, FileKind::Other);
}

/// Waits for the store's startup sweep to finish; how many it removed.
fn swept(store: &LocalStore) -> usize {
    let handle = store.sweep.lock().take().expect("the sweep started");
    handle.join().expect("the sweep thread panicked")
}

/// Writes an upload temporary whose mtime is an hour old. Its ctime is now,
/// so callers open the store only after [`let_the_clock_tick`].
fn stale_temp(path: &Path) {
    fs::write(path, "partial").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

/// The sweep compares with the kernel's coarse clock, which advances once a
/// tick (at most 10 ms): make sure files written so far predate the store.
fn let_the_clock_tick() {
    std::thread::sleep(std::time::Duration::from_millis(100));
}

fn wait_gone(paths: &[&Path]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while paths.iter().any(|p| p.symlink_metadata().is_ok()) {
        let left: Vec<_> = paths
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        assert!(
            std::time::Instant::now() < deadline,
            "still there after 10 s: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn startup_sweep_removes_stale_temporaries_only_beneath_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::create_dir(&outside).unwrap();
    let top = root.join(".rfput-abc.tmp");
    let nested = root.join("a/b/.rfput-abc.tmp");
    stale_temp(&top);
    stale_temp(&nested);
    // Stale temporaries outside the root, reachable only through symlinks.
    let out_temp = outside.join(".rfput-x.tmp");
    stale_temp(&out_temp);
    symlink(&outside, root.join("abs_link")).unwrap();
    symlink("../outside", root.join("a/rel_link")).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, "keep").unwrap();
    symlink(&victim, root.join(".rfput-link.tmp")).unwrap();
    // Not temporaries: left alone whatever their age.
    fs::write(root.join("a/b/data.rfput-abc.tmp"), "data").unwrap();
    fs::create_dir(root.join(".rfput-dir")).unwrap();
    let_the_clock_tick();

    let store = LocalStore::open(&root).unwrap();
    let fresh = root.join(".rfput-fresh.tmp");
    let fresh_nested = root.join("a/b/.rfput-fresh.tmp");
    fs::write(&fresh, "mine").unwrap();
    fs::write(&fresh_nested, "mine").unwrap();
    wait_gone(&[&top, &nested]);
    assert_eq!(swept(&store), 2);

    assert_eq!(fs::read_to_string(&fresh).unwrap(), "mine");
    assert_eq!(fs::read_to_string(&fresh_nested).unwrap(), "mine");
    assert_eq!(fs::read_to_string(&out_temp).unwrap(), "partial");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    assert!(root.join(".rfput-link.tmp").symlink_metadata().is_ok());
    assert!(root.join("a/b/data.rfput-abc.tmp").exists());
    assert!(root.join(".rfput-dir").is_dir());
    // Listings do not remove fresh temporaries either.
    assert_eq!(names_in(&store, "a/b"), ["data.rfput-abc.tmp"]);
    assert!(fresh_nested.exists());
}

fn names_in(store: &LocalStore, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = store
        .list(&p(dir))
        .unwrap()
        .map(|e| e.unwrap().name)
        .collect();
    names.sort();
    names
}

#[test]
fn listing_removes_stale_temporaries_the_sweep_did_not_reach() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // Deeper than the sweep descends.
    let deep = vec!["d"; 80].join("/");
    fs::create_dir_all(root.join(&deep)).unwrap();
    let stale = root.join(&deep).join(".rfput-abc.tmp");
    stale_temp(&stale);
    fs::write(root.join(&deep).join("file"), "x").unwrap();
    let_the_clock_tick();

    let store = LocalStore::open(&root).unwrap();
    assert_eq!(swept(&store), 0);
    assert!(stale.exists(), "the sweep should stop above this depth");
    let fresh = root.join(&deep).join(".rfput-fresh.tmp");
    fs::write(&fresh, "mine").unwrap();
    assert_eq!(names_in(&store, &deep), ["file"]);
    assert!(!stale.exists(), "the listing should have removed it");
    assert!(fresh.exists());
}

#[test]
fn uploads_in_progress_survive_even_when_every_file_looks_stale() {
    let f = fixture();
    // As if file times came from a clock far behind ours (a network
    // filesystem): only the register of live uploads protects them.
    let store = LocalStore {
        temps: std::sync::Arc::new(super::sweep::Temps::started_at(4_000_000_000)),
        ..LocalStore::open(&f.root).unwrap()
    };
    let mut w = store.begin_put(&p("d/new"), 4).unwrap();
    w.write_all(b"data").unwrap();
    let other = f.root.join("d/.rfput-other.tmp");
    fs::write(&other, "not ours").unwrap();
    assert_eq!(temp_files(&f.root.join("d")).len(), 2);
    assert_eq!(names_in(&store, "d"), ["inner.txt", "sub", "up_link"]);
    assert!(!other.exists(), "a temporary not of this store looks stale");
    assert_eq!(
        temp_files(&f.root.join("d")).len(),
        1,
        "the upload's survives"
    );
    // The commit sets an old mtime on the temporary before renaming it.
    let old = Timestamp {
        secs: 1_000_000_000,
        nanos: 0,
    };
    assert_eq!(w.commit(None, Some(old)).unwrap().mtime, old);
    assert_eq!(read_all(&store, "d/new"), b"data");
    assert!(temp_files(&f.root.join("d")).is_empty());
    // Unregistered once gone.
    assert_eq!(store.temps.live_count(), 0);
}
