//! A randomised reference test, after mountpoint-s3's reftests: a seeded
//! random sequence of filesystem operations is applied both to a plain local
//! directory (the reference) and to a real rfmount mount (std::fs calls on
//! paths under the mount point, so every one goes through the kernel and
//! FUSE), and each operation must have the same *outcome* on both sides: Ok
//! and the same value, or the same failing step with the same errno.
//!
//! The namespace is small on purpose (six file names, three directory names,
//! directories nested at most two deep) so that operations collide: writes
//! to files that were just renamed away, `rmdir` of directories that are not
//! empty, renames over files and into directories, files kept open across
//! namespace changes. Up to two file handles stay open across many
//! operations, so uploads at close race with renames and unlinks.
//!
//! After each operation that closes (or fsyncs) a written descriptor, the
//! server's copy on disk must already equal the reference (close-to-open:
//! `close` uploads). At the end all handles are closed and the export
//! directory on the server's disk must equal the reference tree byte for
//! byte (names, kinds, file bytes, mode & 0o777), as must the tree seen
//! through the mount, with no server temporary name left behind.
//!
//! Seeds: three fixed ones; `RF_REFTEST_SEED=123` (or `1,2,0x3f`) reruns
//! others, `RF_REFTEST_OPS=N` changes the length of a run. A mismatch panics
//! with the seed, the op index and the whole op log so far.
//!
//! What is deliberately *not* compared (accepted differences, see
//! docs/SEMANTICS.md and README.md):
//! - directory mtimes, and directory sizes (`st_size` of a directory is a
//!   property of the server's filesystem, like `st_blocks`);
//! - file ownership (everything appears owned by the mounting user);
//! - atime, ctime, `st_blocks`, `st_nlink`, inode numbers;
//! - hard links and symlinks: never generated (EPERM through the mount);
//! - `renameat2` flags: never generated (EINVAL through the mount);
//! - the mtime of a file written without an explicit time: the mount's file
//!   gets its time when it is uploaded (at close or fsync), the reference
//!   when it is written, so implicit times may differ by the time a
//!   descriptor held unsent writes: they are compared with a slack of 2 s
//!   plus the longest time a handle has been held open so far. Times set
//!   explicitly (`utimensat`, `futimens`) are all before
//!   [`EXPLICIT_MTIME_LIMIT`] and must match to the second;
//! - what a *second* open (or another handle) sees of a file while a handle
//!   that wrote to it is still open: close-to-open defines nothing about
//!   unsent writes, so those bytes are not compared (the open's success or
//!   failure still is), and neither is the server's copy of such a file
//!   until that handle is closed or fsynced;
//! - permission checks: the mount does not use `-o default_permissions`, so
//!   modes are chosen to keep the owner's read and write bits (and search
//!   bits on directories), which leaves nothing for a check to refuse.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::util::*;

const FILE_NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const DIR_NAMES: [&str; 3] = ["x", "y", "z"];
/// File handles that may stay open across operations.
const SLOTS: usize = 2;
const DEFAULT_SEEDS: [u64; 3] = [0x5eed_0001, 0x5eed_0002, 0x5eed_0003];
const DEFAULT_OPS: usize = 300;
/// Modes for chmod: owner read+write always (see the module comment).
const FILE_MODES: [u32; 6] = [0o600, 0o640, 0o644, 0o664, 0o700, 0o755];
/// Modes for chmod of a directory: owner rwx always.
const DIR_MODES: [u32; 4] = [0o700, 0o750, 0o755, 0o775];
/// Every mtime the test sets explicitly is before this (2017-07-14), every
/// implicit one (the time of a write) is after it.
const EXPLICIT_MTIME_LIMIT: i64 = 1_500_000_000;
/// Slack for implicit mtimes (clock granularity and the time between a
/// write and the upload of a file written through a short-lived
/// descriptor); the longest time a handle was held open is added to it.
const MTIME_SLACK_SECS: i64 = 2;
/// Longer than the mount's default attr_timeout and dir_timeout (1 s), so
/// that the operations after a pause see expired caches.
const PAUSE: Duration = Duration::from_millis(1100);

