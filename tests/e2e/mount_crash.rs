//! rfmount killed (SIGKILL) while programs write, and a cache bounded by
//! `--cache-size` filling with data the server cannot take: nothing half
//! written ever replaces a file on the server, nothing closed is lost, and
//! the cache never grows past its limit.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// This machine's host name, as recovered files are named after it.
fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

#[test]
fn kill_9_mid_write_leaves_the_server_file_alone_and_keeps_the_partial_data() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let good = local.write_random("good.bin", 3 * MIB, 11);
    fs::copy(&good, root.join("doc.bin")).unwrap();
    let closed_src = local.write_random("closed.bin", 2 * MIB, 12);
    let mut srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    tool(&m, &srv, "ls").arg("-l").ok();

    // The writers are this test process itself: a shell would close
    // descriptors (dups for redirections, children exiting), and every
    // close(2) is a close the mount must honour.
    // An existing file opened read-write and half overwritten, never closed.
    let doc = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("doc.bin"))
        .unwrap();
    doc.write_all_at(&vec![0u8; MIB as usize], 0).unwrap();
    // A new file written in a loop while rfmount is killed under it.
    let stream = Rng::new(13).bytes(64 * MIB as usize);
    let acked = Arc::new(AtomicU64::new(0));
    let new_part = fs::File::create(m.join("new.part")).unwrap();
    let streamer = {
        let (acked, stream) = (acked.clone(), stream.clone());
        thread::spawn(move || {
            let mut off = 0usize;
            while off < stream.len() {
                let end = (off + 64 * 1024).min(stream.len());
                if new_part
                    .write_all_at(&stream[off..end], off as u64)
                    .is_err()
                {
                    break;
                }
                off = end;
                acked.store(off as u64, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
            new_part
        })
    };
    wait_for(Duration::from_secs(30), || {
        (acked.load(Ordering::SeqCst) >= MIB).then_some(())
    })
    .expect("the streaming writer never got 1 MiB in");
    // A file closed while the server is down: its close fails, it waits in
    // the cache, and it must reach the server after the crash.
    srv.kill();
    let out = tool(&m, &srv, "cp")
        .arg(&closed_src)
        .arg("closed.bin")
        .fails();
    assert!(
        text(&out.stderr).contains("Input/output error"),
        "cp should fail at close with EIO: {}",
        text(&out.stderr)
    );

    let before_kill = acked.load(Ordering::SeqCst);
    m.kill();
    let new_part = streamer.join().unwrap();
    let total = acked.load(Ordering::SeqCst);
    assert!(
        total < stream.len() as u64,
        "the writer finished before the kill"
    );
    drop((doc, new_part));
    srv.restart();
    m.remount(&srv.addr());

    let uploaded = wait_same_file(
        &closed_src,
        &root.join("closed.bin"),
        Duration::from_secs(30),
    );
    assert!(
        uploaded.is_ok(),
        "the file closed before the crash was not uploaded after the remount: {uploaded:?}\n{}",
        tail(&m.log(), 40)
    );
    let host = hostname();
    let wait_recovered = |name: &str| {
        wait_for(Duration::from_secs(30), || {
            let found = names_with_prefix(root.path(), &format!("{name}.recovered-{host}-"));
            (found.len() == 1).then(|| found[0].clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "no {name}.recovered-{host}-* on the server; it has {:?}\n{}",
                names_with_prefix(root.path(), ""),
                tail(&m.log(), 40)
            )
        })
    };
    let rec_doc = wait_recovered("doc.bin");
    let rec_new = wait_recovered("new.part");

    // The server's file is byte for byte what it was.
    assert_same_file(&good, &root.join("doc.bin"));
    assert!(
        !root.join("new.part").exists(),
        "a never-closed new file must not appear"
    );
    // The partial data is kept: exactly what the writer had written.
    let mut expected = fs::read(&good).unwrap();
    expected[..MIB as usize].fill(0);
    assert!(
        fs::read(root.join(&rec_doc)).unwrap() == expected,
        "{rec_doc} does not hold the writer's partial content"
    );
    let got = fs::read(root.join(&rec_new)).unwrap();
    assert!(
        got.len() as u64 >= before_kill && stream.starts_with(&got),
        "{rec_new}: {} bytes, not the first bytes the writer wrote ({before_kill} acknowledged before the kill)",
        got.len()
    );
    // Name format: NAME.recovered-HOST-YYYYMMDD-HHMMSS.
    let stamp = rec_doc.rsplit('-').take(2).collect::<Vec<_>>();
    assert!(
        stamp.len() == 2 && stamp[0].len() == 6 && stamp[1].len() == 8,
        "{rec_doc}"
    );
    let log = m.log();
    for name in ["doc.bin", "new.part"] {
        assert_eq!(
            log.lines()
                .filter(|l| l.contains(&format!("recovered /{name}:")))
                .count(),
            1,
            "one log line per recovered file:\n{}",
            tail(&log, 40)
        );
    }
    assert!(log.contains(&rec_doc), "the log says where it went");
    // Through the mount: the server's version, not the partial one.
    let out = tool(&m, &srv, "cmp").arg(&good).arg("doc.bin").run();
    assert!(out.status.success(), "{}", text(&out.stdout));
}

/// Sum of the sizes of every file under `dir` (what the cache holds).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[test]
fn three_times_the_cache_size_with_the_server_down_stays_within_the_limit() {
    skip_without_fuse!();
    const LIMIT: u64 = 8 * MIB;
    const FILE: u64 = 4 * MIB;
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let n = (3 * LIMIT / FILE) as usize;
    let srcs: Vec<_> = (0..n)
        .map(|i| local.write_random(format!("f{i}.bin"), FILE, 100 + i as u64))
        .collect();
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["--cache-size", "8M"]);
    tool(&m, &srv, "ls").arg("-l").ok();
    srv.kill();

    let sampler = Sampler::start(m.cache_dir());
    let mut closed = Vec::new();
    let mut refused = 0;
    for (i, src) in srcs.iter().enumerate() {
        let out = tool(&m, &srv, "cp")
            .arg(src)
            .arg(format!("f{i}.bin"))
            .timeout(Duration::from_secs(60))
            .fails();
        let err = text(&out.stderr);
        if err.contains("No space left on device") {
            refused += 1;
        } else {
            assert!(err.contains("Input/output error"), "f{i}: {err}");
            closed.push(i);
        }
    }
    let peak = sampler.finish();
    eprintln!(
        "cache peak {peak} bytes; {} closed whole, {refused} refused",
        closed.len()
    );
    assert!(
        peak <= LIMIT + MIB,
        "the cache reached {peak} bytes with --cache-size {LIMIT}"
    );
    assert!(refused > 0, "writing 3x the cache size never got ENOSPC");
    assert!(
        closed.len() >= 2,
        "only {closed:?} fitted in an 8 MiB cache of 4 MiB files"
    );

    // Back online: everything closed whole reaches the server intact.
    srv.restart();
    for i in &closed {
        let r = wait_same_file(
            &srcs[*i],
            &root.join(format!("f{i}.bin")),
            Duration::from_secs(30),
        );
        assert!(
            r.is_ok(),
            "f{i}.bin was not uploaded: {r:?}\n{}",
            tail(&m.log(), 30)
        );
    }
    // And the space is usable again.
    tool(&m, &srv, "cp").arg(&srcs[n - 1]).arg("after.bin").ok();
    assert_same_file(&srcs[n - 1], &root.join("after.bin"));
}

