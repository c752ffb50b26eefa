//! `rf` against a real `rfserve`: transfers of every size, listings, many
//! clients at once, a client killed mid-upload, the interactive shell, and
//! the errors a user sees (missing files, refused connections, read-only
//! exports, tokens, a closed stdout).

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::*;

const MIB: u64 = 1 << 20;

/// A path as an argument (temporary paths are always UTF-8).
fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// Asserts that `rf` failed with exit code 1 and exactly one stderr line
/// `rf: error: ...` containing every word of `needles` (case-insensitive);
/// returns that line.
#[track_caller]
fn one_line_error(out: &Output, needles: &[&str]) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1, got {}; stderr: {err}",
        out.status
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{err}");
    let line = lines[0];
    assert!(line.starts_with("rf: error: "), "{line:?}");
    let lower = line.to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "error line {line:?} should mention {n:?}"
        );
    }
    line.to_owned()
}

/// An `ls -l`-style line as `rf ls` prints it, for a file owned by this
/// test's user (who also runs rfserve and made the file).
fn ls_line(kind_perms: &str, size: u64, time: &str, name: &str) -> String {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    format!("{kind_perms} {uid:>5} {gid:>5} {size:>12} {time} {name}")
}

fn set_mtime(path: &Path, secs: u64) {
    let f = fs::File::open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn mtime_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Puts `size` random bytes as NAME, checks the server's copy, gets it back
/// and checks the download.
fn round_trip(srv: &Server, local: &TestDir, name: &str, size: u64, seed: u64) {
    let src = local.write_random(format!("up/{name}"), size, seed);
    local.chmod(format!("up/{name}"), 0o640);
    srv.rf("put", [s(&src), name]).ok();
    let on_server = srv.root().join(name);
    assert_same_file(&src, &on_server);
    let mode = fs::metadata(&on_server).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640, "put should keep the local file's mode");

    let dl = local.mkdir(format!("down-{name}"));
    let target = dl.join("copy");
    srv.rf("get", [name, s(&target)]).ok();
    assert_same_file(&src, &target);
    assert_eq!(
        mtime_secs(&target),
        mtime_secs(&on_server),
        "get should give the download the server file's mtime"
    );
    assert_eq!(
        names_with_prefix(&dl, ".rf-get-"),
        Vec::<String>::new(),
        "temporary download files left behind"
    );
}

#[test]
fn put_then_get_small_files_byte_identical() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    round_trip(&srv, &local, "zero.bin", 0, 1);
    round_trip(&srv, &local, "one.bin", 1, 2);
    round_trip(&srv, &local, "mib-plus-one.bin", MIB + 1, 3);

    // Without LOCAL the file lands under its own name in the current
    // directory; with a directory as LOCAL, inside it.
    let cwd = local.mkdir("cwd");
    srv.rf("get", ["mib-plus-one.bin"]).current_dir(&cwd).ok();
    assert_same_file(
        &root.join("mib-plus-one.bin"),
        &cwd.join("mib-plus-one.bin"),
    );
    let into = local.mkdir("into");
    srv.rf("get", ["one.bin", s(&into)]).ok();
    assert_same_file(&root.join("one.bin"), &into.join("one.bin"));

    // A directory REMOTE (trailing slash) means "inside it".
    fs::create_dir(root.join("dir")).unwrap();
    let src = local.join("up/one.bin");
    srv.rf("put", [s(&src), "dir/"]).ok();
    assert_same_file(&src, &root.join("dir/one.bin"));

    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new()
    );
    // rfserve's stdout is the one `listening` line, nothing else.
    assert_eq!(srv.extra_stdout(), "");
}

#[test]
fn put_then_get_100_mib_byte_identical() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    round_trip(&srv, &local, "big.bin", 100 * MIB, 100);
    // Independent check with the real tool on top of the byte comparison.
    assert_eq!(
        sha256(&local.join("up/big.bin")),
        sha256(&local.join("down-big.bin/copy"))
    );
    // The server logs the transfer at debug level with its size.
    let want = format!("op=GET path=/big.bin result=data bytes={}", 100 * MIB);
    assert_eq!(
        srv.wait_count(&want, 1, Duration::from_secs(5)),
        1,
        "expected one log line with {want:?}; log:\n{}",
        tail(&srv.log(), 30)
    );
}

