//! The mtime a new file shows before its upload is the one it keeps: the
//! kernel caches the local copy's attributes from the create, so a server
//! that picked its own mtime at the upload made a later stat (after a
//! `touch -a` there, say) disagree about a time nothing changed
//! (pjdfstest's `utimensat::utime_omit`).

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::mount_common::*;
use crate::util::*;

fn mtime(p: &Path) -> (i64, i64) {
    let md = fs::metadata(p).unwrap();
    (md.mtime(), md.mtime_nsec())
}

#[test]
fn a_new_files_mtime_survives_its_upload_and_a_touch_a() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "allow_other,default_permissions"]);
    // Several of each: the local copy's mtime and one the server picked at
    // the upload agree whenever both fall in one tick of the clock.
    let cases = (0..20).flat_map(|i| [(format!("empty{i}"), false), (format!("written{i}"), true)]);
    for (name, write) in cases {
        let name = name.as_str();
        let f = m.join(name);
        // As pjdfstest creates: O_CREAT on a read-only descriptor.
        let mut opts = fs::File::options();
        if write {
            opts.create(true).write(true);
        } else {
            opts.read(true).custom_flags(libc::O_CREAT);
        }
        let file = opts.open(&f).unwrap();
        if write {
            use std::io::Write;
            (&file).write_all(b"data").unwrap();
        }
        // Before the upload: the local copy's mtime.
        let md = file.metadata().unwrap();
        let shown = (md.mtime(), md.mtime_nsec());
        drop(file); // close: the upload
        assert_eq!(mtime(&root.join(name)), shown, "{name}: server's mtime");
        assert_eq!(mtime(&f), shown, "{name}: mtime after the upload");
        // Changes only the access time, on the server now that it is clean.
        sh(&m, &srv, &format!("touch -a -d @1900000000 {name}")).ok();
        assert_eq!(fs::metadata(&f).unwrap().atime(), 1_900_000_000, "{name}");
        assert_eq!(mtime(&f), shown, "{name}: mtime after touch -a");
    }
}
