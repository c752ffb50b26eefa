//! A writer that joins a reader's FUSE passthrough: its writes go from the
//! kernel straight to the cache file, unseen by rfmount. It uploads at each
//! close it wrote before, never again for nothing (a later close, or the
//! kernel's release, with no write since would turn another mount's change
//! into a conflict), and a partial upload never goes out blind.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Opens `name` in `m` for reading once an open goes into passthrough
/// (an earlier tool's release, sent by the kernel on its own, may still be
/// pending: its page-cache handle keeps the next open out of passthrough).
fn passthrough_reader(m: &Mount, name: &str) -> File {
    let want = format!("open /{name}: kernel I/O");
    let opened = || {
        let f = File::open(m.join(name)).expect("open for reading");
        let last = m
            .log()
            .lines()
            .rev()
            .find(|l| l.contains(&want))
            .map(str::to_owned);
        last.is_some_and(|l| l.ends_with("Passthrough"))
            .then_some(f)
    };
    wait_for(Duration::from_secs(10), opened).unwrap_or_else(|| {
        panic!(
            "no open of {name} went into passthrough\n{}",
            tail(&m.log(), 30)
        )
    })
}

fn puts(srv: &Server, mark: usize) -> Vec<String> {
    requests_after(srv, mark)
        .into_iter()
        .filter(|r| r.starts_with("PUT"))
        .collect()
}

#[test]
fn a_passthrough_writer_uploads_once_and_another_mounts_later_change_is_no_conflict() {
    skip_without_fuse!();
    if !kernel_has_passthrough() {
        eprintln!("skipped: this kernel or user has no FUSE passthrough");
        return;
    }
    let root = TestDir::new("root");
    root.write("f", "hello\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    assert_eq!(tool(&a, &srv, "cat").arg("f").stdout(), "hello\n");
    let r = passthrough_reader(&a, "f");
    let mark = log_mark(&srv);
    // A writer joins the passthrough; a second descriptor of the same open
    // file keeps the handle open past the first close, so that the kernel's
    // release comes only when the test says.
    let w = OpenOptions::new()
        .write(true)
        .open(a.join("f"))
        .expect("open for writing");
    let dup = w.try_clone().expect("dup");
    w.write_all_at(b"HE", 0).unwrap();
    drop(w);
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "HEllo\n");
    assert_eq!(puts(&srv, mark).len(), 1, "A's close uploaded not once");
    // Another mount changes the file after A's close landed.
    sh(&b, &srv, "echo 'from b' > f").ok();
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "from b\n");
    let after_b = log_mark(&srv);
    // A closes its last descriptor of the writer, having written nothing
    // since its upload, then the reader.
    drop(dup);
    drop(r);
    // The kernel sends the releases on its own; the last one finds the
    // cache file as uploaded and marks it clean, sending nothing. Until
    // then A's opens share the open copy.
    assert!(
        wait_for(Duration::from_secs(10), || (pending_files(&a) == 0)
            .then_some(()))
        .is_some(),
        "A's last release never marked the file clean\n{}",
        tail(&a.log(), 40)
    );
    assert_eq!(tool(&a, &srv, "cat").arg("f").stdout(), "from b\n");
    let aside = names_with_prefix(root.path(), "f.conflict-");
    assert!(
        aside.is_empty(),
        "a close with nothing written made a conflict copy {aside:?}\n{}",
        tail(&a.log(), 40)
    );
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "from b\n");
    assert!(
        puts(&srv, after_b).is_empty(),
        "A uploaded again with nothing written: {:?}\n{}",
        requests_after(&srv, after_b),
        tail(&a.log(), 40)
    );
    assert!(
        !a.log().contains("conflict"),
        "A reported a conflict:\n{}",
        tail(&a.log(), 40)
    );
}

#[test]
fn a_passthrough_write_after_an_upload_is_uploaded_at_the_next_close() {
    skip_without_fuse!();
    if !kernel_has_passthrough() {
        eprintln!("skipped: this kernel or user has no FUSE passthrough");
        return;
    }
    let root = TestDir::new("root");
    root.write("f", "hello world\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    assert_eq!(tool(&a, &srv, "cat").arg("f").stdout(), "hello world\n");
    let r = passthrough_reader(&a, "f");
    let w = OpenOptions::new()
        .write(true)
        .open(a.join("f"))
        .expect("open for writing");
    let dup = w.try_clone().expect("dup");
    w.write_all_at(b"HE", 0).unwrap();
    drop(w);
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "HEllo world\n");
    // Written again right after the upload (within one clock tick, most
    // likely): the stamp the upload kept no longer matches.
    dup.write_all_at(b"W", 6).unwrap();
    drop(dup);
    assert_eq!(
        fs::read_to_string(root.join("f")).unwrap(),
        "HEllo World\n",
        "a write after the upload was not sent at the close\n{}",
        tail(&a.log(), 30)
    );
    drop(r);
    assert_eq!(tool(&a, &srv, "cat").arg("f").stdout(), "HEllo World\n");
}
