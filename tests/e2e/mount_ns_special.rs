//! Special files through a real mount: FIFOs, character devices and a unix
//! socket bound inside the mount are real nodes on the server; an
//! unprivileged rfserve refuses devices with EPERM.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};

use crate::mount_common::*;
use crate::util::*;

#[test]
fn mkfifo_makes_a_fifo_that_works_through_the_mount() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "mkfifo -m 640 p").ok();
    assert!(
        fs::symlink_metadata(root.join("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(mode_of(&root.join("p")), 0o640);
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%F %a", "p"]).stdout(),
        "fifo 640\n"
    );
    // The pipe itself is the client kernel's, as on NFS.
    assert_eq!(
        sh(&m, &srv, "(echo through > p &) ; cat p").stdout(),
        "through\n"
    );
    let ls = tool(&m, &srv, "ls").args(["-l", "p"]).stdout();
    assert!(ls.starts_with("prw-r-----"), "{ls}");
}

#[test]
fn mknod_c_1_3_as_root_is_a_real_device() {
    skip_without_fuse!();
    if !require_root(module_path!()) {
        return;
    }
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "mknod n c 1 3").ok();
    let md = fs::symlink_metadata(root.join("n")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%F %t %T", "n"])
            .stdout(),
        "character special file 1 3\n"
    );
    // FUSE mounts are nodev, as sshfs and NFS mounts usually are: the node
    // exists and is listed, but opening it through the mount is refused.
    let out = sh(&m, &srv, "echo x > n").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
}

#[test]
fn devices_are_refused_with_eperm_by_an_unprivileged_rfserve() {
    skip_without_fuse!();
    if !require_root(module_path!()) {
        return;
    }
    let base = TestDir::new("base");
    let root = base.join("export");
    fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    let_others_in(&root);
    let srv = Server::start_as(&root, &[], NOBODY, NOBODY);
    let m = Mount::start(&srv, &[]);
    let out = sh(&m, &srv, "mknod n c 1 3").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert!(fs::symlink_metadata(root.join("n")).is_err());
    // FIFOs need no privilege.
    sh(&m, &srv, "mkfifo p").ok();
    assert!(
        fs::symlink_metadata(root.join("p"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn a_unix_socket_binds_and_connects_inside_the_mount() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let path = m.join("sock");
    let listener = UnixListener::bind(&path).expect("bind inside the mount");
    assert!(
        fs::symlink_metadata(root.join("sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    let t = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        c.write_all(&buf).unwrap();
    });
    let mut s = UnixStream::connect(&path).expect("connect inside the mount");
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    t.join().unwrap();
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%F", "sock"]).stdout(),
        "socket\n"
    );
}
