//! Bad luck through a real mount: read-only exports and `-o ro`, a full
//! disk on the server, and the server dying while the mount is idle, before
//! `cp` closes its file, or in the middle of an upload. `close` must report
//! the failure, the server must never hold half a file, and no byte may be
//! lost once the server is back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// Asserts a non-zero exit and `needle` in stderr.
#[track_caller]
fn assert_failed_with(out: &Output, what: &str, needle: &str) {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} should fail with {needle:?} but succeeded; stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "{what} should fail with {needle:?}; it said (status {}): {err}",
        out.status
    );
}

/// Every write through `m` fails with "Read-only file system"; reads work;
/// the server's files are untouched.
fn assert_read_only(m: &Mount, srv: &Server, local: &TestDir) {
    let src = local.write("src.txt", "local\n");
    let src = s(&src);
    let attempts: [&[&str]; 13] = [
        &["bash", "-c", "echo x > new"],
        &["bash", "-c", "echo x > f.txt"],
        &["bash", "-c", "echo x >> f.txt"],
        &["mkdir", "newdir"],
        &["mkdir", "-p", "a/b"],
        &["rm", "-f", "f.txt"],
        &["rmdir", "d"],
        &["touch", "f.txt"],
        &["touch", "new"],
        &["cp", src, "copied"],
        &["mv", "f.txt", "g.txt"],
        &["chmod", "600", "f.txt"],
        &["truncate", "-s", "0", "f.txt"],
    ];
    for argv in attempts {
        let out = tool(m, srv, argv[0]).args(&argv[1..]).run();
        assert_failed_with(&out, &argv.join(" "), "Read-only file system");
    }
    // Reads still work.
    assert_eq!(tool(m, srv, "cat").arg("f.txt").stdout(), "server file\n");
    assert_eq!(tool(m, srv, "cat").arg("d/inner").stdout(), "inner\n");
    let ls = tool(m, srv, "ls").arg("-A").stdout();
    assert_eq!(ls, "d\nf.txt\n");
    // And nothing changed on the server.
    let root = srv.root();
    assert_eq!(fs::read(root.join("f.txt")).unwrap(), b"server file\n");
    assert_eq!(mode_of(&root.join("f.txt")), 0o644);
    assert_eq!(fs::read(root.join("d/inner")).unwrap(), b"inner\n");
    let mut names: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "f.txt"]);
}

fn read_only_root() -> TestDir {
    let root = TestDir::new("root");
    let f = root.write("f.txt", "server file\n");
    chmod(&f, 0o644);
    root.write("d/inner", "inner\n");
    root
}

#[test]
fn read_only_export_refuses_writes_with_erofs() {
    skip_without_fuse!();
    let root = read_only_root();
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &["--read-only"]);
    let m = Mount::start(&srv, &[]);
    assert_read_only(&m, &srv, &local);
}

#[test]
fn ro_mount_option_refuses_writes_on_a_writable_export() {
    skip_without_fuse!();
    let root = read_only_root();
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "ro"]);
    assert_read_only(&m, &srv, &local);
    // The same export is writable through a mount without -o ro.
    let rw = Mount::start(&srv, &[]);
    sh(&rw, &srv, "echo written > w.txt").ok();
    assert_eq!(fs::read(root.join("w.txt")).unwrap(), b"written\n");
}

/// A small tmpfs mounted with the real `mount` command, unmounted on drop.
struct SmallDisk {
    dir: TestDir,
    path: PathBuf,
}

impl SmallDisk {
    /// `None` (with a note) when this machine will not let us mount one;
    /// in CI that is a failure.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = TestDir::new("tmpfs");
        let path = dir.mkdir("disk");
        let out = TestCommand::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .timeout(Duration::from_secs(20))
            .run();
        if out.status.success() {
            return Some(SmallDisk { dir, path });
        }
        let why = text(&out.stderr);
        if in_ci() {
            panic!("cannot mount a tmpfs in CI: {why}");
        }
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?): {why}");
        None
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let out = TestCommand::new("umount")
            .arg(&self.path)
            .timeout(Duration::from_secs(20))
            .run();
        if !out.status.success() {
            eprintln!(
                "note: umount {} failed; detaching lazily",
                self.path.display()
            );
            TestCommand::new("umount")
                .arg("-l")
                .arg(&self.path)
                .timeout(Duration::from_secs(20))
                .run();
        }
        if is_mounted(&self.path) {
            self.dir.keep();
        }
    }
}

