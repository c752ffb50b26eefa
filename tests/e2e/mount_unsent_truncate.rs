//! truncate(2) by name of a file whose changes are not on the server yet
//! (no descriptor open): the change is made in the cache, and no close
//! follows to send it. It must reach the server all the same, with every
//! unsent change before it, and `rfmount sync` must wait for it; so must
//! an attribute change of such a file.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::mount_common::*;
use crate::util::*;

/// truncate(2) by name: the mount gets a setattr with no handle open.
fn truncate_by_name(p: &Path, len: u64) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) };
    assert_eq!(
        r,
        0,
        "truncate {}: {}",
        p.display(),
        io::Error::last_os_error()
    );
}

/// Writes `data` to a new file `p` and returns `close(2)`'s result
/// (dropping a `File` ignores it).
fn write_new(p: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(p).unwrap();
    f.write_all(data).unwrap();
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is ours alone: `into_raw_fd` gave up the File's claim.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mode_on_server(root: &TestDir, name: &str) -> u32 {
    fs::metadata(root.join(name)).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_write_back_file_truncated_by_name_before_its_upload_reaches_the_server_truncated() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    tool(&m, &srv, "ls").ok();
    // Down: every close below stays in the cache, its upload failing.
    srv.kill();
    write_new(&m.join("f"), b"0123456789\n").unwrap();
    write_new(&m.join("g"), b"abcdefgh\n").unwrap();
    truncate_by_name(&m.join("f"), 4);
    // Grown by a truncate, then changed in mode: both carried by g's upload.
    truncate_by_name(&m.join("g"), 12);
    fs::set_permissions(m.join("g"), fs::Permissions::from_mode(0o600)).unwrap();
    srv.restart();
    rfmount_sync(&m);
    assert_eq!(
        text(&root.read("f")),
        "0123",
        "f on the server\n{}",
        tail(&m.log(), 40)
    );
    assert_eq!(root.read("g"), b"abcdefgh\n\0\0\0", "g on the server");
    assert_eq!(mode_on_server(&root, "g"), 0o600, "g's mode on the server");
    assert_eq!(fs::read(m.join("f")).unwrap(), b"0123");
    assert_eq!(srv.count("result=err code=Conflict"), 0);
}

#[test]
fn a_file_whose_upload_at_close_failed_truncated_by_name_reaches_the_server_truncated() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    tool(&m, &srv, "ls").ok();
    srv.kill();
    // Synchronous close: the upload fails and the file stays in the cache.
    let closed = write_new(&m.join("f"), b"0123456789\n");
    assert_eq!(
        closed.as_ref().map_err(io::Error::raw_os_error),
        Err(Some(libc::EIO)),
        "close with the server down"
    );
    // The kernel's release comes after close(2) returned: its upload
    // fails too, and leaves the file sealed for the retry. Until then the
    // mount counts the file as still being written, which `rfmount sync`
    // does not wait for.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !m.log().contains("upload at close failed, kept for retry") {
        assert!(
            Instant::now() < deadline,
            "no release of f within 20 s\n{}",
            tail(&m.log(), 40)
        );
        thread::sleep(Duration::from_millis(20));
    }
    truncate_by_name(&m.join("f"), 4);
    srv.restart();
    rfmount_sync(&m);
    assert_eq!(
        text(&root.read("f")),
        "0123",
        "f on the server\n{}",
        tail(&m.log(), 40)
    );
    assert_eq!(fs::read(m.join("f")).unwrap(), b"0123");
}

#[test]
fn files_renamed_and_truncated_while_their_uploads_wait_end_up_right_on_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    root.write("old", "on the server\n");
    let srv = Server::start(root.path(), &[]);
    // One uploader, busy with a large file first: the small files wait in
    // the queue (or are in flight) while they are renamed and truncated.
    let m = Mount::start(&srv, &["-o", "writeback,uploads=1"]);
    tool(&m, &srv, "ls").ok();
    let big = Rng::new(5).bytes(16 * MIB as usize);
    fs::write(m.join("big.bin"), &big).unwrap();
    let mut expect: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..12 {
        let name = format!("n{i}");
        let body = format!("file {i}\n").repeat(20 + i).into_bytes();
        write_new(&m.join(&name), &body).unwrap();
        let len = (body.len() / 2) as u64;
        let kept = match i % 3 {
            // Renamed, then truncated under its new name.
            0 => {
                let to = format!("r{i}");
                fs::rename(m.join(&name), m.join(&to)).unwrap();
                truncate_by_name(&m.join(&to), len);
                (to, body[..len as usize].to_vec())
            }
            // Truncated, then renamed over a file the server has.
            1 => {
                truncate_by_name(&m.join(&name), len);
                let to = if i == 1 {
                    "old".to_owned()
                } else {
                    name.clone()
                };
                if to != name {
                    fs::rename(m.join(&name), m.join(&to)).unwrap();
                }
                (to, body[..len as usize].to_vec())
            }
            // Appended to, then truncated.
            _ => {
                let mut f = OpenOptions::new().append(true).open(m.join(&name)).unwrap();
                f.write_all(b"more\n").unwrap();
                drop(f);
                truncate_by_name(&m.join(&name), 3);
                (name, body[..3].to_vec())
            }
        };
        expect.push(kept);
    }
    rfmount_sync(&m);
    assert_eq!(fs::read(root.join("big.bin")).unwrap(), big);
    for (name, content) in &expect {
        assert_eq!(
            text(&root.read(name)),
            text(content),
            "{name} on the server\n{}",
            tail(&m.log(), 60)
        );
    }
    let mut names = names_with_prefix(root.path(), "");
    names.retain(|n| !n.starts_with(".rfserve"));
    let mut want: Vec<String> = expect.iter().map(|(n, _)| n.clone()).collect();
    want.push("big.bin".into());
    want.sort();
    assert_eq!(names, want, "names on the server");
    assert_eq!(srv.count("result=err code=Conflict"), 0);
}

#[test]
fn a_file_truncated_by_name_while_a_descriptor_writes_it_keeps_both_on_the_server() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let srv = Server::start(root.path(), &[]);
    for opts in [&[][..], &["-o", "writeback"][..]] {
        let m = Mount::start(&srv, opts);
        let p = m.join("f");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"0123456789").unwrap();
        // The descriptor's close seals and sends the truncate with its
        // own writes; its offset stays at 10, past the new end.
        truncate_by_name(&p, 4);
        f.write_all(b"XY").unwrap();
        let fd = f.into_raw_fd();
        // SAFETY: `fd` is ours alone: `into_raw_fd` gave up the File's claim.
        assert_eq!(unsafe { libc::close(fd) }, 0, "{opts:?}: close");
        rfmount_sync(&m);
        assert_eq!(
            root.read("f"),
            b"0123\0\0\0\0\0\0XY",
            "{opts:?}: f on the server\n{}",
            tail(&m.log(), 40)
        );
        assert_eq!(srv.count("result=err code=Conflict"), 0, "{opts:?}");
        drop(m);
        fs::remove_file(root.join("f")).unwrap();
    }
}
