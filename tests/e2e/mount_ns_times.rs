//! Times through a real mount: atime, mtime and ctime as the server has
//! them, `touch -a`, ctime moving on chmod, directory times current right
//! after a change inside them, and an `rsync -ai` second pass with nothing
//! to do.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::mount_common::*;
use crate::util::*;

fn times(p: &Path) -> [(i64, i64); 3] {
    let md = fs::symlink_metadata(p).unwrap();
    [
        (md.atime(), md.atime_nsec()),
        (md.mtime(), md.mtime_nsec()),
        (md.ctime(), md.ctime_nsec()),
    ]
}

#[test]
fn atime_mtime_and_ctime_are_the_servers() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", b"x");
    fs::File::options()
        .write(true)
        .open(root.join("f"))
        .unwrap()
        .set_times(
            fs::FileTimes::new()
                .set_accessed(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
                .set_modified(UNIX_EPOCH + Duration::from_secs(1_100_000_000)),
        )
        .unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(times(&m.join("f")), times(&root.join("f")));
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%X %Y", "f"]).stdout(),
        "1000000000 1100000000\n"
    );
    // touch -a changes only the access time; chmod moves ctime.
    let before = times(&root.join("f"));
    std::thread::sleep(Duration::from_millis(20));
    sh(&m, &srv, "touch -a -d @1200000000 f && chmod 600 f").ok();
    let after = times(&root.join("f"));
    assert_eq!(after[0].0, 1_200_000_000);
    assert_eq!(after[1], before[1], "mtime kept");
    assert!(after[2] > before[2], "ctime moved on chmod");
    assert_eq!(times(&m.join("f")), after);
}

#[test]
fn directory_times_are_current_right_after_a_change_inside() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    fs::create_dir(root.join("d")).unwrap();
    set_mtime(&root.join("d"), 1_000_000_000);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let d = m.join("d");
    assert_eq!(times(&d), times(&root.join("d")));
    for (i, step) in [
        "touch d/new",
        "echo data > d/file",
        "mkdir d/sub",
        "ln -s new d/link",
        "mv d/new d/renamed",
        "rm d/renamed",
        "rmdir d/sub",
    ]
    .iter()
    .enumerate()
    {
        std::thread::sleep(Duration::from_millis(20));
        sh(&m, &srv, step).ok();
        let server = times(&root.join("d"));
        assert!(server[1].0 > 1_000_000_000, "step {i}: {step}");
        assert_eq!(
            (times(&d)[1], times(&d)[2]),
            (server[1], server[2]),
            "step {i}: {step}: mtime/ctime of d"
        );
        // Again, now from the caches.
        assert_eq!(times(&d)[1], server[1], "step {i}: {step} (cached)");
    }
}

#[test]
fn rsync_a_second_pass_has_nothing_to_do() {
    skip_without_fuse!();
    if which("rsync").is_none() && !in_ci() {
        eprintln!("note: rsync not installed; skipped");
        return;
    }
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.join("src");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    for (i, p) in ["f1", "a/f2", "a/b/f3", "a/b/c/f4"].iter().enumerate() {
        write_random_file(&src.join(p), 1000 * (i as u64 + 1), i as u64);
    }
    std::os::unix::fs::symlink("f1", src.join("l")).unwrap();
    for d in ["a/b/c", "a/b", "a", ""] {
        set_mtime(&src.join(d), 1_000_000_000);
    }
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, &format!("rsync -a {}/ dst/", q(&src))).ok();
    for d in ["a/b/c", "a/b", "a"] {
        assert_eq!(
            mtime_secs(&root.join("dst").join(d)),
            1_000_000_000,
            "{d} on the server"
        );
    }
    let again = sh(&m, &srv, &format!("rsync -ai {}/ dst/", q(&src))).stdout();
    assert_eq!(again, "", "the second pass changed something");
}
