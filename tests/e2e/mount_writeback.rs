//! Write-back mounts (`-o writeback`): close returns while the server is
//! frozen, `rfmount status` lists what is pending, a kill -9 of rfmount and
//! a remount deliver every closed file byte-identical, fsync and unmount
//! wait for the uploads (unmount only a bounded time for a server that is
//! gone, leaving the rest for the next mount), `rfmount sync` waits for
//! everything, and renames and unlinks of files whose upload is pending
//! end up right on the server.

use std::fs;
use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

#[test]
fn kill_9_with_uploads_pending_and_a_remount_delivers_every_closed_file() {
    skip_without_fuse!();
    let TreeToCopy {
        root,
        local,
        names,
        mut srv,
        mut m,
    } = TreeToCopy::start(120, &["-o", "writeback"]);
    let mut frozen = Frozen::new(srv.pid());
    // Every close returns while the server answers nothing.
    copy_tree_in(&m, &srv, &local);
    for n in &names {
        assert_same_file(&local.join(n), &m.join(n));
    }
    assert!(
        !root.join("tree/f0000").exists(),
        "uploaded to a frozen server?"
    );
    let ls = tool(&m, &srv, "ls").args(["-l", "tree"]).stdout();
    assert!(ls.contains(&format!(" {} ", 300 * KIB + 7)), "{ls}");
    let j = status_json(&m);
    assert!(
        j.contains(&format!("\"pending_files\":{}", names.len())),
        "status: {j}"
    );
    assert!(j.contains("\"path\":\"/tree/f0119\""), "status: {j}");
    assert!(j.contains("\"writeback\":{\"queued\":"), "status: {j}");
    m.kill();
    frozen.thaw();
    srv.restart();
    m.remount(&srv.addr());
    assert_delivered(&local, root.path(), &names, Duration::from_secs(60));
    let leftovers = find_with_prefix(&root.join("tree"), "f0");
    assert_eq!(leftovers.len(), names.len(), "{leftovers:?}");
    let recovered: Vec<_> = fs::read_dir(root.join("tree"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".recovered-"))
        .collect();
    assert!(
        recovered.is_empty(),
        "closed files were recovered aside: {recovered:?}"
    );
    assert!(
        m.log().contains("left unsent by an earlier mount"),
        "{}",
        tail(&m.log(), 30)
    );
    let j = status_json(&m);
    assert!(
        wait_for(Duration::from_secs(20), || status_json(&m)
            .contains("\"pending_files\":0,")
            .then_some(()))
        .is_some(),
        "still pending: {j}"
    );
}

#[test]
fn close_returns_at_once_and_fsync_waits_for_the_upload() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    tool(&m, &srv, "ls").ok();
    let body = Rng::new(5).bytes(200 * KIB as usize);
    let mut frozen = Frozen::new(srv.pid());
    let path = m.join("doc.bin");
    fs::write(&path, &body).unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        body,
        "read back through the mount"
    );
    assert!(!root.join("doc.bin").exists());
    let syncer = {
        let path = path.clone();
        thread::spawn(move || {
            let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.sync_all()
        })
    };
    thread::sleep(Duration::from_millis(1500));
    assert!(
        !syncer.is_finished(),
        "fsync returned while the server was frozen"
    );
    frozen.thaw();
    syncer.join().unwrap().expect("fsync after the thaw");
    // fsync returned: the server has it now, not eventually.
    assert_eq!(fs::read(root.join("doc.bin")).unwrap(), body);
}

#[test]
fn unmount_waits_for_pending_uploads() {
    skip_without_fuse!();
    let mut t = TreeToCopy::start(60, &["--writeback"]);
    let mut frozen = Frozen::new(t.srv.pid());
    t.copy_in();
    let out = TestCommand::new("fusermount3")
        .arg("-u")
        .arg(t.m.path())
        .ok();
    assert!(out.status.success());
    assert!(
        t.m.wait_exited(Duration::from_millis(1500)).is_none(),
        "rfmount exited with uploads pending and the server only frozen"
    );
    assert!(!t.root.join("tree/f0000").exists());
    frozen.thaw();
    let st =
        t.m.wait_exited(Duration::from_secs(30))
            .expect("rfmount exits once the uploads are done");
    assert!(st.success(), "{st}");
    // Exited: everything is there already.
    t.assert_delivered(Duration::ZERO);
    assert!(
        t.m.log().contains("all uploads done"),
        "{}",
        tail(&t.m.log(), 20)
    );
}

