//! Extended attributes set on a file before its first upload travel in
//! that upload (`PutExt::xattrs`), counted in rfserve's request log: no
//! SETXATTR of their own, and the file appears on the server with them.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::mount_common::*;
use crate::util::*;

/// Long lifetimes: nothing expires between the steps whatever the
/// machine's speed, so the counts cannot depend on it.
const STEADY: &str = "attr_timeout=60,dir_timeout=60";

fn have_attr_tools() -> bool {
    if which("setfattr").is_some() && which("getfattr").is_some() {
        return true;
    }
    assert!(!in_ci(), "CI must have setfattr/getfattr (package attr)");
    eprintln!("note: setfattr/getfattr missing; skipped");
    false
}

/// The server's `user.` attributes of `path`, as `getfattr -d` prints them.
fn server_dump(path: &std::path::Path) -> String {
    TestCommand::new("getfattr")
        .args(["-d", "-m", "^user\\.", s(path)])
        .stdout()
}

/// Waits until every file closed on the write-back mount `m` is on the
/// server (`sync(1)` does not reach a FUSE daemon).
fn settle(m: &Mount) {
    TestCommand::new(rfmount_bin())
        .arg("sync")
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok();
}

/// How many logged requests are `op` of `path`.
fn count(reqs: &[String], op: &str, path: &str) -> usize {
    reqs.iter()
        .filter(|r| **r == format!("{op} {path}"))
        .count()
}

#[test]
fn setfattr_between_create_and_close_travels_with_the_put() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", STEADY]);
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    // Set, read back, replaced, removed and refused while the file is
    // open for writing and not on the server yet, in one process: a
    // shell's tools would each close a copy of the descriptor, and every
    // close is a flush, which uploads.
    if which("python3").is_none() {
        assert!(!in_ci(), "CI must have python3");
        return;
    }
    let out = sh(
        &m,
        &srv,
        r#"python3 -c '
import errno, os
fd = os.open("d/f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.setxattr("d/f", "user.k", b"v")
os.setxattr("d/f", "user.gone", b"x")
os.setxattr("d/f", "user.k", b"v2", os.XATTR_REPLACE)
os.removexattr("d/f", "user.gone")
os.setxattr("d/f", "user.empty", b"")
print(os.getxattr("d/f", "user.k").decode())
print(sorted(os.listxattr("d/f")))
for call in (lambda: os.getxattr("d/f", "user.gone"),
             lambda: os.removexattr("d/f", "user.none"),
             lambda: os.setxattr("d/f", "user.new", b"", os.XATTR_REPLACE)):
    try:
        call()
        print("no error")
    except OSError as e:
        print(errno.errorcode[e.errno])
try:
    os.setxattr("d/f", "user.k", b"w", os.XATTR_CREATE)
    print("no error")
except OSError as e:
    print(errno.errorcode[e.errno])
os.write(fd, b"data\n")
os.close(fd)
'"#,
    )
    .stdout();
    assert_eq!(
        out,
        "v2\n['user.empty', 'user.k']\nENODATA\nENODATA\nENODATA\nEEXIST\n"
    );
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "PUT", "/d/f"), 1, "{reqs:?}");
    for op in ["SETXATTR", "REMOVEXATTR", "GETXATTR", "LISTXATTR"] {
        assert_eq!(count(&reqs, op, "/d/f"), 0, "{op}: {reqs:?}");
    }
    assert_eq!(fs::read(root.join("d/f")).unwrap(), b"data\n");
    let dump = server_dump(&root.join("d/f"));
    assert!(dump.contains("user.k=\"v2\""), "{dump}");
    assert!(dump.contains("user.empty"), "{dump}");
    assert!(!dump.contains("user.gone"), "{dump}");
    // Once uploaded, the server's attributes are the ones: a set after the
    // close is a SETXATTR.
    let mark = log_mark(&srv);
    sh(&m, &srv, "setfattr -n user.later -v l d/f").ok();
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "SETXATTR", "/d/f"), 1, "{reqs:?}");
    assert!(server_dump(&root.join("d/f")).contains("user.later=\"l\""));
}

