//! A directory created through the mount is known empty and complete
//! under a callback: names created in it later cost no lookup on the
//! server, however long after the `mkdir`, and a file that appears in it
//! through another mount or on the server machine is still seen.

use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Longer than the default attribute and listing lifetimes (1 s): what
/// the mount knows afterwards is known under the callback alone.
const PAST_TIMEOUTS: Duration = Duration::from_millis(1500);

fn count(reqs: &[String], op: &str) -> usize {
    reqs.iter()
        .filter(|r| r.split(' ').next() == Some(op))
        .count()
}

#[test]
fn mkdir_p_then_cp_a_second_later_costs_the_mkdirs_and_one_put() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let src = TestDir::new("src");
    let x = src.write("x", "payload");
    sh(&m, &srv, "ls").ok();
    let mark = log_mark(&srv);
    sh(&m, &srv, "mkdir -p a/b/c").ok();
    std::thread::sleep(PAST_TIMEOUTS);
    sh(&m, &srv, &format!("cp {} a/b/c/", q(&x))).ok();
    assert_eq!(
        requests_after(&srv, mark),
        ["MKDIR /a", "MKDIR /a/b", "MKDIR /a/b/c", "PUT /a/b/c/x"]
    );
    assert_eq!(text(&root.read("a/b/c/x")), "payload");
    // A second file, later still: again the PUT alone.
    std::thread::sleep(PAST_TIMEOUTS);
    let mark = log_mark(&srv);
    sh(&m, &srv, &format!("cp {} a/b/c/y", q(&x))).ok();
    assert_eq!(requests_after(&srv, mark), ["PUT /a/b/c/y"]);
    let got = sh(&m, &srv, "ls a/b/c").ok().stdout;
    assert_eq!(text(&got), "x\ny\n");
}

#[test]
fn directories_tar_x_and_cp_r_create_cost_no_lookup_of_their_new_names() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let src = TestDir::new("src");
    for dir in ["t/a", "t/b/c"] {
        src.mkdir(dir);
    }
    for f in ["t/f", "t/a/g", "t/b/h", "t/b/c/i"] {
        src.write(f, f);
    }
    TestCommand::new("tar")
        .current_dir(src.path())
        .args(["-cf", "t.tar", "t"])
        .ok();
    sh(&m, &srv, "ls d").ok();

    let mark = log_mark(&srv);
    sh(&m, &srv, &format!("tar -xf {} -C d", q(&src.join("t.tar")))).ok();
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "MKDIR"), 4, "{reqs:?}");
    assert_eq!(count(&reqs, "PUT"), 4, "{reqs:?}");
    // Every name tar creates is looked up first: each is answered from
    // its new directory's listing.
    assert_eq!(count(&reqs, "STAT"), 0, "{reqs:?}");
    assert_eq!(count(&reqs, "LIST"), 0, "{reqs:?}");

    std::thread::sleep(PAST_TIMEOUTS);
    let mark = log_mark(&srv);
    sh(&m, &srv, &format!("cp -r {} d/u", q(&src.join("t")))).ok();
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "MKDIR"), 4, "{reqs:?}");
    assert_eq!(count(&reqs, "PUT"), 4, "{reqs:?}");
    assert_eq!(count(&reqs, "STAT"), 0, "{reqs:?}");
    assert_eq!(count(&reqs, "LIST"), 0, "{reqs:?}");
    assert_eq!(reqs.len(), 8, "{reqs:?}");

    for top in ["d/t", "d/u"] {
        for f in ["t/f", "t/a/g", "t/b/h", "t/b/c/i"] {
            let rel = format!("{top}/{}", &f[2..]);
            assert_eq!(text(&root.read(&rel)), f, "{rel}");
        }
    }
}

#[test]
fn a_file_added_to_a_new_directory_elsewhere_is_seen() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    // Long lifetimes: only the pushed invalidation can explain freshness.
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    sh(&a, &srv, "mkdir d; test -z \"$(ls d)\"").ok();

    // On the server machine, directly in the export.
    root.write("d/on-server", "s");
    let listed = |m: &Mount| text(&sh(m, &srv, "ls d").ok().stdout);
    assert!(
        seen_within(Duration::from_secs(1), || listed(&a) == "on-server\n"),
        "A lists {:?}",
        listed(&a)
    );
    assert_eq!(text(&sh(&a, &srv, "cat d/on-server").ok().stdout), "s");

    // Through another mount.
    sh(&b, &srv, "echo b > d/from-b").ok();
    assert!(
        seen_within(Duration::from_secs(1), || listed(&a)
            == "from-b\non-server\n"),
        "A lists {:?}",
        listed(&a)
    );
    assert_eq!(text(&sh(&a, &srv, "cat d/from-b").ok().stdout), "b\n");

    // A directory B creates, then A fills: B sees A's file.
    sh(&b, &srv, "mkdir e; test -z \"$(ls e)\"").ok();
    sh(&a, &srv, "echo a > e/from-a").ok();
    let in_e = || text(&sh(&b, &srv, "ls e").ok().stdout);
    assert!(
        seen_within(Duration::from_secs(1), || in_e() == "from-a\n"),
        "B lists {:?}",
        in_e()
    );
    assert_eq!(text(&sh(&b, &srv, "cat e/from-a").ok().stdout), "a\n");
}

#[test]
fn a_file_made_on_the_server_in_a_directory_stat_ed_before_its_listing_is_seen() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.mkdir("d");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    // The STAT gives the mount a callback on d as an object (watched from
    // the export's root); the LIST that follows must have d itself
    // watched, or names made in it on the server go unseen.
    sh(&m, &srv, "stat . >/dev/null").ok();
    let mark = log_mark(&srv);
    sh(&m, &srv, "stat d >/dev/null; test -z \"$(ls d)\"").ok();
    let reqs = requests_after(&srv, mark);
    assert_eq!(reqs, ["STAT /d", "LIST /d"], "the order this test is about");

    root.write("d/on-server", "s");
    let listed = || text(&sh(&m, &srv, "ls d").ok().stdout);
    assert!(
        seen_within(Duration::from_secs(1), || listed() == "on-server\n"),
        "the mount lists {:?}",
        listed()
    );
    assert_eq!(text(&sh(&m, &srv, "cat d/on-server").ok().stdout), "s");
}
