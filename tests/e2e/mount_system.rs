//! rfmount as the system sees it: mounted through mount(8) and mount.fuse3
//! (`mount -t fuse.rfmount`, the classic `mount -t fuse 'rfmount#SOURCE'`,
//! an fstab line via `mount -T FILE`), listed by `findmnt -t fuse.rfmount`
//! with its source, generic options applied or accepted, `umount` ending
//! the process; sshfs-style arguments; logs of a background mount; clean
//! unmounts without warnings; SIGHUP and SIGUSR1 ignored.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// `findmnt -n -t fuse.rfmount -o SOURCE,FSTYPE,OPTIONS MNT`, or `None`.
fn findmnt(mnt: &Path) -> Option<(String, String, String)> {
    let out = TestCommand::new("findmnt")
        .args(["-n", "-t", "fuse.rfmount", "-o", "SOURCE,FSTYPE,OPTIONS"])
        .arg(mnt)
        .timeout(Duration::from_secs(20))
        .run();
    let line = text(&out.stdout);
    let mut f = line.split_whitespace();
    Some((
        f.next()?.to_owned(),
        f.next()?.to_owned(),
        f.next()?.to_owned(),
    ))
}

/// Skips (with a note) unless FUSE is here and we are root.
macro_rules! skip_unless_root {
    () => {{
        skip_without_fuse!();
        if !is_root() {
            eprintln!("SKIPPED: mount(8) with fstab lines needs root");
            return;
        }
    }};
}

/// `umount MNT` must end the background rfmount.
fn umount_ends_it(m: &SystemMount) {
    assert!(
        !m.pids().is_empty(),
        "no rfmount serves {}",
        m.mountpoint.display()
    );
    TestCommand::new("umount").arg(&m.mountpoint).ok();
    assert!(!is_mounted(&m.mountpoint));
    assert!(
        m.wait_gone(),
        "rfmount {:?} still running 20 s after umount",
        m.pids()
    );
}

#[test]
fn fstab_line_mounts_as_fuse_rfmount_and_umount_ends_it() {
    skip_unless_root!();
    let _helper = PathInstall::rfmount();
    let root = TestDir::new("root");
    root.write("hello.txt", "from the server\n");
    let srv = Server::start(root.path(), &[]);
    let dir = TestDir::new("fstab");
    let mnt = dir.mkdir("share").canonicalize().unwrap();
    let cache = dir.mkdir("cache");
    let log = dir.join("rfmount.log");
    let m = SystemMount {
        mountpoint: mnt.clone(),
    };
    // The line, plus what this test needs (cache and log inside
    // its own directory) and the automount variant's options.
    let fstab = dir.write(
        "fstab",
        format!(
            "# test fstab\n{}:/ {} fuse.rfmount _netdev,allow_other,noauto,x-systemd.automount,cache_dir={},log_file={} 0 0\n",
            srv.addr(),
            mnt.display(),
            cache.display(),
            log.display()
        ),
    );
    TestCommand::new("mount")
        .arg("-T")
        .arg(&fstab)
        .arg(&mnt)
        .with_server(&srv)
        .with_log("rfmount log", &log)
        .ok();
    assert!(is_mounted(&mnt), "mount -T returned but nothing is mounted");
    let (source, fstype, opts) = findmnt(&mnt).expect("findmnt -t fuse.rfmount lists the mount");
    assert_eq!(source, srv.addr());
    assert_eq!(fstype, "fuse.rfmount");
    assert!(opts.contains("allow_other"), "{opts}");
    assert_eq!(
        fs::read(mnt.join("hello.txt")).unwrap(),
        b"from the server\n"
    );
    fs::write(mnt.join("new.txt"), "via fstab\n").unwrap();
    assert_eq!(fs::read(root.join("new.txt")).unwrap(), b"via fstab\n");
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("mounted"), "log file: {logged}");
    umount_ends_it(&m);
}

