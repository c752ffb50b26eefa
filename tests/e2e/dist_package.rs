//! `scripts/package.sh --dev` builds a .deb (cargo-deb) holding the three
//! binaries, the man pages, the completions, the systemd unit with its
//! defaults file, and the mount-at-boot examples; `rfmount` lands in
//! /usr/bin where mount.fuse3 (the fuse3 dependency) finds it.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

fn cargo_deb_missing() -> bool {
    !TestCommand::new("cargo")
        .args(["deb", "--version"])
        .timeout(Duration::from_secs(60))
        .run()
        .status
        .success()
}

#[test]
fn package_sh_builds_a_deb_with_everything() {
    if cargo_deb_missing() {
        assert!(
            !in_ci(),
            "cargo-deb is required in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: cargo-deb is not installed (cargo install --locked cargo-deb)");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = TestCommand::new(repo.join("scripts/package.sh"))
        .arg("--dev")
        .current_dir(repo)
        .timeout(Duration::from_secs(600))
        .ok();
    let deb = text(&out.stdout).trim().to_owned();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "{deb:?}"
    );

    let listing = text(&TestCommand::new("dpkg").args(["-c", &deb]).ok().stdout);
    for want in [
        "./usr/bin/rfserve",
        "./usr/bin/rfmount",
        "./usr/bin/rf\n",
        "./usr/share/man/man8/rfmount.8.gz",
        "./usr/share/man/man8/rfserve.8.gz",
        "./usr/share/man/man1/rf.1.gz",
        "./usr/share/bash-completion/completions/rfmount",
        "./usr/share/zsh/vendor-completions/_rf\n",
        "./usr/share/fish/vendor_completions.d/rfserve.fish",
        "./lib/systemd/system/rfserve.service",
        "./etc/default/rfserve",
        "./usr/share/doc/rfmount/examples/fstab",
        "./usr/share/doc/rfmount/examples/mnt-share.automount",
    ] {
        assert!(
            listing.contains(want),
            "{want:?} missing from dpkg -c:\n{listing}"
        );
    }
    let info = text(&TestCommand::new("dpkg").args(["-I", &deb]).ok().stdout);
    let depends = info
        .lines()
        .find(|l| l.trim_start().starts_with("Depends:"))
        .unwrap_or_default();
    assert!(
        depends.contains("fuse3"),
        "mount.fuse3 runs rfmount for fstab: {info}"
    );
    assert!(info.contains("postinst"), "{info}");

    // The contents work: the packaged rfmount runs, and its man page
    // documents the fstab syntax and the mount options.
    let tmp = TestDir::new("deb");
    TestCommand::new("dpkg-deb")
        .args(["-x", &deb])
        .arg(tmp.path())
        .ok();
    let v = TestCommand::new(tmp.join("usr/bin/rfmount"))
        .arg("--version")
        .ok();
    assert!(
        text(&v.stdout).starts_with("rfmount "),
        "{}",
        text(&v.stdout)
    );
    let page = TestCommand::sh(&format!(
        "gzip -dc {}",
        tmp.join("usr/share/man/man8/rfmount.8.gz").display()
    ))
    .ok();
    let page = text(&page.stdout);
    for want in [
        "fuse.rfmount",
        "_netdev",
        "allow_other",
        "x\\-systemd.automount",
    ] {
        assert!(page.contains(want), "rfmount.8 lacks {want:?}");
    }
}
