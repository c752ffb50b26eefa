//! Symlinks through a real mount: `ln -s` of every kind, readlink, cat and
//! cd through links, `ls -l` with `->` and no READLINK round trip, changes
//! that act on the link itself, and tree tools (tar, cp -a, rsync -a).

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};

use crate::mount_common::*;
use crate::util::*;

#[test]
fn ln_s_of_every_kind_is_a_real_link_on_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("notes.txt", b"hello\n");
    fs::create_dir(root.join("dir")).unwrap();
    root.write("dir/inner.txt", b"inner\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let abs = m.join("notes.txt");
    sh(
        &m,
        &srv,
        &format!(
            "ln -s notes.txt rel && ln -s {} abs && ln -s no/such/file dangling && ln -s dir dl",
            q(&abs)
        ),
    )
    .ok();
    for (name, target) in [
        ("rel", "notes.txt".to_owned()),
        ("abs", s(&abs).to_owned()),
        ("dangling", "no/such/file".to_owned()),
        ("dl", "dir".to_owned()),
    ] {
        let on_server = fs::read_link(root.join(name)).unwrap();
        assert_eq!(on_server.to_str().unwrap(), target, "{name} on the server");
        assert_eq!(
            tool(&m, &srv, "readlink").arg(name).stdout(),
            format!("{target}\n"),
            "readlink {name}"
        );
    }
    assert_eq!(tool(&m, &srv, "cat").arg("rel").stdout(), "hello\n");
    assert_eq!(tool(&m, &srv, "cat").arg("abs").stdout(), "hello\n");
    assert_eq!(
        sh(&m, &srv, "cd dl && cat inner.txt && pwd -P").stdout(),
        format!("inner\n{}\n", s(&m.join("dir")))
    );
    let out = tool(&m, &srv, "cat").arg("dangling").fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such file"),
        "{out:?}"
    );
    sh(
        &m,
        &srv,
        "test -L rel && test -L dangling && test -d dl && test -L dl",
    )
    .ok();
    // A second ln -s onto an existing name fails like on a local disk.
    let out = tool(&m, &srv, "ln").args(["-s", "x", "rel"]).fails();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File exists"),
        "{out:?}"
    );
}

#[test]
fn ls_l_shows_targets_without_a_readlink_round_trip() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("f", b"x");
    symlink("f", root.join("made-on-server")).unwrap();
    symlink("/nowhere/at/all", root.join("abs")).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let ls = tool(&m, &srv, "ls").arg("-l").stdout();
    assert!(ls.contains(" made-on-server -> f\n"), "{ls}");
    assert!(ls.contains(" abs -> /nowhere/at/all\n"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.starts_with('l') && l.ends_with("abs -> /nowhere/at/all"))
    );
    assert_eq!(srv.count("op=READLINK"), 0, "{}", srv.log());
    // `rf ls` shows the target as well.
    let rf_ls = srv.rf("ls", [] as [&str; 0]).stdout();
    assert!(rf_ls.contains(" made-on-server -> f\n"), "{rf_ls}");
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%F %s", "abs"]).stdout(),
        "symbolic link 15\n"
    );
}

