//! POSIX ACLs (with `-o acl`) and the `security.` namespace through a real
//! mount: `setfacl`/`getfacl` and `setfattr -n security.*` land on the
//! server's file, read back through the mount, and survive an upload and a
//! rename; without `-o acl`, `setfacl` fails rather than pretend.

use std::fs;

use crate::mount_common::*;
use crate::util::*;

fn have_tools() -> bool {
    let all = ["setfacl", "getfacl", "setfattr", "getfattr"];
    if all.iter().all(|t| which(t).is_some()) {
        return true;
    }
    assert!(
        !in_ci(),
        "CI must have setfacl/getfacl (acl) and setfattr (attr)"
    );
    eprintln!("note: acl/attr tools missing; skipped");
    false
}

/// `getfacl -cn` (numeric ids) of a path on the server's side, entries only.
fn server_acl(path: &std::path::Path) -> String {
    TestCommand::new("getfacl").args(["-cn", s(path)]).stdout()
}

#[test]
fn setfacl_through_the_mount_is_the_servers_acl_and_survives_upload_and_rename() {
    skip_without_fuse!();
    if !have_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.write("f", b"one\n");
    fs::create_dir(root.join("d")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "acl"]);
    sh(&m, &srv, "setfacl -m u:65534:rw,g:65534:r f").ok();
    let on_server = server_acl(&root.join("f"));
    assert!(on_server.contains("user:65534:rw-"), "{on_server}");
    assert!(on_server.contains("group:65534:r--"), "{on_server}");
    let seen = tool(&m, &srv, "getfacl").args(["-cn", "f"]).stdout();
    assert!(seen.contains("user:65534:rw-"), "{seen}");
    // `ls -l` marks a file with an ACL.
    let ls = sh(&m, &srv, "ls -l f").stdout();
    assert!(ls.starts_with("-rw-rw-r--+"), "{ls}");

    // A new version of the content and a new name keep it.
    sh(&m, &srv, "echo two > f && mv f g").ok();
    assert_eq!(fs::read(root.join("g")).unwrap(), b"two\n");
    let on_server = server_acl(&root.join("g"));
    assert!(on_server.contains("user:65534:rw-"), "{on_server}");

    // A default ACL on a directory, and its removal from the file.
    sh(&m, &srv, "setfacl -d -m u:65534:rx d").ok();
    let on_server = server_acl(&root.join("d"));
    assert!(on_server.contains("default:user:65534:r-x"), "{on_server}");
    let seen = tool(&m, &srv, "getfacl").args(["-cn", "d"]).stdout();
    assert!(seen.contains("default:user:65534:r-x"), "{seen}");
    sh(&m, &srv, "setfacl -b g").ok();
    let on_server = server_acl(&root.join("g"));
    assert!(!on_server.contains("65534"), "{on_server}");
    let seen = tool(&m, &srv, "getfacl").args(["-cn", "g"]).stdout();
    assert!(!seen.contains("65534"), "{seen}");
}

#[test]
fn without_o_acl_acls_are_refused_not_faked() {
    skip_without_fuse!();
    if !have_tools() {
        return;
    }
    let root = TestDir::new("root");
    root.write("f", b"one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let out = sh(&m, &srv, "setfacl -m u:65534:rw f").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not supported"),
        "{out:?}"
    );
    assert!(!server_acl(&root.join("f")).contains("65534"));
}

#[test]
fn security_attributes_are_carried_when_the_server_runs_as_root() {
    skip_without_fuse!();
    if !have_tools() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root; security. attributes need a root server");
        return;
    }
    let root = TestDir::new("root");
    root.write("f", b"one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "setfattr -n security.rftest -v label f").ok();
    let on_server = TestCommand::new("getfattr")
        .args(["-n", "security.rftest", "--only-values", s(&root.join("f"))])
        .stdout();
    assert_eq!(on_server, "label");
    let seen = tool(&m, &srv, "getfattr")
        .args(["-n", "security.rftest", "--only-values", "f"])
        .stdout();
    assert_eq!(seen, "label");
    sh(&m, &srv, "echo two > f && mv f g").ok();
    let seen = tool(&m, &srv, "getfattr")
        .args(["-n", "security.rftest", "--only-values", "g"])
        .stdout();
    assert_eq!(seen, "label");
    sh(&m, &srv, "setfattr -x security.rftest g").ok();
    let out = tool(&m, &srv, "getfattr")
        .args(["-n", "security.rftest", "g"])
        .fails();
    assert!(!out.status.success());
}
