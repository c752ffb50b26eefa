//! `rfmount status --json` while things happen: an upload in progress
//! against a frozen server, request counts and percentiles once it landed,
//! the connection down and failures counted while the server is frozen;
//! and rfserve's per-session accounting (the close line, SIGUSR1).

use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// The number after `"key":` (the first occurrence).
fn num(j: &str, key: &str) -> Option<f64> {
    let pat = format!("\"{key}\":");
    let at = j.find(&pat)? + pat.len();
    let digits: String = j[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

/// The JSON object of `op` in the `requests` list.
fn request_entry<'a>(j: &'a str, op: &str) -> Option<&'a str> {
    let at = j.find(&format!("{{\"op\":\"{op}\""))?;
    let end = j[at..].find('}')? + at;
    Some(&j[at..=end])
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall with a PID this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
}

#[test]
fn status_shows_an_upload_in_progress_and_then_put_latencies() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    // `nostream`: the upload at close is what is watched here; a file
    // written in order would otherwise send most of its data while dd
    // still writes (fs/upload_stream.rs), which the status does not show.
    let m = Mount::start(&srv, &["-o", "timeout=20,nostream"]);
    let marks = TestDir::new("marks");
    // dd opens the file once, so its one close uploads it: 256 MiB take
    // long enough to be seen on the way.
    let mut writer = m
        .cmd("dd")
        .args(["if=/dev/zero", "of=big.bin", "bs=1M", "count=256"])
        .spawn_logged(marks.path(), "dd");
    let seen = wait_for(Duration::from_secs(120), || {
        let j = status_json(&m);
        // (An empty upload at create comes first.) Early enough that the
        // freeze below surely finds it still going.
        let early = num(&j, "percent").is_some_and(|p| p < 50.0);
        (j.contains("\"uploading\":[{\"path\":\"/big.bin\",\"size\":268435456") && early)
            .then_some(j)
    });
    // Frozen, the server holds the upload where it is.
    let mut frozen = Frozen::new(srv.pid());
    let held = status_json(&m);
    frozen.thaw();
    let j = seen.unwrap_or_else(|| panic!("no upload in progress seen: {}", status_json(&m)));
    assert!(j.contains("\"size\":268435456"), "{j}");
    let (sent, percent) = (num(&j, "sent").unwrap(), num(&j, "percent").unwrap());
    assert!(sent <= 268_435_456.0, "{j}");
    assert_eq!(percent, (sent * 100.0 / 268_435_456.0).floor(), "{j}");
    assert!(j.contains("\"pending\":[{\"path\":\"/big.bin\""), "{j}");
    assert!(
        held.contains("\"uploading\":[{\"path\":\"/big.bin\",\"size\":268435456"),
        "{held}"
    );
    assert!(num(&held, "pending_files").unwrap() >= 1.0, "{held}");
    let human = text(
        &TestCommand::new(rfmount_bin())
            .arg("status")
            .arg(m.path())
            .ok()
            .stdout,
    );
    assert!(human.contains("uploading:"), "{human}");

    assert!(writer.wait(Duration::from_secs(120)).success(), "dd failed");
    let landed = wait_for(Duration::from_secs(30), || {
        let j = status_json(&m);
        (num(&j, "pending_files") == Some(0.0) && j.contains("\"uploading\":[]")).then_some(j)
    });
    let j = landed.unwrap_or_else(|| panic!("still pending: {}", status_json(&m)));
    assert_eq!(size_of(&root.join("big.bin")), 268_435_456);
    assert!(j.contains("\"connection\":{\"state\":\"online\""), "{j}");
    let put = request_entry(&j, "PUT").unwrap_or_else(|| panic!("no PUT in {j}"));
    assert!(num(put, "count").unwrap() >= 1.0, "{put}");
    let (p50, p90, p99) = (
        num(put, "p50_ms").expect("p50"),
        num(put, "p90_ms").expect("p90"),
        num(put, "p99_ms").expect("p99"),
    );
    assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99, "{put}");
    assert!(num(&j, "clean_files").unwrap() >= 1.0, "{j}");
}

