//! Temporary directories that tests create files in.

#![allow(dead_code, unused_imports)]

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A unique temporary directory, removed on drop (unless [`TestDir::keep`]
/// was called, or the directory may still hold a live mount).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    leak: bool,
}

impl TestDir {
    /// A fresh directory named after `name` (used only to make the path
    /// recognisable).
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rfmount-e2e-{name}-"))
            .tempdir()
            .expect("creating a temporary directory");
        TestDir {
            dir: Some(dir),
            leak: false,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("directory already released")
            .path()
    }

    /// `rel` inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Creates `rel` (and parents) and returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Writes `content` to `rel` (creating parents) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// Writes `size` deterministic random bytes from `seed` to `rel`.
    pub fn write_random(&self, rel: impl AsRef<Path>, size: u64, seed: u64) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        write_random_file(&p, size, seed);
        p
    }

    /// The content of `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> Vec<u8> {
        let p = self.join(rel);
        fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// Sets the permission bits of `rel`.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) {
        let p = self.join(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    }

    /// Keeps the directory on disk after the test (for debugging).
    pub fn keep(&mut self) {
        self.leak = true;
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.leak {
            if let Some(d) = self.dir.take() {
                eprintln!("note: leaving {} on disk", d.path().display());
                // Forgetting the guard is what keeps the directory.
                std::mem::forget(d);
            }
        }
    }
}
