//! The `rfmount` process: one-line errors and a non-zero exit for every
//! way a mount can fail to start, "returns once mounted" without `-f` with
//! `fusermount3 -u` ending the background process, and SIGTERM / Ctrl-C
//! unmounting a foreground mount cleanly with exit status 0.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// Cleans up after an `rfmount` started without `-f`, whatever the test
/// did: detaches the mount and kills the background process (found by its
/// unique mount point on its command line).
struct DaemonGuard {
    mountpoint: PathBuf,
}

impl DaemonGuard {
    fn pids(&self) -> Vec<u32> {
        pids_with_args(&[s(&self.mountpoint)])
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if is_mounted(&self.mountpoint) {
            eprintln!(
                "note: {} still mounted at the end of the test; detaching",
                self.mountpoint.display()
            );
            TestCommand::new("fusermount3")
                .arg("-uz")
                .arg(&self.mountpoint)
                .timeout(Duration::from_secs(20))
                .run();
        }
        for pid in self.pids() {
            eprintln!("note: killing leftover rfmount {pid}");
            kill_pid(pid);
        }
    }
}

/// `rfmount ARGS` (no `-f` unless given) with a 60 s limit.
fn rfmount(args: &[&str]) -> Output {
    TestCommand::new(rfmount_bin())
        .args(args)
        .timeout(Duration::from_secs(60))
        .run()
}