/// One generated operation. Paths are relative to the tree's root.
#[derive(Clone, Debug)]
enum Op {
    /// `File::create` + `write_all` + close: a whole new content.
    WriteFile {
        path: String,
        len: usize,
        seed: u64,
    },
    /// `open(O_WRONLY|O_APPEND[|O_CREAT])` + write + close.
    Append {
        path: String,
        len: usize,
        seed: u64,
        create: bool,
    },
    /// `open(O_WRONLY)` without `O_TRUNC` + `pwrite` + close.
    WriteAt {
        path: String,
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// `open(O_WRONLY)` + `ftruncate` (`File::set_len`) + close.
    OpenSetLen {
        path: String,
        size: u64,
    },
    /// `truncate(2)` by path, no descriptor.
    Truncate {
        path: String,
        size: u64,
    },
    /// `fs::read`: open, read to the end, close.
    Read {
        path: String,
    },
    Remove {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    /// `futimens` on a descriptor opened for writing (`File::set_modified`),
    /// or `utimensat` by path.
    SetMtime {
        path: String,
        secs: i64,
        via_handle: bool,
    },
    Stat {
        path: String,
    },
    ReadDir {
        path: String,
    },
    /// Sleeps [`PAUSE`] (once, not per side).
    Pause,
    /// Opens a long-lived handle in `slot`, read+write or read+append.
    Open {
        slot: usize,
        path: String,
        create: bool,
        truncate: bool,
        append: bool,
    },
    /// `pwrite` at `offset`, or a plain write on an append handle.
    HandleWrite {
        slot: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    HandleSetLen {
        slot: usize,
        size: u64,
    },
    /// `pread` of the whole file through the handle.
    HandleRead {
        slot: usize,
    },
    HandleFsync {
        slot: usize,
    },
    /// `close(2)`, its error reported.
    Close {
        slot: usize,
    },
}

/// A successful operation's result.
#[derive(Clone, Debug)]
enum Value {
    Done,
    Bytes(Vec<u8>),
    Stat(StatView),
    Names(Vec<String>),
}

/// The attributes that are compared (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StatView {
    is_dir: bool,
    is_file: bool,
    /// Files only.
    size: Option<u64>,
    mode: u32,
    /// Files only, whole seconds.
    mtime: Option<i64>,
}

impl StatView {
    fn of(md: &fs::Metadata) -> StatView {
        let is_file = md.is_file();
        StatView {
            is_dir: md.is_dir(),
            is_file,
            size: is_file.then_some(md.len()),
            mode: md.permissions().mode() & 0o777,
            mtime: is_file.then_some(md.mtime()),
        }
    }
}

/// A failed operation: which system call failed, and how.
#[derive(Clone, Debug)]
struct Failure {
    step: &'static str,
    errno: Option<i32>,
    text: String,
}

type Outcome = Result<Value, Failure>;

fn failed(step: &'static str) -> impl FnOnce(io::Error) -> Failure {
    move |e| Failure {
        step,
        errno: e.raw_os_error(),
        text: e.to_string(),
    }
}

fn errno_name(errno: Option<i32>) -> String {
    let Some(n) = errno else {
        return "no errno".into();
    };
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {n}"),
    };
    name.into()
}

/// FNV-1a, to name content in the log without printing it.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn show_stat(s: &StatView) -> String {
    let kind = match (s.is_dir, s.is_file) {
        (true, _) => "dir",
        (_, true) => "file",
        _ => "other",
    };
    let mut out = format!("{kind} mode={:o}", s.mode);
    if let Some(size) = s.size {
        out.push_str(&format!(" size={size}"));
    }
    if let Some(t) = s.mtime {
        out.push_str(&format!(" mtime={t}"));
    }
    out
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Ok(Value::Done) => "ok".into(),
        Ok(Value::Bytes(b)) => format!("ok {} bytes (fnv {:016x})", b.len(), fnv(b)),
        Ok(Value::Stat(s)) => format!("ok {}", show_stat(s)),
        Ok(Value::Names(n)) => format!("ok [{}]", n.join(" ")),
        Err(f) => format!("Err({}: {}, {})", f.step, errno_name(f.errno), f.text),
    }
}

/// Whether two file mtimes agree: explicit times exactly, implicit ones
/// within `slack` seconds (see the module comment).
fn mtimes_agree(reference: i64, other: i64, slack: i64) -> bool {
    if reference < EXPLICIT_MTIME_LIMIT || other < EXPLICIT_MTIME_LIMIT {
        reference == other
    } else {
        (reference - other).abs() <= slack
    }
}

/// Where two byte strings part; `other` names the side compared with the
/// reference.
fn bytes_differ(r: &[u8], m: &[u8], other: &str) -> Option<String> {
    if r == m {
        return None;
    }
    let sizes = format!("reference {} bytes, {other} {} bytes", r.len(), m.len());
    Some(match r.iter().zip(m).position(|(a, b)| a != b) {
        Some(i) => format!("{sizes}, first difference at offset {i}"),
        None => format!("{sizes}, equal up to the shorter length"),
    })
}