#[test]
fn mount_t_fuse_rfmount_and_classic_hash_syntax_take_generic_options() {
    skip_unless_root!();
    let _helper = PathInstall::rfmount();
    let root = TestDir::new("root");
    root.write("a.txt", "a\n");
    let srv = Server::start(root.path(), &[]);
    let dir = TestDir::new("mount-t");
    let mnt = dir.mkdir("mnt").canonicalize().unwrap();
    let cache = dir.mkdir("cache");
    let log = dir.join("rfmount.log");
    let m = SystemMount {
        mountpoint: mnt.clone(),
    };
    let common = format!("cache_dir={},log_file={}", cache.display(), log.display());

    // Every generic option mount(8) and fstab may pass; the flags among
    // them are applied as by any filesystem.
    TestCommand::new("mount")
        .args(["-t", "fuse.rfmount", &srv.addr()])
        .arg(&mnt)
        .arg("-o")
        .arg(format!(
            "defaults,rw,auto,nouser,nodev,nosuid,noexec,noatime,_netdev,nofail,x-test.option=1,reconnect,{common}"
        ))
        .with_server(&srv)
        .with_log("rfmount log", &log)
        .ok();
    let (source, fstype, opts) = findmnt(&mnt).expect("mounted as fuse.rfmount");
    assert_eq!(
        (source.as_str(), fstype.as_str()),
        (srv.addr().as_str(), "fuse.rfmount")
    );
    for flag in ["nodev", "nosuid", "noexec", "noatime"] {
        assert!(
            opts.split(',').any(|o| o == flag),
            "{flag} missing in {opts}"
        );
    }
    assert_eq!(fs::read(mnt.join("a.txt")).unwrap(), b"a\n");
    umount_ends_it(&m);

    // The classic form: type fuse, `PROGRAM#SOURCE`.
    TestCommand::new("mount")
        .args(["-t", "fuse", &format!("rfmount#{}", srv.addr())])
        .arg(&mnt)
        .arg("-o")
        .arg(format!("defaults,{common}"))
        .with_server(&srv)
        .with_log("rfmount log", &log)
        .ok();
    let (source, fstype, _) = findmnt(&mnt).expect("mounted as fuse.rfmount");
    assert_eq!(
        (source.as_str(), fstype.as_str()),
        (srv.addr().as_str(), "fuse.rfmount")
    );
    assert_eq!(fs::read(mnt.join("a.txt")).unwrap(), b"a\n");
    umount_ends_it(&m);

    // Unknown options still fail, with one clear line and nothing mounted.
    let out = TestCommand::new("mount")
        .args(["-t", "fuse.rfmount", &srv.addr()])
        .arg(&mnt)
        .arg("-o")
        .arg(format!("bogus_option,{common}"))
        .fails();
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown mount option \"bogus_option\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn sshfs_style_arguments() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("x.txt", "x\n");
    let srv = Server::start(root.path(), &[]);
    let port = srv.port().to_string();
    // -p PORT, -o port=N, and sshfs options that rfmount accepts.
    for extra in [
        vec!["-p", port.as_str(), "-o", "reconnect,nonempty"],
        vec!["-o", &format!("port={port},reconnect"), "-o", "noatime"],
    ] {
        let mut m = Mount::start_addr("127.0.0.1", &extra);
        assert_eq!(m.cmd("cat").arg("x.txt").stdout(), "x\n", "{extra:?}");
        let (source, _, _) = findmnt(m.path()).expect("listed");
        assert_eq!(source, srv.addr());
        m.unmount_and_wait();
    }

    // Bad syntax is a usage error: exit 2, one line, nothing mounted.
    let dir = TestDir::new("usage");
    let mnt = dir.mkdir("mnt");
    for (server, extra, says) in [
        ("127.0.0.1:port", vec![], "bad port"),
        ("127.0.0.1:9500:sub", vec![], "must start with '/'"),
        ("[::1", vec![], "missing ']'"),
        ("127.0.0.1:1", vec!["-p", "2"], "conflicts"),
        ("127.0.0.1", vec!["-o", "port=x"], "bad port"),
    ] {
        let out = TestCommand::new(rfmount_bin())
            .arg(server)
            .arg(&mnt)
            .args(&extra)
            .timeout(Duration::from_secs(30))
            .code(2);
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{server}: {err}");
        assert!(err.starts_with("rfmount: error: "), "{err}");
        assert!(err.contains(says), "{server}: {err}");
        assert!(!is_mounted(&mnt.canonicalize().unwrap()));
    }
}

