//! One heavy test: a 1 GiB file copied into a mount and read back cold.
//! While the cold read is fetching, `ls -l` in another process still
//! answers at once (the mount is not one big lock), and neither rfmount nor
//! rfserve ever holds much of the file in memory (peak RSS, `VmHWM`).
//! A liveness and boundedness check, not a benchmark.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// Peak RSS allowed for rfmount and rfserve while moving 1 GiB.
const MAX_HWM_KIB: u64 = 64 * 1024;

/// A fetch in progress: a non-empty temporary file in the cache.
fn fetching(cache: &Path) -> bool {
    find_with_prefix(cache, ".tmp")
        .iter()
        .any(|rel| fs::metadata(cache.join(rel)).is_ok_and(|m| m.len() > 0))
}

#[track_caller]
fn assert_hwm(what: &str, pid: u32) -> u64 {
    let hwm = proc_status_kib(pid, "VmHWM")
        .unwrap_or_else(|| panic!("no VmHWM for {what} (pid {pid}) in /proc"));
    eprintln!("{what}: VmHWM {} MiB", hwm / 1024);
    assert!(
        hwm < MAX_HWM_KIB,
        "{what} peaked at {hwm} KiB of RSS moving a 1 GiB file (limit {MAX_HWM_KIB} KiB)"
    );
    hwm
}

#[test]
fn one_gib_cp_in_and_cold_read_keep_ls_responsive_and_memory_bounded() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.write_random("big.bin", GIB, 1024);
    let want = sha256(&src);
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    for i in 0..20 {
        root.write(format!("small-{i}.txt"), format!("{i}\n"));
    }

    let started = Instant::now();
    tool(&m, &srv, "cp")
        .arg(&src)
        .arg("big.bin")
        .timeout(Duration::from_secs(600))
        .ok();
    eprintln!("cp of 1 GiB into the mount: {:?}", started.elapsed());
    assert_eq!(
        sha256(&root.join("big.bin")),
        want,
        "the server's copy differs right after cp returned"
    );
    assert_hwm("rfmount after cp in", m.pid());

    // Cold: a new rfmount process with an empty cache.
    m.unmount_and_wait();
    fs::remove_dir_all(m.cache_dir()).unwrap();
    fs::create_dir(m.cache_dir()).unwrap();
    m.remount(&srv.addr());

    let mut reader = tool(&m, &srv, "sha256sum")
        .arg("big.bin")
        .spawn_logged(local.path(), "sha256sum");
    let read_started = Instant::now();
    let in_progress = wait_for(Duration::from_secs(120), || {
        if fetching(m.cache_dir()) {
            return Some(true);
        }
        reader.try_wait().map(|_| false)
    });
    assert_eq!(
        in_progress,
        Some(true),
        "{}",
        reader.report("never saw the fetch of big.bin in the cache directory")
    );

    // ls -l in another process while the fetch runs.
    let ls_started = Instant::now();
    let ls = tool(&m, &srv, "ls")
        .arg("-l")
        .timeout(Duration::from_secs(60))
        .stdout();
    let ls_took = ls_started.elapsed();
    let reader_done = reader.try_wait().is_some();
    let fetch_done = srv.count("op=GET path=/big.bin result=data") > 0;
    eprintln!(
        "ls -l during the cold read: {ls_took:?} (fetch finished by then: {fetch_done}, \
         reader finished: {reader_done})"
    );
    assert_eq!(ls.lines().count(), 22, "ls -l printed:\n{ls}");
    assert!(ls.contains(" big.bin\n"), "{ls}");
    assert!(
        ls_took < Duration::from_secs(5),
        "ls -l took {ls_took:?} while a 1 GiB file was being fetched"
    );
    assert!(
        !reader_done,
        "the 1 GiB read finished before ls -l did: ls was not served alongside it"
    );

    let st = reader.wait(Duration::from_secs(600));
    assert!(st.success(), "{}", reader.report("failed"));
    eprintln!("cold sha256sum of 1 GiB: {:?}", read_started.elapsed());
    assert_eq!(
        reader.stdout().split_whitespace().next(),
        Some(want.as_str()),
        "the cold read gave different bytes"
    );
    assert_hwm("rfmount after the cold read", m.pid());
    assert_hwm("rfserve after 1 GiB in and out", srv.pid());
}