/// Sorted names in `dir`, hidden ones included.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn upload_to_a_full_server_disk_fails_with_enospc_and_leaves_nothing() {
    skip_without_fuse!();
    let Some(disk) = SmallDisk::mount("2m") else {
        return;
    };
    let root = disk.path.clone();
    fs::write(root.join("old.txt"), "old content\n").unwrap();
    let local = TestDir::new("local");
    let big = local.write_random("big.bin", 4 * MIB, 4);
    let srv = Server::start(&root, &[]);
    let m = Mount::start(&srv, &[]);

    // A new file too big for the disk.
    let out = tool(&m, &srv, "cp").arg(&big).arg("new.bin").run();
    assert_failed_with(
        &out,
        "cp of 4 MiB onto a 2 MiB disk",
        "No space left on device",
    );
    assert_eq!(
        names(&root),
        ["old.txt"],
        "the server's disk should hold no part of the failed upload"
    );

    // Over an existing file: the old content stays.
    let out = tool(&m, &srv, "cp").arg(&big).arg("old.txt").run();
    assert_failed_with(&out, "cp of 4 MiB over old.txt", "No space left on device");
    assert_eq!(fs::read(root.join("old.txt")).unwrap(), b"old content\n");
    assert_eq!(names(&root), ["old.txt"]);

    // The mount and the connection go on: a file that fits is uploaded.
    let small = local.write_random("small.bin", 100 * KIB, 5);
    tool(&m, &srv, "cp").arg(&small).arg("small.bin").ok();
    assert_same_file(&small, &root.join("small.bin"));
    assert_eq!(names(&root), ["old.txt", "small.bin"]);
    // Clients never see temporary upload files.
    let ls = tool(&m, &srv, "ls").arg("-A").stdout();
    assert!(!ls.contains(UPLOAD_TEMP_PREFIX), "{ls}");
}

#[test]
fn server_down_at_close_fails_the_close_and_the_file_is_uploaded_later() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    tool(&m, &srv, "ls").arg("-l").ok();

    // cp has the file open and has written part of it when the server dies.
    let go = local.join("go");
    let script = format!(
        "{{ printf 'first part\\n'; while [ ! -e {go} ]; do sleep 0.05; done; \
         printf 'second part\\n'; }} | cp /dev/stdin f.txt",
        go = q(&go)
    );
    let mut cp = TestCommand::sh(&script)
        .current_dir(m.path())
        .with_log("rfmount log", m.log_path())
        .spawn_logged(local.path(), "cp-pipe");
    let written = wait_for(Duration::from_secs(30), || {
        fs::metadata(m.join("f.txt"))
            .ok()
            .filter(|md| md.len() == 11)
            .map(|_| ())
    });
    assert!(
        written.is_some(),
        "{}",
        cp.report("never wrote the first part into the mount")
    );
    srv.kill();
    fs::write(&go, "").unwrap();
    let st = cp.wait(Duration::from_secs(60));
    assert!(
        !st.success(),
        "{}",
        cp.report("cp should fail when its close cannot upload")
    );
    assert!(
        cp.stderr().contains("Input/output error"),
        "{}",
        cp.report("cp's error should be EIO")
    );
    assert!(
        !root.join("f.txt").exists(),
        "nothing reached the server yet"
    );

    srv.restart();
    assert!(
        wait_content(
            &root.join("f.txt"),
            b"first part\nsecond part\n",
            Duration::from_secs(15)
        ),
        "the file was not uploaded within 15 s of the server's restart; server has {:?}\n---- rfmount log ----\n{}",
        fs::read(root.join("f.txt")).ok().map(|b| text(&b)),
        tail(&m.log(), 30)
    );
    assert_eq!(
        tool(&m, &srv, "cat").arg("f.txt").stdout(),
        "first part\nsecond part\n"
    );
}