#[test]
fn status_shows_the_server_down_and_counts_failed_operations() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "timeout=1"]);
    m.cmd("ls").ok();
    let before = status_json(&m);
    assert!(before.contains("\"state\":\"online\""), "{before}");
    let errors_before = num(&before, "errors").expect("errors");
    assert!(before.contains("\"rtt_ms\":"), "{before}");

    let mut frozen = Frozen::new(srv.pid());
    // Waits out the timeout, then fails: nothing can create it.
    m.cmd("mkdir").arg("newdir").fails();
    let j = status_json(&m);
    assert!(
        j.contains("\"state\":\"down\"") || j.contains("\"state\":\"reconnecting\""),
        "{j}"
    );
    assert!(j.contains("\"down_since\":"), "{j}");
    assert!(j.contains("\"reason\":\""), "{j}");
    assert!(num(&j, "errors").unwrap() > errors_before, "{j}");
    assert!(j.contains("\"message\":\"mkdir: "), "{j}");
    let human = text(
        &TestCommand::new(rfmount_bin())
            .arg("status")
            .arg(m.path())
            .ok()
            .stdout,
    );
    assert!(human.contains("connection: down for"), "{human}");
    assert!(human.contains("mkdir: "), "{human}");

    frozen.thaw();
    let back = wait_for(Duration::from_secs(20), || {
        m.cmd("ls").run();
        let j = status_json(&m);
        j.contains("\"state\":\"online\"").then_some(())
    });
    assert!(back.is_some(), "not online again: {}", status_json(&m));
}

/// `N` in the last `closed after … (N request(s), …)` line of `log`.
fn closed_requests(log: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(" closed after "))?;
    let at = line.find(" s (")? + 4;
    line[at..].split(' ').next()?.parse().ok()
}

#[test]
fn rfserve_counts_a_sessions_requests_and_summarises_live_sessions_on_usr1() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("a.txt", "a\n");
    root.write("d/b.txt", "b\n");
    let mut srv = Server::start(root.path(), &[]);
    srv.rf("ls", ["/"]).ok();
    srv.rf("ls", ["/d"]).ok();
    srv.rf("stat", ["/a.txt"]).ok();
    assert_eq!(
        srv.wait_count(" closed after ", 3, Duration::from_secs(10)),
        3
    );
    // The per-request debug lines of the last session are those after its
    // start line; the close line must name as many.
    let log = srv.log();
    let last_start = log
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("session from ") && !l.contains(" closed after "))
        .map(|(i, _)| i)
        .last()
        .expect("a session start line");
    let done: usize = log
        .lines()
        .skip(last_start)
        .take_while(|l| !l.contains(" closed after "))
        .filter(|l| l.contains("request op="))
        .count();
    let n = closed_requests(&log).unwrap_or_else(|| panic!("no close line in {log}"));
    assert!(done >= 1, "{log}");
    assert_eq!(n, done as u64, "{log}");
    assert!(log.contains(" bytes in, "), "{log}");

    // A mount keeps a session open; SIGUSR1 names it and kills nothing.
    let m = Mount::start(&srv, &[]);
    m.cmd("ls").ok();
    let log = srv.log();
    let peer = log
        .lines()
        .rfind(|l| l.contains("session from ") && !l.contains(" closed after "))
        .and_then(|l| l.split("session from ").nth(1))
        .map(|p| p.split_whitespace().next().unwrap_or("").to_string())
        .expect("the mount's session line");
    signal(srv.pid(), libc::SIGUSR1);
    assert_eq!(
        srv.wait_count("live session(s)", 1, Duration::from_secs(10)),
        1,
        "{}",
        srv.log()
    );
    let summary = srv.log();
    assert!(summary.contains("1 live session(s)"), "{summary}");
    assert!(
        summary.contains(&format!("session from {peer}: ")),
        "{peer}: {summary}"
    );
    assert!(summary.contains(" s old, "), "{summary}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(srv.is_running(), "SIGUSR1 ended rfserve: {summary}");
    m.cmd("ls").ok();
}
