//! The setup of the write-back tests: a tree of local files to copy into a
//! mount, `rfmount sync`, and the wait for every file to reach the server.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use super::*;
use crate::mount_common::{KIB, wait_same_file};

/// `rfmount sync` of `m`, which must succeed.
pub fn rfmount_sync(m: &Mount) -> Output {
    TestCommand::new(rfmount_bin())
        .arg("sync")
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok()
}

/// Writes `n` files of assorted sizes (4 KiB mostly) under `dir/tree`;
/// returns their names relative to `dir`.
pub fn make_tree(dir: &TestDir, n: u64) -> Vec<String> {
    dir.mkdir("tree");
    (0..n)
        .map(|i| {
            let name = format!("tree/f{i:04}");
            let size = if i % 50 == 7 { 300 * KIB + i } else { 4 * KIB };
            dir.write_random(&name, size, 1000 + i);
            name
        })
        .collect()
}

/// Waits up to `timeout` for each of `names` under `root` to equal the
/// file of that name under `local`.
pub fn assert_delivered(local: &TestDir, root: &Path, names: &[String], timeout: Duration) {
    for n in names {
        if let Err(e) = wait_same_file(&local.join(n), &root.join(n), timeout) {
            panic!("{n} never arrived on the server: {e}");
        }
    }
}

/// `cp -r` of `local`'s `tree` into the top of mount `m`.
pub fn copy_tree_in(m: &Mount, srv: &Server, local: &TestDir) {
    m.cmd("cp")
        .arg("-r")
        .arg(local.join("tree"))
        .arg(".")
        .with_server(srv)
        .ok();
}

/// A local tree of files (see [`make_tree`]) and a mount of an empty
/// export with an empty directory `tree` made through it, ready for the
/// tree to be copied in. Fields drop in order: the mount goes first.
pub struct TreeToCopy {
    pub m: Mount,
    pub srv: Server,
    pub names: Vec<String>,
    pub local: TestDir,
    pub root: TestDir,
}

impl TreeToCopy {
    /// `n` files; `mount` are the mount's extra arguments.
    pub fn start(n: u64, mount: &[&str]) -> TreeToCopy {
        let root = TestDir::new("root");
        let local = TestDir::new("local");
        let names = make_tree(&local, n);
        let srv = Server::start(root.path(), &[]);
        let m = Mount::start(&srv, mount);
        m.cmd("mkdir").arg("tree").with_server(&srv).ok();
        TreeToCopy {
            m,
            srv,
            names,
            local,
            root,
        }
    }

    /// `cp -r` of the local tree into the mount; every close returns.
    pub fn copy_in(&self) {
        copy_tree_in(&self.m, &self.srv, &self.local);
    }

    /// Waits up to `timeout` for every file of the tree to be on the server.
    pub fn assert_delivered(&self, timeout: Duration) {
        assert_delivered(&self.local, self.root.path(), &self.names, timeout);
    }
}