#[test]
fn clean_unmount_logs_no_warning_and_hup_usr1_are_ignored() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    for sig in [libc::SIGHUP, libc::SIGUSR1] {
        signal(m.pid(), sig);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        m.wait_exited(Duration::from_millis(10)).is_none(),
        "rfmount exited on SIGHUP/SIGUSR1"
    );
    sh(&m, &srv, "echo still here > after.txt").ok();
    assert_eq!(fs::read(root.join("after.txt")).unwrap(), b"still here\n");
    let st = m.unmount_and_wait();
    assert!(st.success(), "exit status {st} after fusermount3 -u");
    let log = m.log();
    assert!(!log.contains("Unmount failed"), "{log}");
    assert!(
        !log.contains(" WARN "),
        "warning on a clean unmount:\n{log}"
    );
}

#[test]
fn background_mount_logs_to_the_state_dir_or_log_file() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let dir = TestDir::new("bglog");
    let home = dir.mkdir("home");
    let cache = dir.mkdir("cache");
    let custom = dir.join("custom.log");
    for (extra, log) in [
        (vec![], home.join(".local/state/rfmount/rfmount.log")),
        (
            vec!["-o".to_owned(), format!("log_file={}", custom.display())],
            custom.clone(),
        ),
    ] {
        let mnt = dir
            .mkdir(format!("mnt{}", extra.len()))
            .canonicalize()
            .unwrap();
        let m = SystemMount {
            mountpoint: mnt.clone(),
        };
        let out = TestCommand::new(rfmount_bin())
            .arg(srv.addr())
            .arg(&mnt)
            .arg("--cache-dir")
            .arg(&cache)
            .args(&extra)
            .env("HOME", &home)
            .env("XDG_STATE_HOME", "")
            .env("RUST_LOG", "")
            .with_server(&srv)
            .timeout(Duration::from_secs(60))
            .ok();
        // Not a terminal: the background start says nothing.
        assert_eq!(text(&out.stderr), "");
        assert!(is_mounted(&mnt));
        let logged =
            fs::read_to_string(&log).unwrap_or_else(|e| panic!("no log at {}: {e}", log.display()));
        assert!(
            logged.contains(&format!("mounted {} on {}", srv.addr(), mnt.display())),
            "{logged}"
        );
        TestCommand::new("fusermount3").arg("-u").arg(&mnt).ok();
        assert!(m.wait_gone(), "rfmount still running after fusermount3 -u");
        let logged = fs::read_to_string(&log).unwrap();
        assert!(logged.contains("unmounted"), "{logged}");
        assert!(!logged.contains("WARN"), "{logged}");
    }
}

/// `rfmount status MNT --json`: one JSON line; `(pending_files, pending_bytes)`.
fn pending(m: &Mount) -> (u64, u64, String) {
    let out = TestCommand::new(rfmount_bin())
        .args(["status", "--json"])
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok();
    let j = text(&out.stdout);
    let num = |key: &str| -> u64 {
        let at = j
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("no {key} in {j}"));
        j[at + key.len() + 3..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("bad {key} in {j}"))
    };
    (num("pending_files"), num("pending_bytes"), j)
}

