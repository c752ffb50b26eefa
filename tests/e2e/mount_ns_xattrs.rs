//! Extended attributes through a real mount: setfattr/getfattr round trip,
//! present on the server, kept across an upload and a rename, CREATE and
//! REPLACE flags, and `cp --preserve=all` / `rsync -aX` exiting 0.

use std::fs;

use crate::mount_common::*;
use crate::util::*;

fn have_attr_tools() -> bool {
    if which("setfattr").is_some() && which("getfattr").is_some() {
        return true;
    }
    assert!(!in_ci(), "CI must have setfattr/getfattr (package attr)");
    eprintln!("note: setfattr/getfattr missing; skipped");
    false
}

/// `getfattr -n NAME --only-values FILE` on the server's copy.
fn server_value(path: &std::path::Path, name: &str) -> String {
    TestCommand::new("getfattr")
        .args(["-n", name, "--only-values", s(path)])
        .stdout()
}

#[test]
fn setfattr_getfattr_round_trip_and_survive_upload_and_rename() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.write("f", b"one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "setfattr -n user.k -v v f").ok();
    assert_eq!(
        tool(&m, &srv, "getfattr")
            .args(["-n", "user.k", "--only-values", "f"])
            .stdout(),
        "v"
    );
    assert_eq!(server_value(&root.join("f"), "user.k"), "v");
    // Kept across an upload (a new version of the content) and a rename.
    sh(&m, &srv, "echo two > f && mv f g").ok();
    assert_eq!(fs::read(root.join("g")).unwrap(), b"two\n");
    assert_eq!(server_value(&root.join("g"), "user.k"), "v");
    let dump = tool(&m, &srv, "getfattr").args(["-d", "g"]).stdout();
    assert!(dump.contains("user.k=\"v\""), "{dump}");
    // XATTR_CREATE on an existing name and XATTR_REPLACE on a missing one.
    let out = sh(
        &m,
        &srv,
        "python3 -c 'import os; os.setxattr(\"g\", \"user.k\", b\"w\", os.XATTR_CREATE)'",
    )
    .run();
    if which("python3").is_some() {
        assert!(!out.status.success(), "XATTR_CREATE replaced: {out:?}");
    }
    let out = tool(&m, &srv, "setfattr")
        .args(["-x", "user.none", "g"])
        .fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
        "{out:?}"
    );
    sh(&m, &srv, "setfattr -x user.k g").ok();
    let out = tool(&m, &srv, "getfattr")
        .args(["-n", "user.k", "g"])
        .fails();
    assert!(!out.status.success());
    // On a file only written here so far: uploaded first, then set.
    sh(&m, &srv, "echo new > h && setfattr -n user.x -v y h").ok();
    assert_eq!(server_value(&root.join("h"), "user.x"), "y");
}

#[test]
fn cp_preserve_all_and_rsync_ax_keep_attributes() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), "a\n").unwrap();
    TestCommand::new("setfattr")
        .args(["-n", "user.tag", "-v", "blue", s(&src.join("a"))])
        .ok();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(
        &m,
        &srv,
        &format!("cp --preserve=all {} c", q(&src.join("a"))),
    )
    .ok();
    assert_eq!(server_value(&root.join("c"), "user.tag"), "blue");
    if which("rsync").is_none() && !in_ci() {
        return;
    }
    sh(&m, &srv, &format!("rsync -aX {}/ r/", q(&src))).ok();
    assert_eq!(server_value(&root.join("r/a"), "user.tag"), "blue");
}

/// Names the mount does not carry answer "not supported" (as a local
/// filesystem mounted `noacl` does), not "none here": `ls -l` and
/// `file_has_acl` stop asking for the rest of the directory only then.
#[test]
fn names_not_carried_are_not_supported_and_missing_ones_no_data() {
    skip_without_fuse!();
    if !have_attr_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.write("f", b"one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    for name in [
        "system.posix_acl_access",
        "system.posix_acl_default",
        "security.selinux",
    ] {
        let out = tool(&m, &srv, "getfattr").args(["-n", name, "f"]).fails();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
            "{name}: {out:?}"
        );
        // The kernel itself answers 0 for removing a default ACL from a
        // file, on any filesystem.
        if name != "system.posix_acl_default" {
            let out = tool(&m, &srv, "setfattr").args(["-x", name, "f"]).fails();
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
                "{name}: {out:?}"
            );
        }
    }
    let out = tool(&m, &srv, "getfattr")
        .args(["-n", "user.none", "f"])
        .fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
        "{out:?}"
    );
    // With -o acl the ACL names are carried: none set is "no data".
    let acl = Mount::start(&srv, &["-o", "acl"]);
    let out = tool(&acl, &srv, "getfattr")
        .args(["-n", "system.posix_acl_access", "f"])
        .fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such attribute"),
        "{out:?}"
    );
}