#[test]
fn ls_shows_names_sizes_kinds_modes_and_times() {
    let root = TestDir::new("root");
    // 2026-11-23 13:30:00, 2001-02-03 04:05:06, 1999-12-31 23:59:59,
    // 2024-02-29 12:00:00, 2020-01-01 00:00:00 (UTC).
    let (t1, t2, t3, t4, t5) = (
        1_795_440_600,
        981_173_106,
        946_684_799,
        1_709_208_000,
        1_577_836_800,
    );
    root.write("a.txt", b"hello");
    root.chmod("a.txt", 0o644);
    root.write_random("B.txt", 1234, 7);
    root.chmod("B.txt", 0o600);
    root.write("exec.sh", b"#!/bin/sh\necho hi\n");
    root.chmod("exec.sh", 0o755);
    root.write(".hidden", b"");
    root.chmod(".hidden", 0o644);
    root.write("with space", b"0123456789");
    root.chmod("with space", 0o640);
    root.write_random("sub/inner.bin", 3000, 8);
    root.chmod("sub/inner.bin", 0o444);
    root.chmod("sub", 0o750);
    root.mkdir("empty");
    root.chmod("empty", 0o700);
    for (name, t) in [
        ("a.txt", t1),
        ("B.txt", t2),
        ("exec.sh", t3),
        (".hidden", t4),
        ("with space", t5),
        ("sub/inner.bin", t2),
        ("sub", t1),
        ("empty", t3),
    ] {
        set_mtime(&root.join(name), t);
    }
    let dir_size = |p: &str| fs::metadata(root.join(p)).unwrap().len();

    let srv = Server::start(root.path(), &[]);
    let expected = [
        ls_line("-rw-r--r--", 0, "2024-02-29 12:00:00", ".hidden"),
        ls_line("-rw-------", 1234, "2001-02-03 04:05:06", "B.txt"),
        ls_line("-rw-r--r--", 5, "2026-11-23 13:30:00", "a.txt"),
        ls_line(
            "drwx------",
            dir_size("empty"),
            "1999-12-31 23:59:59",
            "empty",
        ),
        ls_line("-rwxr-xr-x", 18, "1999-12-31 23:59:59", "exec.sh"),
        ls_line("drwxr-x---", dir_size("sub"), "2026-11-23 13:30:00", "sub"),
        ls_line("-rw-r-----", 10, "2020-01-01 00:00:00", "with space"),
    ]
    .map(|l| l + "\n")
    .concat();
    assert_eq!(srv.rf("ls", [] as [&str; 0]).stdout(), expected);
    assert_eq!(srv.rf("ls", ["/"]).stdout(), expected);

    let sub = ls_line("-r--r--r--", 3000, "2001-02-03 04:05:06", "inner.bin") + "\n";
    assert_eq!(srv.rf("ls", ["sub"]).stdout(), sub);
    assert_eq!(srv.rf("ls", ["/sub/"]).stdout(), sub);
    assert_eq!(srv.rf("ls", ["empty"]).stdout(), "");
    // A file lists as itself.
    assert_eq!(
        srv.rf("ls", ["a.txt"]).stdout(),
        ls_line("-rw-r--r--", 5, "2026-11-23 13:30:00", "a.txt") + "\n"
    );
}

#[test]
fn ls_of_a_large_directory_lists_every_entry() {
    let root = TestDir::new("root");
    // Long names make the listing several times the 256 KiB part size.
    let names: Vec<String> = (0..3000)
        .map(|i| format!("{i:05}-{}", "n".repeat(200)))
        .collect();
    for (i, n) in names.iter().enumerate() {
        root.write(format!("big/{n}"), vec![b'x'; i % 7]);
    }
    let srv = Server::start(root.path(), &[]);
    let listing = srv.rf("ls", ["big"]).stdout();
    let got: Vec<&str> = listing.lines().collect();
    assert_eq!(got.len(), names.len());
    for (i, (line, name)) in got.iter().zip(&names).enumerate() {
        assert!(
            line.starts_with("-rw") && line.ends_with(&format!(" {name}")),
            "line {i}: {line}"
        );
        assert!(line.contains(&format!(" {} ", i % 7)), "line {i}: {line}");
    }
}