/// Checks a failed start: non-zero exit, one stderr line starting with
/// `rfmount: error:` that mentions one of `any_of` (case-insensitive), and
/// `unmounted` (if given) not mounted. `Err` says what is wrong.
fn check_start_error(
    what: &str,
    out: &Output,
    unmounted: Option<&Path>,
    any_of: &[&str],
) -> Result<String, String> {
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let mut wrong = Vec::new();
    if out.status.code().is_none_or(|c| c == 0) {
        wrong.push(format!("exit status {} (expected non-zero)", out.status));
    }
    if lines.len() != 1 {
        wrong.push(format!("{} stderr lines (expected one)", lines.len()));
    }
    let first = lines.first().copied().unwrap_or("");
    if !first.starts_with("rfmount: error: ") {
        wrong.push("the line does not start with `rfmount: error: `".into());
    }
    let lower = first.to_lowercase();
    if !any_of.iter().any(|n| lower.contains(&n.to_lowercase())) {
        wrong.push(format!("the line mentions none of {any_of:?}"));
    }
    if let Some(mp) = unmounted.filter(|mp| is_mounted(mp)) {
        wrong.push(format!("{} is mounted", mp.display()));
    }
    if wrong.is_empty() {
        Ok(first.to_owned())
    } else {
        Err(format!(
            "{what}: {}\n  stderr was:\n{}",
            wrong.join("; "),
            err.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

#[test]
fn mount_errors_are_one_line_and_a_nonzero_exit() {
    skip_without_fuse!();
    let dir = TestDir::new("errors");
    let mnt = dir.mkdir("mnt");
    let cache = dir.mkdir("cache");
    let _guard = DaemonGuard {
        mountpoint: mnt.canonicalize().unwrap(),
    };
    let (mnt_s, cache_s) = (s(&mnt), s(&cache));
    // Every case is checked; the failures are reported together.
    let mut failures: Vec<String> = Vec::new();
    let mut check = |what: &str, args: &[&str], unmounted: Option<&Path>, any_of: &[&str]| {
        let out = rfmount(args);
        match check_start_error(what, &out, unmounted, any_of) {
            Ok(line) => eprintln!("{what}: {line}"),
            Err(e) => failures.push(e),
        }
    };

    // Server unreachable: a port with nothing listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nobody = format!("127.0.0.1:{port}");
    let base = [nobody.as_str(), mnt_s, "--cache-dir", cache_s];
    check("unreachable", &base, Some(&mnt), &["cannot reach"]);
    check(
        "unreachable, -f",
        &[&base[..], &["-f"]].concat(),
        Some(&mnt),
        &["cannot reach"],
    );

    let root = TestDir::new("root");
    root.write("hello.txt", "hi\n");
    let token = dir.write("token", "the right secret\n");
    let wrong = dir.write("wrong-token", "not the secret\n");
    let srv = Server::start_os(
        root.path(),
        vec!["--token-file".into(), token.clone().into_os_string()],
    );
    let addr = srv.addr();

    let missing = dir.join("no/such/dir");
    check(
        "mount point missing",
        &[&addr, s(&missing), "--cache-dir", cache_s],
        Some(&missing),
        &["does not exist", "no such file or directory"],
    );
    let file = dir.write("plain-file", "x");
    check(
        "mount point is a file",
        &[&addr, s(&file), "--cache-dir", cache_s],
        Some(&file),
        &["not a directory"],
    );
    let wrong_token = [
        addr.as_str(),
        mnt_s,
        "--cache-dir",
        cache_s,
        "--token-file",
        s(&wrong),
    ];
    check("wrong token", &wrong_token, Some(&mnt), &["authentication"]);
    check(
        "wrong token, -f",
        &[&wrong_token[..], &["-f"]].concat(),
        Some(&mnt),
        &["authentication"],
    );
    let no_token = [addr.as_str(), mnt_s, "--cache-dir", cache_s];
    check(
        "no token",
        &no_token,
        Some(&mnt),
        &["authentication", "token"],
    );
    check(
        "no token, -f",
        &[&no_token[..], &["-f"]].concat(),
        Some(&mnt),
        &["authentication", "token"],
    );

    // The right token mounts (the guard cleans up if anything below fails).
    let m = Mount::start(&srv, &["--token-file", s(&token)]);
    assert_eq!(m.cmd("cat").arg("hello.txt").stdout(), "hi\n");

    // Already mounted: a second rfmount on the same mount point.
    let mp = m.path().to_path_buf();
    let again = [
        addr.as_str(),
        s(&mp),
        "--cache-dir",
        cache_s,
        "--token-file",
        s(&token),
    ];
    check("already mounted", &again, None, &["already"]);
    check(
        "already mounted, -f",
        &[&again[..], &["-f"]].concat(),
        None,
        &["already"],
    );
    assert!(is_mounted(&mp), "the first mount is gone");
    assert_eq!(m.cmd("cat").arg("hello.txt").stdout(), "hi\n");

    assert!(
        failures.is_empty(),
        "{} start error(s) not reported as one line and a non-zero exit:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn without_f_it_returns_once_mounted_and_fusermount_ends_it() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("hello.txt", "hi\n");
    let srv = Server::start(root.path(), &[]);
    let dir = TestDir::new("daemon");
    let mnt = dir.mkdir("mnt").canonicalize().unwrap();
    let cache = dir.mkdir("cache");
    let guard = DaemonGuard {
        mountpoint: mnt.clone(),
    };

    let started = Instant::now();
    let out = TestCommand::new(rfmount_bin())
        .arg(srv.addr())
        .arg(&mnt)
        .arg("--cache-dir")
        .arg(&cache)
        .with_server(&srv)
        .timeout(Duration::from_secs(60))
        .ok();
    // Up the moment the command returned.
    assert!(
        is_mounted(&mnt),
        "rfmount returned (after {:?}) but {} is not mounted yet",
        started.elapsed(),
        mnt.display()
    );
    assert_eq!(text(&out.stdout), "", "rfmount printed on stdout");
    assert_eq!(text(&out.stderr), "", "rfmount printed on stderr");
    assert_eq!(fs::read(mnt.join("hello.txt")).unwrap(), b"hi\n");
    TestCommand::sh("echo from-daemon > written.txt")
        .current_dir(&mnt)
        .with_server(&srv)
        .ok();
    assert_eq!(
        fs::read(root.join("written.txt")).unwrap(),
        b"from-daemon\n"
    );

    let pids = guard.pids();
    assert_eq!(
        pids.len(),
        1,
        "expected one background rfmount for {}, found {pids:?}",
        mnt.display()
    );
    let pid = pids[0];

    TestCommand::new("fusermount3").arg("-u").arg(&mnt).ok();
    assert!(!is_mounted(&mnt), "still mounted after fusermount3 -u");
    let gone = wait_for(Duration::from_secs(20), || {
        (!process_alive(pid)).then_some(())
    });
    assert!(
        gone.is_some(),
        "the background rfmount {pid} is still running 20 s after fusermount3 -u"
    );
    assert!(!mnt.join("hello.txt").exists());
}

#[test]
fn sigterm_and_sigint_unmount_cleanly_and_exit_0() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let mut m = Mount::start(&srv, &[]);
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let file = format!("before-{name}.txt");
        sh(&m, &srv, &format!("echo {name} > {file}")).ok();
        assert_eq!(
            fs::read(root.join(&file)).unwrap(),
            format!("{name}\n").as_bytes()
        );
        let pid = m.pid();
        signal(pid, sig);
        let st = m.wait_exited(Duration::from_secs(20)).unwrap_or_else(|| {
            panic!(
                "rfmount did not exit within 20 s of {name}\n---- rfmount log ----\n{}",
                tail(&m.log(), 30)
            )
        });
        assert!(
            st.success(),
            "rfmount should exit 0 on {name}, got {st}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
        assert!(
            !is_mounted(m.path()),
            "{} still mounted after rfmount exited on {name}",
            m.path().display()
        );
        assert!(!process_alive(pid));
        assert_eq!(
            fs::read_dir(m.path()).unwrap().count(),
            0,
            "the bare mount point should be empty"
        );
        m.remount(&srv.addr());
    }
    // Still a working mount after all that.
    assert_eq!(
        tool(&m, &srv, "cat").arg("before-SIGINT.txt").stdout(),
        "SIGINT\n"
    );
}
