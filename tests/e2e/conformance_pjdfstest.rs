//! The POSIX conformance suite pjdfstest (its Rust rewrite, the crates.io
//! package `pjdfstest`, installed by .ci/run) against a real mount, as
//! root with `-o allow_other,default_permissions`: every test that the
//! configuration enables passes (docs/CONFORMANCE.md).

use std::time::Duration;

use crate::util::*;

/// Features a Linux file system has (rename changes ctime; utimensat and
/// UTIME_NOW; posix_fallocate). Users to switch to: ones Debian always has.
/// The naptime is above the server file system's timestamp granularity.
const CONFIG: &str = r#"[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

#[test]
fn pjdfstest_passes_on_a_mount() {
    skip_without_fuse!();
    if !require_root("pjdfstest_passes_on_a_mount") {
        return;
    }
    let Some(bin) = which("pjdfstest") else {
        assert!(!in_ci(), "CI must install pjdfstest (.ci/run)");
        eprintln!(
            "note: pjdfstest_passes_on_a_mount skipped: no pjdfstest on PATH \
             (cargo install --locked pjdfstest)"
        );
        return;
    };
    let root = TestDir::new("root");
    let conf = TestDir::new("conf");
    let conf_file = conf.write("pjdfstest.toml", CONFIG);
    // A second file system for the EXDEV cases (link and rename across
    // file systems): a local directory, which the mount is not.
    let second = TestDir::new("second");
    let srv = Server::start(root.path(), &[]);
    // open::interact_2gb writes bytes at 2 GiB + 1: under the default 1 GiB
    // cache bound, which counts what files store, not their apparent size.
    let m = Mount::start(
        &srv,
        &[
            "-o",
            "allow_other,default_permissions",
            "--cache-size",
            "1G",
        ],
    );
    let_others_in(m.path());
    let out = TestCommand::new(&bin)
        .arg("-c")
        .arg(&conf_file)
        .arg("-p")
        .arg(m.path())
        .arg("-s")
        .arg(second.path())
        .current_dir(m.path())
        .timeout(Duration::from_secs(300))
        .run();
    let text = String::from_utf8_lossy(&out.stdout);
    // Each failed test: its name, and the message on the next line.
    let lines: Vec<&str> = text.lines().collect();
    let failed: Vec<(&str, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim_end().ends_with("FAILED"))
        .filter_map(|(i, l)| {
            let name = l.split_whitespace().next()?;
            Some((name, lines.get(i + 1).map_or("", |m| m.trim())))
        })
        .collect();
    let summary = text
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("pjdfstest printed no summary:\n{text}"));
    let count = |what: &str| -> u32 {
        summary
            .trim_start_matches("Summary: ")
            .split(", ")
            .find_map(|f| f.strip_suffix(what))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no{what} count in {summary:?}"))
    };
    assert!(
        failed.is_empty() && count(" failed") == 0,
        "{summary}\nfailed: {failed:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 13 erofs_* tests need allow_remount (the next test runs them) and
    // link_count_max a LINK_MAX the kernel can report (docs/CONFORMANCE.md);
    // the rest must have run.
    let skipped = count(" skipped");
    assert!(skipped <= 14, "{skipped} skipped: {summary}");
    // It really ran: the count of passed tests, not only the absence of
    // failures.
    let passed = count(" passed");
    assert!(passed >= 384, "only {passed} passed: {summary}");
    assert!(
        out.status.success(),
        "exit status {:?} for {summary}",
        out.status
    );
}

/// The 13 `erofs_*` tests, which remount the file system read-only under
/// the suite (`mount -o remount,ro MNT`) and expect EROFS from every call
/// that would change it. For a `fuse.rfmount` mount, mount(8) hands that
/// command to its `mount.fuse` helper, which starts a new rfmount instead
/// of remounting; `mount -i` (no helper) remounts the running mount, so the
/// suite is given a `mount` that adds `-i`. Run on their own: in a whole
/// run 8 of them find the file system busy (the suite's earlier tests leave
/// files open), on a local tmpfs just the same (docs/CONFORMANCE.md).
#[test]
fn pjdfstest_read_only_remounts_pass_on_a_mount() {
    skip_without_fuse!();
    if !require_root("pjdfstest_read_only_remounts_pass_on_a_mount") {
        return;
    }
    let (Some(bin), Some(mount)) = (which("pjdfstest"), which("mount")) else {
        assert!(!in_ci(), "CI must install pjdfstest (.ci/run)");
        eprintln!("note: pjdfstest or mount missing; skipped");
        return;
    };
    let root = TestDir::new("root");
    let conf = TestDir::new("conf");
    let conf_file = conf.write(
        "pjdfstest.toml",
        CONFIG.replace("allow_remount = false", "allow_remount = true"),
    );
    let wrapper = conf.write(
        "bin/mount",
        format!("#!/bin/sh\nexec '{}' -i \"$@\"\n", mount.display()),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        conf.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "allow_other,default_permissions"]);
    let_others_in(m.path());
    let out = TestCommand::new(&bin)
        .arg("-c")
        .arg(&conf_file)
        .arg("-p")
        .arg(m.path())
        .arg("erofs")
        .env("PATH", path)
        .current_dir(m.path())
        .timeout(Duration::from_secs(120))
        .run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Summary: 0 failed, 0 skipped, 13 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Remounted read-write again: the mount still takes changes.
    std::fs::write(m.join("after"), b"x").unwrap();
    assert_eq!(std::fs::read(root.join("after")).unwrap(), b"x");
}
