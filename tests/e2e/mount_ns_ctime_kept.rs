//! The ctime a mount shows for a file it wrote: it does not move at the
//! upload that a close causes, nor after a remount; a chmod of a file not
//! uploaded yet moves it (as on a local file system); a change made on
//! the server moves it as the server says.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

fn ctime(p: &Path) -> (i64, i64) {
    let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (md.ctime(), md.ctime_nsec())
}

fn fctime(f: &fs::File) -> (i64, i64) {
    let md = f.metadata().unwrap();
    (md.ctime(), md.ctime_nsec())
}

/// Longer than a timestamp tick of the file systems involved.
fn tick() {
    std::thread::sleep(Duration::from_millis(30));
}

#[test]
fn a_files_ctime_stays_across_its_upload_and_a_remount() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);

    // Seen while only the local copy exists, uploaded later at close.
    let f = fs::File::create(m.join("f")).unwrap();
    let seen = fctime(&f);
    tick();
    drop(f);
    let on_server = ctime(&root.join("f"));
    assert!(
        on_server > seen,
        "the upload came later than the local ctime: {on_server:?} {seen:?}"
    );
    assert_eq!(ctime(&m.join("f")), seen, "after the upload");

    // A file written after its last stat: nobody saw its local ctime, and
    // the mount shows the server's.
    let mut g = fs::File::create(m.join("g")).unwrap();
    tick();
    std::io::Write::write_all(&mut g, b"data").unwrap();
    drop(g);
    assert_eq!(ctime(&m.join("g")), ctime(&root.join("g")));

    m.unmount_and_wait();
    m.remount(&srv.addr());
    // No attributes cached by the kernel: asked for again.
    assert_eq!(ctime(&m.join("f")), seen, "after a remount");

    // A change on the server while unmounted shows as the server says.
    m.unmount_and_wait();
    fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let changed = ctime(&root.join("f"));
    m.remount(&srv.addr());
    assert_eq!(ctime(&m.join("f")), changed, "changed on the server");
    assert!(changed > seen);

    // And one made through the mount.
    tick();
    sh(&m, &srv, "chmod 640 f").ok();
    let after_chmod = ctime(&m.join("f"));
    assert_eq!(after_chmod, ctime(&root.join("f")));
    assert!(after_chmod > changed, "{after_chmod:?} {changed:?}");
}

#[test]
fn a_chmod_of_a_file_not_uploaded_yet_moves_its_ctime() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let reference = TestDir::new("reference");
    for dir in [m.path(), reference.path()] {
        let mut f = fs::File::create(dir.join("f")).unwrap();
        std::io::Write::write_all(&mut f, b"not uploaded yet").unwrap();
        let written = fctime(&f);
        tick();
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .unwrap();
        let chmodded = fctime(&f);
        assert!(
            chmodded > written,
            "{}: {chmodded:?} {written:?}",
            dir.display()
        );
        tick();
        // Only the times: no change.
        assert_eq!(fctime(&f), chmodded, "{}", dir.display());
    }
    assert_eq!(
        fs::metadata(root.join("f")).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