#[test]
fn ls_of_missing_dir_is_one_line_error() {
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let out = srv.rf("ls", ["no-such-dir"]).fails();
    let line = one_line_error(&out, &["no such file"]);
    assert!(line.contains("no-such-dir"), "{line}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let out = srv.rf("ls", ["no/such/deeper"]).fails();
    one_line_error(&out, &["no such file"]);
}

#[test]
fn twenty_concurrent_clients() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let mut rng = Rng::from_name("twenty_concurrent_clients");
    let sizes: Vec<u64> = (0..20).map(|_| rng.range(0, 3 * MIB)).collect();
    std::thread::scope(|scope| {
        for (i, &size) in sizes.iter().enumerate() {
            let (srv, local) = (&srv, &local);
            scope.spawn(move || {
                let name = format!("client-{i:02}.bin");
                let src = local.write_random(format!("c{i}/{name}"), size, 1000 + i as u64);
                srv.rf("put", [s(&src), &name]).ok();
                let copy = local.join(format!("c{i}/copy"));
                srv.rf("get", [name.as_str(), s(&copy)]).ok();
                assert_same_file(&src, &copy);
                let listing = srv.rf("ls", [] as [&str; 0]).stdout();
                let line = listing
                    .lines()
                    .find(|l| l.ends_with(&format!(" {name}")))
                    .unwrap_or_else(|| panic!("{name} missing from listing:\n{listing}"));
                assert!(
                    line.starts_with('-') && line.contains(&format!(" {size} ")),
                    "{line}"
                );
            });
        }
    });
    let listing = srv.rf("ls", [] as [&str; 0]).stdout();
    assert_eq!(listing.lines().count(), 20, "{listing}");
    for (i, &size) in sizes.iter().enumerate() {
        let p = root.join(format!("client-{i:02}.bin"));
        assert_eq!(fs::metadata(&p).unwrap().len(), size);
        assert_same_file(&local.join(format!("c{i}/client-{i:02}.bin")), &p);
    }
}

#[test]
fn client_killed_mid_put_leaves_old_file_and_no_temp() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let old = root.write_random("big.bin", MIB, 1);
    let old_copy = local.write_random("old-copy", MIB, 1);
    let new = local.write_random("new.bin", 200 * MIB, 2);
    let srv = Server::start(root.path(), &[]);

    let mut put = srv
        .rf("put", [s(&new), "big.bin"])
        .spawn_logged(local.path(), "rf-put");
    let seen = wait_for(Duration::from_secs(20), || {
        if server_has_open_upload(srv.pid(), root.path()) {
            return Some(true);
        }
        put.try_wait().map(|_| false)
    });
    match seen {
        Some(true) => {}
        Some(false) => panic!("{}", put.report("ended before rfserve had the upload open")),
        None => panic!(
            "{}",
            put.report("ran 20 s without rfserve having the upload open")
        ),
    }
    let st = put.kill();
    assert!(
        st.code().is_none(),
        "rf put finished ({st}) before it could be killed; the test needs a slower upload"
    );

    assert_same_file(&old_copy, &old);
    let leftover = wait_for(Duration::from_secs(10), || {
        (find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX).is_empty()
            && !server_has_open_upload(srv.pid(), root.path()))
        .then_some(())
    });
    assert!(
        leftover.is_some(),
        "temporary upload files remain 10 s after the client died: {:?}",
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX)
    );
    assert_same_file(&old_copy, &old);
    // The server is unharmed and still lists the old file, and only it.
    let listing = srv.rf("ls", [] as [&str; 0]).stdout();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 1, "{listing}");
    assert!(
        lines[0].starts_with('-')
            && lines[0].contains(&format!(" {MIB} "))
            && lines[0].ends_with(" big.bin"),
        "{listing}"
    );
}

