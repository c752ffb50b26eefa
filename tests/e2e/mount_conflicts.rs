//! No silent lost update across mounts: two mounts write one file, the
//! second close finds the first one's version on the server, and
//! `-o conflict=keep|error|overwrite` decides what happens to its data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::path::Path;

use crate::util::*;

/// `close(2)` of `f`, with its result (dropping a `File` ignores it).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is ours alone: `into_raw_fd` gave up the File's claim.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens `name` for writing (no truncation) and overwrites its start.
fn open_and_write(dir: &Path, name: &str, data: &str) -> File {
    let mut f = OpenOptions::new()
        .write(true)
        .open(dir.join(name))
        .unwrap_or_else(|e| panic!("open {name} in {}: {e}", dir.display()));
    f.write_all(data.as_bytes()).unwrap();
    f
}

/// Names in the server's directory `dir` that start with `prefix`.
fn siblings(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn the_second_close_keeps_its_data_beside_the_first_writers_file() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "base\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &["-o", "conflict=keep"]);
    let b = Mount::start(&srv, &["-o", "conflict=keep"]);

    let fa = open_and_write(a.path(), "f.txt", "from A\n");
    let fb = open_and_write(b.path(), "f.txt", "from B\n");
    close(fb).expect("B's close");
    close(fa).expect("A's close returns 0: its data is safe aside");

    assert_eq!(text(&root.read("f.txt")), "from B\n");
    let aside = siblings(root.path(), "f.txt.conflict-");
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", a.log());
    assert_eq!(text(&root.read(&aside[0])), "from A\n");
    let host = text(&TestCommand::new("hostname").ok().stdout);
    assert!(
        aside[0].starts_with(&format!("f.txt.conflict-{}-", host.trim())),
        "{aside:?}"
    );
    let log = a.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("another writer") && l.contains(&aside[0])),
        "A's log should name both files:\n{}",
        tail(&log, 30)
    );
    assert_eq!(srv.count("op=PUT path=/f.txt result=err code=Conflict"), 1);
    // A now shows the winner's content, and the kept copy beside it.
    assert_eq!(text(&fs::read(a.join("f.txt")).unwrap()), "from B\n");
    assert_eq!(text(&fs::read(a.join(&aside[0])).unwrap()), "from A\n");
    // Writing on from there is an ordinary update, not a conflict.
    let fa = open_and_write(a.path(), "f.txt", "A again\n");
    close(fa).unwrap();
    assert_eq!(text(&root.read("f.txt")), "A again\n");
    assert_eq!(siblings(root.path(), "f.txt.conflict-").len(), 1);
}

#[test]
fn two_mounts_creating_one_new_name_never_replace_each_other() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &["-o", "conflict=keep"]);
    let b = Mount::start(&srv, &["-o", "conflict=keep"]);
    let create = |m: &Mount, data: &str| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.join("new.txt"))
            .unwrap();
        f.write_all(data.as_bytes()).unwrap();
        f
    };
    let fa = create(&a, "A's new file\n");
    let fb = create(&b, "B's new file\n");
    close(fb).unwrap();
    close(fa).unwrap();
    assert_eq!(text(&root.read("new.txt")), "B's new file\n");
    let aside = siblings(root.path(), "new.txt.conflict-");
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", a.log());
    assert_eq!(text(&root.read(&aside[0])), "A's new file\n");
}

#[test]
fn with_conflict_error_the_close_fails_and_the_data_stays_in_the_cache() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "base\n");
    let srv = Server::start(root.path(), &[]);
    let mut a = Mount::start(&srv, &["-o", "conflict=error"]);
    let b = Mount::start(&srv, &[]);

    let fa = open_and_write(a.path(), "f.txt", "from A\n");
    let fb = open_and_write(b.path(), "f.txt", "from B\n");
    close(fb).unwrap();
    let err = close(fa).expect_err("A's close must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");

    assert_eq!(text(&root.read("f.txt")), "from B\n");
    assert!(siblings(root.path(), "f.txt.conflict-").is_empty());
    // Unsent, and the newest content this mount has: it reads it back.
    assert_eq!(text(&fs::read(a.join("f.txt")).unwrap()), "from A\n");
    let status = TestCommand::new(rfmount_bin())
        .arg("status")
        .arg(a.path())
        .arg("--json")
        .ok()
        .stdout;
    assert!(
        text(&status).contains("f.txt"),
        "status should list the unsent file: {}",
        text(&status)
    );
    // Not lost at a remount either, and still not written over B's file.
    a.unmount_and_wait();
    a.remount(&srv.addr());
    assert_eq!(text(&fs::read(a.join("f.txt")).unwrap()), "from A\n");
    assert_eq!(text(&root.read("f.txt")), "from B\n");
}

#[test]
fn with_conflict_overwrite_the_last_close_wins() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "base\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &["-o", "conflict=overwrite"]);
    let b = Mount::start(&srv, &[]);

    let fa = open_and_write(a.path(), "f.txt", "from A\n");
    let fb = open_and_write(b.path(), "f.txt", "from B\n");
    close(fb).unwrap();
    close(fa).unwrap();
    assert_eq!(text(&root.read("f.txt")), "from A\n");
    assert!(siblings(root.path(), "f.txt.conflict-").is_empty());
}
