//! renameat2 flags through a real mount: RENAME_NOREPLACE refuses an
//! existing target (also one only written here so far), RENAME_EXCHANGE
//! swaps files and directories; `mv -n` does not replace.

use std::ffi::CString;
use std::fs;
use std::path::Path;

use crate::mount_common::*;
use crate::util::*;

/// `renameat2(AT_FDCWD, a, AT_FDCWD, b, flags)`; the errno on failure.
fn renameat2(a: &Path, b: &Path, flags: libc::c_uint) -> Result<(), i32> {
    let a = CString::new(s(a)).unwrap();
    let b = CString::new(s(b)).unwrap();
    // SAFETY: two NUL-terminated paths; the call writes no memory of ours.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[test]
fn noreplace_refuses_an_existing_target() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("a", b"a\n");
    root.write("b", b"b\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(
        renameat2(&m.join("a"), &m.join("b"), libc::RENAME_NOREPLACE),
        Err(libc::EEXIST)
    );
    assert_eq!(fs::read(root.join("b")).unwrap(), b"b\n");
    renameat2(&m.join("a"), &m.join("c"), libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(fs::read(root.join("c")).unwrap(), b"a\n");
    assert!(!root.join("a").exists());
    // A target that exists only in this mount so far counts too.
    sh(
        &m,
        &srv,
        "exec 3>local; echo x >&3; mv -n c local; exec 3>&-",
    )
    .ok();
    assert_eq!(fs::read(root.join("local")).unwrap(), b"x\n");
    assert_eq!(fs::read(root.join("c")).unwrap(), b"a\n");
    // mv -n does not replace either.
    sh(&m, &srv, "mv -n c b").ok();
    assert_eq!(fs::read(root.join("b")).unwrap(), b"b\n");
    assert_eq!(fs::read(root.join("c")).unwrap(), b"a\n");
}

#[test]
fn exchange_swaps_files_and_directories() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("x", b"x\n");
    fs::create_dir_all(root.join("d1/in")).unwrap();
    root.write("d1/in/f", b"one\n");
    fs::create_dir(root.join("d2")).unwrap();
    root.write("d2/g", b"two\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    sh(&m, &srv, "echo y > y && cat d1/in/f d2/g x >/dev/null").ok();
    renameat2(&m.join("x"), &m.join("y"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(root.join("x")).unwrap(), b"y\n");
    assert_eq!(fs::read(root.join("y")).unwrap(), b"x\n");
    assert_eq!(tool(&m, &srv, "cat").arg("x").stdout(), "y\n");
    assert_eq!(tool(&m, &srv, "cat").arg("y").stdout(), "x\n");
    renameat2(&m.join("d1"), &m.join("d2"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(root.join("d1/g")).unwrap(), b"two\n");
    assert_eq!(fs::read(root.join("d2/in/f")).unwrap(), b"one\n");
    assert_eq!(tool(&m, &srv, "cat").arg("d2/in/f").stdout(), "one\n");
    assert_eq!(tool(&m, &srv, "ls").arg("d1").stdout(), "g\n");
    assert_eq!(
        renameat2(&m.join("x"), &m.join("nope"), libc::RENAME_EXCHANGE),
        Err(libc::ENOENT)
    );
}
