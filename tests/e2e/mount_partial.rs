//! Partial and sparse uploads through a real mount: a changed file is sent
//! as its changed ranges on top of the version the mount fetched, a sparse
//! file as its data segments; the server's file is byte-identical to a
//! local reference after every close, and holes stay holes on its disk.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::mount_common::*;
use crate::util::*;

/// One random change applied to both the mount's file and the reference.
fn random_change(rng: &mut Rng, files: [&File; 2], max: u64) -> u64 {
    let size = files[1].metadata().unwrap().len();
    match rng.range(0, 10) {
        0 => {
            let to = rng.range(0, max);
            for f in files {
                f.set_len(to).unwrap();
            }
            0
        }
        _ => {
            // Mostly near the end or inside the file, sometimes past it.
            let off = rng.range(0, (size + size / 4 + 1).min(max));
            let len = rng.range(1, 64 * KIB);
            let data = rng.bytes(len as usize);
            for f in files {
                f.write_all_at(&data, off).unwrap();
            }
            len
        }
    }
}

/// One change of the stress (issue 6): a truncate to, or a write
/// at, a uniformly random offset below `max`, applied to both files.
fn anywhere_change(rng: &mut Rng, files: [&File; 2], max: u64) -> u64 {
    if rng.range(0, 10) == 0 {
        let to = rng.range(0, max);
        for f in files {
            f.set_len(to).unwrap();
        }
        return 0;
    }
    let len = rng.range(1, 64 * KIB);
    let off = rng.range(0, max - len);
    let data = rng.bytes(len as usize);
    for f in files {
        f.write_all_at(&data, off).unwrap();
    }
    len
}

fn open_rw(p: &Path) -> File {
    OpenOptions::new().read(true).write(true).open(p).unwrap()
}

#[test]
fn append_to_a_big_file_sends_only_the_tail() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let size = 64 * MIB;
    let reference = local.write_random("ref.bin", size, 0xb16);
    fs::copy(&reference, root.join("big.bin")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // The mount fetches it (the version the append starts from).
    tool(&m, &srv, "cmp").arg(&reference).arg("big.bin").ok();
    let before = bytes_in(&srv);
    sh(&m, &srv, "printf x >> big.bin").ok();
    let sent = bytes_in(&srv) - before;
    fs::OpenOptions::new()
        .append(true)
        .open(&reference)
        .unwrap()
        .write_all_at(b"x", size)
        .unwrap();
    assert_same_file(&reference, &root.join("big.bin"));
    assert!(
        sent <= MIB,
        "appending 1 byte to a {size}-byte file sent {sent} bytes to the server"
    );
    // A second append, from the version the first one made.
    let before = bytes_in(&srv);
    sh(&m, &srv, "printf yz >> big.bin").ok();
    assert!(bytes_in(&srv) - before <= MIB);
    let mut want = fs::read(&reference).unwrap();
    want.extend_from_slice(b"yz");
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), want);
}

#[test]
fn random_writes_truncates_and_extends_are_byte_identical() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let reference = local.write_random("ref.bin", 4 * MIB, 7);
    fs::copy(&reference, root.join("f.bin")).unwrap();
    let srv = Server::start(root.path(), &[]);
    // Last close wins when the server's file changed under the mount
    // (round 5): by default that close keeps its data aside instead, for a
    // sparse upload as for any other.
    let m = Mount::start(&srv, &["-o", "conflict=overwrite"]);
    let mut rng = Rng::from_name("partial-random");
    for round in 0..8 {
        let f = open_rw(&m.join("f.bin"));
        let r = open_rw(&reference);
        for _ in 0..25 {
            random_change(&mut rng, [&f, &r], 6 * MIB);
        }
        if round == 5 {
            // The server's file changes under the mount (in place): the
            // partial upload's base is gone, the whole file is sent, and
            // the last close wins as with any upload.
            let theirs = open_rw(&root.join("f.bin"));
            theirs.write_all_at(b"theirs", 0).unwrap();
            theirs.sync_all().unwrap();
        }
        drop(f);
        if let Err(e) = compare_files(&reference, &root.join("f.bin")) {
            panic!("round {round}: server's file differs from the reference: {e}");
        }
    }
    // A fresh mount reads what the server holds.
    let cold = Mount::start(&srv, &[]);
    tool(&cold, &srv, "cmp").arg(&reference).arg("f.bin").ok();
}

#[test]
fn sparse_files_written_at_random_offsets_stay_sparse_on_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    const SPAN: u64 = 256 * MIB;
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let mine = m.join(format!("sparse-{i}.bin"));
            let reference = local.join(format!("ref-{i}.bin"));
            std::thread::spawn(move || {
                let f = File::create(&mine).unwrap();
                let r = File::create(&reference).unwrap();
                let mut rng = Rng::new(1000 + i);
                let mut written = 0;
                // The stress: 2,000 writes and truncates at random
                // offsets up to 256 MiB in each of 4 writers.
                for _ in 0..2_000 {
                    written +=
                        (anywhere_change(&mut rng, [&f, &r], SPAN).div_ceil(4096) + 1) * 4096;
                }
                // Ends past the last write, so the tail is a hole too.
                f.set_len(SPAN).unwrap();
                r.set_len(SPAN).unwrap();
                written
            })
        })
        .collect();
    for (i, w) in writers.into_iter().enumerate() {
        let written = w.join().unwrap();
        let server = root.join(format!("sparse-{i}.bin"));
        if let Err(e) = compare_files(&local.join(format!("ref-{i}.bin")), &server) {
            panic!("sparse-{i}: server's file differs from the reference: {e}");
        }
        let allocated = fs::metadata(&server).unwrap().blocks() * 512;
        assert!(
            allocated <= written + 4 * MIB,
            "sparse-{i}: {allocated} bytes allocated on the server for {written} bytes written \
             into a {SPAN}-byte file"
        );
    }
}
