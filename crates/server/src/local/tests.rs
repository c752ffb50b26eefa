//! LocalStore against real directories: confinement under hostile symlinks,
//! and the atomic-upload contract.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use rfmount_proto::{ErrorCode, FileKind, RelPath, SetAttr, SetTime, Timestamp};

use super::LocalStore;
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
    let mut w = store.begin_put(&p(path), data.len() as u64, None)?;
    w.write_all(data).unwrap();
    w.commit(None, None)
}

/// Every name in `dir` on disk, sorted: what a user of the server's own
/// filesystem sees there.
fn disk_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

#[test]
fn symlink_to_etc_is_refused_for_every_operation() {
    let f = fixture();
    let s = &f.store;
    assert_escape(s.stat(&p("etc/passwd")));
    assert_escape(s.list(&p("etc")).map(|_| ()));
    assert_escape(s.open_read(&p("etc/passwd")).map(|(m, _)| m));
    assert_escape(s.begin_put(&p("etc/rfmount-test"), 1, None).map(|_| ()));
    assert_escape(s.remove(&p("etc/rfmount-test")));
    assert_escape(s.mkdir(&p("etc/rfmount-test"), 0o755, None));
    assert_escape(s.rename(&p("f.txt"), &p("etc/rfmount-test"), 0));
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
    // SETATTR acts on the link itself (lstat semantics), never on what it
    // names: a mode cannot be set on a link, and its times are its own.
    assert_eq!(
        code(s.setattr(
            &p("secret_link"),
            &SetAttr {
                mode: Some(0o777),
                ..SetAttr::default()
            },
        )),
        ErrorCode::Invalid
    );
    let secret_before = fs::metadata(f.root.join("../outside/secret")).unwrap();
    let when = Timestamp {
        secs: 1_000_000_000,
        nanos: 0,
    };
    let m = s
        .setattr(
            &p("secret_link"),
            &SetAttr {
                mtime: Some(SetTime::At(when)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((m.kind, m.mtime), (FileKind::Symlink, when));
    let secret_after = fs::metadata(f.root.join("../outside/secret")).unwrap();
    assert_eq!(
        secret_before.modified().unwrap(),
        secret_after.modified().unwrap()
    );
    assert_escape(s.begin_put(&p("out/new"), 1, None).map(|_| ()));
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
    assert_escape(s.begin_put(&p("d/sub/x"), 0, None).map(|_| ()));
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
fn list_reports_kinds_and_hides_no_name() {
    let f = fixture();
    // Once the name of the server's temporaries; now an ordinary name.
    fs::write(f.root.join(".rfput-0123.tmp"), "mine").unwrap();
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
            ".rfput-0123.tmp",
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
    let f_meta = entries
        .iter()
        .find(|e| e.name == "f.txt")
        .unwrap()
        .meta
        .clone();
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
    assert_eq!(code(s.mkdir(&p("d"), 0o755, None)), ErrorCode::Exists);
    assert_eq!(
        code(s.begin_put(&p("d"), 0, None).map(|_| ())),
        ErrorCode::IsDir
    );
    assert_eq!(code(s.rmdir(&RelPath::root())), ErrorCode::Busy);
    assert_eq!(
        code(s.rename(&RelPath::root(), &p("x"), 0)),
        ErrorCode::Busy
    );
}

#[test]
fn put_replaces_atomically_and_keeps_mode() {
    let f = fixture();
    fs::set_permissions(f.root.join("f.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let before = f.store.stat(&p("f.txt")).unwrap();
    let names = disk_names(&f.root);
    let mut w = f.store.begin_put(&p("f.txt"), 3, None).unwrap();
    w.write_all(b"new").unwrap();
    // Until the commit, readers see the old content and the upload has no
    // name anywhere.
    assert_eq!(read_all(&f.store, "f.txt"), b"hello");
    assert_eq!(disk_names(&f.root), names);
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
    assert_eq!(disk_names(&f.root), names, "no staging name is left");
    // A new file gets 0644, or what the client asks for.
    assert_eq!(put(&f.store, "d/new", b"x").unwrap().mode, 0o644);
    let mut w = f.store.begin_put(&p("d/x"), 0, None).unwrap();
    w.flush().unwrap();
    assert_eq!(w.commit(Some(0o640), None).unwrap().mode, 0o640);
}

#[test]
fn dropped_put_leaves_old_file_and_no_temporary() {
    let f = fixture();
    let names = disk_names(&f.root);
    let mut w = f.store.begin_put(&p("f.txt"), 10, None).unwrap();
    w.write_all(b"half").unwrap();
    let mut n = f.store.begin_put(&p("new.txt"), 10, None).unwrap();
    n.write_all(b"half").unwrap();
    drop(w);
    drop(n);
    assert_eq!(read_all(&f.store, "f.txt"), b"hello");
    assert_eq!(disk_names(&f.root), names);
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
    let m = s.mkdir(&p("new"), 0o750, None).unwrap();
    assert_eq!((m.kind, m.mode), (FileKind::Dir, 0o750));
    s.rename(&p("f.txt"), &p("new/g.txt"), 0).unwrap();
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
        ..SetAttr::default()
    };
    let m = s.setattr(&p("f.txt"), &attr).unwrap();
    assert_eq!((m.mode, m.size, m.mtime), (0o604, 2, t));
    assert_eq!(read_all(s, "f.txt"), b"he");
    // Reading it may have moved the atime since.
    let now = s.stat(&p("f.txt")).unwrap();
    assert_eq!(
        rfmount_proto::Meta {
            atime: m.atime,
            ..now
        },
        m
    );
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
    // Its attributes change without opening it (which would block).
    let m = f
        .store
        .setattr(
            &p("fifo"),
            &SetAttr {
                mode: Some(0o600),
                mtime: Some(SetTime::Now),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((m.kind, m.mode), (FileKind::Fifo, 0o600));
    let trunc = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(
        code(f.store.setattr(&p("fifo"), &trunc)),
        ErrorCode::Invalid
    );
    assert_eq!(f.store.stat(&p("fifo")).unwrap().kind, FileKind::Fifo);
}

#[test]
fn names_like_the_old_temporaries_are_ordinary_and_survive_a_restart() {
    let f = fixture();
    for name in [".rfput-mine", ".rfput-0123.tmp", ".rfserve-upload-x.tmp"] {
        put(&f.store, name, b"x").unwrap();
    }
    let old = Timestamp {
        secs: 1_000_000_000,
        nanos: 0,
    };
    let mut w = f.store.begin_put(&p("d/.rfput-old.tmp"), 1, None).unwrap();
    w.write_all(b"y").unwrap();
    w.commit(None, Some(old)).unwrap();
    drop(f.store);
    let store = LocalStore::open(&f.root).unwrap();
    let names: Vec<String> = store
        .list(&RelPath::root())
        .unwrap()
        .map(|e| e.unwrap().name)
        .collect();
    for name in [".rfput-mine", ".rfput-0123.tmp", ".rfserve-upload-x.tmp"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        assert_eq!(read_all(&store, name), b"x");
    }
    assert_eq!(read_all(&store, "d/.rfput-old.tmp"), b"y");
}

#[test]
fn symlinks_are_created_read_and_listed_with_their_targets() {
    let f = fixture();
    let s = &f.store;
    for (name, target) in [
        ("rel", "f.txt"),
        ("abs", "/etc/passwd"),
        ("dangling", "no/such/thing"),
        ("d/updir", "../d"),
    ] {
        let m = s.symlink(&p(name), target, None).unwrap();
        assert_eq!(m.kind, FileKind::Symlink, "{name}");
        assert_eq!(m.target.as_deref(), Some(target), "{name}");
        assert_eq!(m.size, target.len() as u64);
        assert_eq!(s.readlink(&p(name)).unwrap(), target);
        assert_eq!(
            fs::read_link(f.root.join(name)).unwrap().to_str().unwrap(),
            target
        );
        assert_eq!(s.stat(&p(name)).unwrap().target.as_deref(), Some(target));
    }
    let listed: Vec<_> = s
        .list(&RelPath::root())
        .unwrap()
        .map(Result::unwrap)
        .filter(|e| e.name == "abs")
        .collect();
    assert_eq!(listed[0].meta.target.as_deref(), Some("/etc/passwd"));
    // Not a link; existing name; a link is never followed to create.
    assert_eq!(code(s.readlink(&p("f.txt"))), ErrorCode::Invalid);
    assert_eq!(code(s.symlink(&p("rel"), "x", None)), ErrorCode::Exists);
    assert_eq!(
        code(s.symlink(&p("etc/evil"), "x", None)),
        ErrorCode::Access
    );
    assert!(!Path::new("/etc/evil").exists());
    // Removing and renaming act on the link.
    s.rename(&p("rel"), &p("rel2"), 0).unwrap();
    s.remove(&p("rel2")).unwrap();
    assert_eq!(fs::read_to_string(f.root.join("f.txt")).unwrap(), "hello");
}

#[test]
fn hard_links_share_one_file_id_and_count_names() {
    let f = fixture();
    let s = &f.store;
    let a = s.stat(&p("f.txt")).unwrap();
    assert_eq!(a.nlink, 1);
    let m = s.link(&p("f.txt"), &p("d/g")).unwrap();
    assert_eq!(m.file_id, a.file_id);
    assert_eq!(m.nlink, 2);
    assert_eq!(s.stat(&p("f.txt")).unwrap().nlink, 2);
    // A link to a symlink links the symlink itself.
    let l = s.link(&p("etc"), &p("etc2")).unwrap();
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(l.target.as_deref(), Some("/etc"));
    assert_eq!(code(s.link(&p("d"), &p("d2"))), ErrorCode::Perm);
    assert_eq!(code(s.link(&p("f.txt"), &p("d/g"))), ErrorCode::Exists);
    // An upload through one name rewrites the one file: both names see it.
    let names = disk_names(&f.root);
    put(s, "f.txt", b"new content").unwrap();
    assert_eq!(read_all(s, "d/g"), b"new content");
    let after = s.stat(&p("d/g")).unwrap();
    assert_eq!((after.file_id, after.nlink), (a.file_id, 2));
    assert_eq!(disk_names(&f.root), names, "no temporary left");
    // Directory nlink is the real one: d has no subdirectories.
    assert_eq!(s.stat(&p("d")).unwrap().nlink, 2);
    s.mkdir(&p("d/sub2"), 0o755, None).unwrap();
    assert_eq!(s.stat(&p("d")).unwrap().nlink, 3);
}

#[test]
fn fifos_and_sockets_are_made_as_real_nodes() {
    let f = fixture();
    let s = &f.store;
    let m = s.mknod(&p("fifo"), FileKind::Fifo, 0o640, 0, None).unwrap();
    assert_eq!((m.kind, m.mode), (FileKind::Fifo, 0o640));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(f.root.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let m = s
        .mknod(&p("sock"), FileKind::Socket, 0o600, 0, None)
        .unwrap();
    assert_eq!(m.kind, FileKind::Socket);
    assert_eq!(
        code(s.mknod(&p("x"), FileKind::File, 0o600, 0, None)),
        ErrorCode::Invalid
    );
}

#[test]
fn rename_flags_noreplace_and_exchange() {
    use rfmount_proto::{RENAME_EXCHANGE, RENAME_NOREPLACE};
    let f = fixture();
    let s = &f.store;
    assert_eq!(
        code(s.rename(&p("f.txt"), &p("d/inner.txt"), RENAME_NOREPLACE)),
        ErrorCode::Exists
    );
    assert_eq!(fs::read_to_string(f.root.join("f.txt")).unwrap(), "hello");
    s.rename(&p("f.txt"), &p("d/inner.txt"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs::read_to_string(f.root.join("f.txt")).unwrap(), "inner");
    assert_eq!(
        fs::read_to_string(f.root.join("d/inner.txt")).unwrap(),
        "hello"
    );
    assert_eq!(code(s.rename(&p("f.txt"), &p("z"), 7)), ErrorCode::Invalid);
}

#[test]
fn xattrs_are_set_read_listed_removed_and_survive_put_and_rename() {
    use rfmount_proto::{XATTR_CREATE, XATTR_REPLACE};
    let f = fixture();
    let s = &f.store;
    if let Err(e) = s.setxattr(&p("f.txt"), "user.k", b"v", 0) {
        // tmpfs before 6.6 has no user. xattrs.
        assert_eq!(e.code, ErrorCode::NotSupported, "{e}");
        return;
    }
    assert_eq!(s.getxattr(&p("f.txt"), "user.k").unwrap(), b"v");
    assert_eq!(s.listxattr(&p("f.txt")).unwrap(), ["user.k"]);
    assert_eq!(
        code(s.setxattr(&p("f.txt"), "user.k", b"w", XATTR_CREATE)),
        ErrorCode::Exists
    );
    assert_eq!(
        code(s.setxattr(&p("f.txt"), "user.new", b"w", XATTR_REPLACE)),
        ErrorCode::NoData
    );
    assert_eq!(
        code(s.getxattr(&p("f.txt"), "user.none")),
        ErrorCode::NoData
    );
    // An upload replaces the content, not the file's attributes.
    put(s, "f.txt", b"replaced").unwrap();
    assert_eq!(s.getxattr(&p("f.txt"), "user.k").unwrap(), b"v");
    s.rename(&p("f.txt"), &p("d/moved"), 0).unwrap();
    assert_eq!(s.getxattr(&p("d/moved"), "user.k").unwrap(), b"v");
    s.removexattr(&p("d/moved"), "user.k").unwrap();
    assert!(s.listxattr(&p("d/moved")).unwrap().is_empty());
    // Never through a symlink.
    assert_eq!(
        code(s.getxattr(&p("secret_link"), "user.k")),
        ErrorCode::NotSupported
    );
}

/// The attributes a PUT carries are on the file when it appears under its
/// name, on top of those a replaced file keeps; one that cannot be set
/// fails the upload and leaves the old file as it was.
#[test]
fn a_put_carries_xattrs_onto_the_new_file() {
    use rfmount_proto::{PutExt, XattrValue};
    let f = fixture();
    let s = &f.store;
    if let Err(e) = s.setxattr(&p("f.txt"), "user.old", b"1", 0) {
        assert_eq!(e.code, ErrorCode::NotSupported, "{e}");
        return;
    }
    let carried = |pairs: &[(&str, &[u8])]| PutExt {
        xattrs: pairs
            .iter()
            .map(|(n, v)| XattrValue {
                name: (*n).to_owned(),
                value: v.to_vec(),
            })
            .collect(),
        ..PutExt::default()
    };
    let put_with = |path: &str, data: &[u8], ext: &PutExt| {
        let mut w = s.begin_put_ext(&p(path), data.len() as u64, None, ext)?;
        w.write_all(data).unwrap();
        w.commit(None, None)
    };
    // A new file.
    put_with("new", b"n", &carried(&[("user.a", b"x"), ("user.b", b"")])).unwrap();
    let mut names = s.listxattr(&p("new")).unwrap();
    names.sort();
    assert_eq!(names, ["user.a", "user.b"]);
    assert_eq!(s.getxattr(&p("new"), "user.a").unwrap(), b"x");
    // A replaced file keeps its own and takes the carried ones over them.
    put_with(
        "f.txt",
        b"r",
        &carried(&[("user.old", b"2"), ("user.c", b"3")]),
    )
    .unwrap();
    assert_eq!(s.getxattr(&p("f.txt"), "user.old").unwrap(), b"2");
    assert_eq!(s.getxattr(&p("f.txt"), "user.c").unwrap(), b"3");
    assert_eq!(fs::read(f.root.join("f.txt")).unwrap(), b"r");
    // Refused before any data: a NUL in a name.
    assert_eq!(
        code(
            s.begin_put_ext(&p("bad"), 1, None, &carried(&[("user.\0x", b"")]))
                .map(|_| ())
        ),
        ErrorCode::Invalid
    );
    // Refused at the commit: a namespace the filesystem does not have.
    let e = put_with("f.txt", b"lost", &carried(&[("nosuch.k", b"v")])).unwrap_err();
    assert!(e.message.contains("nosuch.k"), "{e}");
    assert_eq!(fs::read(f.root.join("f.txt")).unwrap(), b"r");
    assert!(!f.root.join("bad").exists());
}

/// The operations of version 2 on a store confined to `d`: they act inside
/// it, and neither a symlink nor a hard link reaches out of it.
#[test]
fn confined_store_links_xattrs_and_nodes_stay_inside() {
    let f = fixture();
    let sub = f.store.confine(&p("d")).unwrap();
    // A symlink is stored as text; following it out is refused.
    sub.symlink(&p("up"), "../f.txt", None).unwrap();
    assert_eq!(sub.readlink(&p("up")).unwrap(), "../f.txt");
    assert_eq!(
        fs::read_link(f.root.join("d/up")).unwrap(),
        Path::new("../f.txt")
    );
    assert_escape(sub.open_read(&p("up")).map(|(m, _)| m));
    // A hard link is made beside its source, inside the subdirectory.
    let m = sub.link(&p("inner.txt"), &p("again.txt")).unwrap();
    assert_eq!(m.nlink, 2);
    assert_eq!(fs::read(f.root.join("d/again.txt")).unwrap(), b"inner");
    assert!(!f.root.join("again.txt").exists());
    // d/sub is a symlink to /tmp: no link can be made from or into it.
    assert_escape(sub.link(&p("sub/x"), &p("x2")));
    assert_escape(sub.link(&p("inner.txt"), &p("sub/x")));
    // Extended attributes of files inside.
    match sub.setxattr(&p("inner.txt"), "user.k", b"v", 0) {
        Ok(()) => {
            assert_eq!(sub.getxattr(&p("inner.txt"), "user.k").unwrap(), b"v");
            assert!(
                sub.listxattr(&p("again.txt"))
                    .unwrap()
                    .contains(&"user.k".to_owned())
            );
            sub.removexattr(&p("inner.txt"), "user.k").unwrap();
            assert_eq!(
                code(sub.getxattr(&p("inner.txt"), "user.k")),
                ErrorCode::NoData
            );
        }
        // tmpfs before 6.6 has no user.* attributes.
        Err(e) => assert_eq!(e.code, ErrorCode::NotSupported, "{e}"),
    }
    // A FIFO is made inside.
    let m = sub
        .mknod(&p("fifo"), FileKind::Fifo, 0o600, 0, None)
        .unwrap();
    assert_eq!(m.kind, FileKind::Fifo);
    assert!(f.root.join("d/fifo").exists());
    assert!(!f.root.join("fifo").exists());
}
