//! Requests per uploaded file, counted in rfserve's request log: what
//! an extracting or copying tool sets on a new file before its close
//! travels with its one PUT, also in write-back mode.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::mount_common::*;
use crate::util::*;

/// Long lifetimes: nothing expires between the steps whatever the
/// machine's speed, so the counts cannot depend on it.
const STEADY: &str = "attr_timeout=60,dir_timeout=60";

fn small_tree() -> (TestDir, std::path::PathBuf) {
    let src = TestDir::new("src");
    src.mkdir("t/sub");
    src.write("t/sub/x", "x");
    src.write("t/y", "y");
    src.write("t/z", "z");
    TestCommand::new("chmod")
        .args(["0640"])
        .arg(src.join("t/y"))
        .ok();
    TestCommand::new("touch")
        .args(["-m", "-d", "2002-03-04 05:06:07"])
        .arg(src.join("t/z"))
        .ok();
    TestCommand::new("tar")
        .current_dir(src.path())
        .args(["-cf", "t.tar", "t"])
        .ok();
    let tar = src.join("t.tar");
    (src, tar)
}

#[test]
fn tar_x_in_writeback_mode_costs_one_put_per_file() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", &format!("writeback,{STEADY}")]);
    let (src, tar) = small_tree();
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    // sync(1) does not reach a FUSE daemon: `rfmount sync` waits for the
    // queued uploads.
    sh(&m, &srv, &format!("tar -xf {} -C d", s(&tar))).ok();
    rfmount_sync(&m);
    let reqs = requests_after(&srv, mark);
    let files = ["/d/t/sub/x", "/d/t/y", "/d/t/z"];
    for f in files {
        let on = |op: &str| reqs.iter().filter(|r| **r == format!("{op} {f}")).count();
        assert_eq!(on("PUT"), 1, "{f}: {reqs:?}");
        // tar's futimens, fchown and fchmod before the close: in the PUT.
        assert_eq!(on("SETATTR"), 0, "{f}: {reqs:?}");
        // At most the lookup of the new name (the listing of t is dropped
        // once t/sub changes); nothing after the create or the upload.
        assert!(on("STAT") <= 1, "{f}: {reqs:?}");
    }
    for f in ["t/sub/x", "t/y", "t/z"] {
        let want = fs::metadata(src.join(f)).unwrap();
        let got = fs::metadata(root.join("d").join(f)).unwrap();
        assert_eq!(got.mtime(), want.mtime(), "{f} mtime");
        assert_eq!(got.mode() & 0o7777, want.mode() & 0o7777, "{f} mode");
        assert_eq!(
            fs::read(root.join("d").join(f)).unwrap(),
            fs::read(src.join(f)).unwrap()
        );
    }
}

#[test]
fn a_chown_to_another_owner_before_the_close_still_reaches_the_server() {
    skip_without_fuse!();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving a file away needs root");
        return;
    }
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", STEADY]);
    sh(&m, &srv, "ls d").ok();
    // The creator's owner is free; another one is applied as today.
    sh(
        &m,
        &srv,
        "exec 3> d/f; echo a >&3; chown 0:0 d/f; chown 1234:2345 d/f; exec 3>&-",
    )
    .ok();
    let got = fs::metadata(root.join("d/f")).unwrap();
    assert_eq!((got.uid(), got.gid()), (1234, 2345));
    assert_eq!(text(&root.read("d/f")), "a\n");
}

#[test]
fn the_parent_directory_after_an_upload_needs_no_stat() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d/e");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", STEADY]);
    sh(&m, &srv, "ls d d/e; stat d d/e >/dev/null").ok();
    // A new name moves the directory's mtime past what was cached.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mark = log_mark(&srv);
    let out = sh(&m, &srv, "echo x > d/e/f; stat -c %Y.%y d/e")
        .ok()
        .stdout;
    assert_eq!(requests_after(&srv, mark), ["PUT /d/e/f"]);
    // What the mount showed is the server's new mtime, not the old one.
    let server = fs::metadata(root.join("d/e")).unwrap();
    let shown = text(&out);
    assert!(
        shown.starts_with(&format!("{}.", server.mtime())),
        "mount shows {shown}, server has {}",
        server.mtime()
    );
}

#[test]
fn times_set_after_a_writeback_close_travel_with_the_upload() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", &format!("writeback,{STEADY}")]);
    sh(&m, &srv, "ls d").ok();
    let mark = log_mark(&srv);
    // Descriptor 3 keeps the file open for writing, so the upload the
    // close of `echo` queued waits for it (whatever this machine's speed):
    // the times and mode set after that close join the queued upload.
    sh(
        &m,
        &srv,
        "exec 3>> d/f; echo x > d/f; touch -m -d '2001-02-03 04:05:06 UTC' d/f; \
         chmod 0600 d/f; exec 3>&-",
    )
    .ok();
    // sync(1) does not reach a FUSE daemon: `rfmount sync` is the wait for
    // the queued upload (which may hold off for more closes first).
    rfmount_sync(&m);
    assert_eq!(requests_after(&srv, mark), ["PUT /d/f"]);
    let got = fs::metadata(root.join("d/f")).unwrap();
    assert_eq!(got.mtime(), 981_173_106);
    assert_eq!(got.mode() & 0o7777, 0o600);
    assert_eq!(text(&root.read("d/f")), "x\n");
}
