//! Local durability of write-back closes: a close is safe against a kill -9
//! of rfmount before anything reached the cache disk (the flusher held off
//! with `flush=3600`); after a restart of the machine (another boot id) a
//! close the flusher had not flushed yet is recovered aside, never
//! uploaded over its name, and one it had flushed is uploaded as usual.

use std::fs;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// What rfmount reads instead of the kernel's boot id.
const BOOT_ID_ENV: &str = "RFMOUNT_BOOT_ID";

/// `rfmount sync` of a mount just (re)started, whose status socket may
/// come up a moment after the mount appears.
fn sync_after_start(m: &Mount) {
    let up = wait_for(Duration::from_secs(20), || {
        let out = TestCommand::new(rfmount_bin())
            .arg("sync")
            .arg(m.path())
            .run();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Some(Ok(()))
        } else if stderr.contains("no rfmount of this user serves") {
            None
        } else {
            Some(Err(stderr))
        }
    });
    match up {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("rfmount sync failed: {e}\n{}", tail(&m.log(), 30)),
        None => panic!("no status socket:\n{}", tail(&m.log(), 30)),
    }
}

fn recovered_in(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    find_with_prefix(dir, &format!("{name}.recovered-"))
        .into_iter()
        .map(|p| dir.join(p))
        .collect()
}

#[test]
fn kill_9_before_any_flush_to_the_cache_disk_delivers_every_closed_file() {
    skip_without_fuse!();
    let TreeToCopy {
        root,
        local,
        names,
        srv,
        mut m,
    } = TreeToCopy::start(40, &["-o", "writeback,flush=3600"]);
    let mut frozen = Frozen::new(srv.pid());
    copy_tree_in(&m, &srv, &local);
    m.kill();
    assert!(
        !m.log().contains("closed file(s) to the cache disk"),
        "flushed although flush=3600:\n{}",
        tail(&m.log(), 30)
    );
    frozen.thaw();
    m.remount(&srv.addr());
    assert_delivered(&local, root.path(), &names, Duration::from_secs(60));
    let recovered: Vec<_> = fs::read_dir(root.join("tree"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".recovered-"))
        .collect();
    assert!(recovered.is_empty(), "recovered aside: {recovered:?}");
}

#[test]
fn after_a_machine_restart_only_flushed_closes_are_uploaded_under_their_names() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &["-o", "writeback,flush=3600"]);
    m.cmd("mkdir").arg("d").with_server(&srv).ok();
    fs::write(m.join("d/old"), b"the version on the server").unwrap();
    rfmount_sync(&m);
    assert_eq!(
        fs::read(root.join("d/old")).unwrap(),
        b"the version on the server"
    );

    // Closed, never flushed to the cache disk, then the machine "restarts".
    // A second descriptor held open for writing keeps each file from being
    // uploaded by this mount (an upload it sent before the crash would land
    // whatever the next mount decides), while each close still seals it.
    let newer = Rng::new(11).bytes(64 * KIB as usize);
    let fresh = Rng::new(12).bytes(3000);
    let held = [
        fs::OpenOptions::new()
            .write(true)
            .open(m.join("d/old"))
            .unwrap(),
        fs::File::create(m.join("d/new")).unwrap(),
    ];
    fs::write(m.join("d/old"), &newer).unwrap();
    fs::write(m.join("d/new"), &fresh).unwrap();
    m.kill();
    drop(held);
    m.set_next_start(
        &["-o", "writeback"],
        &[(BOOT_ID_ENV, "0badb007-0000-4000-8000-000000000001")],
    );
    m.remount(&srv.addr());
    sync_after_start(&m);
    let d = root.join("d");
    for (name, body) in [("old", &newer), ("new", &fresh)] {
        let aside = recovered_in(&d, name);
        assert_eq!(aside.len(), 1, "{name}: {aside:?}\n{}", tail(&m.log(), 30));
        assert_eq!(
            &fs::read(&aside[0]).unwrap(),
            body,
            "{name} recovered whole"
        );
    }
    assert_eq!(
        fs::read(d.join("old")).unwrap(),
        b"the version on the server",
        "an unflushed close replaced the server's file"
    );
    assert!(!d.join("new").exists(), "an unflushed close was uploaded");
    assert!(
        m.log()
            .contains("before its content reached the cache disk"),
        "{}",
        tail(&m.log(), 30)
    );

    // Closed and flushed (flush=1, the default) before the next restart.
    let flushes = |m: &Mount| m.log().matches("closed file(s) to the cache disk").count();
    let before = flushes(&m);
    let late = Rng::new(13).bytes(20 * KIB as usize);
    let held = fs::File::create(m.join("d/late")).unwrap();
    fs::write(m.join("d/late"), &late).unwrap();
    wait_for(Duration::from_secs(30), || {
        (flushes(&m) > before).then_some(())
    })
    .unwrap_or_else(|| panic!("never flushed:\n{}", tail(&m.log(), 30)));
    m.kill();
    drop(held);
    assert!(!d.join("late").exists(), "uploaded while held open");
    m.set_next_start(
        &["-o", "writeback"],
        &[(BOOT_ID_ENV, "0badb007-0000-4000-8000-000000000002")],
    );
    m.remount(&srv.addr());
    sync_after_start(&m);
    assert_eq!(fs::read(d.join("late")).unwrap(), late);
    assert!(recovered_in(&d, "late").is_empty());
}