/// `Err` with why, when the reference's and the mount's outcomes of one
/// operation differ. `skip_bytes`: content read is not defined (see the
/// module comment), only that the read succeeded. `slack`: for implicit
/// mtimes.
fn compare(r: &Outcome, m: &Outcome, skip_bytes: bool, slack: i64) -> Result<(), String> {
    let differ = || {
        Err(format!(
            "reference: {}\n    mount:     {}",
            show_outcome(r),
            show_outcome(m)
        ))
    };
    match (r, m) {
        (Err(a), Err(b)) if a.step == b.step && a.errno == b.errno => Ok(()),
        (Ok(Value::Done), Ok(Value::Done)) => Ok(()),
        (Ok(Value::Bytes(a)), Ok(Value::Bytes(b))) => {
            if skip_bytes {
                return Ok(());
            }
            match bytes_differ(a, b, "mount") {
                None => Ok(()),
                Some(why) => Err(format!("content read differs: {why}")),
            }
        }
        (Ok(Value::Stat(a)), Ok(Value::Stat(b))) => {
            let times = match (a.mtime, b.mtime) {
                (Some(x), Some(y)) => mtimes_agree(x, y, slack),
                (x, y) => x == y,
            };
            let same = a.is_dir == b.is_dir
                && a.is_file == b.is_file
                && a.size == b.size
                && a.mode == b.mode
                && times;
            if same { Ok(()) } else { differ() }
        }
        (Ok(Value::Names(a)), Ok(Value::Names(b))) if a == b => Ok(()),
        _ => differ(),
    }
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// `close(2)` with its error, which `File`'s drop would ignore: on the
/// mount this is where the upload's error appears.
fn close(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just released by its `File` and is closed once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// `truncate(2)`: by path, without opening the file.
fn truncate_path(p: &Path, size: u64) -> io::Result<()> {
    let c = c_path(p);
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::truncate(c.as_ptr(), size as libc::off_t) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `utimensat(2)` by path: mtime set, atime left alone.
fn set_mtime_path(p: &Path, secs: i64) -> io::Result<()> {
    let c = c_path(p);
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a valid path and a two-element timespec array.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn read_all_at(f: &File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read_at(&mut buf, out.len() as u64) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(d, _)| d)
}

fn depth(rel: &str) -> usize {
    if rel.is_empty() {
        0
    } else {
        rel.split('/').count()
    }
}

// ---------------------------------------------------------------------------
// One side: a directory tree and its open handles
// ---------------------------------------------------------------------------

struct Handle {
    file: File,
    append: bool,
}

/// The reference directory or the mount point, with the same operations.
struct Side {
    root: PathBuf,
    handles: [Option<Handle>; SLOTS],
}

impl Side {
    fn new(root: &Path) -> Side {
        Side {
            root: root.to_path_buf(),
            handles: [None, None],
        }
    }

    fn p(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn handle(&self, slot: usize) -> &Handle {
        self.handles[slot]
            .as_ref()
            .expect("the generator only uses open slots")
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::WriteFile { path, len, seed } => {
                let mut f = File::create(self.p(path)).map_err(failed("open"))?;
                f.write_all(&data(*seed, *len)).map_err(failed("write"))?;
                close(f).map_err(failed("close"))?;
            }
            Op::Append {
                path,
                len,
                seed,
                create,
            } => {
                let mut f = OpenOptions::new()
                    .append(true)
                    .create(*create)
                    .open(self.p(path))
                    .map_err(failed("open"))?;
                f.write_all(&data(*seed, *len)).map_err(failed("write"))?;
                close(f).map_err(failed("close"))?;
            }
            Op::WriteAt {
                path,
                offset,
                len,
                seed,
            } => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(self.p(path))
                    .map_err(failed("open"))?;
                f.write_all_at(&data(*seed, *len), *offset)
                    .map_err(failed("pwrite"))?;
                close(f).map_err(failed("close"))?;
            }
            Op::OpenSetLen { path, size } => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(self.p(path))
                    .map_err(failed("open"))?;
                f.set_len(*size).map_err(failed("ftruncate"))?;
                close(f).map_err(failed("close"))?;
            }
            Op::Truncate { path, size } => {
                truncate_path(&self.p(path), *size).map_err(failed("truncate"))?;
            }
            Op::Read { path } => {
                let mut f = File::open(self.p(path)).map_err(failed("open"))?;
                let mut v = Vec::new();
                f.read_to_end(&mut v).map_err(failed("read"))?;
                return Ok(Value::Bytes(v));
            }
            Op::Remove { path } => fs::remove_file(self.p(path)).map_err(failed("unlink"))?,
            Op::Rename { from, to } => {
                fs::rename(self.p(from), self.p(to)).map_err(failed("rename"))?;
            }
            Op::Mkdir { path } => fs::create_dir(self.p(path)).map_err(failed("mkdir"))?,
            Op::Rmdir { path } => fs::remove_dir(self.p(path)).map_err(failed("rmdir"))?,
            Op::Chmod { path, mode } => {
                fs::set_permissions(self.p(path), fs::Permissions::from_mode(*mode))
                    .map_err(failed("chmod"))?;
            }
            Op::SetMtime {
                path,
                secs,
                via_handle: true,
            } => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(self.p(path))
                    .map_err(failed("open"))?;
                f.set_modified(UNIX_EPOCH + Duration::from_secs(*secs as u64))
                    .map_err(failed("futimens"))?;
                close(f).map_err(failed("close"))?;
            }
            Op::SetMtime {
                path,
                secs,
                via_handle: false,
            } => set_mtime_path(&self.p(path), *secs).map_err(failed("utimensat"))?,
            Op::Stat { path } => {
                let md = fs::metadata(self.p(path)).map_err(failed("stat"))?;
                return Ok(Value::Stat(StatView::of(&md)));
            }
            Op::ReadDir { path } => {
                let mut names = Vec::new();
                for e in fs::read_dir(self.p(path)).map_err(failed("opendir"))? {
                    let e = e.map_err(failed("readdir"))?;
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
                names.sort();
                return Ok(Value::Names(names));
            }
            Op::Pause => {}
            Op::Open {
                slot,
                path,
                create,
                truncate,
                append,
            } => {
                assert!(self.handles[*slot].is_none(), "slot {slot} in use");
                let file = OpenOptions::new()
                    .read(true)
                    .write(!append)
                    .append(*append)
                    .create(*create)
                    .truncate(*truncate)
                    .open(self.p(path))
                    .map_err(failed("open"))?;
                self.handles[*slot] = Some(Handle {
                    file,
                    append: *append,
                });
            }
            Op::HandleWrite {
                slot,
                offset,
                len,
                seed,
            } => {
                let h = self.handle(*slot);
                let bytes = data(*seed, *len);
                if h.append {
                    (&h.file).write_all(&bytes).map_err(failed("write"))?;
                } else {
                    h.file
                        .write_all_at(&bytes, *offset)
                        .map_err(failed("pwrite"))?;
                }
            }
            Op::HandleSetLen { slot, size } => {
                self.handle(*slot)
                    .file
                    .set_len(*size)
                    .map_err(failed("ftruncate"))?;
            }
            Op::HandleRead { slot } => {
                let v = read_all_at(&self.handle(*slot).file).map_err(failed("pread"))?;
                return Ok(Value::Bytes(v));
            }
            Op::HandleFsync { slot } => {
                self.handle(*slot)
                    .file
                    .sync_all()
                    .map_err(failed("fsync"))?;
            }
            Op::Close { slot } => {
                let h = self.handles[*slot].take().expect("slot in use");
                close(h.file).map_err(failed("close"))?;
            }
        }
        Ok(Value::Done)
    }
}

// ---------------------------------------------------------------------------
// Trees
// ---------------------------------------------------------------------------

/// One entry of a tree walk.
#[derive(Debug)]
struct Node {
    kind: &'static str,
    mode: u32,
    ino: u64,
    mtime: i64,
    /// Files only.
    data: Option<Vec<u8>>,
}

/// Everything below `root` (not following symlinks), by relative path.
fn walk(root: &Path, with_data: bool) -> Result<BTreeMap<String, Node>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let abs = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        let rd = fs::read_dir(&abs).map_err(|e| format!("listing {}: {e}", abs.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("listing {}: {e}", abs.display()))?;
            let rel = join(&dir, &e.file_name().to_string_lossy());
            let md = fs::symlink_metadata(e.path())
                .map_err(|err| format!("stat {}: {err}", e.path().display()))?;
            let kind = if md.is_dir() {
                stack.push(rel.clone());
                "dir"
            } else if md.is_file() {
                "file"
            } else {
                "other"
            };
            let data = if with_data && kind == "file" {
                Some(
                    fs::read(e.path())
                        .map_err(|err| format!("read {}: {err}", e.path().display()))?,
                )
            } else {
                None
            };
            out.insert(
                rel,
                Node {
                    kind,
                    mode: md.permissions().mode() & 0o777,
                    ino: md.ino(),
                    mtime: md.mtime(),
                    data,
                },
            );
        }
    }
    Ok(out)
}

