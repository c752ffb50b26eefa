//! A server that stops answering (SIGSTOP: connections still open, nothing
//! comes back), one that is killed and restarted, and a mount that starts
//! while its server is down. Every operation answers within its bound, from
//! the cache when it can and with EIO (never ENOENT) when it cannot, and
//! everything works again once the server is back.

use std::fs;
use std::process::Output;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// With the default `-o timeout`, the first operation that meets a silent
/// server answers within this.
const FIRST_BOUND: Duration = Duration::from_secs(5);
/// Once the server is known down, every operation answers within this.
const LATER_BOUND: Duration = Duration::from_secs(1);

/// Runs `argv` in the mount with a deadline and says how long it took.
fn run_timed(m: &Mount, srv: &Server, argv: &[&str]) -> (Output, Duration) {
    timed(|| {
        tool(m, srv, argv[0])
            .args(&argv[1..])
            .timeout(Duration::from_secs(60))
            .run()
    })
}

#[track_caller]
fn assert_within(what: &str, took: Duration, bound: Duration, m: &Mount) {
    assert!(
        took <= bound,
        "{what} took {took:?} (bound {bound:?})\n---- rfmount log ----\n{}",
        tail(&m.log(), 30)
    );
}

#[track_caller]
fn assert_ok(what: &str, out: &Output, expect: &str) {
    assert!(out.status.success(), "{what} failed: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), expect, "{what}");
}

#[track_caller]
fn assert_eio(what: &str, out: &Output) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} should fail but printed {:?}",
        text(&out.stdout)
    );
    assert!(
        err.contains("Input/output error") && !err.contains("No such file"),
        "{what} should fail with EIO (never ENOENT); it said: {err}"
    );
}

#[test]
fn a_frozen_server_is_answered_from_the_cache_within_bounds_and_uploads_land_after() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("cached.txt", "cached content\n");
    root.write("uncached.txt", "never read before\n");
    root.write("sub/inner.txt", "inner\n");
    let local = TestDir::new("local");
    let src = local.write_random("src.bin", 200 * KIB, 7);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(
        tool(&m, &srv, "cat").arg("cached.txt").stdout(),
        "cached content\n"
    );
    assert_eq!(
        tool(&m, &srv, "cat").arg("sub/inner.txt").stdout(),
        "inner\n"
    );
    let listing = tool(&m, &srv, "ls").stdout();
    assert_eq!(listing, "cached.txt\nsub\nuncached.txt\n");

    let mut frozen = Frozen::new(srv.pid());
    // Past attr_timeout and dir_timeout (1 s): every answer below needs
    // the server, or the knowledge that it is gone.
    std::thread::sleep(Duration::from_millis(1500));

    let (out, took) = run_timed(&m, &srv, &["ls"]);
    assert_within("the first ls after the server froze", took, FIRST_BOUND, &m);
    assert_ok("ls", &out, &listing);

    let checks: [(&[&str], Option<&str>); 6] = [
        (
            &["stat", "-c", "%s %F", "cached.txt"],
            Some("15 regular file\n"),
        ),
        (&["cat", "cached.txt"], Some("cached content\n")),
        (&["ls", "sub"], Some("inner.txt\n")),
        (&["cat", "sub/inner.txt"], Some("inner\n")),
        (&["ls", "-1"], Some(listing.as_str())),
        (&["cat", "uncached.txt"], None),
    ];
    for (argv, expect) in checks {
        let what = argv.join(" ");
        let (out, took) = run_timed(&m, &srv, argv);
        assert_within(&what, took, LATER_BOUND, &m);
        match expect {
            Some(e) => assert_ok(&what, &out, e),
            None => assert_eio(&what, &out),
        }
    }
    // A write lands in the cache; its close cannot upload and says so.
    let (out, took) = run_timed(&m, &srv, &["cp", s(&src), "new.bin"]);
    assert_within("cp to the mount", took, LATER_BOUND, &m);
    assert_eio("cp (its close cannot upload)", &out);
    // And the same answers again, still within the bound: nothing waits
    // for the server once it is known down.
    let (out, took) = run_timed(&m, &srv, &["cat", "cached.txt"]);
    assert_within("cat again", took, LATER_BOUND, &m);
    assert_ok("cat again", &out, "cached content\n");

    // Meanwhile someone adds a file on the server's disk.
    root.write("appeared.txt", "appeared\n");
    frozen.thaw();
    // Back: the very first operation works (a moment for the server to
    // wake up and answer the reconnect that was waiting on it).
    std::thread::sleep(Duration::from_millis(500));
    let (out, took) = run_timed(&m, &srv, &["cat", "uncached.txt"]);
    assert_within("the first cat after SIGCONT", took, LATER_BOUND, &m);
    assert_ok("the first cat after SIGCONT", &out, "never read before\n");
    if let Err(e) = wait_same_file(&src, &root.join("new.bin"), Duration::from_secs(20)) {
        panic!(
            "new.bin did not reach the server within 20 s of SIGCONT: {e}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
    }
    assert_eq!(
        tool(&m, &srv, "ls").stdout(),
        "appeared.txt\ncached.txt\nnew.bin\nsub\nuncached.txt\n"
    );
    assert_eq!(
        tool(&m, &srv, "cat").arg("appeared.txt").stdout(),
        "appeared\n"
    );
    sh(&m, &srv, "echo after > after.txt").ok();
    assert_eq!(fs::read(root.join("after.txt")).unwrap(), b"after\n");
}

