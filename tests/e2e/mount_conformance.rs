//! What the POSIX conformance suite (pjdfstest, docs/CONFORMANCE.md) found
//! wrong, each checked on its own through a real mount: fstat of a file
//! unlinked while open.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::util::*;

#[test]
fn fstat_of_a_file_unlinked_while_open_says_no_links() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("old", b"data\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // A file created through the mount and one that came from the server.
    // Rust's metadata() asks for every field (statx), ctime included, which
    // the unlink invalidated in the kernel: the answer is rfmount's.
    let created = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.join("new"))
        .unwrap();
    let existing = fs::File::open(m.join("old")).unwrap();
    fs::remove_file(m.join("new")).unwrap();
    fs::remove_file(m.join("old")).unwrap();
    assert_eq!(created.metadata().unwrap().nlink(), 0);
    assert_eq!(existing.metadata().unwrap().nlink(), 0);
}
