//! A file not uploaded yet (write-back) renamed over a name the server
//! has: the server's file is replaced, as by rename(2), and the new file's
//! upload is not refused as a conflict with this mount's own change.

use crate::mount_common::*;
use crate::util::*;

#[test]
fn a_new_file_renamed_over_an_old_one_before_its_upload_replaces_it() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("d/b", "old\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    // Still open for writing when renamed: nothing of it is uploaded yet.
    sh(&m, &srv, "exec 3> d/a; echo new >&3; mv d/a d/b; exec 3>&-").ok();
    TestCommand::new(rfmount_bin())
        .arg("sync")
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok();
    assert_eq!(text(&root.read("d/b")), "new\n");
    let mut names = names_with_prefix(&root.join("d"), "");
    names.retain(|n| !n.starts_with(".rfserve"));
    assert_eq!(names, ["b"], "{}", tail(&m.log(), 40));
    assert_eq!(srv.count("result=err code=Conflict"), 0);
    assert_eq!(text(&sh(&m, &srv, "cat d/b").ok().stdout), "new\n");
}