#[test]
fn unmount_with_the_server_gone_keeps_the_uploads_for_the_next_mount() {
    skip_without_fuse!();
    let mut t = TreeToCopy::start(20, &["-o", "writeback,uploads=2"]);
    t.srv.kill();
    t.copy_in();
    let st = t.m.unmount_and_wait();
    assert!(st.success(), "{st}");
    let log = t.m.log();
    assert!(
        log.contains(&format!(
            "exiting: the server has been unreachable for 10 s; {} file(s) not uploaded yet",
            t.names.len()
        )),
        "{}",
        tail(&log, 20)
    );
    assert!(!t.root.join("tree/f0000").exists());
    t.srv.restart();
    t.m.remount(&t.srv.addr());
    t.assert_delivered(Duration::from_secs(60));
}

#[test]
fn renames_and_unlinks_of_files_with_pending_uploads_end_up_right_on_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    // One uploader, busy with a large file first: the small files wait in
    // the queue (or are in flight) while they are renamed and removed.
    let m = Mount::start(&srv, &["-o", "writeback,uploads=1"]);
    fs::write(root.join("old.txt"), b"server copy").unwrap();
    tool(&m, &srv, "ls").ok();
    let big = Rng::new(9).bytes(48 * MIB as usize);
    fs::write(m.join("big.bin"), &big).unwrap();
    for i in 0..40 {
        let body = format!("file {i}\n").repeat(100 + i);
        let mut f = fs::File::create(m.join(format!("n{i}.txt"))).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        drop(f);
        match i % 3 {
            0 => fs::rename(m.join(format!("n{i}.txt")), m.join(format!("r{i}.txt"))).unwrap(),
            1 => fs::remove_file(m.join(format!("n{i}.txt"))).unwrap(),
            _ => {}
        }
    }
    // An existing file changed, then renamed while its upload waits.
    fs::write(m.join("old.txt"), b"changed here").unwrap();
    fs::rename(m.join("old.txt"), m.join("moved.txt")).unwrap();
    rfmount_sync(&m);
    // Anything a late upload would bring back would show by now.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), big);
    for i in 0..40 {
        let body = format!("file {i}\n").repeat(100 + i);
        let (n, r) = (
            root.join(format!("n{i}.txt")),
            root.join(format!("r{i}.txt")),
        );
        match i % 3 {
            0 => {
                assert!(!n.exists(), "n{i}.txt came back after its rename");
                assert_eq!(fs::read_to_string(&r).unwrap(), body, "r{i}.txt");
            }
            1 => assert!(!n.exists(), "n{i}.txt came back after its unlink"),
            _ => assert_eq!(fs::read_to_string(&n).unwrap(), body, "n{i}.txt"),
        }
    }
    assert!(!root.join("old.txt").exists(), "old.txt came back");
    assert_eq!(fs::read(root.join("moved.txt")).unwrap(), b"changed here");
}

#[test]
fn a_later_close_supersedes_a_queued_upload_and_sync_waits_for_all() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback,uploads=2"]);
    tool(&m, &srv, "ls").ok();
    // The same file closed many times in a row: the last content wins,
    // never an older one after it.
    for v in 0..30 {
        fs::write(m.join("v.txt"), format!("version {v}\n").repeat(v + 1)).unwrap();
    }
    rfmount_sync(&m);
    let last = "version 29\n".repeat(30);
    assert_eq!(fs::read_to_string(root.join("v.txt")).unwrap(), last);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(fs::read_to_string(root.join("v.txt")).unwrap(), last);
    // sync of a mount that is not there is a clear error.
    let none = TestDir::new("none");
    let out = TestCommand::new(rfmount_bin())
        .arg("sync")
        .arg(none.path())
        .fails();
    assert!(
        text(&out.stderr).contains("no rfmount"),
        "{}",
        text(&out.stderr)
    );
}