#[test]
fn status_shows_files_not_yet_uploaded_until_they_land() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    // Long timeouts: while the server is down, lookups are answered from
    // the cached listing, so the file is written locally.
    let m = Mount::start(&srv, &["-o", "attr_timeout=3600,dir_timeout=3600"]);
    sh(&m, &srv, "ls -l").ok();
    let (files, bytes, j) = pending(&m);
    assert_eq!((files, bytes), (0, 0), "{j}");
    assert!(j.contains(&format!("\"server\":\"{}\"", srv.addr())), "{j}");

    srv.kill();
    // The upload at close fails (server down); the file stays pending.
    let out = sh(&m, &srv, "head -c 3000000 /dev/zero > big.bin").run();
    assert!(
        !out.status.success(),
        "close should fail while the server is down"
    );
    let (files, bytes, j) = pending(&m);
    assert_eq!((files, bytes), (1, 3_000_000), "{j}");
    assert!(j.contains("\"path\":\"/big.bin\""), "{j}");
    let human = text(
        &TestCommand::new(rfmount_bin())
            .arg("status")
            .arg(m.path())
            .ok()
            .stdout,
    );
    assert!(
        human.contains("not yet uploaded: 1 file(s), 2.9 MiB"),
        "{human}"
    );
    // All mounts when no mount point is named.
    let all = text(&TestCommand::new(rfmount_bin()).arg("status").ok().stdout);
    assert!(all.contains(&m.path().display().to_string()), "{all}");

    srv.restart();
    let landed = wait_for(Duration::from_secs(30), || {
        let (files, _, _) = pending(&m);
        (files == 0).then_some(())
    });
    assert!(landed.is_some(), "still pending: {}", pending(&m).2);
    assert_eq!(size_of(&root.join("big.bin")), 3_000_000);

    // A mount point nobody serves: exit 1, one line.
    let none = TestDir::new("none");
    let out = TestCommand::new(rfmount_bin())
        .arg("status")
        .arg(none.path())
        .code(1);
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn a_subdirectory_source_shows_only_that_directory_and_cannot_leave_it() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("top-secret.txt", "outside the subdirectory\n");
    root.write("sub/inside.txt", "inside\n");
    root.write("sub/deeper/d.txt", "d\n");
    // A link inside the subdirectory that points out of it.
    std::os::unix::fs::symlink("../top-secret.txt", root.join("sub/out-link")).unwrap();
    let srv = Server::start(root.path(), &[]);

    let m = Mount::start_addr(&format!("{}:/sub", srv.addr()), &[]);
    let (source, fstype, _) = findmnt(m.path()).expect("listed");
    assert_eq!(source, format!("{}:/sub", srv.addr()));
    assert_eq!(fstype, "fuse.rfmount");
    let names = m.cmd("ls").arg("-a").stdout();
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, [".", "..", "deeper", "inside.txt", "out-link"]);
    assert_eq!(m.cmd("cat").arg("inside.txt").stdout(), "inside\n");
    assert_eq!(m.cmd("cat").arg("deeper/d.txt").stdout(), "d\n");
    // `..` at the mount's root is the mount's root (the kernel's rule);
    // the server never follows the link out of the subdirectory.
    m.cmd("cat").arg("../top-secret.txt").fails();
    let out = m.cmd("cat").arg("out-link").run();
    assert!(
        !text(&out.stdout).contains("outside"),
        "a link led out of the subdirectory: {}",
        text(&out.stdout)
    );
    // Writes land inside the subdirectory on the server.
    fs::write(m.join("new.txt"), "new\n").unwrap();
    assert_eq!(fs::read(root.join("sub/new.txt")).unwrap(), b"new\n");
    assert!(!root.join("new.txt").exists());

    // rf takes the same syntax.
    let ls = TestCommand::new(rf_bin())
        .arg("ls")
        .arg(format!("{}:/sub", srv.addr()))
        .arg("/")
        .timeout(Duration::from_secs(30))
        .stdout();
    assert!(ls.contains("inside.txt"), "{ls}");
    // No entry of the export's root is listed (out-link's target text may
    // name one).
    assert!(!ls.lines().any(|l| l.ends_with(" top-secret.txt")), "{ls}");

    // A subdirectory that does not exist is a clear start error.
    let dir = TestDir::new("nosub");
    let mnt = dir.mkdir("mnt");
    let out = TestCommand::new(rfmount_bin())
        .arg(format!("{}:/missing", srv.addr()))
        .arg(&mnt)
        .arg("--cache-dir")
        .arg(dir.mkdir("cache"))
        .timeout(Duration::from_secs(30))
        .fails();
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("missing"), "{err}");
    assert!(!is_mounted(&mnt.canonicalize().unwrap()));
}
