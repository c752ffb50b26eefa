//! setuid/setgid clearing exactly as on a local filesystem: each rule runs
//! the same steps in a mount (rfserve and rfmount as root, `-o allow_other,
//! default_permissions`) and in a local directory, and the modes, owners
//! and sizes must come out the same through the mount (read at once, no
//! wait for cached attributes to expire) and on the export.

use std::path::Path;

use crate::mount_common::*;
use crate::util::*;

const OPTS: &str = "allow_other,default_permissions";

/// Who runs a step: root, or nobody (65534:65534, no other groups).
#[derive(Clone, Copy)]
enum By {
    Root,
    Nobody,
}

/// `name mode uid:gid size` of every file in `dir`, sorted.
fn snapshot(dir: &Path) -> String {
    let mut c = TestCommand::sh(
        "find . -mindepth 1 -type f | LC_ALL=C sort | xargs -r stat -c '%n %a %u:%g %s'",
    );
    c.current_dir(dir);
    c.stdout()
}

/// Makes each `(name, mode, owner)` as root (written, chowned, chmodded,
/// in that order, as a local file is), then runs `steps` in `dir`.
fn run(dir: &Path, files: &[(&str, &str, &str)], steps: &[(By, &str)]) {
    let mut setup = String::new();
    for (name, mode, owner) in files {
        setup += &format!("echo seed > {name}; chown {owner} {name}; chmod {mode} {name}; ");
    }
    let mut c = TestCommand::sh(&setup);
    c.current_dir(dir);
    c.ok();
    for (by, script) in steps {
        match by {
            By::Nobody => {
                as_user(NOBODY, NOBODY, dir, script).ok();
            }
            By::Root => {
                let mut c = TestCommand::sh(script);
                c.current_dir(dir);
                c.ok();
            }
        }
    }
}

/// Runs the same files and steps in a local directory and in a fresh
/// mount; asserts that the mount and the export show what the local
/// directory does, and returns the local snapshot.
fn same_as_local(files: &[(&str, &str, &str)], steps: &[(By, &str)]) -> String {
    let reference = TestDir::new("reference");
    let_others_in(reference.path());
    run(reference.path(), files, steps);
    let local = snapshot(reference.path());

    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", OPTS]);
    let_others_in(m.path());
    run(m.path(), files, steps);
    assert_eq!(snapshot(m.path()), local, "through the mount");
    assert_eq!(snapshot(root.path()), local, "on the export");
    local
}

/// Linux 6.2 and later clear setgid without group-exec when the writer is
/// outside the file's group; older kernels keep it, locally and here.
fn kernel_clears_setgid_for_outsiders() -> bool {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut p = r.trim().split(['.', '-']);
    let v: (u32, u32) = (
        p.next().unwrap().parse().unwrap(),
        p.next().unwrap().parse().unwrap(),
    );
    v >= (6, 2)
}

macro_rules! skip_without_root_and_setpriv {
    () => {
        skip_without_fuse!();
        if !require_root(module_path!()) {
            return;
        }
        if ["setpriv", "perl"].iter().any(|t| which(t).is_none()) {
            assert!(!in_ci(), "CI must have setpriv and perl");
            eprintln!("note: setpriv or perl missing; skipped");
            return;
        }
    };
}

/// A line of `snapshot` output for `name`.
fn line<'a>(snap: &'a str, name: &str) -> &'a str {
    let prefix = format!("./{name} ");
    snap.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {snap}"))
}

#[test]
fn a_write_by_another_user_clears_setuid_and_setgid_with_group_exec() {
    skip_without_root_and_setpriv!();
    let files = [
        ("u", "4777", "0:0"),
        ("g", "2777", "0:0"),
        ("ug", "6777", "0:0"),
    ];
    let steps = [(By::Nobody, "for f in u g ug; do echo n >> $f; done")];
    let local = same_as_local(&files, &steps);
    for f in ["u", "g", "ug"] {
        assert!(line(&local, f).contains(" 777 0:0 7"), "{local}");
    }
}

#[test]
fn a_write_by_the_owner_clears_setuid() {
    skip_without_root_and_setpriv!();
    let files = [
        ("mine", "4755", "65534:65534"),
        ("mine_g", "2755", "65534:65534"),
    ];
    let steps = [(By::Nobody, "echo o >> mine; echo o >> mine_g")];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "mine").contains(" 755 "), "{local}");
    assert!(line(&local, "mine_g").contains(" 755 "), "{local}");
}

#[test]
fn a_write_by_root_keeps_both_bits() {
    skip_without_root_and_setpriv!();
    let files = [("u", "4777", "65534:65534"), ("g", "2767", "65534:65534")];
    let steps = [(By::Root, "echo r >> u; echo r >> g")];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "u").contains(" 4777 "), "{local}");
    assert!(line(&local, "g").contains(" 2767 "), "{local}");
}

