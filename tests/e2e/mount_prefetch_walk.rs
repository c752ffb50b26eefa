//! Prefetch during a tree walk: once a program has been served by a
//! prefetch, each directory it lists has its first small files fetched
//! ahead, so that `tar c` of a tree waits for the first file of the walk
//! only, not for the first file of every directory; and what it reads is
//! never an old version.

use std::process::Command;

use crate::util::*;

/// `dirs` directories, each with `files` small files and a subdirectory
/// of `files / 2` more; returns how many files the tree holds.
fn tree(root: &TestDir, dirs: usize, files: usize, tag: &str) -> usize {
    let mut n = 0;
    for d in 0..dirs {
        for f in 0..files {
            root.write(
                format!("t/d{d}/a{f}"),
                format!("{tag} d{d} a{f}\n").repeat(40),
            );
            n += 1;
        }
        for f in 0..files / 2 {
            root.write(
                format!("t/d{d}/s/b{f}"),
                format!("{tag} d{d} b{f}\n").repeat(40),
            );
            n += 1;
        }
    }
    n
}

/// `tar c` of `t` through the mount, unpacked into a new directory.
fn tar_through(m: &Mount) -> TestDir {
    let out = TestDir::new("unpacked");
    m.cmd("sh")
        .args(["-c", "tar cf - t | tar xf - -C \"$0\""])
        .arg(out.path())
        .ok();
    out
}

fn same_tree(a: &std::path::Path, b: &std::path::Path) {
    let diff = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .expect("running diff");
    assert!(
        diff.status.success(),
        "trees differ: {}",
        text(&diff.stdout)
    );
}

#[test]
fn tar_c_of_a_tree_finds_the_first_file_of_each_directory_prefetched_and_never_stale() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let (dirs, per_dir) = (6, 6);
    let files = tree(&root, dirs, per_dir, "v1");
    // Directories holding files: each would cost its first open a round
    // trip of its own without the walk's prefetch.
    let with_files = 2 * dirs;
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mark = log_mark(&srv);
    let out = tar_through(&m);
    same_tree(&out.join("t"), &root.join("t"));
    let j = status_json(&m);
    let used = status_num(&j, "prefetch_used");
    // Only the first opens of the walk find nothing prefetched; every
    // later one, the first of each directory included, does (without the
    // walk's prefetch, at most `files - with_files` would).
    assert!(
        used as usize + 3 >= files,
        "{used} of {files} opens served by a prefetch ({with_files} directories with files): {j}"
    );
    // Each file crossed once: a prefetch is the open's GET, not an extra.
    let gets = requests_after(&srv, mark)
        .iter()
        .filter(|r| r.starts_with("GET "))
        .count();
    assert!(gets <= files + 2, "{gets} GETs for {files} files");

    // Changed on the server after the walk, and past the attribute
    // window: the next walk reads the new content everywhere.
    tree(&root, dirs, per_dir, "v2");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let again = tar_through(&m);
    same_tree(&again.join("t"), &root.join("t"));
}
