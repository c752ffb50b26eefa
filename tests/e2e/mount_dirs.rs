//! Directories through a real mount: `ls -l` and `stat` agree with the
//! server's disk, a 10,000-file directory lists in a few requests,
//! `mkdir -p` / `rmdir` / `mv` across directories, and a real source tree
//! survives `tar x` into the mount and `tar c` out of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// `stat -c FORMAT` over a list of names, run in `dir`.
fn stat_in(dir: &Path, format: &str, names: &[&str]) -> String {
    TestCommand::new("stat")
        .current_dir(dir)
        .args(["-c", format])
        .args(names)
        .stdout()
}

/// `ls -ln --time-style=+%s` of `dir` without the `total` line and without
/// the link-count column (directory link counts are a property of the
/// server's filesystem, not something the mount promises).
fn ls_l(dir: &Path) -> String {
    TestCommand::sh("ls -ln --time-style=+%s | awk 'NR > 1 { $2 = \"\"; print }'")
        .current_dir(dir)
        .stdout()
}

#[test]
fn ls_l_and_stat_match_the_server_directory() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    // Files of several sizes, modes and times, and a subdirectory.
    let files: [(&str, u64, u32, u64); 7] = [
        ("a-empty.txt", 0, 0o600, 1_000_000_000),
        ("b-script.sh", 1234, 0o755, 1_200_000_000),
        ("c-readonly", 77, 0o400, 1_300_000_001),
        ("d page+1.bin", 4097, 0o644, 1_400_000_002),
        ("e", 1, 0o664, 1_500_000_003),
        ("sub/inner.txt", 100, 0o640, 1_600_000_004),
        ("sub/deeper/x", 3, 0o444, 1_650_000_005),
    ];
    for (i, (name, size, mode, mtime)) in files.iter().enumerate() {
        let p = root.write_random(name, *size, i as u64);
        chmod(&p, *mode);
        set_mtime(&p, *mtime);
    }
    chmod(&root.join("sub/deeper"), 0o700);
    set_mtime(&root.join("sub/deeper"), 1_690_000_000);
    chmod(&root.join("sub"), 0o750);
    set_mtime(&root.join("sub"), 1_700_000_000);

    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);

    let names = [
        "a-empty.txt",
        "b-script.sh",
        "c-readonly",
        "d page+1.bin",
        "e",
        "sub",
        "sub/inner.txt",
        "sub/deeper",
        "sub/deeper/x",
    ];
    let format = "%n|%s|%a|%Y|%F";
    let on_server = stat_in(root.path(), format, &names);
    let on_mount = stat_in(m.path(), format, &names);
    assert_eq!(
        on_mount, on_server,
        "stat through the mount differs from the server's disk"
    );

    // ls -l: same lines (mode string, owner, size, time, name).
    let server_ls = ls_l(root.path());
    let mount_ls = ls_l(m.path());
    assert_eq!(mount_ls, server_ls, "ls -l of the mount root");
    assert_eq!(ls_l(&m.join("sub")), ls_l(&root.join("sub")), "ls -l sub");

    // Names only, including the one with a space.
    let listing = tool(&m, &srv, "ls").arg("-1A").stdout();
    assert_eq!(
        listing,
        "a-empty.txt\nb-script.sh\nc-readonly\nd page+1.bin\ne\nsub\n"
    );
}

