//! `rsync -aH` of a tree holding symlinks and hard links into a mount: it
//! exits 0, the server has the links as links and the hard-linked names as
//! one file, and a second `rsync -aiH` pass has nothing to do.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use crate::mount_common::*;
use crate::util::*;

#[test]
fn rsync_ah_of_a_tree_with_symlinks_and_hard_links_is_exact_and_settles() {
    skip_without_fuse!();
    if which("rsync").is_none() {
        assert!(!in_ci(), "CI must have rsync");
        eprintln!("note: rsync not installed; skipped");
        return;
    }
    let local = TestDir::new("local");
    let src = local.join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    fs::hard_link(src.join("a.txt"), src.join("sub/a-again.txt")).unwrap();
    symlink("a.txt", src.join("to_a")).unwrap();
    symlink("sub", src.join("to_sub")).unwrap();
    symlink("../missing", src.join("sub/dangling")).unwrap();

    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, &format!("rsync -aH {}/ r/", q(&src))).ok();

    let on_server = root.join("r");
    let a = fs::metadata(on_server.join("a.txt")).unwrap();
    let again = fs::metadata(on_server.join("sub/a-again.txt")).unwrap();
    assert_eq!((a.dev(), a.ino()), (again.dev(), again.ino()), "one file");
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        fs::read_link(on_server.join("sub/dangling")).unwrap(),
        std::path::Path::new("../missing")
    );
    assert_eq!(
        fs::read_link(on_server.join("to_sub")).unwrap(),
        std::path::Path::new("sub")
    );
    // Through the mount too: one inode, two links.
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%h", "r/a.txt", "r/sub/a-again.txt"])
            .stdout(),
        "2\n2\n"
    );
    let second = sh(&m, &srv, &format!("rsync -aiH {}/ r/", q(&src))).stdout();
    assert_eq!(second, "", "the second pass changed something");
}
