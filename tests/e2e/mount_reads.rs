//! The read path: a big file streams (a `head` of it does not fetch it
//! all, two readers share one fetch, a fetch cut off half way is `EIO` for
//! the missing range and never a truncated copy later), and prefetch of a
//! directory's small files (served in place of the opens' own requests,
//! never stale once the attribute window has passed).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// A file of `size` bytes (a multiple of 1 MiB): one random MiB written
/// over and over, quick to make and slow enough to stream that a test can
/// act while it does. Not sparse: a sparse GET sends a hole as one frame,
/// so a mostly empty file would arrive at once.
fn big_file(root: &TestDir, name: &str, size: u64) -> std::path::PathBuf {
    let p = root.write_random(name, MIB, 0xb16);
    let block = fs::read(&p).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("opening the test file");
    for i in 1..size / MIB {
        f.write_all_at(&block, i * MIB)
            .expect("extending the test file");
    }
    p
}

/// The server's log lines of GETs of `path`.
fn gets(srv: &Server, path: &str) -> Vec<String> {
    let pat = format!("request op=GET path={path} ");
    srv.log()
        .lines()
        .filter(|l| l.contains(&pat))
        .map(str::to_owned)
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number after `"key":`.
fn num(j: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = j.find(&pat).unwrap_or_else(|| panic!("no {key} in {j}")) + pat.len();
    let digits: String = j[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} in {j}"))
}

#[test]
fn head_of_a_big_file_stops_its_fetch_and_a_later_read_is_whole() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let size = 192 * MIB;
    let src = big_file(&root, "big", size);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let first = tool(&m, &srv, "head").args(["-c", "100", "big"]).ok();
    assert_eq!(first.stdout, fs::read(&src).unwrap()[..100]);
    wait_for("the first GET to end", Duration::from_secs(20), || {
        !gets(&srv, "/big").is_empty()
    });
    // open returned with the first bytes and head closed: the rest was
    // never sent, so the open did not wait for the whole file.
    let line = gets(&srv, "/big").remove(0);
    assert!(
        !line.contains(&format!("result=data bytes={size}")),
        "the whole file was sent for a head: {line}"
    );
    // Nothing half-fetched stands in for the file: it is read whole.
    tool(&m, &srv, "cmp").arg(&src).arg("big").ok();
    let lines = gets(&srv, "/big");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].contains(&format!("result=data bytes={size}")),
        "{lines:?}"
    );
}

#[test]
fn two_readers_share_a_fetch_and_one_cut_off_is_eio_never_zeros() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let size = 1024 * MIB;
    let src = big_file(&root, "big", size);
    // A tail that is not zeros, so that zeros served for it would show.
    let tail_want = b"the very end of the file\n";
    let tail_at = size - tail_want.len() as u64;
    OpenOptions::new()
        .write(true)
        .open(&src)
        .and_then(|f| f.write_all_at(tail_want, tail_at))
        .unwrap();
    // Read now, not between the first read and the freeze: reading the whole
    // source there gave the fetch time to complete.
    let mut head_want = [0u8; 16];
    File::open(&src)
        .and_then(|f| f.read_exact_at(&mut head_want, 0))
        .unwrap();
    let srv = Server::start(root.path(), &[]);
    // On a loaded machine the whole file may arrive before the server is
    // frozen; then the attempt proves nothing and is made again.
    let mut cut_off = false;
    for _ in 0..4 {
        let before = gets(&srv, "/big").len();
        let m = Mount::start(&srv, &["-o", "timeout=1"]);
        let a = File::open(m.join("big")).expect("open a");
        let b = File::open(m.join("big")).expect("open b");
        let mut head = [0u8; 16];
        a.read_exact_at(&mut head, 0)
            .expect("first bytes through a");
        assert_eq!(head, head_want);
        // The server stops in the middle of the file: the fetch dies with
        // the connection, after the 1 s progress timeout.
        let mut frozen = Frozen::new(srv.pid());
        let mut tail = vec![0u8; tail_want.len()];
        let got = b.read_exact_at(&mut tail, tail_at);
        frozen.thaw();
        drop((a, b));
        match got {
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                cut_off = true;
            }
            // Everything had arrived: it must be the file's own bytes.
            Ok(()) => assert_eq!(tail, tail_want, "{}", status_json(&m)),
        }
        // The two opens were one GET (logged once the thawed server finds
        // its connection gone).
        wait_for("the GET to end", Duration::from_secs(30), || {
            gets(&srv, "/big").len() > before
        });
        let lines = gets(&srv, "/big");
        assert_eq!(lines.len(), before + 1, "{lines:?}");
        if cut_off {
            // The cut-off copy was never kept: a new read fetches it whole,
            // once the mount is connected again (until then it fails opens
            // of what it has not cached at once, with EIO).
            wait_online(&m, Duration::from_secs(30));
            tool(&m, &srv, "cmp").arg(&src).arg("big").ok();
            break;
        }
    }
    assert!(
        cut_off,
        "the fetch always completed before the server froze"
    );
}

