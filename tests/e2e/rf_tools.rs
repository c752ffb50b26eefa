//! `rf ping`, `rf get` and existing files, `rf ls` and awkward names, the
//! shared server syntax, and the wording of errors (each said once, on one
//! line) and of `--help`.

use std::fs;
use std::net::TcpListener;
use std::process::Output;

use crate::mount_common::s;
use crate::util::*;

/// The single stderr line of a failed command with exit status `code`.
#[track_caller]
fn only_line(out: &Output, code: i32) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {}; {err}",
        out.status
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line:\n{err}");
    lines[0].to_owned()
}

#[test]
fn ping_reports_the_server_and_fails_without_one() {
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &["--read-only"]);
    let out = srv.rf("ping", ["-c", "3"]).ok();
    let t = text(&out.stdout);
    assert!(t.contains("protocol:  version "), "{t}");
    assert!(t.contains("access:    read-only"), "{t}");
    assert!(t.contains("auth:      no token required"), "{t}");
    assert_eq!(t.matches("\nping ").count(), 3, "{t}");
    assert!(t.contains("rtt min/avg/max = "), "{t}");
    let export = t
        .lines()
        .find_map(|l| l.strip_prefix("export:    "))
        .unwrap_or_else(|| panic!("no export line: {t}"));
    assert!(!export.trim().is_empty());

    // With a token.
    let dir = TestDir::new("tok");
    let token = dir.write("token", "secret\n");
    let wrong = dir.write("wrong", "other\n");
    let tsrv = Server::start(TestDir::new("troot").path(), &["--token-file", s(&token)]);
    let t = text(
        &tsrv
            .rf("ping", ["-c", "1", "--token-file", s(&token)])
            .ok()
            .stdout,
    );
    assert!(t.contains("auth:      token required, accepted"), "{t}");
    let line = only_line(&tsrv.rf("ping", ["--token-file", s(&wrong)]).run(), 1);
    assert!(line.contains("refused the token"), "{line}");
    let line = only_line(&tsrv.rf("ping", [] as [&str; 0]).run(), 1);
    assert!(line.contains("requires a token"), "{line}");

    // Nothing listening: exit 1, one line.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = TestCommand::rf()
        .args(["ping", &format!("127.0.0.1:{port}")])
        .run();
    let line = only_line(&out, 1);
    assert!(line.starts_with("rf: error: cannot connect"), "{line}");
    assert!(out.stdout.is_empty());
}

#[test]
fn get_keeps_an_existing_local_file_unless_forced() {
    let root = TestDir::new("root");
    root.write("f.txt", "remote\n");
    let srv = Server::start(root.path(), &[]);
    let local = TestDir::new("local");
    let target = local.write("f.txt", "local, keep me\n");
    let line = only_line(&srv.rf("get", ["f.txt", s(&target)]).run(), 1);
    assert!(line.contains("exists") && line.contains("-f"), "{line}");
    assert_eq!(fs::read(&target).unwrap(), b"local, keep me\n");
    // Default target in the current directory too.
    srv.rf("get", ["f.txt"]).current_dir(local.path()).fails();
    assert_eq!(fs::read(&target).unwrap(), b"local, keep me\n");
    srv.rf("get", ["-f", "f.txt", s(&target)]).ok();
    assert_eq!(fs::read(&target).unwrap(), b"remote\n");
}

#[test]
fn ls_escapes_control_characters_like_ls_b() {
    let root = TestDir::new("root");
    root.write("two\nlines", "x");
    root.write("tab\there", "x");
    root.write("esc\x1b[2J", "x");
    root.write("back\\slash", "x");
    root.write("plain name", "x");
    let srv = Server::start(root.path(), &[]);
    let out = srv.rf("ls", [] as [&str; 0]).ok();
    let t = text(&out.stdout);
    assert_eq!(t.lines().count(), 5, "one line per entry:\n{t}");
    for name in [
        "two\\nlines",
        "tab\\there",
        "esc\\033[2J",
        "back\\\\slash",
        "plain name",
    ] {
        assert!(
            t.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name:?} missing in:\n{t}"
        );
    }
    assert!(!t.contains('\x1b'), "raw escape printed: {t:?}");
}

