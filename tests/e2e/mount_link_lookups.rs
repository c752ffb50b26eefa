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
    sh(&m, &srv, "echo x > d/tmp0; ln d/tmp0 d/obj0; rm d/tmp0").ok();
    // rfserve's watch may push this mount's own create of a temporary
    // name (gone by the time the watch reports it), which rightly drops
    // the listing: a step that such a push overtook is tried again.
    let pushes = || m.log().matches("pushed: /d").count();
    for k in 1..=10 {
        sh(&m, &srv, "ls d >/dev/null").ok();
        let (mark, pushed) = (log_mark(&srv), pushes());
        let out = sh(
            &m,
            &srv,
            &format!(
                "set -C; echo a > d/a{k}; ln d/a{k} d/b{k}; rm d/a{k}; \
                 echo {k} > d/tmp{k}; ln d/tmp{k} d/obj{k}; rm d/tmp{k}; \
                 stat -c %h d/obj{k}; cat d/obj{k}"
            ),
        )
        .ok();
        assert_eq!(text(&out.stdout), format!("1\n{k}\n"));
        if pushes() != pushed {
            continue;
        }
        let reqs = requests_after(&srv, mark);
        // After the first pair, the lookups before the second create and
        // link are still answered from the listing; the one STAT of the link is its new version after the
        // unlink, which that REMOVE does not answer.
        let at = |r: &str| reqs.iter().position(|x| *x == r);
        assert_eq!(at(&format!("STAT /d/tmp{k}")), None, "{reqs:?}");
        let obj = format!("STAT /d/obj{k}");
        let stats: Vec<usize> = (0..reqs.len()).filter(|&i| reqs[i] == obj).collect();
        let removed = at(&format!("REMOVE /d/tmp{k}")).expect("the unlink reached the server");
        assert!(
            stats.len() <= 1 && stats.iter().all(|&i| i > removed),
            "a lookup of the new name /d/obj{k} asked the server: {reqs:?}"
        );
        rfmount_sync(&m);
        let got = fs::metadata(root.join(format!("d/obj{k}"))).unwrap();
        assert_eq!(got.nlink(), 1);
        assert_eq!(text(&root.read(format!("d/obj{k}"))), format!("{k}\n"));
        assert!(!root.join(format!("d/tmp{k}")).exists());
        assert_eq!(text(&root.read("d/obj0")), "x\n");
        return;
    }
    panic!(
        "every try was overtaken by a push from rfserve\n{}",
        m.log()
    );
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