#[test]
fn prefetch_serves_the_next_files_and_never_a_stale_one() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let n = 40;
    let mut all = Vec::new();
    for i in 0..n {
        let body = format!("file {i:03}\n").repeat(300);
        root.write(format!("d/f{i:03}"), &body);
        all.push(body);
    }
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // Listed, then read in listing order (find reads the listing).
    m.cmd("ls").args(["-l", "d"]).ok();
    let out = m
        .cmd("sh")
        .args(["-c", "find d -type f -exec cat {} +"])
        .ok();
    let mut got = text(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "every file read");
    let j = status_json(&m);
    assert!(
        num(&j, "prefetch_used") >= n as u64 / 2,
        "prefetch unused: {j}"
    );
    // Each file crossed once: the opens served by a prefetch sent nothing
    // of their own.
    let gets_d = srv
        .log()
        .lines()
        .filter(|l| l.contains("request op=GET path=/d/"))
        .count();
    assert!(gets_d <= n + 2, "{gets_d} GETs for {n} files");

    // Stale: listed and prefetched, then changed on the server once the
    // attribute window is over; the open must see the new content.
    let m2 = Mount::start(&srv, &[]);
    m2.cmd("ls").args(["-l", "d"]).ok();
    let before = status_json(&m2);
    m2.cmd("cat").arg("d/f000").ok();
    wait_for("prefetches", Duration::from_secs(10), || {
        num(&status_json(&m2), "prefetched") > num(&before, "prefetched")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let changed = "changed on the server\n";
    for i in 1..n {
        fs::write(root.join(format!("d/f{i:03}")), changed).unwrap();
    }
    for i in 1..n {
        let body = m2.cmd("cat").arg(format!("d/f{i:03}")).stdout();
        assert_eq!(body, changed, "d/f{i:03} served stale");
    }
    assert_eq!(all.len(), n);
}

#[test]
fn a_file_read_through_passthrough_sees_writes_truncates_and_new_versions() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", "hello\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // Cached and clean: the next open of it is a passthrough where the
    // kernel has it.
    m.cmd("cat").arg("f").ok();
    let r = File::open(m.join("f")).expect("open for reading");
    let mut buf = [0u8; 64];
    let n = r.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello\n");
    // A writer joins while the reader is open: its data reaches the
    // server at close, and the open reader sees it.
    m.cmd("sh").args(["-c", "echo more >> f"]).ok();
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "hello\nmore\n");
    let n = r.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], b"hello\nmore\n");
    // A truncate while it is open, too.
    m.cmd("truncate").args(["-s", "2", "f"]).ok();
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "he");
    assert_eq!(r.read_at(&mut buf, 0).unwrap(), 2);
    drop(r);
    // A new version on the server is what the next open reads. Past the
    // attribute timeout, and past the 2 s in which rfserve attributes a
    // change its watch reports to the mount that just wrote the file (so a
    // callback does not invalidate the writer with its own change).
    std::thread::sleep(Duration::from_millis(2100));
    fs::write(root.join("f"), "new version\n").unwrap();
    assert_eq!(m.cmd("cat").arg("f").stdout(), "new version\n");
    assert_eq!(m.cmd("cat").arg("f").stdout(), "new version\n");
    // A second name of the same file reads the same content.
    fs::hard_link(root.join("f"), root.join("g")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(m.cmd("cat").arg("g").stdout(), "new version\n");
    assert_eq!(m.cmd("cat").arg("f").stdout(), "new version\n");
}
