//! Files through a real mount: `cp` in and out of every awkward size (the
//! server holds the file as soon as `cp` returns), and the everyday file
//! commands — `touch`, `chmod`, `truncate`, `>>`, `mv`, `rm` — each checked
//! on the server's own disk.

use std::fs;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// `cp` LOCAL into the mount, then checks the server's copy at once (close
/// uploads, so there is nothing to wait for), then copies it out again
/// through the same mount (warm cache) and through `cold` (a second mount
/// with an empty cache) and compares with `cmp` and `sha256sum`.
fn cp_round_trip(srv: &Server, m: &Mount, cold: &Mount, local: &TestDir, name: &str, size: u64) {
    let src = local.write_random(format!("src/{name}"), size, size ^ 0x5eed);
    tool(m, srv, "cp").arg(&src).arg(name).ok();
    // Right after cp returned: the whole file is on the server.
    assert_same_file(&src, &srv.root().join(name));

    let out = local.mkdir(format!("out-{name}"));
    tool(m, srv, "cp").arg(name).arg(out.join("warm")).ok();
    tool(cold, srv, "cp").arg(name).arg(out.join("cold")).ok();
    for copy in ["warm", "cold"] {
        TestCommand::new("cmp")
            .arg(&src)
            .arg(out.join(copy))
            .with_server(srv)
            .ok();
    }
    let want = sha256(&src);
    for mnt in [m, cold] {
        let line = tool(mnt, srv, "sha256sum").arg(name).stdout();
        assert_eq!(
            line.split_whitespace().next(),
            Some(want.as_str()),
            "sha256sum of {name} ({size} bytes) through {}",
            mnt.path().display()
        );
    }
    let ls = tool(m, srv, "stat").args(["-c", "%s", name]).stdout();
    assert_eq!(ls.trim(), size.to_string(), "size of {name} in the mount");
}

#[test]
fn cp_in_and_out_of_awkward_sizes_is_byte_identical() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let cold = Mount::start(&srv, &[]);
    for (name, size) in [
        ("zero.bin", 0),
        ("one.bin", 1),
        ("page-minus-one.bin", 4095),
        ("page.bin", 4096),
        ("page-plus-one.bin", 4097),
        ("mib-plus-one.bin", MIB + 1),
    ] {
        cp_round_trip(&srv, &m, &cold, &local, name, size);
    }
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new(),
        "temporary upload files left in the server root"
    );
    // Overwriting with cp replaces the content on the server at once, also
    // with a shorter file.
    let shorter = local.write_random("src/shorter", 5000, 77);
    tool(&m, &srv, "cp")
        .arg(&shorter)
        .arg("mib-plus-one.bin")
        .ok();
    assert_same_file(&shorter, &root.join("mib-plus-one.bin"));
    tool(&cold, &srv, "cmp")
        .arg(&shorter)
        .arg("mib-plus-one.bin")
        .ok();
}

#[test]
fn cp_256_mib_in_and_out() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let src = local.write_random("big.bin", 256 * MIB, 256);
    let want = sha256(&src);

    tool(&m, &srv, "cp")
        .arg(&src)
        .arg("big.bin")
        .timeout(Duration::from_secs(240))
        .ok();
    // No waiting: close uploaded it.
    assert_same_file(&src, &root.join("big.bin"));
    assert_eq!(
        srv.wait_count(
            &format!("op=PUT path=/big.bin result=ok bytes={}", 256 * MIB),
            1,
            Duration::from_secs(5)
        ),
        1,
        "expected exactly one PUT of the whole file"
    );

    // Out again through a second mount with an empty cache (a real fetch).
    let cold = Mount::start(&srv, &[]);
    let out = local.join("copy.bin");
    tool(&cold, &srv, "cp")
        .arg("big.bin")
        .arg(&out)
        .timeout(Duration::from_secs(240))
        .ok();
    TestCommand::new("cmp").arg(&src).arg(&out).ok();
    let line = tool(&cold, &srv, "sha256sum")
        .arg("big.bin")
        .timeout(Duration::from_secs(240))
        .stdout();
    assert_eq!(line.split_whitespace().next(), Some(want.as_str()));
}