#[test]
fn ten_thousand_files_list_with_few_requests() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let big = root.mkdir("many");
    let mut names: Vec<String> = (0..10_000).map(|i| format!("file-{i:05}.dat")).collect();
    for (i, n) in names.iter().enumerate() {
        // Sizes vary so that a wrong size in the listing shows up.
        fs::write(big.join(n), vec![b'x'; i % 97]).unwrap();
    }
    names.sort();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);

    // ls -l: few LISTs, no STAT per file. Settle the log first so the
    // counts cover exactly the ls -l.
    let settle = |tag: &str| {
        srv.rf("stat", [tag]).run();
        let pattern = format!("op=STAT path=/{tag} ");
        assert_eq!(
            srv.wait_count(&pattern, 1, Duration::from_secs(10)),
            1,
            "the log never showed {pattern:?}"
        );
    };
    let ls_l = |tag: &str| -> (usize, usize) {
        settle(&format!("{tag}-before"));
        let (lists0, stats0) = (srv.count("op=LIST"), srv.count("op=STAT"));
        let started = Instant::now();
        let out = tool(&m, &srv, "ls")
            .args(["-l", "--time-style=+%s", "many"])
            .timeout(Duration::from_secs(120))
            .stdout();
        let took = started.elapsed();
        settle(&format!("{tag}-after"));
        let lists = srv.count("op=LIST") - lists0;
        // The markers are STATs too: leave them out.
        let stats = srv.count("op=STAT") - stats0 - 1;
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(lines.len(), 10_000, "ls -l printed {} entries", lines.len());
        // Spot-check sizes against the server.
        for line in lines.iter().step_by(997) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.last().unwrap();
            let size: u64 = fields[4].parse().unwrap();
            assert_eq!(size, size_of(&big.join(name)), "size of {name} in {line:?}");
        }
        eprintln!("{tag} ls -l of 10,000 files: {took:?}, {lists} LIST and {stats} STAT requests");
        (lists, stats)
    };

    // The first listing of the directory: nothing of it is cached, so this
    // is what listing 10,000 files costs.
    let (lists, stats) = ls_l("cold");
    assert!(
        (1..=5).contains(&lists),
        "the first ls -l of a 10,000-file directory made {lists} LIST requests"
    );
    assert!(
        stats < 100,
        "the first ls -l of a 10,000-file directory made {stats} STAT requests (a STAT storm)"
    );

    let count = tool(&m, &srv, "sh")
        .args(["-c", "ls -1 many | wc -l"])
        .timeout(Duration::from_secs(60))
        .stdout();
    assert_eq!(count.trim(), "10000");
    let listed = tool(&m, &srv, "ls")
        .args(["-1", "many"])
        .timeout(Duration::from_secs(60))
        .stdout();
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort_unstable();
    assert_eq!(listed.len(), names.len());
    assert!(
        listed.iter().zip(&names).all(|(a, b)| a == b),
        "the names listed through the mount differ from the server's"
    );

    // Listed before and unchanged: the listing is held under a callback
    // and costs nothing again.
    let (lists, stats) = ls_l("warm");
    assert_eq!(
        lists, 0,
        "a second ls -l of an unchanged 10,000-file directory made {lists} LIST requests"
    );
    assert!(
        stats < 100,
        "a second ls -l of a 10,000-file directory made {stats} STAT requests (a STAT storm)"
    );
}

#[test]
fn mkdir_p_rmdir_and_mv_across_directories() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let r = |rel: &str| root.join(rel);

    tool(&m, &srv, "mkdir").args(["-p", "a/b/c"]).ok();
    for d in ["a", "a/b", "a/b/c"] {
        assert!(r(d).is_dir(), "{d} is not a directory on the server");
    }
    // mkdir -p of an existing tree is fine; plain mkdir is EEXIST.
    tool(&m, &srv, "mkdir").args(["-p", "a/b/c"]).ok();
    let out = tool(&m, &srv, "mkdir").arg("a/b").fails();
    assert!(
        text(&out.stderr).contains("File exists"),
        "{}",
        text(&out.stderr)
    );
    tool(&m, &srv, "mkdir")
        .args(["-m", "700", "a/private"])
        .ok();
    assert_eq!(mode_of(&r("a/private")), 0o700);

    sh(&m, &srv, "echo one > a/b/c/f1 && echo two > a/f2").ok();
    assert_eq!(fs::read(r("a/b/c/f1")).unwrap(), b"one\n");

    // mv a file across directories.
    tool(&m, &srv, "mv").args(["a/b/c/f1", "a/private/"]).ok();
    assert!(!r("a/b/c/f1").exists());
    assert_eq!(fs::read(r("a/private/f1")).unwrap(), b"one\n");
    assert_eq!(tool(&m, &srv, "cat").arg("a/private/f1").stdout(), "one\n");
    // mv a whole directory; what is inside moves with it and stays readable.
    tool(&m, &srv, "mv").args(["a/private", "a/b/moved"]).ok();
    assert!(!r("a/private").exists());
    assert_eq!(fs::read(r("a/b/moved/f1")).unwrap(), b"one\n");
    assert_eq!(tool(&m, &srv, "cat").arg("a/b/moved/f1").stdout(), "one\n");
    // mv to the root, under a new name.
    tool(&m, &srv, "mv").args(["a/f2", "top"]).ok();
    assert_eq!(fs::read(r("top")).unwrap(), b"two\n");

    // rmdir: refused while not empty, works once empty.
    let out = tool(&m, &srv, "rmdir").arg("a/b").fails();
    assert!(
        text(&out.stderr).contains("Directory not empty"),
        "{}",
        text(&out.stderr)
    );
    assert!(r("a/b").is_dir());
    tool(&m, &srv, "rmdir").arg("a/b/c").ok();
    assert!(
        !r("a/b/c").exists(),
        "rmdir did not remove it on the server"
    );
    let out = tool(&m, &srv, "rmdir").arg("top").fails();
    assert!(
        text(&out.stderr).contains("Not a directory"),
        "{}",
        text(&out.stderr)
    );
    // rm -r of the rest, then the root is as it started but for `top`.
    tool(&m, &srv, "rm").args(["-r", "a"]).ok();
    assert!(!r("a").exists());
    assert_eq!(tool(&m, &srv, "ls").arg("-A").stdout(), "top\n");
    let mut left: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["top"]);
}