/// Samples [`tree_bytes`] of `dir` every few milliseconds until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(dir: &Path) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak, dir) = (stop.clone(), peak.clone(), dir.to_owned());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(tree_bytes(&dir), Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Sampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest size seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn reads_through_a_small_cache_evict_as_they_fetch() {
    skip_without_fuse!();
    const LIMIT: u64 = 8 * MIB;
    let root = TestDir::new("root");
    let files: Vec<_> = (0..5)
        .map(|i| root.write_random(format!("r{i}.bin"), 4 * MIB, 200 + i))
        .collect();
    let big = root.write_random("big.bin", 12 * MIB, 300);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["--cache-size", "8M"]);

    let sampler = Sampler::start(m.cache_dir());
    for (i, f) in files.iter().enumerate() {
        tool(&m, &srv, "cmp").arg(f).arg(format!("r{i}.bin")).ok();
    }
    let peak = sampler.finish();
    eprintln!("cache peak while reading 20 MiB through it: {peak} bytes");
    assert!(
        peak <= LIMIT + MIB,
        "reads grew the cache to {peak} bytes with --cache-size {LIMIT}"
    );

    // Larger than the whole cache: still readable, and the cache is back
    // under its limit once the reader has closed it.
    tool(&m, &srv, "cmp").arg(&big).arg("big.bin").ok();
    let settled = wait_for(Duration::from_secs(10), || {
        let now = tree_bytes(m.cache_dir());
        (now <= LIMIT + MIB).then_some(now)
    });
    assert!(
        settled.is_some(),
        "the cache stayed at {} bytes after the 12 MiB file was closed",
        tree_bytes(m.cache_dir())
    );
}

#[test]
fn a_second_rfmount_on_the_same_cache_is_refused_with_a_clear_error() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let other = TestDir::new("other-mnt");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mnt2 = other.mkdir("mnt");
    let out = TestCommand::new(rfmount_bin())
        .arg(srv.addr())
        .arg(&mnt2)
        .arg("--cache-dir")
        .arg(m.cache_dir())
        .timeout(Duration::from_secs(30))
        .run();
    if is_mounted(&mnt2) {
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(&mnt2)
            .status();
    }
    let err = text(&out.stderr);
    assert!(!out.status.success(), "the second rfmount mounted: {err}");
    assert!(
        err.contains("in use by another rfmount") && err.contains("--cache-dir"),
        "{err}"
    );
    // The first mount is unharmed.
    root.write("f.txt", "still here\n");
    assert_eq!(tool(&m, &srv, "cat").arg("f.txt").stdout(), "still here\n");
}
