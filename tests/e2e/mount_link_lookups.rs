//! A hard link's other name removed (git's link of every object to its
//! name, then the unlink of the temporary one): the directory's cached
//! listing still holds, so the next names created there are known absent
//! without a round trip, and the remaining name shows its new link count.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::mount_common::*;
use crate::util::*;

/// Long lifetimes: nothing expires between the steps whatever the
/// machine's speed, so the counts cannot depend on it.
const STEADY: &str = "attr_timeout=60,dir_timeout=60";

fn link_then_unlink_keeps_the_listing(opts: &str) {
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", opts]);
    sh(&m, &srv, "ls d").ok();
    sh(&m, &srv, "echo one > d/tmp1; ln d/tmp1 d/obj1; rm d/tmp1").ok();
    let mark = log_mark(&srv);
    let out = sh(
        &m,
        &srv,
        "set -C; echo two > d/tmp2; ln d/tmp2 d/obj2; rm d/tmp2; stat -c %h d/obj1 d/obj2; cat d/obj1",
    )
    .ok();
    assert_eq!(text(&out.stdout), "1\n1\none\n");
    let reqs = requests_after(&srv, mark);
    // The lookups before the create and the link are answered from the
    // listing; the one STAT of the link is the new version after the
    // unlink, which that REMOVE does not answer.
    let at = |r: &str| reqs.iter().position(|x| x == r);
    assert_eq!(at("STAT /d/tmp2"), None, "{reqs:?}");
    let stats: Vec<usize> = (0..reqs.len())
        .filter(|&i| reqs[i] == "STAT /d/obj2")
        .collect();
    let removed = at("REMOVE /d/tmp2").expect("the unlink reached the server");
    assert!(
        stats.len() <= 1 && stats.iter().all(|&i| i > removed),
        "a lookup of the new name /d/obj2 asked the server: {reqs:?}"
    );
    rfmount_sync(&m);
    let got = fs::metadata(root.join("d/obj2")).unwrap();
    assert_eq!(got.nlink(), 1);
    assert_eq!(text(&root.read("d/obj2")), "two\n");
    assert!(!root.join("d/tmp2").exists());
    assert_eq!(text(&root.read("d/obj1")), "one\n");
}

#[test]
fn link_then_unlink_keeps_the_listing_for_the_next_names() {
    skip_without_fuse!();
    link_then_unlink_keeps_the_listing(STEADY);
}

#[test]
fn link_then_unlink_keeps_the_listing_in_writeback_mode() {
    skip_without_fuse!();
    link_then_unlink_keeps_the_listing(&format!("writeback,{STEADY}"));
}