#[test]
fn cp_preserve_all_costs_one_put_per_file_and_keeps_everything() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let src = TestDir::new("src");
    for (name, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        src.write(name, name);
        let f = src.join(name);
        let set = TestCommand::new("setfattr")
            .args(["-n", "user.tag", "-v", value, s(&f)])
            .run();
        if !set.status.success() {
            eprintln!("note: the temporary area has no user xattrs; skipped");
            return;
        }
        TestCommand::new("touch")
            .args(["-m", "-d", "2001-02-03 04:05:06"])
            .arg(&f)
            .ok();
    }
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", STEADY]);
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    sh(
        &m,
        &srv,
        &format!(
            "cp --preserve=all {} {} {} d/",
            s(&src.join("a")),
            s(&src.join("b")),
            s(&src.join("c"))
        ),
    )
    .ok();
    let reqs = requests_after(&srv, mark);
    for (name, value) in [("a", "1"), ("b", "2"), ("c", "3")] {
        let p = format!("/d/{name}");
        assert_eq!(count(&reqs, "PUT", &p), 1, "{p}: {reqs:?}");
        assert_eq!(count(&reqs, "SETXATTR", &p), 0, "{p}: {reqs:?}");
        assert_eq!(count(&reqs, "SETATTR", &p), 0, "{p}: {reqs:?}");
        let on_server = root.join("d").join(name);
        assert!(
            server_dump(&on_server).contains(&format!("user.tag=\"{value}\"")),
            "{p}"
        );
        let want = fs::metadata(src.join(name)).unwrap();
        let got = fs::metadata(&on_server).unwrap();
        assert_eq!(got.mtime(), want.mtime(), "{p} mtime");
        assert_eq!(got.mode() & 0o7777, want.mode() & 0o7777, "{p} mode");
    }
}

#[test]
fn in_writeback_mode_attributes_set_after_the_close_ride_the_queued_put() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", &format!("writeback,{STEADY}")]);
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    // The second descriptor holds the upload queued (a file open for
    // writing is uploaded by its close) until the attribute is set after
    // the first close.
    sh(
        &m,
        &srv,
        "exec 3>>d/f; echo x > d/f
         setfattr -n user.after -v close d/f
         exec 3>&-",
    )
    .ok();
    settle(&m);
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "PUT", "/d/f"), 1, "{reqs:?}");
    assert_eq!(count(&reqs, "SETXATTR", "/d/f"), 0, "{reqs:?}");
    assert_eq!(fs::read(root.join("d/f")).unwrap(), b"x\n");
    assert!(server_dump(&root.join("d/f")).contains("user.after=\"close\""));
    // Set after a close with nothing holding the upload back: whether or
    // not the upload ran first, the attribute reaches the server.
    let mark = log_mark(&srv);
    sh(&m, &srv, "echo y > d/g; setfattr -n user.k -v g d/g").ok();
    settle(&m);
    let reqs = requests_after(&srv, mark);
    // setfattr races the queued upload: before it starts, the one PUT
    // carries the attribute; while it is in flight, the file stays dirty
    // and a second PUT carries it; after it landed, one SETXATTR does.
    // Never more than one of those extra requests.
    let puts = count(&reqs, "PUT", "/d/g");
    let sets = count(&reqs, "SETXATTR", "/d/g");
    assert!(puts >= 1 && puts + sets <= 2, "{reqs:?}");
    assert_eq!(fs::read(root.join("d/g")).unwrap(), b"y\n");
    assert!(server_dump(&root.join("d/g")).contains("user.k=\"g\""));
    // rsync -aX writes a temporary, sets its attributes after closing it,
    // then renames it: the attributes still need no SETXATTR.
    if which("rsync").is_none() {
        assert!(!in_ci(), "CI must have rsync");
        return;
    }
    let src = TestDir::new("src");
    src.write("t/r", "r");
    let set = TestCommand::new("setfattr")
        .args(["-n", "user.r", "-v", "rv", s(&src.join("t/r"))])
        .run();
    if !set.status.success() {
        eprintln!("note: the temporary area has no user xattrs; rsync part skipped");
        return;
    }
    let mark = log_mark(&srv);
    sh(&m, &srv, &format!("rsync -aX {}/ d/t/", s(&src.join("t")))).ok();
    settle(&m);
    let reqs = requests_after(&srv, mark);
    assert!(!reqs.iter().any(|r| r.starts_with("SETXATTR ")), "{reqs:?}");
    assert!(server_dump(&root.join("d/t/r")).contains("user.r=\"rv\""));
    assert_eq!(fs::read(root.join("d/t/r")).unwrap(), b"r");
}

/// A file with holes goes up as its data alone (`put_layout`); that PUT
/// carries what a whole one does: here the access time set before the
/// upload, with no SETATTR after it.
#[test]
fn a_sparse_upload_carries_the_access_time_set_before_it() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", &format!("writeback,{STEADY}")]);
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    // The open descriptor holds the upload back until the time is set.
    sh(
        &m,
        &srv,
        "exec 3>>d/s; truncate -s 1M d/s; echo end >> d/s
         touch -a -d '2001-02-03 04:05:06 UTC' d/s
         exec 3>&-",
    )
    .ok();
    settle(&m);
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "PUT", "/d/s"), 1, "{reqs:?}");
    assert_eq!(count(&reqs, "SETATTR", "/d/s"), 0, "{reqs:?}");
    let md = fs::metadata(root.join("d/s")).unwrap();
    assert_eq!(md.len(), 1024 * 1024 + 4);
    assert_eq!(md.atime(), 981_173_106, "atime on the server");
    // Sent as its data: far less than the megabyte of its size.
    assert!(md.blocks() * 512 < 256 * 1024, "{} blocks", md.blocks());
}