#[test]
fn bad_server_syntax_is_a_usage_error() {
    for bad in ["127.0.0.1:port", "host:9500:sub", "[::1", ""] {
        let out = TestCommand::rf().args(["ls", bad]).run();
        let line = only_line(&out, 2);
        assert!(line.starts_with("rf: error: bad server"), "{bad:?}: {line}");
    }
}

#[test]
fn errors_are_said_once_without_internal_names() {
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let line = only_line(&srv.rf("get", ["/nope.txt", "-"]).run(), 1);
    assert_eq!(line, "rf: error: get /nope.txt: no such file or directory");
    let line = only_line(&srv.rf("ls", ["--token-file", "/nonexistent/x"]).run(), 1);
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    assert!(line.contains("token file /nonexistent/x"), "{line}");

    // rfmount says it once as well.
    let dir = TestDir::new("mnt");
    let out = TestCommand::new(rfmount_bin())
        .arg(srv.addr())
        .arg(dir.mkdir("mnt"))
        .args(["-f", "--token-file", "/nonexistent/x", "--cache-dir"])
        .arg(dir.mkdir("cache"))
        .run();
    let line = only_line(&out, 1);
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
}

#[test]
fn help_texts_are_written_for_users() {
    let serve = text(&TestCommand::rfserve().arg("--help").ok().stdout);
    let first = serve.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "Export a directory over TCP to rfmount and rf clients"
    );
    for word in ["Store", "trait", "session"] {
        assert!(!first.contains(word), "{first}");
    }
    let mount = text(&TestCommand::new(rfmount_bin()).arg("--help").ok().stdout);
    for needle in [
        "HOST[:PORT][:/SUBDIR]",
        "fuse.rfmount",
        "_netdev",
        "nonempty",
        "x-*",
        "log",
    ] {
        assert!(mount.contains(needle), "rfmount --help lacks {needle}");
    }
    assert!(!mount.contains("empty directory to mount on"), "{mount}");
    let rf = text(&TestCommand::rf().arg("--help").ok().stdout);
    assert!(rf.contains("ping"), "{rf}");
}

#[test]
fn shell_cd_pwd_lcd_lls_mv_and_quoted_names_through_a_pipe() {
    let root = TestDir::new("root");
    root.write("docs/my report.txt", "the report\n");
    let srv = Server::start(root.path(), &[]);
    let local = TestDir::new("local");
    let down = local.mkdir("down dir");
    local.write("up file.txt", "up\n");
    let script = format!(
        "cd docs\npwd\nls\nlcd {q}\nlls ..\nget 'my report.txt'\nmv \"my report.txt\" renamed\\ report.txt\n\
         lcd ..\nput 'up file.txt'\ncd ..\npwd\nls docs\nclose\n",
        q = shlex_quote(s(&down))
    );
    let out = srv
        .rf("shell", [] as [&str; 0])
        .current_dir(local.path())
        .stdin(script)
        .ok();
    let t = text(&out.stdout);
    assert!(t.contains(">>> /docs\n"), "{t}");
    assert!(t.contains(" my report.txt\n"), "{t}");
    assert!(t.contains("down dir/\n"), "lls lists local names: {t}");
    assert!(t.contains("uploaded /docs/up file.txt"), "{t}");
    assert!(t.contains(">>> /\n"), "{t}");
    assert!(t.contains(" renamed report.txt\n"), "{t}");
    assert_eq!(
        fs::read(down.join("my report.txt")).unwrap(),
        b"the report\n"
    );
    assert_eq!(
        fs::read(root.join("docs/renamed report.txt")).unwrap(),
        b"the report\n"
    );
    assert_eq!(fs::read(root.join("docs/up file.txt")).unwrap(), b"up\n");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// `'...'` quoting for the shell's command line.
fn shlex_quote(p: &str) -> String {
    format!("'{}'", p.replace('\'', "'\\''"))
}
