//! Directory attributes on a write-back mount: a directory's owner, mode
//! and times set after files were written into it (as `tar x` does) are
//! shown at once, merged into one SETATTR, and sent only after the uploads
//! into the directory have landed, so the server's renames that commit
//! those uploads do not move the directory's mtime again.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::*;

/// 2001-02-03 04:05:06 UTC.
const STAMP: i64 = 981_173_106;

fn count(reqs: &[String], want: &str) -> usize {
    reqs.iter().filter(|r| *r == want).count()
}

#[test]
fn directory_attributes_set_while_its_uploads_wait_land_after_them_in_one_setattr() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    m.cmd("mkdir").arg("d").with_server(&srv).ok();
    // The uploads of files closed now cannot land until the server is back.
    srv.kill();
    for i in 0..3 {
        fs::write(m.join(format!("d/f{i}")), format!("file {i}\n")).unwrap();
    }
    let mark = log_mark(&srv);
    m.cmd("chown").arg("1234:4321").arg("d").ok();
    m.cmd("chmod").arg("0750").arg("d").ok();
    m.cmd("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{STAMP}"))
        .arg("d")
        .ok();
    let shown = fs::metadata(m.join("d")).unwrap();
    assert_eq!(
        (
            shown.uid(),
            shown.gid(),
            shown.permissions().mode() & 0o7777,
            shown.mtime()
        ),
        (1234, 4321, 0o750, STAMP),
        "the mount shows the change at once"
    );
    srv.restart();
    rfmount_sync(&m);
    for i in 0..3 {
        assert_eq!(
            fs::read_to_string(root.join(format!("d/f{i}"))).unwrap(),
            format!("file {i}\n")
        );
    }
    let on_server = fs::metadata(root.join("d")).unwrap();
    assert_eq!(
        (
            on_server.uid(),
            on_server.gid(),
            on_server.permissions().mode() & 0o7777,
            on_server.mtime()
        ),
        (1234, 4321, 0o750, STAMP),
        "the server's directory has the attributes set last, after its uploads"
    );
    let reqs = requests_after(&srv, mark);
    assert_eq!(count(&reqs, "SETATTR /d"), 1, "{reqs:#?}");
    assert_eq!(
        reqs.iter().filter(|r| r.starts_with("PUT /d/")).count(),
        3,
        "{reqs:#?}"
    );
}

#[test]
fn tar_x_into_a_writeback_mount_leaves_the_directory_times_of_the_archive() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    for d in ["t", "t/a", "t/a/b", "t/c"] {
        local.mkdir(d);
    }
    for (i, f) in ["t/x", "t/a/y", "t/a/b/z", "t/a/b/w", "t/c/v"]
        .iter()
        .enumerate()
    {
        local.write_random(f, 4096, 40 + i as u64);
    }
    for (i, d) in ["t/a/b", "t/a", "t/c", "t"].iter().enumerate() {
        let p = local.join(d);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o750 - 0o10 * i as u32)).unwrap();
        TestCommand::new("touch")
            .arg("-m")
            .arg("-d")
            .arg(format!("@{}", STAMP + i as i64))
            .arg(&p)
            .ok();
    }
    let tar = local.join("t.tar");
    TestCommand::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(local.path())
        .arg("t")
        .ok();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    let mark = log_mark(&srv);
    m.cmd("tar").arg("-xf").arg(&tar).with_server(&srv).ok();
    rfmount_sync(&m);
    for d in ["t", "t/a", "t/a/b", "t/c"] {
        let want = fs::metadata(local.join(d)).unwrap();
        let got = fs::metadata(root.join(d)).unwrap();
        assert_eq!(
            (got.mtime(), got.permissions().mode() & 0o7777),
            (want.mtime(), want.permissions().mode() & 0o7777),
            "{d} on the server"
        );
    }
    let reqs = requests_after(&srv, mark);
    for d in ["/t", "/t/a", "/t/a/b", "/t/c"] {
        let n = count(&reqs, &format!("SETATTR {d}"));
        // tar sets owner, mode and times one call each: at most those
        // three, never a SETATTR that waits for nothing.
        assert!((1..=3).contains(&n), "{d}: {n} SETATTRs\n{reqs:#?}");
    }
    assert_eq!(
        reqs.iter().filter(|r| r.starts_with("PUT ")).count(),
        5,
        "{reqs:#?}"
    );
}
