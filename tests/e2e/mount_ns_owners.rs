//! Owners through a real mount, as root with `-o allow_other,
//! default_permissions`: creates carry the caller's ids to the server,
//! chown is applied there (EPERM when rfserve cannot), the kernel refuses
//! other users' chmod, and `-o idmap=user`, `-o uid=,gid=` map as sshfs does.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::mount_common::*;
use crate::util::*;

fn owner(p: &std::path::Path) -> (u32, u32) {
    let md = fs::symlink_metadata(p).unwrap();
    (md.uid(), md.gid())
}

macro_rules! skip_without_root {
    () => {
        if !require_root(module_path!()) {
            return;
        }
    };
}

#[test]
fn files_made_by_another_user_are_theirs_on_the_server() {
    skip_without_fuse!();
    skip_without_root!();
    let root = TestDir::new("root");
    fs::create_dir(root.join("pub")).unwrap();
    fs::set_permissions(root.join("pub"), fs::Permissions::from_mode(0o1777)).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "allow_other,default_permissions"]);
    let_others_in(m.path());
    let dir = m.join("pub");
    as_user(
        NOBODY,
        NOBODY,
        &dir,
        "touch f && mkdir d && ln -s f l && echo data > g && chmod 600 g",
    )
    .ok();
    for name in ["f", "d", "l", "g"] {
        assert_eq!(
            owner(&root.join("pub").join(name)),
            (NOBODY, NOBODY),
            "{name}"
        );
    }
    assert_eq!(mode_of(&root.join("pub/g")), 0o600);
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%u:%g", "pub/f", "pub/d", "pub/g"])
            .stdout(),
        "65534:65534\n".repeat(3)
    );
    // Sticky directory: another user cannot remove root's file.
    fs::write(root.join("pub/roots"), "r").unwrap();
    let out = as_user(NOBODY, NOBODY, &dir, "rm -f roots").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert!(root.join("pub/roots").exists());
}

#[test]
fn chown_is_applied_on_the_server_and_others_cannot_chmod() {
    skip_without_fuse!();
    skip_without_root!();
    let root = TestDir::new("root");
    root.write("f", b"x");
    root.write("g", b"y");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "allow_other,default_permissions"]);
    let_others_in(m.path());
    sh(&m, &srv, "chown 1000:1000 f && chown -h 1001:1002 g").ok();
    assert_eq!(owner(&root.join("f")), (1000, 1000));
    assert_eq!(owner(&root.join("g")), (1001, 1002));
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%u:%g", "f"]).stdout(),
        "1000:1000\n"
    );
    // chown of a file just written (not uploaded before the chown).
    sh(&m, &srv, "echo new > h && chown 1003:1004 h").ok();
    assert_eq!(owner(&root.join("h")), (1003, 1004));
    assert_eq!(fs::read(root.join("h")).unwrap(), b"new\n");
    // An unprivileged user may not chmod a root-owned file.
    root.write("rootfile", b"r");
    let out = as_user(NOBODY, NOBODY, m.path(), "chmod 777 rootfile").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert_eq!(mode_of(&root.join("rootfile")) & 0o777, 0o644);
}

#[test]
fn chown_fails_with_eperm_when_rfserve_cannot_give_files_away() {
    skip_without_fuse!();
    skip_without_root!();
    let base = TestDir::new("base");
    let root = base.join("export");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("f"), "x").unwrap();
    std::os::unix::fs::chown(&root, Some(NOBODY), Some(NOBODY)).unwrap();
    std::os::unix::fs::chown(root.join("f"), Some(NOBODY), Some(NOBODY)).unwrap();
    let_others_in(&root);
    let srv = Server::start_as(&root, &[], NOBODY, NOBODY);
    let m = Mount::start(&srv, &[]);
    let out = tool(&m, &srv, "chown").args(["1000:1000", "f"]).fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );
    assert_eq!(owner(&root.join("f")), (NOBODY, NOBODY));
    // A file made through this mount belongs to rfserve's user, and a
    // chown to anyone else fails rather than pretend.
    sh(&m, &srv, "echo a > new").ok();
    assert_eq!(owner(&root.join("new")), (NOBODY, NOBODY));
    sh(&m, &srv, "chown 0:0 new").fails();
    assert_eq!(owner(&root.join("new")), (NOBODY, NOBODY));
}

#[test]
fn idmap_user_and_forced_ids_map_as_sshfs() {
    skip_without_fuse!();
    skip_without_root!();
    let root = TestDir::new("root");
    root.write("mine", b"m");
    root.write("other", b"o");
    std::os::unix::fs::chown(root.path(), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(root.join("mine"), Some(1000), Some(1000)).unwrap();
    std::os::unix::fs::chown(root.join("other"), Some(2000), Some(2000)).unwrap();
    let srv = Server::start(root.path(), &[]);

    let m = Mount::start(&srv, &[]);
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%u:%g", "mine", "other"])
            .stdout(),
        "1000:1000\n2000:2000\n",
        "idmap=none shows the server's ids"
    );
    drop(m);

    // The export's owner (1000) appears as the mounting user (root here),
    // and maps back on chown.
    let m = Mount::start(&srv, &["-o", "idmap=user"]);
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%u:%g", "mine", "other"])
            .stdout(),
        "0:0\n2000:2000\n"
    );
    sh(&m, &srv, "chown 0:0 other").ok();
    assert_eq!(owner(&root.join("other")), (1000, 1000));
    drop(m);

    let m = Mount::start(&srv, &["-o", "uid=1234,gid=5678"]);
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%u:%g", "mine", "other"])
            .stdout(),
        "1234:5678\n1234:5678\n"
    );
}
