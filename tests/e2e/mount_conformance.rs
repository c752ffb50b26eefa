//! What the POSIX conformance suite (pjdfstest, docs/CONFORMANCE.md) found
//! wrong, each checked on its own through a real mount: fstat of a file
//! unlinked while open, and the ctimes that rename(2) changes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::thread::sleep;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Longer than the server file system's timestamp granularity (a kernel
/// tick), so that a changed ctime is a larger one.
const NAP: Duration = Duration::from_millis(50);

fn ctime(p: &std::path::Path) -> (i64, i64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.ctime(), m.ctime_nsec())
}

#[test]
fn fstat_of_a_file_unlinked_while_open_says_no_links() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("old", b"data\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // A file created through the mount and one that came from the server.
    // Rust's metadata() asks for every field (statx), ctime included, which
    // the unlink invalidated in the kernel: the answer is rfmount's.
    let created = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("new"))
        .unwrap();
    let existing = fs::File::open(m.join("old")).unwrap();
    fs::remove_file(m.join("new")).unwrap();
    fs::remove_file(m.join("old")).unwrap();
    assert_eq!(created.metadata().unwrap().nlink(), 0);
    assert_eq!(existing.metadata().unwrap().nlink(), 0);
}

#[test]
fn rename_changes_the_ctime_of_what_it_moves() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "mkdir d; mkfifo p; ln -s target l; echo x > f").ok();
    for name in ["d", "p", "l", "f"] {
        let before = ctime(&m.join(name));
        sleep(NAP);
        fs::rename(m.join(name), m.join(format!("{name}2"))).unwrap();
        let after = ctime(&m.join(format!("{name}2")));
        assert!(after > before, "{name}: ctime {before:?} -> {after:?}");
        assert_eq!(after, ctime(&root.join(format!("{name}2"))), "{name}");
    }
}

#[test]
fn rename_over_a_multiply_linked_file_updates_its_other_name() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "echo src > src; echo dst > dst; ln dst other").ok();
    assert_eq!(fs::symlink_metadata(m.join("other")).unwrap().nlink(), 2);
    let before = ctime(&m.join("other"));
    sleep(NAP);
    fs::rename(m.join("src"), m.join("dst")).unwrap();
    let st = fs::symlink_metadata(m.join("other")).unwrap();
    assert_eq!(st.nlink(), 1);
    assert!(
        (st.ctime(), st.ctime_nsec()) > before,
        "ctime did not change"
    );
    assert_eq!(fs::read(m.join("other")).unwrap(), b"dst\n");
    assert_eq!(fs::read(m.join("dst")).unwrap(), b"src\n");
}
