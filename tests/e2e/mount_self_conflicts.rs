//! A mount never conflicts with itself: with the default `conflict=keep`,
//! long runs of one mount's own writes, closes, reopens, renames, chmods,
//! touches, truncates, hard links, xattr changes and two descriptors of one
//! file open at once (also with `-o writeback`) leave no `.conflict-` file,
//! and the server ends with exactly the content written. Only another
//! writer makes a conflict: the two-mount case with no option at all.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::util::*;

/// `close(2)` of `f`, with its result (dropping a `File` ignores it).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is ours alone: `into_raw_fd` gave up the File's claim.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// truncate(2) by name: no descriptor is open, so the mount changes the
/// server's file directly.
fn truncate_path(p: &Path, len: u64) {
    let c = c_path(p);
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) };
    assert_eq!(
        r,
        0,
        "truncate {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
}

/// Sets a user xattr; false when the export's filesystem has none.
fn set_user_xattr(p: &Path, value: &[u8]) -> bool {
    let c = c_path(p);
    // SAFETY: valid NUL-terminated strings and a buffer of `value.len()`.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            c"user.selftest".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        return true;
    }
    let e = io::Error::last_os_error();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP),
        "setxattr {}: {e}",
        p.display()
    );
    false
}

fn write_at(p: &Path, offset: u64, data: &[u8]) {
    let f = OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(data, offset).unwrap();
    close(f).unwrap_or_else(|e| panic!("close of {}: {e}", p.display()));
}

fn put_at(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if model.len() < end {
        model.resize(end, 0);
    }
    model[offset as usize..end].copy_from_slice(data);
}

/// Drives `steps` random operations (seeded by `seed`) of one mount over a
/// few names in a new directory `dir`, keeping what each file must hold in
/// the model it returns (by name in `dir`); fails at the first step that
/// leaves a conflict copy.
fn drive(
    m: &Mount,
    root: &TestDir,
    dir: &str,
    seed: u64,
    steps: usize,
) -> BTreeMap<String, Vec<u8>> {
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    let mut rng = Rng::new(seed);
    fs::create_dir(m.join(dir)).unwrap();
    let m_dir = m.join(dir);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut xattrs = true;
    for step in 0..steps {
        let name = NAMES[rng.range(0, NAMES.len() as u64) as usize].to_owned();
        let p = m_dir.join(&name);
        let exists = model.contains_key(&name);
        let data = format!("[{step}:{}]", rng.next_u64() % 1000).into_bytes();
        let op = rng.range(0, 11);
        let what = format!("{dir} step {step}: op {op} on {name} (exists: {exists})");
        eprintln!("{what}");
        match (exists, op) {
            (false, _) | (true, 0) => {
                fs::write(&p, &data).unwrap();
                model.insert(name, data);
            }
            (true, 1) => {
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(&data).unwrap();
                close(f).unwrap();
                model.get_mut(&name).unwrap().extend_from_slice(&data);
            }
            (true, 2) => {
                let len = model[&name].len() as u64;
                let at = rng.range(0, len + 1);
                write_at(&p, at, &data);
                put_at(model.get_mut(&name).unwrap(), at, &data);
            }
            (true, 3) => {
                let to = NAMES[rng.range(0, NAMES.len() as u64) as usize].to_owned();
                if to != name {
                    fs::rename(&p, m_dir.join(&to)).unwrap();
                    let moved = model.remove(&name).unwrap();
                    model.insert(to, moved);
                }
            }
            (true, 4) => {
                let mode = if step % 2 == 0 { 0o600 } else { 0o644 };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
            (true, 5) => {
                let f = File::options().write(true).open(&p).unwrap();
                f.set_modified(SystemTime::now() - Duration::from_secs(3600))
                    .unwrap();
                close(f).unwrap();
            }
            (true, 6) => {
                let len = model[&name].len() as u64;
                let to = rng.range(0, len + 3);
                truncate_path(&p, to);
                model.get_mut(&name).unwrap().resize(to as usize, 0);
            }
            (true, 7) => {
                // Two descriptors of one file: the first close uploads
                // while the second goes on writing.
                let f1 = OpenOptions::new().write(true).open(&p).unwrap();
                let f2 = OpenOptions::new().append(true).open(&p).unwrap();
                f1.write_all_at(b"<1>", 0).unwrap();
                put_at(model.get_mut(&name).unwrap(), 0, b"<1>");
                close(f1).unwrap();
                (&f2).write_all(&data).unwrap();
                model.get_mut(&name).unwrap().extend_from_slice(&data);
                close(f2).unwrap();
            }
            (true, 8) => {
                // Renamed while open, written on under the new name.
                let to = format!("{name}.moved");
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(b"<pre>").unwrap();
                f.flush().unwrap();
                fs::rename(&p, m_dir.join(&to)).unwrap();
                f.write_all(&data).unwrap();
                close(f).unwrap();
                fs::rename(m_dir.join(&to), &p).unwrap();
                let c = model.get_mut(&name).unwrap();
                c.extend_from_slice(b"<pre>");
                c.extend_from_slice(&data);
            }
            (true, 9) => {
                // A second name, written through, then removed again.
                let link = m_dir.join(format!("{name}.link"));
                fs::hard_link(&p, &link).unwrap();
                let mut f = OpenOptions::new().append(true).open(&link).unwrap();
                f.write_all(&data).unwrap();
                close(f).unwrap();
                fs::remove_file(&link).unwrap();
                model.get_mut(&name).unwrap().extend_from_slice(&data);
            }
            (true, _) => {
                if xattrs {
                    xattrs = set_user_xattr(&p, &data);
                }
                // Written at once after the attribute change.
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                f.write_all(b"<x>").unwrap();
                close(f).unwrap();
                model.get_mut(&name).unwrap().extend_from_slice(b"<x>");
            }
        }
        // Pinned to the step that made it, for whoever reads a failure.
        let aside = find_with_prefix(root.path(), "")
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".conflict-"))
            .collect::<Vec<_>>();
        assert!(
            aside.is_empty(),
            "{what}: the mount conflicted with itself: {aside:?}\n{}",
            tail(&m.log(), 60)
        );
    }
    model
}