#[test]
fn the_first_operation_after_a_server_restart_works() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("a.txt", "a\n");
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(tool(&m, &srv, "cat").arg("a.txt").stdout(), "a\n");
    srv.kill();
    // The mount learns of it at its next request, not before.
    root.write("b.txt", "b\n");
    srv.restart();
    assert_eq!(
        srv.addr(),
        m_addr(&m),
        "rfserve came back on another port; the test needs the same one"
    );
    assert_eq!(tool(&m, &srv, "cat").arg("b.txt").stdout(), "b\n");
    sh(&m, &srv, "echo c > c.txt").ok();
    assert_eq!(fs::read(root.join("c.txt")).unwrap(), b"c\n");
}

/// The address a mount was started with, from its log's first line.
fn m_addr(m: &Mount) -> String {
    m.log()
        .lines()
        .find_map(|l| {
            let rest = l.split("start #").nth(1)?;
            rest.split_whitespace().nth(3).map(str::to_owned)
        })
        .unwrap_or_default()
}

#[test]
fn a_transfer_that_makes_progress_outlives_a_short_timeout() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    // Big enough that the transfers take several freezes however fast
    // the unfrozen moments are (uploads stream while cp writes).
    let big = local.write_random("big.bin", 384 * MIB, 11);
    let srv = Server::start(root.path(), &[]);
    // The server is frozen for 0.8 s out of every 0.9 s: each gap is well
    // under the 1.5 s timeout, but all of them together are far over it,
    // in each direction. The deadline is on progress, not on total time.
    let timeout = Duration::from_millis(1500);
    let m = Mount::start(&srv, &["-o", "timeout=1.5"]);
    let other = Mount::start(&srv, &["-o", "timeout=1.5"]);
    let back = local.join("back.bin");
    for (what, src, mount, dst) in [
        ("upload", big.as_path(), &m, std::path::Path::new("big.bin")),
        (
            "download",
            std::path::Path::new("big.bin"),
            &other,
            back.as_path(),
        ),
    ] {
        let mut throttle = Throttle::start(
            srv.pid(),
            Duration::from_millis(800),
            Duration::from_millis(100),
        );
        let out = tool(mount, &srv, "cp").arg(src).arg(dst).run();
        let frozen = throttle.stop();
        assert!(
            out.status.success(),
            "the {what} failed while the server kept making progress: {}\n---- rfmount log ----\n{}",
            text(&out.stderr),
            tail(&mount.log(), 30)
        );
        assert!(
            frozen > timeout,
            "the server was frozen for only {frozen:?} during the {what}: the test proves nothing"
        );
    }
    assert_same_file(&big, &root.join("big.bin"));
    assert_same_file(&big, &back);
}

