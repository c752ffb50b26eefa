//! The rfmount process follows its mount: it exits within 2 s when the
//! mount goes away by any route (fusermount3 -u, umount, umount -l, the
//! kernel aborting the connection), and a signal to it unmounts its own
//! mount only, never a newer one at the same path.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mount_common::*;
use crate::util::*;

const EXIT_BOUND: Duration = Duration::from_secs(2);

fn mounted_with_a_file() -> (TestDir, Server, Mount) {
    let root = TestDir::new("root");
    root.write("f.txt", "content\n");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    assert_eq!(tool(&m, &srv, "cat").arg("f.txt").stdout(), "content\n");
    (root, srv, m)
}

#[track_caller]
fn assert_exits(m: &Mount, how: &str) {
    let pid = m.pid();
    match wait_exited(pid, Duration::from_secs(20)) {
        Some(took) => assert!(
            took <= EXIT_BOUND,
            "rfmount exited {took:?} after {how} (bound {EXIT_BOUND:?})\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        ),
        None => panic!(
            "rfmount {pid} still runs 20 s after {how}\n---- rfmount log ----\n{}",
            tail(&m.log(), 30)
        ),
    }
}

#[test]
fn fusermount_u_ends_the_process_within_2_s() {
    skip_without_fuse!();
    let (_root, _srv, mut m) = mounted_with_a_file();
    let (st, took) = timed(|| m.unmount_and_wait());
    assert!(st.success(), "rfmount exited with {st}");
    assert!(took <= EXIT_BOUND, "fusermount3 -u and exit took {took:?}");
}

#[test]
fn umount_and_lazy_umount_end_the_process_within_2_s() {
    skip_without_fuse!();
    for args in [&[][..], &["-l"][..]] {
        let (_root, _srv, m) = mounted_with_a_file();
        TestCommand::new("umount")
            .args(args)
            .arg(m.path())
            .timeout(Duration::from_secs(20))
            .ok();
        assert_exits(&m, &format!("umount {}", args.join(" ")));
        assert!(!is_mounted(m.path()));
    }
}

#[test]
fn a_connection_aborted_by_the_kernel_ends_the_process_and_its_dead_mount() {
    skip_without_fuse!();
    let Some(ctl) = FuseCtl::mount() else {
        return;
    };
    let (_root, _srv, m) = mounted_with_a_file();
    let dev = mount_dev(m.path()).expect("mounted");
    let id = dev.split_once(':').expect("major:minor").1;
    ctl.abort(id);
    assert_exits(&m, "aborting its FUSE connection");
    let gone = wait_for(Duration::from_secs(5), || {
        (!is_mounted(m.path())).then_some(())
    });
    assert!(
        gone.is_some(),
        "the dead mount (Transport endpoint is not connected) was left behind\n---- rfmount log ----\n{}",
        tail(&m.log(), 30)
    );
}

/// A program whose working directory is inside a mount, which keeps the
/// mount alive after a lazy unmount.
struct Holder(Child);

impl Holder {
    fn new(dir: &std::path::Path) -> Holder {
        let child = Command::new("sleep")
            .arg("120")
            .current_dir(dir)
            .stdin(Stdio::null())
            .spawn()
            .expect("sleep");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_to_an_rfmount_whose_mount_is_gone_leaves_a_newer_mount_alone() {
    skip_without_fuse!();
    let (root, srv, a) = mounted_with_a_file();
    let path = a.path().to_path_buf();
    let a_dev = mount_dev(&path).expect("A mounted");
    // A program still inside A keeps A's connection (and process) alive
    // after the lazy unmount: A's mount is gone from the path, A is not.
    let holder = Holder::new(&path);
    TestCommand::new("umount")
        .arg("-l")
        .arg(&path)
        .timeout(Duration::from_secs(20))
        .ok();
    assert!(!is_mounted(&path));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        process_alive(a.pid()),
        "A should keep serving the program still using it\n---- rfmount log ----\n{}",
        tail(&a.log(), 30)
    );

    root.write("g.txt", "from B\n");
    let b = ExtraMount::start(&srv.addr(), &path);
    assert_ne!(b.dev(), a_dev);
    assert_eq!(fs::read(path.join("g.txt")).unwrap(), b"from B\n");

    signal(a.pid(), libc::SIGTERM);
    assert_exits(&a, "SIGTERM");
    assert_eq!(
        mount_dev(&path).as_deref(),
        Some(b.dev()),
        "SIGTERM to A touched B's mount\n---- A's log ----\n{}",
        tail(&a.log(), 30)
    );
    assert_eq!(fs::read(path.join("g.txt")).unwrap(), b"from B\n");
    assert_eq!(fs::read(path.join("f.txt")).unwrap(), b"content\n");
    assert!(
        a.log().contains("no longer holds this mount"),
        "A should say why it left the mount point alone\n{}",
        tail(&a.log(), 30)
    );
    drop(holder);
    drop(b);
    assert!(!is_mounted(&path));
}

#[test]
fn sigterm_and_sigint_unmount_the_own_mount() {
    skip_without_fuse!();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (_root, _srv, m) = mounted_with_a_file();
        signal(m.pid(), sig);
        assert_exits(&m, &format!("signal {sig}"));
        assert!(!is_mounted(m.path()), "still mounted after signal {sig}");
    }
}
