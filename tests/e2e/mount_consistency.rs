//! Close-to-open consistency through real mounts: a file changed on the
//! server is seen in full at the next `open`, a file closed on one mount is
//! read with its new content on another, and a remount serves an unchanged
//! file from its on-disk cache after one `NotModified` round trip.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// Replaces `path`'s content on the server's disk the way another program
/// would, making sure its mtime moved on (a rewrite within one filesystem
/// timestamp tick would look unchanged to anyone comparing times).
fn change_on_server(path: &Path, content: &[u8]) {
    let before = fs::metadata(path).ok().map(|m| (m.mtime(), m.mtime_nsec()));
    let moved = wait_for(Duration::from_secs(5), || {
        fs::write(path, content).unwrap();
        let m = fs::metadata(path).unwrap();
        (before != Some((m.mtime(), m.mtime_nsec()))).then_some(())
    });
    assert!(
        moved.is_some(),
        "the mtime of {} never changed",
        path.display()
    );
}

#[test]
fn cat_sees_server_side_changes_at_the_next_open() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "version one\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // A change made in the export by another program reaches the mount as
    // a push (rfserve's inotify watch, then an invalidation), not with a
    // close the test could wait for: SEMANTICS promises it within
    // milliseconds plus one round trip, so each read may retry for 1 s (a
    // stale answer past that fails). `fs::write` truncates, then writes: a
    // read in between may see the short file, and the next push fixes it.
    let cat_bytes = |name: &str, want: &[u8]| {
        let got = wait_for(Duration::from_secs(1), || {
            let out = tool(&m, &srv, "cat").arg(name).ok().stdout;
            (out == want).then_some(out)
        });
        got.unwrap_or_else(|| tool(&m, &srv, "cat").arg(name).ok().stdout)
    };
    let cat = |name: &str, want: &str| String::from_utf8(cat_bytes(name, want.as_bytes())).unwrap();

    assert_eq!(cat("f.txt", "version one\n"), "version one\n");
    // Same size, different bytes.
    change_on_server(&root.join("f.txt"), b"version two\n");
    assert_eq!(cat("f.txt", "version two\n"), "version two\n");
    // Grown: the longer content in full, not cut at the old size.
    let grown = "version three, which is a good deal longer than the others\n".repeat(50);
    change_on_server(&root.join("f.txt"), grown.as_bytes());
    assert_eq!(cat("f.txt", &grown), grown);
    let size = tool(&m, &srv, "stat").args(["-c", "%s", "f.txt"]).stdout();
    assert_eq!(size.trim(), grown.len().to_string());
    // Shrunk: no stale tail.
    change_on_server(&root.join("f.txt"), b"v4\n");
    assert_eq!(cat("f.txt", "v4\n"), "v4\n");
    // Larger than a page and than the kernel's readahead, same size twice.
    let a = Rng::new(1).bytes(300_000);
    let b = Rng::new(2).bytes(300_000);
    change_on_server(&root.join("f.txt"), &a);
    assert!(cat_bytes("f.txt", &a) == a, "the first 300 KB version");
    change_on_server(&root.join("f.txt"), &b);
    assert!(cat_bytes("f.txt", &b) == b, "the second 300 KB version");
    // Removed on the server: gone at the next open (within the same bound).
    fs::remove_file(root.join("f.txt")).unwrap();
    let gone = wait_for(Duration::from_secs(1), || {
        let out = tool(&m, &srv, "cat").arg("f.txt").run();
        (!out.status.success() && text(&out.stderr).contains("No such file or directory"))
            .then_some(())
    });
    if gone.is_none() {
        let out = tool(&m, &srv, "cat").arg("f.txt").fails();
        panic!("f.txt not gone: {}", text(&out.stderr));
    }
    // Every version was fetched (a read between truncate and write fetches
    // one more).
    assert!(srv.wait_count("op=GET path=/f.txt result=data", 6, Duration::from_secs(5)) >= 6);
}

