//! No hidden namespace: every name a user can create is an ordinary name,
//! and rfserve never creates, hides or removes anything of its own accord
//! (its uploads have no name until they are committed).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Everything about a tree that a server could change, except atimes
/// (reading may update them): per path, the kind, mode, owner, size, inode,
/// mtime, ctime and the content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let body = if md.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if md.is_dir() {
                stack.push(p.clone());
                String::new()
            } else {
                sha256(&p)
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let facts = format!(
                "mode {:o} uid {} gid {} size {} ino {} mtime {}.{} ctime {}.{} {body}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.ino(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec()
            );
            out.insert(rel, facts);
        }
    }
    let md = fs::metadata(root).unwrap();
    out.insert(
        ".".into(),
        format!(
            "mtime {}.{} ctime {}.{}",
            md.mtime(),
            md.mtime_nsec(),
            md.ctime(),
            md.ctime_nsec()
        ),
    );
    out
}

#[test]
fn a_name_like_an_old_upload_temporary_is_an_ordinary_file_across_a_restart() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    sh(
        &m,
        &srv,
        "echo x > .rfput-mine; mkdir d; echo y > d/.rfput-0123.tmp; echo z > .rfserve-upload-1.tmp",
    )
    .ok();
    let ls = tool(&m, &srv, "ls").arg("-A").stdout();
    assert_eq!(ls, ".rfput-mine\n.rfserve-upload-1.tmp\nd\n");
    assert_eq!(fs::read(root.join(".rfput-mine")).unwrap(), b"x\n");
    m.unmount_and_wait();

    // Make them look like files a long-dead server left behind.
    set_mtime(&root.join(".rfput-mine"), 1_000_000_000);
    set_mtime(&root.join("d/.rfput-0123.tmp"), 1_000_000_000);
    srv.restart();
    let m = Mount::start(&srv, &[]);
    // Give any background work of the new server time to happen.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tool(&m, &srv, "cat").arg(".rfput-mine").stdout(), "x\n");
    assert_eq!(
        tool(&m, &srv, "cat").arg("d/.rfput-0123.tmp").stdout(),
        "y\n"
    );
    assert_eq!(tool(&m, &srv, "ls").arg("-A").stdout(), ls);
    assert_eq!(
        srv.rf("ls", [] as [&str; 0]).stdout().lines().count(),
        3,
        "rf ls lists every name"
    );
    assert_eq!(fs::read(root.join("d/.rfput-0123.tmp")).unwrap(), b"y\n");
}

#[test]
fn a_read_only_export_is_unchanged_after_rfserve_starts_serves_and_stops() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/f.txt"), "data").unwrap();
    // What the old server swept at start: must survive a read-only export.
    for p in [
        ".rfput-0123.tmp",
        "a/b/.rfput-abcd.tmp",
        ".rfserve-upload-1.tmp",
    ] {
        fs::write(root.join(p), "not the server's").unwrap();
        set_mtime(&root.join(p), 1_000_000_000);
    }
    symlink("a/f.txt", root.join("link")).unwrap();
    set_mtime(&root.join("a/b"), 1_100_000_000);
    std::thread::sleep(Duration::from_millis(50));
    let before = snapshot(root.path());

    let mut srv = Server::start(root.path(), &["--read-only"]);
    let mut m = Mount::start(&srv, &[]);
    sh(
        &m,
        &srv,
        "ls -aR >/dev/null; stat a a/b .rfput-0123.tmp >/dev/null; find . -type f -exec cat {} + >/dev/null",
    )
    .ok();
    sh(&m, &srv, "echo no > a/new").fails();
    let local = TestDir::new("local");
    srv.rf("get", [".rfput-0123.tmp", s(local.path())]).ok();
    assert_eq!(
        fs::read(local.join(".rfput-0123.tmp")).unwrap(),
        b"not the server's"
    );
    m.unmount_and_wait();
    let st = srv.terminate(Duration::from_secs(15));
    assert!(st.success(), "rfserve should exit 0 on SIGTERM, got {st}");

    let after = snapshot(root.path());
    assert_eq!(before, after, "the read-only export changed");
}