/// `~/.cargo/registry/src/*/NAME-VERSION` directories for the crates we
/// tar up besides the workspace (the newest of each that is there).
fn registry_crates(prefixes: &[&str]) -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for prefix in prefixes {
        let mut found: Vec<PathBuf> = fs::read_dir(&src)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .flat_map(|index| fs::read_dir(index.path()).into_iter().flatten())
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(prefix)
                    .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            out.push(p);
        }
    }
    out
}

#[test]
fn tar_x_into_the_mount_and_tar_c_out_of_it() {
    skip_without_fuse!();
    let work = TestDir::new("tar");
    // A real tree: this workspace's crates and a couple of registry crates.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut script = format!(
        "tar cf {} -C {} crates",
        q(&work.join("src.tar")),
        q(workspace)
    );
    let extra = registry_crates(&["serde-1.", "serde_derive-1.", "libc-0.2."]);
    for dir in &extra {
        script.push_str(&format!(
            " -C {} {}",
            q(dir.parent().unwrap()),
            q(Path::new(dir.file_name().unwrap()))
        ));
    }
    TestCommand::sh(&script).ok();
    if extra.is_empty() {
        eprintln!("note: no serde crates in ~/.cargo/registry/src; using the workspace only");
    }
    let tarball = work.join("src.tar");
    let local = work.mkdir("local");
    TestCommand::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&local)
        .ok();
    let files = TestCommand::sh("find . -type f | wc -l")
        .current_dir(&local)
        .stdout();
    let files: usize = files.trim().parse().unwrap();
    assert!(files > 50, "only {files} files in the tarball");

    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    tool(&m, &srv, "mkdir").arg("tree").ok();
    let started = Instant::now();
    tool(&m, &srv, "tar")
        .arg("xf")
        .arg(&tarball)
        .args(["-C", "tree"])
        .timeout(Duration::from_secs(240))
        .ok();
    eprintln!(
        "tar x of {files} files into the mount: {:?}",
        started.elapsed()
    );

    // The server's disk holds exactly the local extraction ...
    TestCommand::new("diff")
        .arg("-r")
        .arg(&local)
        .arg(root.join("tree"))
        .with_server(&srv)
        .ok();
    // ... and so does the mount.
    tool(&m, &srv, "diff")
        .arg("-r")
        .arg(&local)
        .arg("tree")
        .timeout(Duration::from_secs(240))
        .ok();
    assert_eq!(
        find_with_prefix(root.path(), UPLOAD_TEMP_PREFIX),
        Vec::<PathBuf>::new()
    );

    // tar c of the mounted tree lists the same entries, modes, sizes and
    // times as tar c of the local tree. Its top `./` is no entry of the
    // tarball: each extraction left it at the time it ran, which differs
    // between the two at minute resolution whenever a minute ends between
    // them. One time set on both (through the mount: a utimens) makes it
    // comparable.
    set_mtime(&local, 1_700_000_000);
    set_mtime(&m.join("tree"), 1_700_000_000);
    let tvf = |dir: &Path| {
        TestCommand::sh(
            "tar cf - --sort=name --numeric-owner . | tar tvf - --numeric-owner | LC_ALL=C sort",
        )
        .current_dir(dir)
        .timeout(Duration::from_secs(240))
        .with_log("rfmount log", m.log_path())
        .stdout()
    };
    let want = tvf(&local);
    let got = tvf(&m.join("tree"));
    if got != want {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let missing: Vec<&&str> = w.iter().filter(|l| !g.contains(l)).take(10).collect();
        let extra: Vec<&&str> = g.iter().filter(|l| !w.contains(l)).take(10).collect();
        panic!(
            "tar tvf of the mounted tree differs from the local tree ({} vs {} lines)\n\
             only local (first 10): {missing:#?}\nonly mount (first 10): {extra:#?}",
            w.len(),
            g.len()
        );
    }
}