/// Every difference between the reference tree and `other` (called
/// `other_name` in the messages).
fn tree_differences(
    reference: &BTreeMap<String, Node>,
    other: &BTreeMap<String, Node>,
    other_name: &str,
    slack: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, r) in reference {
        let Some(o) = other.get(rel) else {
            out.push(format!("{rel}: missing ({} in the reference)", r.kind));
            continue;
        };
        if r.kind != o.kind {
            out.push(format!(
                "{rel}: a {} but a {} in the reference",
                o.kind, r.kind
            ));
            continue;
        }
        if r.mode != o.mode {
            out.push(format!("{rel}: mode {:o}, reference {:o}", o.mode, r.mode));
        }
        if r.kind == "file" {
            if let (Some(a), Some(b)) = (&r.data, &o.data) {
                if let Some(why) = bytes_differ(a, b, other_name) {
                    out.push(format!("{rel}: content differs: {why}"));
                }
            }
            if !mtimes_agree(r.mtime, o.mtime, slack) {
                out.push(format!("{rel}: mtime {}, reference {}", o.mtime, r.mtime));
            }
        }
    }
    for (rel, o) in other {
        if !reference.contains_key(rel) {
            out.push(format!(
                "{rel}: unexpected {} (not in the reference)",
                o.kind
            ));
        }
    }
    out
}

