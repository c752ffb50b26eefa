//! A second walk of a directory whose files changed on the server is
//! prefetched again and serves only the new content: prefetch remembers
//! how far one walk looked into a listing, never past that walk.

use std::fs;
use std::time::Duration;

use crate::util::*;

/// Every line `find DIR -type f -exec cat {} +` prints, sorted.
fn walk(m: &Mount, dir: &str) -> Vec<String> {
    let out = m
        .cmd("sh")
        .args(["-c", &format!("find {dir} -type f -exec cat {{}} +")])
        .ok();
    let mut got: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    got.sort();
    got
}

#[test]
fn a_second_walk_after_server_changes_is_prefetched_again_and_never_stale() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    // More files than one prefetch window, so that the walk goes on past
    // the windows it already looked at.
    let n = 48;
    let first: Vec<String> = (0..n).map(|i| format!("first {i:03}")).collect();
    for (i, line) in first.iter().enumerate() {
        root.write(format!("d/f{i:03}"), format!("{line}\n"));
    }
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(walk(&m, "d"), first);
    let after_first = status_json(&m);
    assert!(
        status_num(&after_first, "prefetch_used") >= n as u64 / 2,
        "the first walk was not prefetched: {after_first}"
    );
    // Past the attribute and listing windows, every file changes (size
    // too) on the server.
    std::thread::sleep(Duration::from_millis(1500));
    let second: Vec<String> = (0..n).map(|i| format!("second, longer {i:03}")).collect();
    for (i, line) in second.iter().enumerate() {
        fs::write(root.join(format!("d/f{i:03}")), format!("{line}\n")).unwrap();
    }
    let before = status_json(&m);
    assert_eq!(
        walk(&m, "d"),
        second,
        "the second walk served stale content"
    );
    let after = status_json(&m);
    let used = status_num(&after, "prefetch_used") - status_num(&before, "prefetch_used");
    assert!(
        used >= n as u64 / 2,
        "the second walk was not prefetched ({used} opens served by a prefetch): {after}"
    );
}