/// Waits for a write-back mount's uploads, then checks that the export's
/// `dir` holds exactly `model` and nothing has a conflict copy.
fn check_server(m: &Mount, root: &TestDir, dir: &str, model: &BTreeMap<String, Vec<u8>>) {
    TestCommand::new(rfmount_bin())
        .arg("sync")
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok();
    let aside = find_with_prefix(root.path(), "");
    let conflicts: Vec<_> = aside
        .iter()
        .filter(|p| p.to_string_lossy().contains(".conflict-"))
        .collect();
    assert!(
        conflicts.is_empty(),
        "the mount conflicted with itself: {conflicts:?}\n{}",
        tail(&m.log(), 60)
    );
    // Only the warning of a real conflict (`fs/conflict.rs`): a partial
    // upload refused and resent whole is logged at DEBUG with the server's
    // words, which say "another writer" too.
    let conflict_warnings: Vec<String> = m
        .log()
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("changed on the server by another writer"))
        .map(str::to_owned)
        .collect();
    assert!(
        conflict_warnings.is_empty(),
        "the mount reported a conflict: {conflict_warnings:?}\n{}",
        tail(&m.log(), 60)
    );
    let mut on_server = names_with_prefix(&root.join(dir), "");
    on_server.retain(|n| !n.starts_with(".rfserve"));
    let expected: Vec<String> = model.keys().cloned().collect();
    assert_eq!(on_server, expected, "names on the server");
    for (name, content) in model {
        assert_eq!(
            show(&root.read(format!("{dir}/{name}")), 200),
            show(content, 200),
            "{name} on the server\n{}",
            tail(&m.log(), 120)
        );
        assert_eq!(
            show(&fs::read(m.join(dir).join(name)).unwrap(), 200),
            show(content, 200),
            "{name} through the mount"
        );
    }
}

#[test]
fn one_mount_never_conflicts_with_its_own_changes() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    for seed in 1..=4 {
        let dir = format!("s{seed}");
        let model = drive(&m, &root, &dir, seed, 120);
        check_server(&m, &root, &dir, &model);
    }
    assert_eq!(srv.count("result=err code=Conflict"), 0);
}

#[test]
fn one_write_back_mount_never_conflicts_with_its_own_changes() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    for seed in 11..=14 {
        let dir = format!("s{seed}");
        let model = drive(&m, &root, &dir, seed, 120);
        check_server(&m, &root, &dir, &model);
    }
    assert_eq!(srv.count("result=err code=Conflict"), 0);
}

#[test]
fn quick_rewrites_of_one_file_through_two_open_descriptors_do_not_conflict() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", "start\n");
    let srv = Server::start(root.path(), &[]);
    for opts in [&[][..], &["-o", "writeback"][..]] {
        let m = Mount::start(&srv, opts);
        let mut expect = b"start\n".to_vec();
        let keep = OpenOptions::new().append(true).open(m.join("f")).unwrap();
        for i in 0..30 {
            let line = format!("line {i}\n");
            let mut f = OpenOptions::new().append(true).open(m.join("f")).unwrap();
            f.write_all(line.as_bytes()).unwrap();
            close(f).unwrap();
            expect.extend_from_slice(line.as_bytes());
            if i % 5 == 0 {
                (&keep).write_all(b"kept\n").unwrap();
                expect.extend_from_slice(b"kept\n");
            }
        }
        close(keep).unwrap();
        TestCommand::new(rfmount_bin())
            .arg("sync")
            .arg(m.path())
            .with_log("rfmount log", m.log_path())
            .ok();
        assert_eq!(text(&root.read("f")), text(&expect), "{opts:?}");
        assert!(
            names_with_prefix(root.path(), "f.conflict-").is_empty(),
            "{opts:?}: {}",
            tail(&m.log(), 60)
        );
        // The next round starts from what this one left.
        root.write("f", "start\n");
    }
}