#[test]
fn changes_through_a_link_name_act_on_the_link_or_follow_it_like_a_local_disk() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("target.txt", b"keep\n");
    set_mtime(&root.join("target.txt"), 1_500_000_000);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "ln -s target.txt l").ok();
    // touch -h sets the link's own times; the target's stay.
    sh(&m, &srv, "touch -h -d @1000000000 l").ok();
    let lmd = fs::symlink_metadata(root.join("l")).unwrap();
    assert!(lmd.file_type().is_symlink());
    assert_eq!(lmd.mtime(), 1_000_000_000);
    assert_eq!(mtime_secs(&root.join("target.txt")), 1_500_000_000);
    assert_eq!(
        tool(&m, &srv, "stat").args(["-c", "%Y", "l"]).stdout(),
        "1000000000\n"
    );
    // chmod follows the link, as chmod(2) does.
    sh(&m, &srv, "chmod 600 l").ok();
    assert_eq!(mode_of(&root.join("target.txt")), 0o600);
    // Renaming and removing act on the link; the target stays.
    sh(&m, &srv, "mv l l2 && rm l2").ok();
    assert!(fs::symlink_metadata(root.join("l2")).is_err());
    assert_eq!(fs::read(root.join("target.txt")).unwrap(), b"keep\n");
    // Writing through a link writes the target.
    sh(&m, &srv, "ln -s target.txt w && echo new > w").ok();
    assert_eq!(fs::read(root.join("target.txt")).unwrap(), b"new\n");
    assert!(
        fs::symlink_metadata(root.join("w"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A small tree with files, a directory, and relative, absolute-looking,
/// dangling and directory symlinks.
fn make_tree(dir: &std::path::Path) {
    fs::create_dir_all(dir.join("src/sub")).unwrap();
    fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    fs::write(dir.join("src/sub/b.txt"), "b\n").unwrap();
    symlink("a.txt", dir.join("src/to_a")).unwrap();
    symlink("sub", dir.join("src/to_sub")).unwrap();
    symlink("../missing", dir.join("src/sub/dangling")).unwrap();
    symlink("/usr/share/nothing-here", dir.join("src/abs")).unwrap();
}

/// `find -printf` of a tree: type, name and link target of everything.
fn listing(m: &Mount, srv: &Server, dir: &str) -> String {
    sh(
        m,
        srv,
        &format!("cd {dir} && find . -printf '%y %p %l\\n' | sort"),
    )
    .stdout()
}

#[test]
fn tar_cp_a_and_rsync_a_copy_trees_with_symlinks() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    make_tree(local.path());
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let src = local.join("src");
    let expected = {
        let mut c = TestCommand::sh("find . -printf '%y %p %l\\n' | sort");
        c.current_dir(&src);
        c.stdout()
    };

    // tar x into the mount, tar c out of it.
    let tarball = local.join("t.tar");
    TestCommand::new("tar")
        .args(["-cf", s(&tarball), "-C", s(local.path()), "src"])
        .ok();
    sh(
        &m,
        &srv,
        &format!("mkdir t && tar -xf {} -C t", q(&tarball)),
    )
    .ok();
    assert_eq!(listing(&m, &srv, "t/src"), expected);
    assert_eq!(
        fs::read_link(root.join("t/src/to_sub")).unwrap().to_str(),
        Some("sub")
    );
    let out_tar = local.join("out.tar");
    sh(&m, &srv, &format!("tar -cf {} -C t src", q(&out_tar))).ok();
    let back = local.join("back");
    fs::create_dir(&back).unwrap();
    TestCommand::new("tar")
        .args(["-xf", s(&out_tar), "-C", s(&back)])
        .ok();
    assert_eq!(
        fs::read_link(back.join("src/sub/dangling"))
            .unwrap()
            .to_str(),
        Some("../missing")
    );

    // cp -a in and out.
    sh(&m, &srv, &format!("cp -a {} c", q(&src))).ok();
    assert_eq!(listing(&m, &srv, "c"), expected);
    sh(&m, &srv, &format!("cp -a c {}", q(&local.join("c-back")))).ok();
    assert_eq!(
        fs::read_link(local.join("c-back/to_a")).unwrap().to_str(),
        Some("a.txt")
    );

    // rsync -a, twice: the second pass has nothing to do for the links.
    if which("rsync").is_none() && !in_ci() {
        eprintln!("note: rsync not installed; skipping its part");
        return;
    }
    sh(&m, &srv, &format!("rsync -a {}/ r/", q(&src))).ok();
    assert_eq!(listing(&m, &srv, "r"), expected);
    assert_eq!(
        fs::read_link(root.join("r/abs")).unwrap().to_str(),
        Some("/usr/share/nothing-here")
    );
    let again = sh(&m, &srv, &format!("rsync -ai {}/ r/", q(&src))).stdout();
    assert_eq!(again, "", "rsync -ai found something to do");
}