/// `ls -lR`-like text of a tree, for failure reports.
fn show_tree(root: &Path) -> String {
    match walk(root, true) {
        Ok(t) if t.is_empty() => "(empty)\n".into(),
        Ok(t) => t
            .iter()
            .map(|(rel, n)| match &n.data {
                Some(d) => format!(
                    "{rel}  {} {:o} {} bytes fnv {:016x} mtime {}\n",
                    n.kind,
                    n.mode,
                    d.len(),
                    fnv(d),
                    n.mtime
                ),
                None => format!("{rel}  {} {:o}\n", n.kind, n.mode),
            })
            .collect(),
        Err(e) => format!("(cannot walk: {e})\n"),
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

/// What the test knows about an open slot.
struct SlotInfo {
    /// The reference file's inode: the handle's file wherever it moves.
    ino: u64,
    /// Wrote (or truncated, or created) since it was opened or last fsynced.
    written: bool,
    opened: Instant,
}

struct Run {
    seed: u64,
    rng: Rng,
    reference: Side,
    mount: Side,
    export: PathBuf,
    slots: [Option<SlotInfo>; SLOTS],
    /// The longest time a handle was held open (closed ones).
    longest_hold: Duration,
    log: Vec<String>,
}

impl Run {
    // --- generation -------------------------------------------------------

    fn chance(&mut self, percent: u64) -> bool {
        self.rng.range(0, 100) < percent
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.range(0, from.len() as u64) as usize]
    }

    fn pick_string(&mut self, from: &[String]) -> String {
        from[self.rng.range(0, from.len() as u64) as usize].clone()
    }

    /// Entries of the reference tree, files and directories.
    fn existing(&self) -> (Vec<String>, Vec<String>) {
        let tree = walk(&self.reference.root, false).expect("walking the reference");
        let mut files = Vec::new();
        let mut dirs = Vec::new();
        for (rel, n) in tree {
            if n.kind == "dir" {
                dirs.push(rel);
            } else {
                files.push(rel);
            }
        }
        (files, dirs)
    }

    fn ref_size(&self, rel: &str) -> u64 {
        fs::metadata(self.reference.p(rel)).map_or(0, |m| m.len())
    }

    fn ref_ino(&self, rel: &str) -> Option<u64> {
        fs::metadata(self.reference.p(rel)).ok().map(|m| m.ino())
    }

    /// A directory prefix of random depth (0, 1 or 2).
    fn random_prefix(&mut self) -> String {
        let d = match self.rng.range(0, 10) {
            0..=3 => 0,
            4..=7 => 1,
            _ => 2,
        };
        let mut p = String::new();
        for _ in 0..d {
            let name = self.pick(&DIR_NAMES);
            p = join(&p, name);
        }
        p
    }

    /// A file name, now and then a directory's (type collisions).
    fn random_file_name(&mut self) -> &'static str {
        if self.chance(10) {
            self.pick(&DIR_NAMES)
        } else {
            self.pick(&FILE_NAMES)
        }
    }

    /// A file path: mostly an existing file, else anywhere.
    fn file_path(&mut self) -> String {
        let (files, dirs) = self.existing();
        if !files.is_empty() && self.chance(65) {
            return self.pick_string(&files);
        }
        let prefix = if !dirs.is_empty() && self.chance(50) {
            let d = self.pick_string(&dirs);
            if depth(&d) <= 2 { d } else { String::new() }
        } else {
            self.random_prefix()
        };
        let name = self.random_file_name();
        join(&prefix, name)
    }

    /// A directory path at depth 1 or 2: mostly an existing directory.
    fn dir_path(&mut self) -> String {
        let (_, dirs) = self.existing();
        if !dirs.is_empty() && self.chance(50) {
            return self.pick_string(&dirs);
        }
        let top = self.pick(&DIR_NAMES);
        let name = if self.chance(10) {
            self.pick(&FILE_NAMES)
        } else {
            self.pick(&DIR_NAMES)
        };
        if self.chance(60) {
            name.to_owned()
        } else {
            join(top, name)
        }
    }

    /// The root, or a directory path.
    fn dir_or_root(&mut self) -> String {
        if self.chance(25) {
            String::new()
        } else {
            self.dir_path()
        }
    }

    fn new_size(&mut self, current: u64) -> u64 {
        match self.rng.range(0, 4) {
            0 => 0,
            1 => self.rng.range(0, current + 1),
            2 => current + self.rng.range(1, 32 * 1024),
            _ => self.rng.range(0, 80 * 1024),
        }
    }

    fn whole_file_len(&mut self) -> usize {
        if self.chance(5) {
            300 * 1024
        } else {
            self.rng.range(0, 64 * 1024 + 1) as usize
        }
    }

    fn explicit_mtime(&mut self) -> i64 {
        self.rng.range(1_000_000_000, EXPLICIT_MTIME_LIMIT as u64) as i64
    }

    fn rename_op(&mut self) -> Op {
        match self.rng.range(0, 20) {
            // A file to another name in its directory (maybe over a file).
            0..=6 => {
                let from = self.file_path();
                let name = self.random_file_name();
                let to = join(parent_of(&from), name);
                Op::Rename { from, to }
            }
            // A file into another directory.
            7..=11 => {
                let from = self.file_path();
                let dir = self.dir_or_root();
                let name = if self.chance(50) {
                    from.rsplit('/').next().unwrap_or(&from).to_owned()
                } else {
                    self.random_file_name().to_owned()
                };
                let to = join(&dir, &name);
                Op::Rename { from, to }
            }
            // A directory to a new name (maybe over another directory),
            // keeping the nesting at most two deep.
            12..=16 => {
                let from = self.dir_path();
                let mut to = self.dir_path();
                let has_subdirs = self
                    .existing()
                    .1
                    .iter()
                    .any(|d| d.starts_with(&format!("{from}/")));
                if has_subdirs && depth(&to) > 1 {
                    to = to.rsplit('/').next().unwrap_or(&to).to_owned();
                }
                Op::Rename { from, to }
            }
            // Anything to anything.
            _ => {
                let from = if self.chance(50) {
                    self.file_path()
                } else {
                    self.dir_path()
                };
                let to = if self.chance(50) {
                    self.file_path()
                } else {
                    self.dir_path()
                };
                Op::Rename { from, to }
            }
        }
    }

    fn handle_op(&mut self) -> Op {
        let open: Vec<usize> = (0..SLOTS).filter(|&s| self.slots[s].is_some()).collect();
        let free: Vec<usize> = (0..SLOTS).filter(|&s| self.slots[s].is_none()).collect();
        // 0..20 opens a free slot; with both slots in use it closes one.
        let roll = self.rng.range(0, 100);
        if open.is_empty() || (!free.is_empty() && roll < 20) {
            let slot = free[self.rng.range(0, free.len() as u64) as usize];
            let path = self.file_path();
            let create = self.chance(70);
            let (truncate, append) = match self.rng.range(0, 10) {
                0..=1 => (true, false),
                2..=3 => (false, true),
                _ => (false, false),
            };
            return Op::Open {
                slot,
                path,
                create,
                truncate,
                append,
            };
        }
        let slot = open[self.rng.range(0, open.len() as u64) as usize];
        let size = self
            .reference
            .handle(slot)
            .file
            .metadata()
            .map_or(0, |m| m.len());
        match roll {
            20..=54 => {
                let len = if self.chance(5) {
                    100 * 1024
                } else {
                    self.rng.range(1, 16 * 1024) as usize
                };
                Op::HandleWrite {
                    slot,
                    offset: self.rng.range(0, size + 4097),
                    len,
                    seed: self.rng.next_u64(),
                }
            }
            55..=64 => Op::HandleSetLen {
                slot,
                size: self.new_size(size),
            },
            65..=74 => Op::HandleRead { slot },
            75..=79 => Op::HandleFsync { slot },
            _ => Op::Close { slot },
        }
    }

    fn next_op(&mut self) -> Op {
        match self.rng.range(0, 100) {
            0..=9 => Op::WriteFile {
                path: self.file_path(),
                len: self.whole_file_len(),
                seed: self.rng.next_u64(),
            },
            10..=14 => Op::Append {
                path: self.file_path(),
                len: self.rng.range(0, 8 * 1024) as usize,
                seed: self.rng.next_u64(),
                create: self.chance(30),
            },
            15..=19 => {
                let path = self.file_path();
                let size = self.ref_size(&path);
                Op::WriteAt {
                    offset: self.rng.range(0, size + 4097),
                    len: self.rng.range(1, 16 * 1024) as usize,
                    seed: self.rng.next_u64(),
                    path,
                }
            }
            20..=22 => {
                let path = self.file_path();
                let size = self.new_size(self.ref_size(&path));
                Op::OpenSetLen { path, size }
            }
            23..=25 => {
                let path = self.file_path();
                let size = self.new_size(self.ref_size(&path));
                Op::Truncate { path, size }
            }
            26..=33 => Op::Read {
                path: self.file_path(),
            },
            34..=38 => Op::Remove {
                path: self.file_path(),
            },
            39..=46 => self.rename_op(),
            47..=53 => Op::Mkdir {
                path: self.dir_path(),
            },
            54..=57 => Op::Rmdir {
                path: self.dir_path(),
            },
            58..=61 => {
                let path = if self.chance(70) {
                    self.file_path()
                } else {
                    self.dir_path()
                };
                let is_dir = fs::metadata(self.reference.p(&path)).is_ok_and(|m| m.is_dir());
                let mode = if is_dir {
                    self.pick_mode(&DIR_MODES)
                } else {
                    self.pick_mode(&FILE_MODES)
                };
                Op::Chmod { path, mode }
            }
            62..=65 => Op::SetMtime {
                path: self.file_path(),
                secs: self.explicit_mtime(),
                via_handle: self.chance(50),
            },
            66..=71 => Op::Stat {
                path: if self.chance(60) {
                    self.file_path()
                } else {
                    self.dir_or_root()
                },
            },
            72..=76 => Op::ReadDir {
                path: self.dir_or_root(),
            },
            77 => Op::Pause,
            _ => self.handle_op(),
        }
    }

    fn pick_mode(&mut self, modes: &[u32]) -> u32 {
        modes[self.rng.range(0, modes.len() as u64) as usize]
    }

    // --- checking ---------------------------------------------------------

    /// Seconds two implicit mtimes may differ by: the slack plus the
    /// longest time a handle was (or still is) held open.
    fn mtime_slack(&self) -> i64 {
        let held = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.opened.elapsed())
            .fold(self.longest_hold, Duration::max);
        MTIME_SLACK_SECS + held.as_secs() as i64 + 1
    }

    /// A written handle other than `except` is open on reference inode `ino`.
    fn unsent_writes_on(&self, ino: u64, except: Option<usize>) -> bool {
        self.slots.iter().enumerate().any(|(s, info)| {
            Some(s) != except && info.as_ref().is_some_and(|i| i.written && i.ino == ino)
        })
    }

    /// Reads whose content is not defined (see the module comment).
    fn skip_bytes(&self, op: &Op) -> bool {
        match op {
            Op::Read { path } => self
                .ref_ino(path)
                .is_some_and(|ino| self.unsent_writes_on(ino, None)),
            Op::HandleRead { slot } => self.slots[*slot]
                .as_ref()
                .is_some_and(|i| self.unsent_writes_on(i.ino, Some(*slot))),
            _ => false,
        }
    }

    /// Right after a written descriptor was closed or fsynced: the server's
    /// copy of the reference file at `rel` is already the same (bytes, mode,
    /// mtime), unless another handle has unsent writes to it.
    fn check_export_file(&self, rel: &str) -> Result<(), String> {
        let rp = self.reference.p(rel);
        let Ok(md) = fs::metadata(&rp) else {
            return Ok(());
        };
        if !md.is_file() || self.unsent_writes_on(md.ino(), None) {
            return Ok(());
        }
        let ep = self.export.join(rel);
        let want = fs::read(&rp).map_err(|e| format!("reading reference {rel}: {e}"))?;
        let got = fs::read(&ep)
            .map_err(|e| format!("after close, the server's {rel} cannot be read: {e}"))?;
        if let Some(why) = bytes_differ(&want, &got, "server") {
            return Err(format!("after close, the server's {rel} differs: {why}"));
        }
        let emd = fs::metadata(&ep).map_err(|e| format!("stat server's {rel}: {e}"))?;
        let (rmode, emode) = (
            md.permissions().mode() & 0o777,
            emd.permissions().mode() & 0o777,
        );
        if rmode != emode {
            return Err(format!(
                "after close, the server's {rel} has mode {emode:o}, reference {rmode:o}"
            ));
        }
        if !mtimes_agree(md.mtime(), emd.mtime(), self.mtime_slack()) {
            return Err(format!(
                "after close, the server's {rel} has mtime {}, reference {}",
                emd.mtime(),
                md.mtime()
            ));
        }
        Ok(())
    }

    /// The reference path of inode `ino`, if it still has one.
    fn ref_path_of(&self, ino: u64) -> Option<String> {
        walk(&self.reference.root, false)
            .expect("walking the reference")
            .into_iter()
            .find(|(_, n)| n.kind == "file" && n.ino == ino)
            .map(|(rel, _)| rel)
    }

    /// Panics with the seed, what failed (`at`: an op and its index, or the
    /// final check), why, the op log and both trees.
    fn fail(&self, at: &str, why: &str) -> ! {
        panic!(
            "mount_reftest: seed {seed:#x}, {at}:\n    {why}\n\
             reproduce: RF_REFTEST_SEED={seed:#x} cargo nextest run --test e2e mount_reftest\n\
             ---- op log (seed {seed:#x}, {n} ops) ----\n{log}\n\
             ---- reference tree ----\n{rt}\
             ---- server's export tree ----\n{et}",
            seed = self.seed,
            n = self.log.len(),
            log = self.log.join("\n"),
            rt = show_tree(&self.reference.root),
            et = show_tree(&self.export),
        )
    }

    /// Applies `op` to both sides, compares, updates the slots and checks the
    /// server after closes.
    fn step(&mut self, index: usize, op: Op) {
        if matches!(op, Op::Pause) {
            std::thread::sleep(PAUSE);
        }
        let skip = self.skip_bytes(&op);
        let existed = match &op {
            Op::Open { path, .. } => self.reference.p(path).exists(),
            _ => true,
        };
        let closing_ino = match &op {
            Op::HandleFsync { slot } | Op::Close { slot } => {
                self.slots[*slot].as_ref().map(|i| i.ino)
            }
            _ => None,
        };
        let r = self.reference.apply(&op);
        let m = self.mount.apply(&op);
        let verdict = compare(&r, &m, skip, self.mtime_slack());
        let mut line = format!("#{index:03} {op:?} => ");
        if verdict.is_ok() {
            line.push_str(&show_outcome(&r));
            if skip {
                line.push_str(" (content not compared: unsent writes)");
            }
        } else {
            line.push_str(&format!(
                "reference {} / mount {}",
                show_outcome(&r),
                show_outcome(&m)
            ));
        }
        self.log.push(line);
        if let Err(why) = verdict {
            self.fail(&format!("op #{index} {op:?}"), &why);
        }

        // Slot bookkeeping, from the (agreed) outcome.
        match (&op, r.is_ok()) {
            (Op::Open { slot, truncate, .. }, true) => {
                let md = self.reference.handle(*slot).file.metadata().unwrap();
                self.slots[*slot] = Some(SlotInfo {
                    ino: md.ino(),
                    written: *truncate || !existed,
                    opened: Instant::now(),
                });
            }
            (Op::HandleWrite { slot, .. } | Op::HandleSetLen { slot, .. }, true) => {
                if let Some(i) = self.slots[*slot].as_mut() {
                    i.written = true;
                }
            }
            (Op::HandleFsync { slot }, true) => {
                if let Some(i) = self.slots[*slot].as_mut() {
                    i.written = false;
                }
            }
            // The descriptor is gone even when close(2) fails.
            (Op::Close { slot }, _) => {
                if let Some(i) = self.slots[*slot].take() {
                    self.longest_hold = self.longest_hold.max(i.opened.elapsed());
                }
            }
            _ => {}
        }

        // Close-to-open: a closed (or fsynced) written file is on the server.
        if r.is_ok() {
            let target = match &op {
                Op::WriteFile { path, .. }
                | Op::Append { path, .. }
                | Op::WriteAt { path, .. }
                | Op::OpenSetLen { path, .. }
                | Op::SetMtime {
                    path,
                    via_handle: true,
                    ..
                } => Some(path.clone()),
                Op::HandleFsync { .. } | Op::Close { .. } => {
                    closing_ino.and_then(|ino| self.ref_path_of(ino))
                }
                _ => None,
            };
            if let Some(rel) = target {
                if let Err(why) = self.check_export_file(&rel) {
                    self.fail(&format!("op #{index} {op:?}"), &why);
                }
            }
        }
    }

    /// Closes every handle (as logged, compared operations), then compares
    /// the server's export and the mount with the reference tree.
    fn finish(&mut self, index: usize) {
        let mut i = index;
        for slot in 0..SLOTS {
            if self.slots[slot].is_some() {
                self.step(i, Op::Close { slot });
                i += 1;
            }
        }
        let reference = walk(&self.reference.root, true).expect("walking the reference");
        let at = format!("final check after {i} ops");
        let temps = find_with_prefix(&self.export, UPLOAD_TEMP_PREFIX);
        if !temps.is_empty() {
            self.fail(
                &at,
                &format!("temporary upload files left in the export: {temps:?}"),
            );
        }
        let export = walk(&self.export, true).unwrap_or_else(|e| self.fail(&at, &e));
        let slack = self.mtime_slack();
        let diffs = tree_differences(&reference, &export, "server", slack);
        if !diffs.is_empty() {
            self.fail(
                &at,
                &format!(
                    "at the end, the server's export differs from the reference:\n    {}",
                    diffs.join("\n    ")
                ),
            );
        }
        let through_mount = walk(&self.mount.root, true).unwrap_or_else(|e| self.fail(&at, &e));
        let diffs = tree_differences(&reference, &through_mount, "mount", slack);
        if !diffs.is_empty() {
            self.fail(
                &at,
                &format!(
                    "at the end, the tree through the mount differs from the reference:\n    {}",
                    diffs.join("\n    ")
                ),
            );
        }
    }
}

