//! What inotify watchers of mount B are told of names removed elsewhere
//! (issue 7: "`inotifywait -e delete` on B reports a file removed through
//! A"). B echoes a pushed removal through its own mount point, which the
//! kernel reports to watchers; the echo never reaches the server.

use std::fs;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// The bound this test asks of a reported removal.
const WITHIN: Duration = Duration::from_secs(5);

fn requests(srv: &Server, op: &str) -> usize {
    let op = format!("op={op} ");
    request_lines(srv)
        .iter()
        .filter(|l| l.contains(&op))
        .count()
}

/// B has listed (and so looked up) everything: it holds callbacks on every
/// directory again. The server forgets a callback once it has reported a
/// change, so B reads again after each removal, as a program would.
fn warm(b: &Mount, srv: &Server) {
    tool(b, srv, "ls").args(["-lR", "."]).ok();
}

#[test]
fn rm_and_rmdir_through_a_are_reported_on_b_without_a_request_from_b() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("doomed.txt", "x\n");
    root.write("d/inner.txt", "y\n");
    fs::create_dir(root.join("empty")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    warm(&b, &srv);
    let Some(top) = Watcher::start(b.path(), "delete") else {
        return;
    };
    let Some(inner) = Watcher::start(&b.path().join("d"), "delete") else {
        return;
    };
    let reported = |w: &Watcher, line: &str| {
        assert!(
            w.saw_within(WITHIN, line),
            "no {line:?} on B for a removal through A: {:?}\nB's log:\n{}",
            w.events(),
            tail(&b.log(), 40)
        );
    };

    sh(&a, &srv, "rm doomed.txt").ok();
    reported(&top, "DELETE doomed.txt");
    warm(&b, &srv);
    sh(&a, &srv, "rmdir empty").ok();
    reported(&top, "DELETE,ISDIR empty");
    warm(&b, &srv);
    sh(&a, &srv, "rm -r d").ok();
    reported(&inner, "DELETE inner.txt");
    reported(&top, "DELETE,ISDIR d");

    assert_eq!(
        ls_names(&b, &srv),
        Vec::<String>::new(),
        "B still lists removed names"
    );
    // Only A's own removals reached the server: B's echoes did not.
    assert_eq!(requests(&srv, "REMOVE"), 2, "{:#?}", request_lines(&srv));
    assert_eq!(requests(&srv, "RMDIR"), 2, "{:#?}", request_lines(&srv));
}

#[test]
fn a_removal_in_the_export_itself_is_reported_on_b() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("gone.txt", "x\n");
    let srv = Server::start(root.path(), &[]);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    warm(&b, &srv);
    let Some(w) = Watcher::start(b.path(), "delete") else {
        return;
    };
    fs::remove_file(root.join("gone.txt")).unwrap();
    assert!(
        w.saw_within(WITHIN, "DELETE gone.txt"),
        "no delete event on B for a removal in the export: {:?}\nB's log:\n{}",
        w.events(),
        tail(&b.log(), 40)
    );
    assert_eq!(requests(&srv, "REMOVE"), 0, "{:#?}", request_lines(&srv));
}

#[test]
fn a_name_recreated_through_a_right_after_its_removal_stays_on_b() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "old\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    warm(&b, &srv);
    assert_eq!(tool(&b, &srv, "cat").arg("f.txt").stdout(), "old\n");
    let Some(w) = Watcher::start(b.path(), "delete") else {
        return;
    };
    sh(&a, &srv, "rm f.txt && echo new > f.txt").ok();
    assert!(
        w.saw_within(WITHIN, "DELETE f.txt"),
        "no delete event on B: {:?}\nB's log:\n{}",
        w.events(),
        tail(&b.log(), 40)
    );
    // The echo removed B's view of the old file, never the new one.
    assert_eq!(fs::read_to_string(root.join("f.txt")).unwrap(), "new\n");
    assert!(
        seen_within(WITHIN, || ls_names(&b, &srv) == ["f.txt"]
            && tool(&b, &srv, "cat").arg("f.txt").run().stdout == b"new\n"),
        "B lost the re-created name: {:?}",
        ls_names(&b, &srv)
    );
    assert_eq!(requests(&srv, "REMOVE"), 1, "{:#?}", request_lines(&srv));
}

#[test]
fn a_file_open_on_b_stays_readable_after_its_removal_is_reported() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("open.txt", "still here\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, LONG_TIMEOUTS);
    let b = Mount::start(&srv, LONG_TIMEOUTS);
    warm(&b, &srv);
    let out = TestDir::new("reader");
    // Opens the file, says so, waits until the removal is reported, then
    // reads through the descriptor it opened before.
    let (opened, removed) = (out.join("opened"), out.join("removed"));
    let script = format!(
        "exec 3< open.txt && : > {} && while [ ! -e {} ]; do sleep 0.05; done; cat <&3",
        opened.display(),
        removed.display()
    );
    let mut reader = sh(&b, &srv, &script).spawn_logged(out.path(), "reader");
    let Some(w) = Watcher::start(b.path(), "delete") else {
        return;
    };
    assert!(
        seen_within(Duration::from_secs(10), || opened.exists()),
        "the reader did not open the file: {}",
        reader.report("reader")
    );
    sh(&a, &srv, "rm open.txt").ok();
    assert!(
        w.saw_within(WITHIN, "DELETE open.txt"),
        "no delete event on B for an open file: {:?}\nB's log:\n{}",
        w.events(),
        tail(&b.log(), 40)
    );
    fs::write(&removed, "").unwrap();
    reader.wait(Duration::from_secs(10));
    assert_eq!(
        fs::read_to_string(out.join("reader.stdout")).unwrap_or_default(),
        "still here\n",
        "the open descriptor lost its content:\n{}",
        tail(&b.log(), 40)
    );
}

fn ls_names(m: &Mount, srv: &Server) -> Vec<String> {
    tool(m, srv, "ls")
        .arg("-A")
        .stdout()
        .lines()
        .map(str::to_owned)
        .collect()
}