/// The server dies while the mount is idle; then `cp` writes a new file and
/// overwrites an existing one. Both `cp`s fail with EIO (their close cannot
/// upload), and once the server is back both files reach it: no byte lost.
fn idle_then_cp(extra: &[&str], idle: Duration) {
    let root = TestDir::new("root");
    root.write("existing.txt", "old\n");
    let local = TestDir::new("local");
    let src = local.write_random("src.bin", 300 * KIB, 3);
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, extra);
    assert_eq!(tool(&m, &srv, "cat").arg("existing.txt").stdout(), "old\n");
    tool(&m, &srv, "ls").arg("-l").ok();

    srv.kill();
    // The scenario, not a race: the mount sits idle for `idle`.
    std::thread::sleep(idle);
    let mut said = String::new();
    for name in ["new.bin", "existing.txt"] {
        let out = tool(&m, &srv, "cp").arg(&src).arg(name).run();
        said.push_str(&text(&out.stderr));
        assert_failed_with(
            &out,
            &format!("cp to {name} while the server is down"),
            "Input/output error",
        );
    }
    assert_eq!(fs::read(root.join("existing.txt")).unwrap(), b"old\n");
    assert!(!root.join("new.bin").exists());

    srv.restart();
    for name in ["new.bin", "existing.txt"] {
        if let Err(e) = wait_same_file(&src, &root.join(name), Duration::from_secs(15)) {
            panic!(
                "{name} was not uploaded within 15 s of the server's restart ({e})\n\
                 while the server was down, cp said:\n{said}\
                 ---- rfmount log ----\n{}",
                tail(&m.log(), 30)
            );
        }
    }
    let ls = tool(&m, &srv, "ls").arg("-A").stdout();
    assert_eq!(ls, "existing.txt\nnew.bin\n");
}

#[test]
fn server_down_while_idle_then_cp_fails_and_the_file_is_uploaded_later() {
    skip_without_fuse!();
    // Default options; idle for longer than attr_timeout and dir_timeout
    // (1 s), so nothing about the directory is cached any more.
    idle_then_cp(&[], Duration::from_millis(1500));
}

#[test]
fn server_down_with_a_cached_listing_then_cp_fails_and_the_file_is_uploaded_later() {
    skip_without_fuse!();
    // Long timeouts: cp's lookups are answered from the cached listing.
    idle_then_cp(
        &["-o", "attr_timeout=3600,dir_timeout=3600"],
        Duration::ZERO,
    );
}

#[test]
fn server_killed_mid_upload_never_leaves_a_partial_file() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let old = local.write_random("old.bin", MIB, 1);
    fs::copy(&old, root.join("big.bin")).unwrap();
    let new = local.write_random("new.bin", 200 * MIB, 2);
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);

    let mut cp = tool(&m, &srv, "cp")
        .arg(&new)
        .arg("big.bin")
        .spawn_logged(local.path(), "cp");
    // The upload starts at close, once cp has written everything locally;
    // the server shows it as a temporary file next to the target.
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
        cp.report("rfserve never had the upload open before cp ended")
    );
    srv.kill();
    // Never half a file: the target is still the complete old one.
    assert_same_file(&old, &root.join("big.bin"));

    let st = cp.wait(Duration::from_secs(60));
    assert!(
        !st.success(),
        "{}",
        cp.report("cp should fail: its close could not finish the upload")
    );
    assert!(
        cp.stderr().contains("Input/output error"),
        "{}",
        cp.report("cp's error should be EIO")
    );
    assert_same_file(&old, &root.join("big.bin"));

    srv.restart();
    // Until the retry lands, the server holds the old file whole; then the
    // new one whole. Never anything in between.
    let (old_len, new_len) = (MIB, 200 * MIB);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let len = size_of(&root.join("big.bin"));
        assert!(
            len == old_len || len == new_len,
            "the server's big.bin is {len} bytes: a partial file"
        );
        if len == new_len {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upload was not retried within 30 s of the restart\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sha256(&root.join("big.bin")), sha256(&new));
    let ls = tool(&m, &srv, "ls").arg("-A").stdout();
    assert_eq!(ls, "big.bin\n", "clients should see only the file");
    let size = tool(&m, &srv, "stat")
        .args(["-c", "%s", "big.bin"])
        .stdout();
    assert_eq!(size.trim(), new_len.to_string());
}
