//! A full disk: an upload that cannot fit is refused with `NoSpace` before
//! the client streams it, and the connection goes on. Needs a small tmpfs,
//! so it runs only where this process may mount one (root); elsewhere it
//! says so and passes.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use common::{Client, checksum, p};
use rfmount_proto::{ClientMsg, ErrorCode, Op, Reply, ServerMsg};
use rfmount_server::{LocalStore, Server, ServerConfig};

/// Names the server makes itself: staging links and fallback temporaries.
const TEMP_PREFIX: &str = ".rfserve-upload-";

/// A 1 MiB tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"size=1m".as_ptr().cast(),
            )
        };
        (r == 0).then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[test]
fn upload_larger_than_the_free_space_is_refused_up_front() {
    let Some(disk) = SmallDisk::mount() else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let root = disk.dir.path();
    std::fs::write(root.join("f"), "old").unwrap();
    let store = LocalStore::open(root).unwrap();
    let server = Server::bind("127.0.0.1:0", Arc::new(store), ServerConfig::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.run());

    let mut c = Client::connect(addr);
    c.hello();
    c.welcome();
    let size = 4u64 << 20;
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    // The refusal comes before any data is sent.
    match c.recv() {
        ServerMsg::Reply {
            id: 1,
            result: Err(e),
        } => assert_eq!(e.code, ErrorCode::NoSpace, "{e:?}"),
        other => panic!("{other:?}"),
    }
    // A client that streams anyway is ignored, not disconnected.
    c.send(&ClientMsg::PutData {
        id: 1,
        data: vec![0; 1000],
    });
    c.send(&ClientMsg::PutEnd {
        id: 1,
        checksum: checksum(b""),
    });
    assert_eq!(c.request(2, Op::Ping), Ok(Reply::Done));
    assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "old");
    let temps = std::fs::read_dir(root)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(TEMP_PREFIX)
        })
        .count();
    assert_eq!(temps, 0);
    // What fits still works.
    assert!(matches!(
        c.put(3, "small", &[5; 1000], 300),
        Ok(Reply::Changed { meta: Some(_), .. })
    ));
    drop(c);
    stop.shutdown();
    thread.join().unwrap().unwrap();
}
