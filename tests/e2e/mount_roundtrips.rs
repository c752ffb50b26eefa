//! Requests per write, counted in rfserve's request log: `echo x > f`,
//! `cp -p` and `tar x` upload each file once and need no STAT or SETATTR
//! around it that the answers already carry.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::mount_common::*;
use crate::util::*;

/// Long lifetimes, so that what the counts show cannot depend on how
/// fast this machine runs the steps (nothing expires in between).
const STEADY: &[&str] = &["-o", "attr_timeout=60,dir_timeout=60"];

#[test]
fn a_shell_redirection_costs_one_put_and_nothing_else() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, STEADY);
    sh(&m, &srv, "ls d").ok();
    let n = log_mark(&srv);
    // The shell closes its first descriptor of the new file before it
    // writes (open, dup2 onto stdout, close): that close, with the file
    // still open for writing through stdout, uploads nothing.
    sh(&m, &srv, "echo x > d/f").ok();
    assert_eq!(requests_after(&srv, n), ["PUT /d/f"]);
    assert_eq!(text(&root.read("d/f")), "x\n");
    // Replacing it: again one upload, no empty one first.
    let n = log_mark(&srv);
    sh(&m, &srv, "echo y > d/f").ok();
    assert_eq!(requests_after(&srv, n), ["PUT /d/f"]);
    assert_eq!(text(&root.read("d/f")), "y\n");
    // noclobber still refuses an existing name.
    let out = sh(&m, &srv, "set -o noclobber; echo z > d/f").run();
    assert!(!out.status.success());
    assert_eq!(text(&root.read("d/f")), "y\n");
}

#[test]
fn a_file_closed_empty_is_on_the_server_when_its_close_returns() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, STEADY);
    sh(&m, &srv, "ls d").ok();
    let n = log_mark(&srv);
    // `: > e` closes the file for good: its close uploads it, empty,
    // before the next command runs (checked on the server's disk).
    let probe = format!(
        ": > d/e; test -e {0}/d/e; test ! -s {0}/d/e; echo x >> d/e",
        s(root.path())
    );
    sh(&m, &srv, &probe).ok();
    assert_eq!(requests_after(&srv, n), ["PUT /d/e", "PUT /d/e"]);
    assert_eq!(text(&root.read("d/e")), "x\n");
    // A writer that keeps another descriptor: its first close does not
    // upload the empty file, the last one does.
    let n = log_mark(&srv);
    let held = format!(
        "exec 3> d/g; test ! -e {0}/d/g; echo z >&3; exec 3>&-; test -s {0}/d/g",
        s(root.path())
    );
    sh(&m, &srv, &held).ok();
    assert_eq!(requests_after(&srv, n), ["PUT /d/g"]);
    assert_eq!(text(&root.read("d/g")), "z\n");
}

#[test]
fn cp_p_uploads_each_file_once_with_its_times() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, STEADY);
    let src = TestDir::new("src");
    src.write("a.txt", "aaa");
    src.write("b.txt", "bbb");
    for f in ["a.txt", "b.txt"] {
        TestCommand::new("touch")
            .args(["-a", "-d", "2001-02-03 04:05:06"])
            .arg(src.join(f))
            .ok();
        TestCommand::new("touch")
            .args(["-m", "-d", "2002-03-04 05:06:07"])
            .arg(src.join(f))
            .ok();
    }
    let atimes: Vec<i64> = ["a.txt", "b.txt"]
        .iter()
        .map(|f| fs::metadata(src.join(f)).unwrap().atime())
        .collect();
    sh(&m, &srv, "ls d").ok();
    let n = log_mark(&srv);
    sh(
        &m,
        &srv,
        &format!("cp -p {}/a.txt {}/b.txt d/", s(src.path()), s(src.path())),
    )
    .ok();
    assert_eq!(requests_after(&srv, n), ["PUT /d/a.txt", "PUT /d/b.txt"]);
    for (f, atime) in ["a.txt", "b.txt"].into_iter().zip(atimes) {
        let want = fs::metadata(src.join(f)).unwrap();
        let got = fs::metadata(root.join("d").join(f)).unwrap();
        assert_eq!(got.mtime(), want.mtime(), "{f} mtime");
        // cp's own read moved the source's atime; the copy has the old one.
        assert_eq!(got.atime(), atime, "{f} atime");
        assert_eq!(got.mode() & 0o7777, want.mode() & 0o7777, "{f} mode");
    }
}

#[test]
fn tar_x_costs_one_put_per_file_and_only_the_attribute_changes_tar_makes() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, STEADY);
    let src = TestDir::new("src");
    src.mkdir("t/sub");
    src.write("t/sub/x", "x");
    src.write("t/y", "y");
    src.write("t/z", "z");
    TestCommand::new("tar")
        .current_dir(src.path())
        .args(["-cf", "t.tar", "t"])
        .ok();
    sh(&m, &srv, "ls d").ok();
    let n = log_mark(&srv);
    sh(&m, &srv, &format!("tar -xf {}/t.tar -C d", s(src.path()))).ok();
    let reqs = requests_after(&srv, n);
    let count = |op: &str| reqs.iter().filter(|r| r.starts_with(op)).count();
    assert_eq!(count("PUT "), 3, "{reqs:?}");
    assert_eq!(count("MKDIR "), 2, "{reqs:?}");
    assert_eq!(count("GET "), 0, "{reqs:?}");
    // Every new name is answered from its directory's listing: t's and
    // t/sub's are empty and complete from their MKDIR on (the server
    // holds a listing callback), and a change inside t/sub makes only
    // t/sub's own attributes in t's listing stale, not the other names.
    assert_eq!(count("STAT "), 0, "{reqs:?}");
    // tar sets each file's times, owner and mode before its close: the
    // times and mode travel in the PUT, and the owner is the one the new
    // file has (tar runs as root here), so none costs a request. Owner,
    // mode and times of each directory come at the end: one SETATTR each,
    // none answered by a further STAT.
    assert_eq!(count("SETATTR "), 2 * 3, "{reqs:?}");
    assert_eq!(
        reqs.iter()
            .filter(|r| r.starts_with("SETATTR ") && !r.ends_with("/d/t") && !r.ends_with("/sub"))
            .count(),
        0,
        "{reqs:?}"
    );
    // tar's look at d before it starts is answered from the listing `ls d`
    // fetched, which the server's callback keeps valid: no LIST.
    assert_eq!(count("LIST "), 0, "{reqs:?}");
    assert_eq!(reqs.len(), 3 + 2 + 2 * 3, "{reqs:?}");
    let got = sh(&m, &srv, "cat d/t/sub/x d/t/y d/t/z").ok().stdout;
    assert_eq!(text(&got), "xyz");
    // What tar set arrived with the content.
    for f in ["t/sub/x", "t/y", "t/z"] {
        let want = fs::metadata(src.join(f)).unwrap();
        let got = fs::metadata(root.join("d").join(f)).unwrap();
        assert_eq!(got.mtime(), want.mtime(), "{f} mtime");
        assert_eq!(got.mode() & 0o7777, want.mode() & 0o7777, "{f} mode");
        assert_eq!(
            (got.uid(), got.gid()),
            (want.uid(), want.gid()),
            "{f} owner"
        );
    }
}