#[test]
fn setgid_without_group_exec_is_cleared_by_a_write_from_outside_the_group_only() {
    skip_without_root_and_setpriv!();
    // outside: group root, which nobody is not in; member: nobody's group;
    // owner_outside: nobody owns it but is not in its group.
    let files = [
        ("outside", "2767", "0:0"),
        ("member", "2767", "0:65534"),
        ("owner_outside", "2767", "65534:0"),
        ("both", "6767", "0:0"),
    ];
    let steps = [(
        By::Nobody,
        "echo n >> outside; echo n >> member; echo n >> owner_outside; \
         dd if=/dev/zero of=both bs=1 count=1 seek=1 conv=notrunc status=none",
    )];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "member").contains(" 2767 "), "{local}");
    if kernel_clears_setgid_for_outsiders() {
        assert!(line(&local, "outside").contains(" 767 "), "{local}");
        assert!(line(&local, "owner_outside").contains(" 767 "), "{local}");
        assert!(line(&local, "both").contains(" 767 "), "{local}");
    }
}

#[test]
fn truncates_by_another_user_clear_the_bits_as_a_write_does() {
    skip_without_root_and_setpriv!();
    let mut files = Vec::new();
    let names: Vec<String> = ["trunc", "ftrunc", "otrunc", "fallocate"]
        .iter()
        .flat_map(|op| ["4777", "2777", "2767"].map(|m| format!("{op}.{m}")))
        .collect();
    for n in &names {
        let mode = n.rsplit('.').next().unwrap();
        files.push((n.as_str(), mode, "0:0"));
    }
    let steps = [(
        By::Nobody,
        "for m in 4777 2777 2767; do \
           truncate -s 2 trunc.$m; \
           perl -e 'open(F, \"+<\", $ARGV[0]) or die $!; truncate(F, 1) or die $!' ftrunc.$m; \
           echo x > otrunc.$m; \
           fallocate -l 8192 fallocate.$m; \
         done",
    )];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "trunc.4777").contains(" 777 0:0 2"), "{local}");
    assert!(
        line(&local, "otrunc.2777").contains(" 777 0:0 2"),
        "{local}"
    );
    if kernel_clears_setgid_for_outsiders() {
        for op in ["trunc", "ftrunc", "otrunc", "fallocate"] {
            assert!(
                line(&local, &format!("{op}.2767")).contains(" 767 "),
                "{local}"
            );
        }
    }
}

#[test]
fn a_truncate_by_root_keeps_both_bits() {
    skip_without_root_and_setpriv!();
    let files = [("u", "4777", "0:0"), ("g", "2767", "0:0")];
    let steps = [(By::Root, "truncate -s 1 u; echo r > g")];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "u").contains(" 4777 "), "{local}");
    assert!(line(&local, "g").contains(" 2767 "), "{local}");
}

#[test]
fn chown_clears_setuid_and_setgid_with_group_exec_and_keeps_setgid_without() {
    skip_without_root_and_setpriv!();
    let files = [
        ("u", "4777", "0:0"),
        ("g", "2777", "0:0"),
        ("gnx", "2767", "0:0"),
        ("ugnx", "6767", "0:0"),
    ];
    let steps = [(By::Root, "chown 1000:1000 u g gnx ugnx")];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "u").contains(" 777 1000:1000"), "{local}");
    assert!(line(&local, "g").contains(" 777 1000:1000"), "{local}");
    assert!(line(&local, "gnx").contains(" 2767 1000:1000"), "{local}");
    assert!(line(&local, "ugnx").contains(" 2767 1000:1000"), "{local}");
}

#[test]
fn chgrp_by_an_owner_outside_the_old_group_clears_setgid_without_group_exec() {
    skip_without_root_and_setpriv!();
    let files = [
        ("outside", "2767", "65534:0"),
        ("member", "2767", "65534:65534"),
        ("exec", "2777", "65534:0"),
    ];
    let steps = [(By::Nobody, "chgrp 65534 outside member exec")];
    let local = same_as_local(&files, &steps);
    assert!(line(&local, "member").contains(" 2767 "), "{local}");
    assert!(line(&local, "exec").contains(" 777 "), "{local}");
    if kernel_clears_setgid_for_outsiders() {
        assert!(line(&local, "outside").contains(" 767 "), "{local}");
    }
}

#[test]
fn a_chown_after_a_listing_is_still_shown_once_cached_attributes_expire() {
    skip_without_root_and_setpriv!();
    let root = TestDir::new("root");
    root.write("f", b"x\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", OPTS]);
    // The listing caches f's attributes; the chown must reach them too.
    sh(&m, &srv, "ls -l >/dev/null; chown 1000:1000 f; chmod 640 f").ok();
    // Past the 1 s attribute lifetime, the lookup falls back to the listing.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let shown = sh(&m, &srv, "stat -c '%a %u:%g' f; ls -ln f").stdout();
    let mut lines = shown.lines();
    assert_eq!(lines.next(), Some("640 1000:1000"), "{shown}");
    assert!(
        lines.next().is_some_and(|l| l.contains(" 1000 1000 ")),
        "{shown}"
    );
}