#[test]
fn a_file_closed_on_one_mount_is_read_new_on_another() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &[]);
    let b = Mount::start(&srv, &[]);

    sh(&a, &srv, "echo first > shared.txt").ok();
    assert_eq!(tool(&b, &srv, "cat").arg("shared.txt").stdout(), "first\n");
    // Overwrite with the same size: B's next open sees it.
    sh(&a, &srv, "echo again > shared.txt").ok();
    assert_eq!(fs::read(root.join("shared.txt")).unwrap(), b"again\n");
    assert_eq!(tool(&b, &srv, "cat").arg("shared.txt").stdout(), "again\n");
    // A second overwrite, grown: B reads all of it.
    let long = "a much longer third version of the shared file\n".repeat(1000);
    let local = TestDir::new("local");
    let src = local.write("long.txt", &long);
    tool(&a, &srv, "cp").arg(&src).arg("shared.txt").ok();
    assert_eq!(tool(&b, &srv, "cat").arg("shared.txt").stdout(), long);
    let size = tool(&b, &srv, "stat")
        .args(["-c", "%s", "shared.txt"])
        .stdout();
    assert_eq!(size.trim(), long.len().to_string());
    // An append on B reaches A.
    sh(&b, &srv, "echo tail >> shared.txt").ok();
    assert_eq!(
        tool(&a, &srv, "cat").arg("shared.txt").stdout(),
        format!("{long}tail\n")
    );
    // A new file in a new directory on A is listed and read on B.
    sh(&a, &srv, "mkdir -p d/e && echo deep > d/e/new.txt").ok();
    let listed = wait_for(Duration::from_secs(10), || {
        let out = tool(&b, &srv, "ls").arg("d/e").run();
        (text(&out.stdout) == "new.txt\n").then_some(())
    });
    assert!(listed.is_some(), "B never listed d/e/new.txt");
    assert_eq!(tool(&b, &srv, "cat").arg("d/e/new.txt").stdout(), "deep\n");
    // Removed on A: B's next open fails.
    tool(&a, &srv, "rm").arg("d/e/new.txt").ok();
    let gone = wait_for(Duration::from_secs(10), || {
        let out = tool(&b, &srv, "cat").arg("d/e/new.txt").run();
        (!out.status.success()).then_some(text(&out.stderr))
    });
    assert!(
        gone.as_deref()
            .is_some_and(|e| e.contains("No such file or directory")),
        "B still reads a file A removed: {gone:?}"
    );
}

#[test]
fn remount_serves_an_unchanged_file_from_the_cache() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let content = Rng::new(7).bytes(3 * MIB as usize + 17);
    root.write("f.bin", &content);
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);

    assert_eq!(tool(&m, &srv, "cat").arg("f.bin").ok().stdout, content);
    assert_eq!(
        srv.wait_count("op=GET path=/f.bin result=data", 1, Duration::from_secs(5)),
        1
    );
    let st = m.unmount_and_wait();
    assert!(
        st.success(),
        "rfmount exited with {st} after fusermount3 -u"
    );

    let before = request_lines(&srv).len();
    m.remount(&srv.addr());
    assert_eq!(tool(&m, &srv, "cat").arg("f.bin").ok().stdout, content);
    // The cached copy is checked against the server (a STAT whose version
    // matches it, held under a callback, or a conditional GET answered
    // NotModified) but its content is never transferred again.
    let asked = seen_within(Duration::from_secs(5), || {
        requests_since(&srv, before).iter().any(|l| {
            l.contains("op=GET path=/f.bin result=not-modified")
                || l.contains("op=STAT path=/f.bin result=ok")
                || l.contains("op=LIST path=/ result=ok")
        })
    });
    assert!(
        asked,
        "the read after the remount never asked the server about f.bin; log:\n{}",
        tail(&srv.log(), 20)
    );
    let since = requests_since(&srv, before);
    assert!(
        !since
            .iter()
            .any(|l| l.contains("op=GET path=/f.bin result=data")),
        "the file was fetched again although the cache had it; log:\n{}",
        since.join("\n")
    );
    assert_eq!(srv.count("op=GET path=/f.bin result=data"), 1);

    // Changed on the server while unmounted: the remount fetches it anew.
    m.unmount_and_wait();
    change_on_server(&root.join("f.bin"), b"changed\n");
    m.remount(&srv.addr());
    assert_eq!(tool(&m, &srv, "cat").arg("f.bin").stdout(), "changed\n");
    assert_eq!(
        srv.wait_count("op=GET path=/f.bin result=data", 2, Duration::from_secs(5)),
        2
    );
}