/// Opens each `(path, data)` for writing (no `O_TRUNC`) and writes its
/// data, all before any is closed, then closes them in `order`; returns the
/// closes' results in that order.
///
/// In a forked child with one thread: a descriptor of this multi-threaded
/// test process is inherited by every child another thread spawns meanwhile
/// (a harness command, another test of the binary), and that child's
/// close-on-exec is a close of the file, whose flush uploads it. The mount
/// rightly takes that as the first close, so the order the test means would
/// not be the order the mount saw.
fn write_both_then_close_in_order(
    files: [(&Path, &[u8]); 2],
    order: [usize; 2],
) -> [io::Result<()>; 2] {
    let paths = files.map(|(p, _)| c_path(p));
    let mut pipe = [-1; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    assert_eq!(
        unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    // SAFETY: the child calls only async-signal-safe functions (open,
    // write, close, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let mut fds = [-1; 2];
        for (i, (path, (_, data))) in paths.iter().zip(files.iter()).enumerate() {
            // SAFETY: a NUL-terminated path; `data` outlives the calls.
            unsafe {
                fds[i] = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fds[i] < 0 {
                    libc::_exit(10 + i as i32);
                }
                let n = libc::write(fds[i], data.as_ptr().cast(), data.len());
                if n != data.len() as isize {
                    libc::_exit(20 + i as i32);
                }
            }
        }
        for i in order {
            // SAFETY: our own descriptors; errno read right after close.
            unsafe {
                let e: i32 = if libc::close(fds[i]) == 0 {
                    0
                } else {
                    *libc::__errno_location()
                };
                if libc::write(pipe[1], (&raw const e).cast(), 4) != 4 {
                    libc::_exit(30);
                }
            }
        }
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the write end is the child's alone now.
    unsafe { libc::close(pipe[1]) };
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the writing child failed (status {status:#x}: 1x open, 2x write, 30 report)"
    );
    let mut errs = [0i32; 2];
    // SAFETY: reads the two reports the child wrote before it exited.
    let n = unsafe { libc::read(pipe[0], errs.as_mut_ptr().cast(), 8) };
    // SAFETY: our read end.
    unsafe { libc::close(pipe[0]) };
    assert_eq!(n, 8, "the child's close reports");
    errs.map(|e| {
        if e == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(e))
        }
    })
}

#[test]
fn two_mounts_conflict_by_default_and_the_second_closer_is_kept_aside() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "base\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &[]);
    let b = Mount::start(&srv, &[]);
    let (pa, pb) = (a.join("f.txt"), b.join("f.txt"));
    let closes = write_both_then_close_in_order([(&pa, b"from A\n"), (&pb, b"from B\n")], [1, 0]);
    let [b_closed, a_closed] = closes;
    b_closed.expect("B's close");
    a_closed.expect("A's close returns 0: its data is safe aside");
    assert_eq!(text(&root.read("f.txt")), "from B\n");
    let aside = names_with_prefix(root.path(), "f.txt.conflict-");
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", a.log());
    assert_eq!(text(&root.read(&aside[0])), "from A\n");
    assert!(
        a.log()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&aside[0])),
        "A's log names the kept copy:\n{}",
        tail(&a.log(), 30)
    );
}

#[test]
fn a_refused_upload_of_the_content_the_server_already_has_is_not_kept_aside() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f.txt", "base\n");
    let srv = Server::start(root.path(), &[]);
    let a = Mount::start(&srv, &[]);
    let b = Mount::start(&srv, &[]);
    let open = |m: &Mount| {
        let mut f = OpenOptions::new()
            .write(true)
            .open(m.join("f.txt"))
            .unwrap();
        f.write_all(b"same\n").unwrap();
        f
    };
    let (fa, fb) = (open(&a), open(&b));
    close(fb).expect("B's close");
    // A's base is gone, but the server's file is byte for byte A's data
    // (as after a retried upload whose answer was lost): nothing to keep.
    close(fa).expect("A's close");
    assert_eq!(srv.count("op=PUT path=/f.txt result=err code=Conflict"), 1);
    assert_eq!(text(&root.read("f.txt")), "same\n");
    assert!(
        names_with_prefix(root.path(), "f.txt.conflict-").is_empty(),
        "{}",
        tail(&a.log(), 30)
    );
    // And A goes on from the server's version without another conflict.
    let mut f = OpenOptions::new()
        .append(true)
        .open(a.join("f.txt"))
        .unwrap();
    f.write_all(b"more\n").unwrap();
    close(f).unwrap();
    assert_eq!(text(&root.read("f.txt")), "same\nmore\n");
    assert_eq!(srv.count("result=err code=Conflict"), 1);
}
