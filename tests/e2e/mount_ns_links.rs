//! Hard links through a real mount: `ln`, one inode and link count for
//! both names, a write through one name read through the other (on the
//! server too), `rm` of one name keeping the other, real directory link
//! counts, and an unlinked open file reporting 0 links.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::mount_common::*;
use crate::util::*;

#[test]
fn ln_makes_one_file_with_two_names() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("a", b"first\n");
    fs::create_dir(root.join("d")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "ln a d/b").ok();
    let on_server = (
        fs::metadata(root.join("a")).unwrap(),
        fs::metadata(root.join("d/b")).unwrap(),
    );
    assert_eq!(on_server.0.ino(), on_server.1.ino());
    assert_eq!(on_server.0.nlink(), 2);
    let st = tool(&m, &srv, "stat")
        .args(["-c", "%h %i", "a", "d/b"])
        .stdout();
    let lines: Vec<&str> = st.lines().collect();
    assert_eq!(lines.len(), 2, "{st}");
    assert_eq!(lines[0], lines[1], "both names are one inode: {st}");
    assert!(lines[0].starts_with("2 "), "{st}");

    // A write through one name is read through the other, here and on
    // the server.
    sh(&m, &srv, "echo second >> d/b").ok();
    assert_eq!(tool(&m, &srv, "cat").arg("a").stdout(), "first\nsecond\n");
    assert_eq!(fs::read(root.join("a")).unwrap(), b"first\nsecond\n");
    assert_eq!(
        fs::metadata(root.join("a")).unwrap().ino(),
        on_server.0.ino(),
        "the upload kept the link"
    );
    sh(&m, &srv, "echo third > a").ok();
    assert_eq!(tool(&m, &srv, "cat").arg("d/b").stdout(), "third\n");
    assert_eq!(fs::read(root.join("d/b")).unwrap(), b"third\n");

    // rm of one name keeps the other, with one link left.
    sh(&m, &srv, "rm a").ok();
    assert_eq!(tool(&m, &srv, "cat").arg("d/b").stdout(), "third\n");
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%h", "d/b"]).stdout(),
        "1\n"
    );
    assert!(!root.join("a").exists());
    // Linking a directory is refused, as locally.
    let out = tool(&m, &srv, "ln").args(["d", "d2"]).fails();
    assert!(!out.status.success());
}

#[test]
fn directory_link_counts_are_the_servers() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    fs::create_dir_all(root.join("top/one")).unwrap();
    fs::create_dir_all(root.join("top/two")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%h", "top"]).stdout(),
        "4\n"
    );
    sh(&m, &srv, "mkdir top/three").ok();
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%h", "top"]).stdout(),
        "5\n"
    );
}

#[test]
fn an_unlinked_open_file_has_no_links() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", b"data\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // Hold f open on fd 3, remove it, then fstat the descriptor.
    let out = sh(&m, &srv, "exec 3<f; rm f; stat -L -c %h /dev/fd/3; cat <&3").stdout();
    assert_eq!(out, "0\ndata\n");
}
