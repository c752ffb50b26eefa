//! Sparse files end to end: a sparse download keeps its holes off the wire
//! and in the cache file (also for a read waiting inside a hole while the
//! rest streams), `fallocate` modes on the mount against a local
//! reference, `st_blocks`/`du` through the mount, and a cache limit that
//! counts what files store, not their apparent size.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::mount_common::*;
use crate::util::*;

/// A 1 GiB file holding two 4 KiB blocks of data (at 100 MiB and 700 MiB).
fn two_blocks_in_a_gib(path: &std::path::Path) {
    let f = File::create(path).unwrap();
    f.set_len(GIB).unwrap();
    f.write_all_at(&[0xa5; 4096], 100 * MIB).unwrap();
    f.write_all_at(&[0x5a; 4096], 700 * MIB).unwrap();
}

#[test]
fn a_sparse_download_sends_and_caches_only_the_data() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    two_blocks_in_a_gib(&root.join("big.bin"));
    two_blocks_in_a_gib(&local.join("ref.bin"));
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // Lists the directory first, so that the count below is the GET's.
    tool(&m, &srv, "ls").arg("-l").ok();
    let before = bytes_out(&srv);
    // The first read is at offset 0, inside the leading hole, while the
    // content streams.
    tool(&m, &srv, "cmp")
        .arg(local.join("ref.bin"))
        .arg("big.bin")
        .ok();
    let sent = bytes_out(&srv) - before;
    assert!(
        sent < 256 * KIB,
        "reading a 1 GiB file holding 8 KiB of data sent {sent} bytes"
    );
    let cached = largest_file(m.cache_dir()).expect("a cache file");
    assert_eq!(fs::metadata(&cached).unwrap().len(), GIB);
    assert!(
        allocated(&cached) <= 256 * KIB,
        "the cache file of a file storing 8 KiB takes {} bytes",
        allocated(&cached)
    );
    // A cold mount, a read of the second block only (dd skips the hole).
    let cold = Mount::start(&srv, &[]);
    let out = tool(&cold, &srv, "dd")
        .args([
            "if=big.bin",
            "bs=4096",
            "skip=179200",
            "count=1",
            "status=none",
        ])
        .ok();
    assert_eq!(out.stdout, vec![0x5a; 4096]);
    // And one inside a hole.
    let out = tool(&cold, &srv, "dd")
        .args([
            "if=big.bin",
            "bs=4096",
            "skip=200000",
            "count=1",
            "status=none",
        ])
        .ok();
    assert_eq!(out.stdout, vec![0; 4096]);
}

#[test]
fn a_dd_into_a_truncated_gib_costs_kilobytes_on_the_wire_and_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let before = bytes_in(&srv);
    // The acceptance, as a user types it.
    sh(
        &m,
        &srv,
        "truncate -s 1G f; dd if=/dev/urandom of=f bs=4k seek=200000 count=1 conv=notrunc status=none",
    )
    .ok();
    let sent = bytes_in(&srv) - before;
    assert!(sent < 256 * KIB, "the upload sent {sent} bytes");
    let server = root.join("f");
    assert_eq!(fs::metadata(&server).unwrap().len(), GIB);
    assert!(
        allocated(&server) <= 64 * KIB,
        "the server's file takes {} bytes",
        allocated(&server)
    );
    assert_eq!(next_data(&server, 0), Some(200_000 * 4096));
    // `du` through the mount says what the server's does.
    let du = |dir: &std::path::Path| -> String {
        TestCommand::new("du")
            .args(["-k", "f"])
            .current_dir(dir)
            .stdout()
    };
    assert_eq!(du(m.path()), du(root.path()));
    assert_eq!(
        tool(&m, &srv, "stat")
            .args(["-c", "%b", "f"])
            .stdout()
            .trim(),
        (allocated(&server) / 512).to_string()
    );
}

#[test]
fn a_dirty_file_reports_its_cache_files_allocation() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // While the descriptor is open the upload has not happened: the
    // blocks are the local copy's, 1 GiB apparent with one 4 KiB block.
    let out = sh(
        &m,
        &srv,
        "exec 3<>g; truncate -s 1G g; printf x >&3; stat -c '%s %b' g; exec 3>&-",
    )
    .stdout();
    let (size, blocks) = out.trim().split_once(' ').unwrap();
    assert_eq!(size, GIB.to_string());
    let blocks: u64 = blocks.parse().unwrap();
    assert!(
        (1..=64).contains(&blocks),
        "a dirty 1 GiB file with one byte written shows {blocks} blocks"
    );
}