/// Seeds to run: `RF_REFTEST_SEED` (comma-separated, decimal or 0x-hex), or
/// the fixed defaults.
fn seeds() -> Vec<u64> {
    let Ok(v) = std::env::var("RF_REFTEST_SEED") else {
        return DEFAULT_SEEDS.to_vec();
    };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("RF_REFTEST_SEED: bad seed {s:?}: {e}"))
        })
        .collect()
}

fn ops_per_seed() -> usize {
    std::env::var("RF_REFTEST_OPS").map_or(DEFAULT_OPS, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|e| panic!("RF_REFTEST_OPS: bad count {v:?}: {e}"))
    })
}

/// One seed: a fresh export, mount and reference directory.
fn run_seed(seed: u64, ops: usize) {
    println!("mount_reftest: seed {seed:#x}, {ops} ops (rerun with RF_REFTEST_SEED={seed:#x})");
    let started = Instant::now();
    let root = TestDir::new("reftest-export");
    let reference = TestDir::new("reftest-reference");
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    // Declared after the mount so that it drops first: handles still open
    // after a failure are closed before the unmount.
    let mut run = Run {
        seed,
        rng: Rng::new(seed),
        reference: Side::new(reference.path()),
        mount: Side::new(m.path()),
        export: srv.root().to_path_buf(),
        slots: [None, None],
        longest_hold: Duration::ZERO,
        log: Vec::new(),
    };
    for i in 0..ops {
        let op = run.next_op();
        run.step(i, op);
    }
    run.finish(ops);
    println!(
        "mount_reftest: seed {seed:#x} passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn random_operations_match_a_local_reference_directory() {
    skip_without_fuse!();
    let ops = ops_per_seed();
    for seed in seeds() {
        run_seed(seed, ops);
    }
}