#[test]
fn a_mount_starts_from_a_warm_cache_while_the_server_is_down() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("a.txt", "cached a\n");
    root.write("sub/c.txt", "cached c\n");
    root.write("b.txt", "never read\n");
    let local = TestDir::new("local");
    let src = local.write_random("w.bin", 100 * KIB, 5);
    let mut srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    assert_eq!(tool(&m, &srv, "cat").arg("a.txt").stdout(), "cached a\n");
    assert_eq!(
        tool(&m, &srv, "cat").arg("sub/c.txt").stdout(),
        "cached c\n"
    );
    m.unmount_and_wait();
    srv.kill();

    m.remount(&srv.addr());
    let log = m.log();
    let warnings: Vec<&str> = log
        .lines()
        .skip_while(|l| !l.contains("start #2"))
        .filter(|l| l.contains("rfmount: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning line expected:\n{log}");
    assert!(warnings[0].contains("unreachable"), "{}", warnings[0]);

    for (argv, expect) in [
        (&["cat", "a.txt"][..], "cached a\n"),
        (&["cat", "sub/c.txt"][..], "cached c\n"),
        (&["ls", "sub"][..], "c.txt\n"),
    ] {
        let (out, took) = run_timed(&m, &srv, argv);
        assert_within(&argv.join(" "), took, LATER_BOUND, &m);
        assert_ok(&argv.join(" "), &out, expect);
    }
    let (out, took) = run_timed(&m, &srv, &["cat", "b.txt"]);
    assert_within("cat b.txt", took, LATER_BOUND, &m);
    assert_eio("cat of a file the cache never held", &out);

    root.write("new-on-server.txt", "new\n");
    srv.restart();
    assert_eq!(srv.addr(), m_addr(&m), "rfserve came back on another port");
    let seen = wait_for(Duration::from_secs(15), || {
        let out = tool(&m, &srv, "ls").run();
        text(&out.stdout)
            .contains("new-on-server.txt")
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "the new server file never appeared\n---- rfmount log ----\n{}",
        tail(&m.log(), 30)
    );
    assert_eq!(tool(&m, &srv, "cat").arg("b.txt").stdout(), "never read\n");
    tool(&m, &srv, "cp").arg(&src).arg("w.bin").ok();
    assert_same_file(&src, &root.join("w.bin"));
}

#[test]
fn without_a_cache_of_the_export_a_down_server_is_still_a_start_error() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    // A cache from this very address, but the mount is another directory's
    // cache: nothing is known, so the start must fail.
    let addr = srv.addr();
    srv.kill();
    let dir = TestDir::new("nocache");
    let mnt = dir.mkdir("mnt");
    let cache = dir.mkdir("cache");
    let out = TestCommand::new(rfmount_bin())
        .arg(&addr)
        .arg(&mnt)
        .arg("--cache-dir")
        .arg(&cache)
        .timeout(Duration::from_secs(60))
        .run();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot reach server"),
        "{}",
        text(&out.stderr)
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn a_server_frozen_mid_upload_fails_the_close_in_time_and_gets_the_file_whole_later() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let old = local.write_random("old.bin", MIB, 1);
    fs::copy(&old, root.join("big.bin")).unwrap();
    root.write("other.txt", "other\n");
    let new = local.write_random("new.bin", 200 * MIB, 2);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(tool(&m, &srv, "cat").arg("other.txt").stdout(), "other\n");

    let mut cp = tool(&m, &srv, "cp")
        .arg(&new)
        .arg("big.bin")
        .spawn_logged(local.path(), "cp");
    let started = wait_for(Duration::from_secs(120), || {
        if server_has_open_upload(srv.pid(), root.path()) {
            return Some(true);
        }
        cp.try_wait().map(|_| false)
    });
    assert_eq!(
        started,
        Some(true),
        "{}",
        cp.report("the upload never showed an open upload file on the server before cp ended")
    );
    let mut frozen = Frozen::new(srv.pid());
    // The upload stops moving; its close fails after the timeout (4 s),
    // not after minutes.
    let (st, took) = timed(|| cp.wait(Duration::from_secs(60)));
    assert!(
        !st.success(),
        "{}",
        cp.report("cp should fail: the upload could not finish")
    );
    assert!(
        cp.stderr().contains("Input/output error"),
        "{}",
        cp.report("cp's error should be EIO")
    );
    assert!(
        took <= Duration::from_secs(10),
        "cp took {took:?} to fail after the server froze\n---- rfmount log ----\n{}",
        tail(&m.log(), 30)
    );
    let (out, took) = run_timed(&m, &srv, &["cat", "other.txt"]);
    assert_within("cat while frozen", took, LATER_BOUND, &m);
    assert_ok("cat while frozen", &out, "other\n");
    assert_same_file(&old, &root.join("big.bin"));

    frozen.thaw();
    if let Err(e) = wait_same_file(&new, &root.join("big.bin"), Duration::from_secs(90)) {
        panic!(
            "big.bin was not uploaded whole within 90 s of SIGCONT: {e}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
    }
    let left = wait_for(Duration::from_secs(10), || {
        (!server_has_open_upload(srv.pid(), root.path())
            && names_with_prefix(root.path(), UPLOAD_TEMP_PREFIX).is_empty())
        .then_some(())
    });
    assert!(left.is_some(), "temporary upload files left on the server");
}
