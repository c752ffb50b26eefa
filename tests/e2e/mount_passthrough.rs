//! FUSE passthrough under server callbacks: a clean cached file is read by
//! the kernel straight from the cache file (a stopped rfmount answers
//! nothing meanwhile), a pushed change reaches the next open and the
//! descriptors already open, and writes through an inode in passthrough
//! reach the server and the other mounts.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Generous: a pushed change reaches another mount within one RTT, plus the
/// fetch of a few bytes on a loaded machine.
const SOON: Duration = Duration::from_secs(10);

/// Up to 64 KiB from the start of `f`.
fn head(f: &File) -> String {
    let mut buf = vec![0u8; 64 << 10];
    let n = f.read_at(&mut buf, 0).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn cat(m: &Mount, srv: &Server, name: &str) -> String {
    tool(m, srv, "cat").arg(name).stdout()
}

#[test]
fn a_clean_cached_file_is_read_by_the_kernel_while_rfmount_is_stopped() {
    skip_without_fuse!();
    if !kernel_has_passthrough() {
        eprintln!("skipped: this kernel or user has no FUSE passthrough");
        return;
    }
    let root = TestDir::new("root");
    let src = root.write_random("big", 4 * MIB + 123, 8);
    let want = fs::read(&src).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    // Fetched whole, clean and under a callback: the next open is a
    // passthrough.
    tool(&m, &srv, "cmp").args([s(&src), "big"]).ok();
    // The kernel sends cmp's release on its own: an open that overtakes it
    // finds a page-cache handle still open and stays out of passthrough.
    let opened = || {
        let f = File::open(m.join("big")).expect("open for reading");
        let last = m
            .log()
            .lines()
            .rev()
            .find(|l| l.contains("open /big: kernel I/O"))
            .map(str::to_owned);
        last.is_some_and(|l| l.ends_with("Passthrough"))
            .then_some(f)
    };
    let f =
        wait_for(Duration::from_secs(10), opened).expect("no open of big went into passthrough");
    let stopped = Stopped::new(m.pid());
    // The descriptor comes back unclosed: its close (FLUSH) is rfmount's.
    let got = finishes_within(Duration::from_secs(10), move || {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match f.read_at(&mut buf, out.len() as u64) {
                Ok(0) => return (f, Ok(out)),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (f, Err(e)),
            }
        }
    });
    drop(stopped);
    let got = got
        .map(|(f, r)| {
            drop(f);
            r
        })
        .expect("a read waited for the stopped rfmount: the kernel did not read the cache file")
        .expect("read through passthrough");
    assert_eq!(got.len(), want.len(), "size read through passthrough");
    assert!(got == want, "content read through passthrough differs");
}

#[test]
fn a_pushed_change_reaches_the_next_open_and_the_open_passthrough_reader() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", "version one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, LONG_TIMEOUTS);
    assert_eq!(cat(&m, &srv, "f"), "version one\n");
    let r = File::open(m.join("f")).expect("open for reading");
    assert_eq!(head(&r), "version one\n");
    // Changed on the server machine: rfserve's watch pushes it.
    fs::write(root.join("f"), "version two, longer\n").unwrap();
    let want = "version two, longer\n";
    assert!(
        seen_within(SOON, || cat(&m, &srv, "f") == want),
        "the next open still reads {:?}\n{}",
        cat(&m, &srv, "f"),
        tail(&m.log(), 30)
    );
    assert!(
        seen_within(SOON, || head(&r) == want),
        "the open reader still reads {:?}",
        head(&r)
    );
    drop(r);
    // Closed everywhere and changed again: a new open, a new passthrough.
    fs::write(root.join("f"), "three\n").unwrap();
    assert!(
        seen_within(SOON, || cat(&m, &srv, "f") == "three\n"),
        "after the last close the next open still reads {:?}",
        cat(&m, &srv, "f")
    );
}

#[test]
fn writes_through_an_inode_in_passthrough_reach_the_server_and_other_mounts() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", "hello\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    assert_eq!(cat(&a, &srv, "f"), "hello\n");
    let r = File::open(a.join("f")).expect("open for reading");
    assert_eq!(head(&r), "hello\n");
    // A writer joins the reader's passthrough: its close uploads.
    let w = OpenOptions::new()
        .write(true)
        .open(a.join("f"))
        .expect("open for writing");
    w.write_all_at(b"HE", 0).unwrap();
    drop(w);
    // A writer in passthrough uploads at its close; its release, which the
    // kernel sends on its own, finds the cache file as uploaded and marks
    // it clean (`mount_passthrough_writers` covers B writing before that).
    assert!(
        seen_within(SOON, || pending_files(&a) == 0),
        "A's close never finished uploading"
    );
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "HEllo\n");
    assert_eq!(head(&r), "HEllo\n");
    assert_eq!(cat(&b, &srv, "f"), "HEllo\n");
    // Another mount's change reaches A's open reader and A's next open.
    sh(&b, &srv, "echo 'from b' > f").ok();
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "from b\n");
    assert!(
        seen_within(SOON, || head(&r) == "from b\n"),
        "A's open reader still reads {:?}",
        head(&r)
    );
    assert_eq!(cat(&a, &srv, "f"), "from b\n");
    drop(r);
    assert_eq!(cat(&a, &srv, "f"), "from b\n");
}