#[test]
fn a_byte_at_two_gib_fits_a_small_cache() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    // The cache bound counts what files store: one byte written at 2 GiB
    // takes a block, not 2 GiB (pjdfstest open::interact_2gb).
    let m = Mount::start(&srv, &["--cache-size", "16M"]);
    sh(
        &m,
        &srv,
        "printf y | dd of=far bs=1 seek=2147483648 conv=notrunc status=none",
    )
    .ok();
    let server = root.join("far");
    assert_eq!(fs::metadata(&server).unwrap().len(), 2 * GIB + 1);
    let mut last = [0u8; 1];
    File::open(&server)
        .unwrap()
        .read_exact_at(&mut last, 2 * GIB)
        .unwrap();
    assert_eq!(&last, b"y");
    assert!(allocated(&server) <= 64 * KIB);
}

/// Runs `fallocate ARGS f` in the mount and on the local reference, then
/// compares the server's file with it (content and size).
fn both(m: &Mount, srv: &Server, local: &TestDir, args: &str) {
    sh(m, srv, &format!("fallocate {args} f")).ok();
    TestCommand::sh(&format!("fallocate {args} ref"))
        .current_dir(local.path())
        .ok();
    let server = srv.root().join("f");
    if let Err(e) = compare_files(&local.join("ref"), &server) {
        panic!("after fallocate {args}: the server's file differs from the reference: {e}");
    }
    // And the mount shows the same (its cache copy, read back).
    if let Err(e) = compare_files(&local.join("ref"), &m.join("f")) {
        panic!("after fallocate {args}: the mount's file differs from the reference: {e}");
    }
}

#[test]
fn fallocate_modes_match_a_local_file() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let data = Rng::new(77).bytes(MIB as usize);
    fs::write(m.join("f"), &data).unwrap();
    fs::write(local.join("ref"), &data).unwrap();
    // Mode 0 grows the file with zeros.
    both(&m, &srv, &local, "-l 3M");
    assert_eq!(fs::metadata(root.join("f")).unwrap().len(), 3 * MIB);
    // KEEP_SIZE reserves past the end: the size stays.
    both(&m, &srv, &local, "-n -o 4M -l 1M");
    assert_eq!(fs::metadata(root.join("f")).unwrap().len(), 3 * MIB);
    // A punched range is a hole on the server too.
    both(&m, &srv, &local, "-p -o 256K -l 512K");
    let server = root.join("f");
    assert!(
        next_data(&server, 256 * KIB).is_some_and(|d| d >= 768 * KIB),
        "the punched range [256K, 768K) holds data on the server: {:?}",
        next_data(&server, 256 * KIB)
    );
    assert!(
        allocated(&server) <= allocated(&local.join("ref")),
        "after the punch the server's file takes {} bytes, the local one {}",
        allocated(&server),
        allocated(&local.join("ref"))
    );
    // ZERO_RANGE inside the data, then growing the file, then KEEP_SIZE.
    both(&m, &srv, &local, "-z -o 900K -l 64K");
    both(&m, &srv, &local, "-z -o 2M -l 2M");
    assert_eq!(fs::metadata(root.join("f")).unwrap().len(), 4 * MIB);
    both(&m, &srv, &local, "-z -n -o 3M -l 4M");
    assert_eq!(fs::metadata(root.join("f")).unwrap().len(), 4 * MIB);
    // A mode the mount does not do is refused, and changes nothing.
    let out = sh(&m, &srv, "fallocate -c -o 0 -l 64K f").fails();
    assert!(
        text(&out.stderr).contains("Operation not supported"),
        "{}",
        text(&out.stderr)
    );
    assert_same_file(&local.join("ref"), &root.join("f"));
    // A descriptor kept open across two modes uploads once, at its close.
    let f = OpenOptions::new().write(true).open(m.join("f")).unwrap();
    let r = OpenOptions::new()
        .write(true)
        .open(local.join("ref"))
        .unwrap();
    for file in [&f, &r] {
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        // SAFETY: fallocate on descriptors this test holds open.
        unsafe {
            assert_eq!(
                libc::fallocate(
                    fd,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    0,
                    128 * 1024
                ),
                0
            );
            assert_eq!(libc::fallocate(fd, 0, 5 * MIB as i64, 4096), 0);
        }
    }
    drop((f, r));
    assert_same_file(&local.join("ref"), &root.join("f"));
    assert_eq!(
        next_data(&root.join("f"), 0).map(|d| d >= 128 * KIB),
        Some(true)
    );
}