#[test]
fn shell_through_a_pipe() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("pre.txt", b"already there\n");
    let up = local.mkdir("up");
    let x = local.write_random("up/x", 300_000, 5);
    let down = local.mkdir("down");
    let srv = Server::start(root.path(), &[]);

    let script = format!("ls\nput x\nls\nget x {}\nstat x\nclose\nls\n", s(&down));
    let out = srv
        .rf("shell", [] as [&str; 0])
        .current_dir(&up)
        .stdin(script)
        .ok();
    let stdout = text(&out.stdout);
    // One prompt per command up to and including `close`; nothing after it.
    assert_eq!(stdout.matches(">>> ").count(), 6, "{stdout}");
    assert!(stdout.starts_with(">>> "), "{stdout}");
    assert!(stdout.contains(" pre.txt\n"), "{stdout}");
    assert_eq!(stdout.matches(" pre.txt\n").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches(" 300000 ").count(),
        1,
        "listing after put: {stdout}"
    );
    assert!(stdout.contains("uploaded /x\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("saved {}", s(&down.join("x")))),
        "{stdout}"
    );
    assert!(stdout.contains("path: /x\n"), "{stdout}");
    assert!(stdout.contains("kind: file"), "{stdout}");
    assert!(stdout.contains("size: 300000"), "{stdout}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    assert_same_file(&x, &root.join("x"));
    assert_same_file(&x, &down.join("x"));

    // `get NAME` saves into the shell's own working directory.
    let other = local.mkdir("other");
    srv.rf("shell", [] as [&str; 0])
        .current_dir(&other)
        .stdin("get x\nquit\n")
        .ok();
    assert_same_file(&x, &other.join("x"));

    // End of input ends the session as `close` does.
    let out = srv.rf("shell", [] as [&str; 0]).stdin("help\n").ok();
    assert!(text(&out.stdout).contains("close"), "{}", text(&out.stdout));
}

#[test]
fn shell_failures_set_exit_status_and_continue() {
    let root = TestDir::new("root");
    root.write("pre.txt", b"x");
    let srv = Server::start(root.path(), &[]);
    let out = srv
        .rf("shell", [] as [&str; 0])
        .stdin("bogus\nls\nclose\n")
        .code(1);
    assert!(
        text(&out.stderr).contains("unknown command"),
        "{}",
        text(&out.stderr)
    );
    // The command after the bad one still ran.
    assert!(
        text(&out.stdout).contains(" pre.txt\n"),
        "{}",
        text(&out.stdout)
    );

    let cwd = TestDir::new("cwd");
    let out = srv
        .rf("shell", [] as [&str; 0])
        .current_dir(cwd.path())
        .stdin("get missing.txt\nclose\n")
        .code(1);
    assert!(
        text(&out.stderr).to_lowercase().contains("no such file"),
        "{}",
        text(&out.stderr)
    );
    assert!(!cwd.join("missing.txt").exists());
    assert_eq!(names_with_prefix(cwd.path(), ""), Vec::<String>::new());

    let out = srv
        .rf("shell", [] as [&str; 0])
        .stdin("put\nclose\n")
        .code(1);
    assert!(
        text(&out.stderr).contains("wrong arguments"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn get_missing_file_is_one_line_error() {
    let root = TestDir::new("root");
    let cwd = TestDir::new("cwd");
    let srv = Server::start(root.path(), &[]);
    let out = srv.rf("get", ["nope.txt"]).current_dir(cwd.path()).fails();
    let line = one_line_error(&out, &["no such file"]);
    assert!(line.contains("nope.txt"), "{line}");
    // Nothing is left behind locally: no empty file, no temporary file.
    assert_eq!(names_with_prefix(cwd.path(), ""), Vec::<String>::new());

    let out = srv.rf("get", ["nope.txt", "-"]).fails();
    one_line_error(&out, &["no such file"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_paths_and_local_errors_are_reported() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    one_line_error(&srv.rf("get", ["../etc/passwd"]).fails(), &[".."]);
    one_line_error(&srv.rf("ls", ["a/../../x"]).fails(), &[".."]);
    one_line_error(
        &srv.rf("put", [s(&local.join("absent")), "x"]).fails(),
        &["absent"],
    );
    assert!(!root.join("x").exists());
    let src = local.write("y", b"y");
    one_line_error(
        &srv.rf("put", [s(&src), "no/such/dir/y"]).fails(),
        &["no such file"],
    );
    assert!(!root.join("no").exists());
    one_line_error(
        &srv.rf("put", [s(local.path()), "x"]).fails(),
        &["not a regular file"],
    );
}

#[test]
fn mkdir_mv_stat_rm_rmdir() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    srv.rf("mkdir", ["d1"]).ok();
    assert!(root.join("d1").is_dir());
    one_line_error(&srv.rf("mkdir", ["d1"]).fails(), &["exists"]);
    srv.rf("mkdir", ["-p", "a/b/c"]).ok();
    assert!(root.join("a/b/c").is_dir());
    srv.rf("mkdir", ["-p", "a/b/c"]).ok();

    let f = local.write("f.txt", b"some content\n");
    srv.rf("put", [s(&f)]).ok();
    assert_eq!(fs::read(root.join("f.txt")).unwrap(), b"some content\n");
    srv.rf("mv", ["f.txt", "a/b/g.txt"]).ok();
    assert!(!root.join("f.txt").exists());
    assert_eq!(fs::read(root.join("a/b/g.txt")).unwrap(), b"some content\n");

    let stat = srv.rf("stat", ["a/b/g.txt"]).stdout();
    // Remote paths are shown from the export root.
    assert!(stat.contains("path: /a/b/g.txt"), "{stat}");
    assert!(stat.contains("kind: file"), "{stat}");
    assert!(stat.contains("size: 13"), "{stat}");
    let stat = srv.rf("stat", ["a/b"]).stdout();
    assert!(stat.contains("kind: directory"), "{stat}");
    one_line_error(&srv.rf("stat", ["a/zzz"]).fails(), &["no such file"]);

    one_line_error(&srv.rf("rm", ["a"]).fails(), &["directory"]);
    assert!(root.join("a").is_dir());
    one_line_error(&srv.rf("rmdir", ["a"]).fails(), &["not empty"]);
    srv.rf("rm", ["a/b/g.txt"]).ok();
    assert!(!root.join("a/b/g.txt").exists());
    one_line_error(&srv.rf("rm", ["a/b/g.txt"]).fails(), &["no such file"]);
    srv.rf("rmdir", ["a/b/c"]).ok();
    assert!(!root.join("a/b/c").exists());
    assert!(root.join("a/b").is_dir());
}

#[test]
fn connection_refused_is_one_line_error() {
    // Bind and release a port: nothing listens there afterwards.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = TestCommand::rf()
        .args(["ls", addr.as_str()])
        .timeout(Duration::from_secs(30))
        .fails();
    let line = one_line_error(&out, &["refused"]);
    assert!(line.contains(&addr), "{line}");
}

#[test]
fn read_only_export_refuses_changes() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("keep.txt", b"keep me\n");
    root.mkdir("dir");
    let srv = Server::start(root.path(), &["--read-only"]);
    let src = local.write_random("new.bin", 100_000, 3);

    one_line_error(&srv.rf("put", [s(&src)]).fails(), &["read-only"]);
    assert!(!root.join("new.bin").exists());
    one_line_error(
        &srv.rf("put", [s(&src), "keep.txt"]).fails(),
        &["read-only"],
    );
    assert_eq!(fs::read(root.join("keep.txt")).unwrap(), b"keep me\n");
    one_line_error(&srv.rf("rm", ["keep.txt"]).fails(), &["read-only"]);
    one_line_error(&srv.rf("mkdir", ["newdir"]).fails(), &["read-only"]);
    one_line_error(
        &srv.rf("mv", ["keep.txt", "moved.txt"]).fails(),
        &["read-only"],
    );
    one_line_error(&srv.rf("rmdir", ["dir"]).fails(), &["read-only"]);
    assert!(root.join("keep.txt").exists() && root.join("dir").is_dir());
    assert!(!root.join("newdir").exists() && !root.join("moved.txt").exists());
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new()
    );

    // Reading still works.
    assert_eq!(srv.rf("get", ["keep.txt", "-"]).stdout(), "keep me\n");
    assert!(
        srv.rf("ls", [] as [&str; 0])
            .stdout()
            .contains(" keep.txt\n")
    );
}

#[test]
fn token_authentication() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("a.txt", b"secret data\n");
    let secret = "correct-horse-battery-staple";
    let token = local.write("token", format!("{secret}\n"));
    let wrong = local.write("wrong", "not-the-token\n");
    // Surrounding whitespace does not matter.
    let same = local.write("same", format!("  {secret}  "));
    let srv = Server::start_os(
        root.path(),
        vec!["--token-file".into(), token.clone().into_os_string()],
    );

    let out = srv.rf("ls", [] as [&str; 0]).fails();
    one_line_error(&out, &["requires a token"]);
    assert!(out.stdout.is_empty());
    let out = srv.rf("ls", ["--token-file", s(&wrong)]).fails();
    let line = one_line_error(&out, &[]);
    assert!(
        line.to_lowercase().contains("auth") || line.to_lowercase().contains("token"),
        "{line}"
    );
    assert!(out.stdout.is_empty());
    let out = srv
        .rf("get", ["a.txt", "-", "--token-file", s(&wrong)])
        .fails();
    assert!(out.stdout.is_empty(), "data leaked without the right token");

    let listing = srv.rf("ls", ["--token-file", s(&token)]).stdout();
    assert!(listing.contains(" a.txt\n"), "{listing}");
    let listing = srv
        .rf("ls", [] as [&str; 0])
        .arg("--token-file")
        .arg(&same)
        .stdout();
    assert!(listing.contains(" a.txt\n"), "{listing}");
    // The token can also come from the environment.
    let got = srv
        .rf("get", ["a.txt", "-"])
        .env("RF_TOKEN_FILE", &token)
        .stdout();
    assert_eq!(got, "secret data\n");
    let src = local.write("up.txt", b"uploaded with a token\n");
    srv.rf("put", [s(&src), "--token-file", s(&token)]).ok();
    assert_eq!(
        fs::read(root.join("up.txt")).unwrap(),
        b"uploaded with a token\n"
    );

    assert!(
        !srv.log().contains(secret),
        "the server logged the secret token"
    );
}

#[test]
fn get_to_stdout_and_into_a_closed_pipe() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let f = root.write_random("f.bin", 8 * MIB, 11);

    // Whole file to stdout.
    let out = srv.rf("get", ["f.bin", "-"]).ok();
    assert!(
        out.stdout == fs::read(&f).unwrap(),
        "stdout differs from the file"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(names_with_prefix(local.path(), ""), Vec::<String>::new());

    // `rf get ... - | head -c 10`: head exits early, rf sees a closed pipe
    // and must still exit 0.
    let mut rf = Command::new(rf_bin())
        .args(["get", &srv.addr(), "f.bin", "-"])
        .env_remove("RUST_LOG")
        .env_remove("RF_TOKEN_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rf_out = rf.stdout.take().unwrap();
    let mut rf_err = rf.stderr.take().unwrap();
    let mut head = Command::new("head")
        .args(["-c", "10"])
        .stdin(rf_out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head_bytes = Vec::new();
    head.stdout
        .take()
        .unwrap()
        .read_to_end(&mut head_bytes)
        .unwrap();
    assert!(head.wait().unwrap().success());
    let st = wait_for(Duration::from_secs(30), || rf.try_wait().unwrap());
    let st = match st {
        Some(st) => st,
        None => {
            let _ = rf.kill();
            let _ = rf.wait();
            panic!("rf get - | head -c 10: rf did not exit within 30 s after head closed the pipe");
        }
    };
    let mut err = String::new();
    rf_err.read_to_string(&mut err).unwrap();
    assert!(
        st.success(),
        "rf get - | head -c 10: rf should exit 0, got {st}; stderr: {err}"
    );
    assert!(err.is_empty(), "unexpected stderr: {err}");
    assert_eq!(head_bytes, fs::read(&f).unwrap()[..10]);
}

/// `rf get HOST F SPECIAL` writes through a FIFO or device (think
/// `/dev/null`, a named pipe): it must never rename a file over it.
#[test]
fn get_into_a_fifo_or_device_writes_through_it() {
    use std::os::unix::fs::FileTypeExt;
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let f = root.write_random("f.bin", MIB, 12);
    let srv = Server::start(root.path(), &[]);

    let fifo = local.join("fifo");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: plain syscall on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let got = fs::read(&reader_path);
        let _ = tx.send(got);
    });
    srv.rf("get", ["f.bin", s(&fifo)])
        .timeout(Duration::from_secs(30))
        .ok();
    let got = rx.recv_timeout(Duration::from_secs(10));
    let kind = fs::symlink_metadata(&fifo).map(|m| m.file_type());
    assert!(
        kind.as_ref().is_ok_and(|t| t.is_fifo()),
        "rf get replaced the FIFO with {kind:?}"
    );
    let got = got
        .expect("nothing was written into the FIFO")
        .expect("reading the FIFO");
    assert!(got == fs::read(&f).unwrap(), "FIFO content differs");

    // A character device like /dev/null (a private node: never the real one).
    let null = local.join("null");
    let c = std::ffi::CString::new(s(&null)).unwrap();
    // SAFETY: plain syscall on a NUL-terminated path.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if made != 0 {
        eprintln!("note: cannot mknod here (not root?), skipping the device part");
        return;
    }
    srv.rf("get", ["f.bin", s(&null)]).ok();
    let kind = fs::symlink_metadata(&null).unwrap().file_type();
    assert!(
        kind.is_char_device(),
        "rf get replaced a device node with {kind:?}"
    );
    assert_eq!(
        names_with_prefix(local.path(), ".rf-get-"),
        Vec::<String>::new()
    );
}

#[test]
fn put_replaces_existing_file_atomically_visible() {
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("f.txt", b"old content\n");
    let srv = Server::start(root.path(), &[]);
    let src = local.write_random("f.txt", 2 * MIB + 17, 4);
    let before = SystemTime::now() - Duration::from_secs(2);
    srv.rf("put", [s(&src)]).ok();
    assert_same_file(&src, &root.join("f.txt"));
    let mtime = fs::metadata(root.join("f.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(
        mtime >= before,
        "put should set the mtime to now by default"
    );
    assert_eq!(
        names_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<String>::new()
    );
}
