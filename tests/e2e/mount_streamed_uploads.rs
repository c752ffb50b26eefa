//! Uploads that stream while a big file is written in order: the data
//! reaches the server before the close (seen as the size of the server's
//! upload temporary while the writer pauses), nothing appears under the
//! name before the close, and a seek back, a dead server or another
//! writer's change give the results a close has always given.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

/// `close(2)` of `f`, with its result (dropping a `File` ignores it).
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` is ours alone: `into_raw_fd` gave up the File's claim.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Copies `len` bytes of `src` (from where it is) to `dst`, 1 MiB a write.
fn copy_part(src: &mut File, dst: &mut File, len: u64) {
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        src.read_exact(&mut buf[..n]).unwrap();
        dst.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Waits until the server's upload temporary holds at least `bytes`.
fn wait_server_holds(srv: &Server, root: &Path, bytes: u64, m: &Mount) {
    let got = wait_for(Duration::from_secs(20), || {
        server_upload_bytes(srv.pid(), root).filter(|&n| n >= bytes)
    });
    assert!(
        got.is_some(),
        "the server never held {bytes} bytes of the upload before the close (it holds {:?})\n---- rfmount log ----\n{}",
        server_upload_bytes(srv.pid(), root),
        tail(&m.log(), 30)
    );
}

/// rfserve's log lines of PUTs of `path` after `mark`.
fn put_lines(srv: &Server, mark: usize, path: &str) -> Vec<String> {
    srv.log()
        .lines()
        .skip(mark)
        .filter(|l| l.contains("op=PUT") && l.contains(&format!("path={path} ")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_64_mib_dd_lands_byte_identical_in_one_streamed_put() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.write_random("src.bin", 64 * MIB, 81);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mark = log_mark(&srv);
    tool(&m, &srv, "dd")
        .arg(format!("if={}", src.display()))
        .args(["of=big.bin", "bs=1M", "status=none"])
        .ok();
    assert_same_file(&src, &root.join("big.bin"));
    let puts = put_lines(&srv, mark, "/big.bin");
    assert_eq!(puts.len(), 1, "one PUT expected: {puts:#?}");
    assert!(
        puts[0].contains("result=ok") && puts[0].contains("open_ended"),
        "the PUT should be a streamed one: {puts:#?}"
    );
    assert_same_file(&src, &m.join("big.bin"));
}

#[test]
fn data_reaches_the_server_before_the_close_and_the_name_only_at_it() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src_path = local.write_random("src.bin", 40 * MIB, 82);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mut src = File::open(&src_path).unwrap();
    let mut f = File::create(m.join("big.bin")).unwrap();
    copy_part(&mut src, &mut f, 24 * MIB);
    // The writer pauses with the file open: what it wrote travels now.
    wait_server_holds(&srv, root.path(), 16 * MIB, &m);
    assert!(
        !root.join("big.bin").exists(),
        "the name appeared on the server before the close"
    );
    copy_part(&mut src, &mut f, 16 * MIB);
    close(f).expect("close");
    assert_same_file(&src_path, &root.join("big.bin"));
    assert!(names_with_prefix(root.path(), UPLOAD_TEMP_PREFIX).is_empty());
}

#[test]
fn a_seek_back_cancels_the_stream_and_the_right_bytes_land() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src_path = local.write_random("src.bin", 32 * MIB, 83);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mark = log_mark(&srv);
    let mut src = File::open(&src_path).unwrap();
    let mut f = File::create(m.join("big.bin")).unwrap();
    copy_part(&mut src, &mut f, 16 * MIB);
    wait_server_holds(&srv, root.path(), 8 * MIB, &m);
    // Rewrites bytes the stream has already sent.
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.write_all(&[0xab; 4096]).unwrap();
    f.seek(SeekFrom::Start(16 * MIB)).unwrap();
    copy_part(&mut src, &mut f, 16 * MIB);
    close(f).expect("close");

    let mut want = fs::read(&src_path).unwrap();
    want[MIB as usize..MIB as usize + 4096].fill(0xab);
    let expected = local.join("expected.bin");
    fs::write(&expected, &want).unwrap();
    assert_same_file(&expected, &root.join("big.bin"));
    let cancelled = wait_for(Duration::from_secs(10), || {
        let puts = put_lines(&srv, mark, "/big.bin");
        puts.iter()
            .any(|l| l.contains("result=err"))
            .then_some(puts)
    });
    let puts = cancelled.unwrap_or_else(|| {
        panic!(
            "the stream was never cancelled: {:#?}",
            put_lines(&srv, mark, "/big.bin")
        )
    });
    let landed: Vec<_> = puts.iter().filter(|l| l.contains("result=ok")).collect();
    assert_eq!(landed.len(), 1, "{puts:#?}");
    assert!(
        !landed[0].contains("open_ended"),
        "the landed PUT should be the upload at close: {puts:#?}"
    );
}

#[test]
fn a_server_killed_mid_stream_leaves_no_partial_file_and_the_close_fails_with_eio() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src_path = local.write_random("src.bin", 24 * MIB, 84);
    let mut srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let mut src = File::open(&src_path).unwrap();
    let mut f = File::create(m.join("big.bin")).unwrap();
    copy_part(&mut src, &mut f, 16 * MIB);
    wait_server_holds(&srv, root.path(), 8 * MIB, &m);
    srv.kill();
    copy_part(&mut src, &mut f, 8 * MIB);
    let err = close(f).expect_err("the close must fail: nothing landed");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        !root.join("big.bin").exists(),
        "a partial file got the name"
    );
    assert!(names_with_prefix(root.path(), UPLOAD_TEMP_PREFIX).is_empty());
    // Kept in the cache, and delivered whole once the server is back.
    assert_same_file(&src_path, &m.join("big.bin"));
    srv.restart();
    if let Err(e) = wait_same_file(&src_path, &root.join("big.bin"), Duration::from_secs(60)) {
        panic!(
            "not delivered after the restart: {e}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
    }
}

#[test]
fn another_writers_change_during_the_stream_is_a_conflict() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    root.write("big.bin", "old\n");
    let src_path = local.write_random("src.bin", 24 * MIB, 85);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "conflict=error"]);
    assert_eq!(text(&fs::read(m.join("big.bin")).unwrap()), "old\n");
    let mut src = File::open(&src_path).unwrap();
    let mut f = File::create(m.join("big.bin")).unwrap();
    copy_part(&mut src, &mut f, 16 * MIB);
    wait_server_holds(&srv, root.path(), 8 * MIB, &m);
    fs::write(root.join("big.bin"), "other\n").unwrap();
    copy_part(&mut src, &mut f, 8 * MIB);
    let err = close(f).expect_err("the close must report the conflict");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(text(&root.read("big.bin")), "other\n");
    assert!(names_with_prefix(root.path(), UPLOAD_TEMP_PREFIX).is_empty());
    // The unsent data stays here.
    assert_same_file(&src_path, &m.join("big.bin"));
}

#[test]
fn a_writeback_mount_uploads_a_big_file_once_after_the_close() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.write_random("src.bin", 32 * MIB, 86);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "writeback"]);
    let mark = log_mark(&srv);
    tool(&m, &srv, "dd")
        .arg(format!("if={}", src.display()))
        .args(["of=big.bin", "bs=1M", "status=none"])
        .ok();
    if let Err(e) = wait_same_file(&src, &root.join("big.bin"), Duration::from_secs(60)) {
        panic!(
            "not uploaded: {e}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        );
    }
    let puts = put_lines(&srv, mark, "/big.bin");
    assert_eq!(puts.len(), 1, "one PUT expected: {puts:#?}");
    assert!(!puts[0].contains("open_ended"), "{puts:#?}");
}

#[test]
fn with_nostream_a_big_file_is_uploaded_at_close() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    let local = TestDir::new("local");
    let src = local.write_random("src.bin", 16 * MIB, 87);
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &["-o", "nostream"]);
    let mark = log_mark(&srv);
    tool(&m, &srv, "dd")
        .arg(format!("if={}", src.display()))
        .args(["of=big.bin", "bs=1M", "status=none"])
        .ok();
    assert_same_file(&src, &root.join("big.bin"));
    let puts = put_lines(&srv, mark, "/big.bin");
    assert_eq!(puts.len(), 1, "one PUT expected: {puts:#?}");
    assert!(!puts[0].contains("open_ended"), "{puts:#?}");
}
