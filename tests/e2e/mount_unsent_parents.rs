//! A directory holding files created on a write-back mount and not on the
//! server yet: `stat` of it asks the server nothing (the server's copy has
//! not changed yet), and shows the directory changed by the creates; once
//! the uploads land it shows the server's attributes. This is the STAT per
//! directory that `tar x -o writeback` waited for before setting the
//! directory's times.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

/// Fills the server's disk from the server's side, so that every upload
/// is refused (ENOSPC) and retried until the filler is removed.
fn fill(path: &std::path::Path) {
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    // A partial last chunk may have taken what was left.
    while f.write_all(&[0x5a]).is_ok() {}
}

#[test]
fn stat_of_a_directory_with_unsent_new_files_asks_the_server_nothing() {
    skip_without_fuse!();
    let Some(disk) = SmallDisk::mount(8) else {
        assert!(!in_ci(), "CI runs as root and can mount a tmpfs");
        eprintln!("note: skipped: cannot mount a tmpfs (not root)");
        return;
    };
    let root = disk.path().to_path_buf();
    let srv = Server::start(&root, &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    m.cmd("mkdir").arg("d").with_server(&srv).ok();
    let before = fs::metadata(m.join("d")).unwrap();
    fill(&root.join("filler"));
    // mtimes have a one-second granularity in some views: make "moved"
    // unmistakable.
    std::thread::sleep(Duration::from_millis(1100));
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for i in 0..3 {
        fs::write(m.join(format!("d/f{i}")), format!("file {i}\n")).unwrap();
    }
    assert!(
        root.join("d").read_dir().unwrap().next().is_none(),
        "the uploads must be held back by the full disk for this test to mean anything"
    );

    let mark = log_mark(&srv);
    let shown = fs::metadata(m.join("d")).unwrap();
    let reqs = requests_after(&srv, mark);
    assert!(
        !reqs.iter().any(|r| r == "STAT /d"),
        "stat of d while its new files wait asked the server: {reqs:#?}"
    );
    assert_eq!(shown.ino(), before.ino(), "the same directory");
    assert_eq!(shown.mode(), before.mode(), "mode as the server has it");
    assert!(
        shown.mtime() >= started && shown.ctime() >= started,
        "the creates moved d's mtime and ctime as a local directory's: \
         before {} / {}, now {} / {}, creates from {started}",
        before.mtime(),
        before.ctime(),
        shown.mtime(),
        shown.ctime()
    );
    let names: Vec<String> = fs::read_dir(m.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "the new files are listed: {names:?}");

    // A subdirectory made meanwhile (on the server at once): d's link
    // count is the server's answer to that MKDIR, also once it is older
    // than the attribute timeout, still with no STAT.
    m.cmd("mkdir").arg("d/sub").with_server(&srv).ok();
    std::thread::sleep(Duration::from_millis(1500));
    let mark = log_mark(&srv);
    let shown = fs::metadata(m.join("d")).unwrap();
    let reqs = requests_after(&srv, mark);
    assert!(
        !reqs.iter().any(|r| r == "STAT /d"),
        "stat of d after its subdirectory asked the server: {reqs:#?}"
    );
    assert_eq!(
        shown.nlink(),
        fs::metadata(root.join("d")).unwrap().nlink(),
        "d's link count is the server's after the MKDIR of d/sub"
    );

    // Room again: the uploads land, and d shows the server's attributes.
    fs::remove_file(root.join("filler")).unwrap();
    rfmount_sync(&m);
    for i in 0..3 {
        assert_eq!(
            fs::read_to_string(root.join(format!("d/f{i}"))).unwrap(),
            format!("file {i}\n")
        );
    }
    let on_server = fs::metadata(root.join("d")).unwrap();
    let shown = wait_for(Duration::from_secs(5), || {
        let s = fs::metadata(m.join("d")).unwrap();
        (s.mtime() == on_server.mtime() && s.mtime_nsec() == on_server.mtime_nsec()).then_some(s)
    });
    assert!(
        shown.is_some(),
        "after the uploads d shows the server's mtime {}.{:09}",
        on_server.mtime(),
        on_server.mtime_nsec()
    );
}
