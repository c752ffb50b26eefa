//! Round trips under callbacks, counted from rfserve's request log (never
//! timed): what a mount holds a callback for costs nothing to use again
//! (issue 7, acceptance "Round trips").

use crate::mount_common::*;
use crate::util::*;

#[test]
fn reopening_100_cached_unchanged_files_costs_no_request() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    for i in 0..100 {
        root.write(format!("d/f{i:03}.txt"), format!("file {i}\n"));
    }
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    let first = sh(&m, &srv, "cat d/*.txt | wc -l").stdout();
    assert_eq!(first.trim(), "100");
    let before = request_lines(&srv).len();
    let again = sh(&m, &srv, "cat d/*.txt | wc -l").stdout();
    assert_eq!(again.trim(), "100");
    let more = requests_since(&srv, before);
    assert!(
        more.is_empty(),
        "re-opening 100 cached files cost {} request(s):\n{}",
        more.len(),
        more.join("\n")
    );
}

#[test]
fn ls_l_of_a_listed_unchanged_directory_costs_no_request() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    for i in 0..50 {
        root.write(format!("d/f{i:02}"), "x");
    }
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    let first = tool(&m, &srv, "ls").args(["-l", "d"]).stdout();
    let before = request_lines(&srv).len();
    let again = tool(&m, &srv, "ls").args(["-l", "d"]).stdout();
    assert_eq!(first, again);
    assert_eq!(again.lines().count(), 51, "{again}");
    let more = requests_since(&srv, before);
    assert!(
        more.is_empty(),
        "ls -l of a listed directory cost {} request(s):\n{}",
        more.len(),
        more.join("\n")
    );
}

#[test]
fn cp_of_a_new_file_into_a_listed_directory_costs_exactly_the_put() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("d/old.txt", "old\n");
    let local = TestDir::new("local");
    let src = local.write("new.txt", "new content\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    tool(&m, &srv, "ls").args(["-l", "d"]).ok();
    let before = request_lines(&srv).len();
    tool(&m, &srv, "cp").arg(&src).arg("d/new.txt").ok();
    let more = requests_since(&srv, before);
    assert_eq!(
        more.len(),
        1,
        "cp of a new file cost {} request(s), not just the PUT:\n{}",
        more.len(),
        more.join("\n")
    );
    assert!(more[0].contains("op=PUT path=/d/new.txt"), "{}", more[0]);
    assert_eq!(
        std::fs::read_to_string(root.join("d/new.txt")).unwrap(),
        "new content\n"
    );
}