#[test]
fn touch_chmod_truncate_append_mv_rm_reach_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let r = |rel: &str| root.join(rel);

    // touch: a new empty file appears on the server.
    tool(&m, &srv, "touch").arg("new.txt").ok();
    assert_eq!(fs::read(r("new.txt")).unwrap(), b"");
    // touch -d on an existing file: the server's mtime.
    tool(&m, &srv, "touch")
        .args(["-d", "@981173106", "new.txt"])
        .ok();
    assert_eq!(mtime_secs(&r("new.txt")), 981_173_106);
    tool(&m, &srv, "touch")
        .args(["-d", "2010-06-07 08:09:10 UTC", "new.txt"])
        .ok();
    assert_eq!(mtime_secs(&r("new.txt")), 1_275_898_150);
    // ... and the mount shows the same time.
    let seen = tool(&m, &srv, "stat")
        .args(["-c", "%Y", "new.txt"])
        .stdout();
    assert_eq!(seen.trim(), "1275898150");
    // touch -d of a file that does not exist yet: created with that time.
    tool(&m, &srv, "touch")
        .args(["-d", "@1000000000", "dated.txt"])
        .ok();
    assert_eq!(mtime_secs(&r("dated.txt")), 1_000_000_000);

    // chmod: the mode on the server.
    root.write("f.txt", "hello world\n");
    tool(&m, &srv, "chmod").args(["640", "f.txt"]).ok();
    assert_eq!(mode_of(&r("f.txt")), 0o640);
    tool(&m, &srv, "chmod").args(["u+x,o+r", "f.txt"]).ok();
    assert_eq!(mode_of(&r("f.txt")), 0o744);
    let seen = tool(&m, &srv, "stat").args(["-c", "%a", "f.txt"]).stdout();
    assert_eq!(seen.trim(), "744");
    assert_eq!(fs::read(r("f.txt")).unwrap(), b"hello world\n");

    // echo >>: the old content stays, the new line follows it.
    sh(&m, &srv, "echo x >> f.txt").ok();
    assert_eq!(fs::read(r("f.txt")).unwrap(), b"hello world\nx\n");
    sh(&m, &srv, "printf 'more' >> f.txt").ok();
    assert_eq!(fs::read(r("f.txt")).unwrap(), b"hello world\nx\nmore");
    assert_eq!(mode_of(&r("f.txt")), 0o744, "append kept the mode");
    // Appending to a file that was never read through this mount.
    root.write("fresh.txt", "server line\n");
    sh(&m, &srv, "echo appended >> fresh.txt").ok();
    assert_eq!(
        fs::read(r("fresh.txt")).unwrap(),
        b"server line\nappended\n"
    );

    // truncate -s: shrink, then grow with zeros.
    let data = root.write(
        "t.bin",
        (0..=255u8).cycle().take(10_000).collect::<Vec<u8>>(),
    );
    let orig = fs::read(&data).unwrap();
    tool(&m, &srv, "truncate").args(["-s", "10", "t.bin"]).ok();
    assert_eq!(fs::read(r("t.bin")).unwrap(), &orig[..10]);
    tool(&m, &srv, "truncate")
        .args(["-s", "100000", "t.bin"])
        .ok();
    let grown = fs::read(r("t.bin")).unwrap();
    assert_eq!(grown.len(), 100_000);
    assert_eq!(&grown[..10], &orig[..10]);
    assert!(grown[10..].iter().all(|&b| b == 0), "grown part not zeros");
    tool(&m, &srv, "truncate").args(["-s", "0", "t.bin"]).ok();
    assert_eq!(size_of(&r("t.bin")), 0);
    let seen = tool(&m, &srv, "stat").args(["-c", "%s", "t.bin"]).stdout();
    assert_eq!(seen.trim(), "0");

    // mv within a directory: renamed on the server, content and mode kept.
    tool(&m, &srv, "mv").args(["f.txt", "g.txt"]).ok();
    assert!(!r("f.txt").exists(), "f.txt still on the server after mv");
    assert_eq!(fs::read(r("g.txt")).unwrap(), b"hello world\nx\nmore");
    assert_eq!(mode_of(&r("g.txt")), 0o744);
    // mv over an existing file replaces it.
    tool(&m, &srv, "mv").args(["-f", "g.txt", "fresh.txt"]).ok();
    assert!(!r("g.txt").exists());
    assert_eq!(fs::read(r("fresh.txt")).unwrap(), b"hello world\nx\nmore");
    assert_eq!(
        tool(&m, &srv, "cat").arg("fresh.txt").stdout(),
        "hello world\nx\nmore"
    );

    // rm: gone on the server and in the mount.
    tool(&m, &srv, "rm").arg("fresh.txt").ok();
    assert!(
        !r("fresh.txt").exists(),
        "rm did not remove it on the server"
    );
    let out = tool(&m, &srv, "cat").arg("fresh.txt").fails();
    assert!(
        text(&out.stderr).contains("No such file or directory"),
        "{}",
        text(&out.stderr)
    );
    let rm = tool(&m, &srv, "rm").arg("never-existed").fails();
    assert!(
        text(&rm.stderr).contains("No such file or directory"),
        "{}",
        text(&rm.stderr)
    );

    let listing = tool(&m, &srv, "ls").arg("-1").stdout();
    assert_eq!(listing, "dated.txt\nnew.txt\nt.bin\n");
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<std::path::PathBuf>::new()
    );
}
