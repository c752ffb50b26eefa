//! Which of atime, mtime and ctime each change moves, through a mount and
//! in a local directory, step by step: a write moves mtime and ctime but
//! not atime (also when the upload is a partial one), chmod, chown, link
//! and rename move ctime only, `touch -a` atime and ctime.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// The steps, each run in the directory; `f` (renamed to `g` on the way)
/// is the file whose times are watched.
const STEPS: &[(&str, &str)] = &[
    ("append", "echo more >> f"),
    ("chmod", "chmod 600 f"),
    ("chown", "chown 1000:1000 f"),
    ("link", "ln f f2"),
    ("rename", "mv f g"),
    ("touch -a", "touch -a -d @1000000000 g"),
    ("overwrite", "echo new > g"),
];

fn times(p: &Path) -> [(i64, i64); 3] {
    let md = fs::symlink_metadata(p).unwrap();
    [
        (md.atime(), md.atime_nsec()),
        (md.mtime(), md.mtime_nsec()),
        (md.ctime(), md.ctime_nsec()),
    ]
}

/// For each step: its name and which of atime, mtime, ctime it moved.
fn moved(dir: &Path, run: &dyn Fn(&str)) -> Vec<(&'static str, [bool; 3])> {
    run("echo first > f");
    let mut out = Vec::new();
    for (name, script) in STEPS {
        let watched = if dir.join("g").exists() { "g" } else { "f" };
        let before = times(&dir.join(watched));
        // Longer than a timestamp tick of the file systems involved.
        std::thread::sleep(Duration::from_millis(30));
        run(script);
        let after = times(&dir.join(if *name == "rename" { "g" } else { watched }));
        out.push((*name, [0, 1, 2].map(|i| after[i] != before[i])));
    }
    out
}

#[test]
fn each_change_moves_the_times_a_local_change_moves() {
    skip_without_fuse!();
    if !require_root("each_change_moves_the_times_a_local_change_moves") {
        return;
    }
    let reference = TestDir::new("reference");
    let local = moved(reference.path(), &|s| {
        let mut c = TestCommand::sh(s);
        c.current_dir(reference.path());
        c.ok();
    });
    // What this test is about, as the local file system shows it.
    assert_eq!(local[0], ("append", [false, true, true]), "{local:?}");
    assert_eq!(local[1], ("chmod", [false, false, true]), "{local:?}");

    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "allow_other,default_permissions"]);
    let through_mount = moved(m.path(), &|s| {
        sh(&m, &srv, s).ok();
    });
    assert_eq!(through_mount, local, "through the mount");
    // The server has the times the mount shows.
    assert_eq!(times(&root.join("g")), times(&m.join("g")));
}
