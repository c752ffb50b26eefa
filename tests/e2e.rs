//! End-to-end tests: real `rfserve`, `rf` and `rfmount` processes on
//! temporary directories and ephemeral ports, driven like a user would.
//!
//! One test target (`[[test]] name = "e2e"` in Cargo.toml); the modules live
//! in `tests/e2e/`. Run them with `scripts/test.sh`, or just these with
//! `cargo nextest run --test e2e` (`cargo test --test e2e` works too).

// The harness: temporary dirs, deterministic random files, and guards for
// rfserve (`Server`), any command with a timeout (`TestCommand`) and FUSE
// mounts (`Mount`, `skip_without_fuse!`).
#[macro_use]
#[path = "e2e/util.rs"]
mod util;

// `rf` against `rfserve`: put/get of every size, ls output, 20 clients at
// once, a client killed mid-put, the interactive shell, user-facing errors
// (missing file, refused connection, read-only export, tokens, closed stdout).
#[path = "e2e/rf_cli.rs"]
mod rf_cli;

// rfserve against bad peers and bad luck over raw sockets: garbage and
// oversized frames, idle connections, paths and symlinks leaving the export,
// authentication, bad command lines, the server killed mid-upload.
#[path = "e2e/server_robustness.rs"]
mod server_robustness;

// Helpers shared by the FUSE mount tests below.
#[path = "e2e/mount_common.rs"]
mod mount_common;

// Real FUSE mounts driven with ordinary shell tools. Files: cp in and out of
// every awkward size (and 256 MiB), touch, chmod, truncate, >>, mv, rm.
#[path = "e2e/mount_files.rs"]
mod mount_files;

// Directories: ls -l and stat against the server's disk, a 10,000-file
// directory, mkdir -p / rmdir / mv across directories, tar x and tar c.
#[path = "e2e/mount_dirs.rs"]
mod mount_dirs;

// Close-to-open: server-side changes, two mounts of one export, remounts
// served from the on-disk cache.
#[path = "e2e/mount_consistency.rs"]
mod mount_consistency;

// Read-only exports and -o ro, a full server disk, the server dying while
// idle, before close and mid-upload: errors at close and no byte lost.
#[path = "e2e/mount_failures.rs"]
mod mount_failures;

// The rfmount process: start errors, daemon mode, SIGTERM / SIGINT.
#[path = "e2e/mount_process.rs"]
mod mount_process;

// 1 GiB in and out: ls stays responsive during a cold fetch, memory bounded.
#[path = "e2e/mount_load.rs"]
mod mount_load;

// A randomised reference test: seeded sequences of file and directory
// operations (with handles kept open across renames and unlinks) applied to
// a local directory and to a mount must have the same outcomes, and the
// export must end up equal to the local directory byte for byte.
#[path = "e2e/mount_reftest.rs"]
mod mount_reftest;

// TLS between real processes: trust on first use, pinned and CA modes, a
// changed certificate refused, plain/TLS mismatches, a mount over TLS, and a
// recording relay showing file content never crosses the wire in the clear.
#[path = "e2e/tls_transport.rs"]
mod tls_transport;
// No hidden namespace: `.rfput-*` names are ordinary across restarts, and a
// read-only export is byte-for-byte and name-for-name unchanged by serving.
#[path = "e2e/mount_ns_names.rs"]
mod mount_ns_names;

// Symlinks through the mount: ln -s of every kind, readlink, ls -l with
// targets and no READLINK, touch -h, tar, cp -a and rsync -a of linked trees.
#[path = "e2e/mount_ns_symlinks.rs"]
mod mount_ns_symlinks;

// Owners, as root with allow_other,default_permissions: setpriv creates,
// chown on the server (EPERM from an unprivileged rfserve), idmap and uid=.
#[path = "e2e/mount_ns_owners.rs"]
mod mount_ns_owners;

// Hard links: ln, stat %h %i on both names, writes through one name read
// through the other, rm of one name, directory nlink, unlinked open files.
#[path = "e2e/mount_ns_links.rs"]
mod mount_ns_links;

// Special files: mkfifo, mknod c 1 3 (root), EPERM from an unprivileged
// rfserve, a unix socket bound and connected inside the mount.
#[path = "e2e/mount_ns_special.rs"]
mod mount_ns_special;

// Times: atime/mtime/ctime as the server has them, touch -a, ctime on
// chmod, directory times right after changes, rsync -ai with nothing to do.
#[path = "e2e/mount_ns_times.rs"]
mod mount_ns_times;

// renameat2 flags: RENAME_NOREPLACE and mv -n never replace, RENAME_EXCHANGE
// swaps files and directories.
#[path = "e2e/mount_ns_rename.rs"]
mod mount_ns_rename;

// Extended attributes: setfattr/getfattr, kept across upload and rename,
// create/replace flags, cp --preserve=all and rsync -aX.
#[path = "e2e/mount_ns_xattrs.rs"]
mod mount_ns_xattrs;

// Long paths: 200 levels and 4,000 more bytes below the export root,
// created, written, listed and removed from a deep working directory.
#[path = "e2e/mount_ns_paths.rs"]
mod mount_ns_paths;

// rfmount SIGKILLed mid-write: the server's file is untouched, the partial
// data recovered as NAME.recovered-HOST-STAMP, closed files uploaded; 3x
// --cache-size written with the server down never grows the cache past it.
#[path = "e2e/mount_crash.rs"]
mod mount_crash;
// rfserve's availability limits: floods of silent and slow-loris
// connections, ulimit -n 1024, a trickling PUT on a small disk, login
// back-off, protocol-1 peers, sessions confined to a subdirectory.
#[path = "e2e/server_limits.rs"]
mod server_limits;
// Outages: a server frozen with SIGSTOP (bounded answers from the cache, EIO
// for what it lacks, uploads after SIGCONT), a restart, a short -o timeout
// with large transfers, and a mount started while the server is down.
#[path = "e2e/mount_outage.rs"]
mod mount_outage;

// The rfmount process follows its mount: exit within 2 s after fusermount3
// -u, umount, umount -l or a connection abort; a signal never unmounts a
// newer mount at the same path.
#[path = "e2e/mount_lifecycle.rs"]
mod mount_lifecycle;
// The system's view: mount(8) with -t fuse.rfmount, 'rfmount#SOURCE' and an
// fstab line, findmnt, umount, generic and sshfs options, background logs,
// clean unmounts, SIGHUP/SIGUSR1.
#[path = "e2e/mount_system.rs"]
mod mount_system;

// rf ping, rf get and existing files, rf ls escaping, server syntax errors,
// one-line errors said once, --help texts.
#[path = "e2e/rf_tools.rs"]
mod rf_tools;

// scripts/package.sh: a .deb with the binaries, man pages, completions,
// the rfserve unit and the mount examples.
#[path = "e2e/dist_package.rs"]
mod dist_package;

// rfmount status --json during uploads and outages; rfserve's session accounting.
#[path = "e2e/mount_status.rs"]
mod mount_status;

// Streaming big-file reads (head stops the fetch, shared fetches, EIO for a
// cut-off range) and prefetch of small files (used, never stale).
#[path = "e2e/mount_reads.rs"]
mod mount_reads;
// POSIX ACLs (setfacl/getfacl) and security. attributes through the mount,
// kept across uploads and renames.
#[path = "e2e/mount_xattr_acl.rs"]
mod mount_xattr_acl;
// Fixes found by the POSIX conformance suite (pjdfstest): fstat of an unlinked open file, rename ctimes.
#[path = "e2e/mount_conformance.rs"]
mod mount_conformance;

// The POSIX conformance suite pjdfstest against a real mount (all pass, as root).
#[path = "e2e/conformance_pjdfstest.rs"]
mod conformance_pjdfstest;
// Write-back mounts: close returns with the server frozen, kill -9 and a
// remount deliver every closed file, fsync/unmount/rfmount sync wait for
// uploads, renames and unlinks of files with pending uploads.
#[path = "e2e/mount_writeback.rs"]
mod mount_writeback;
// Pushed invalidation seen through a second mount, the export, inotify and a restart.
#[path = "e2e/mount_callbacks_push.rs"]
mod mount_callbacks_push;

// Round trips under callbacks, counted from rfserve's request log.
#[path = "e2e/mount_callbacks_roundtrips.rs"]
mod mount_callbacks_roundtrips;
// Locks across two mounts of one export: flock, fcntl ranges with F_GETLK
// and F_SETLKW, ENOLCK without a server, locks re-taken after a server
// restart, and two sqlite writers that lose no transaction.
#[path = "e2e/mount_locks.rs"]
mod mount_locks;
// Two mounts writing one file: conflict siblings, conflict=error and overwrite.
#[path = "e2e/mount_conflicts.rs"]
mod mount_conflicts;

// Requests per write (echo, cp -p, tar x) counted in rfserve's request log.
#[path = "e2e/mount_roundtrips.rs"]
mod mount_roundtrips;
// Partial uploads (changed ranges on a base version) and sparse uploads.
#[path = "e2e/mount_partial.rs"]
mod mount_partial;

// A new file keeps the mtime it showed before its upload (pjdfstest utime_omit).
#[path = "e2e/mount_new_file_times.rs"]
mod mount_new_file_times;

// One mount never conflicts with its own changes (default conflict=keep).
#[path = "e2e/mount_self_conflicts.rs"]
mod mount_self_conflicts;
// Sparse files: sparse downloads (wire bytes, cache allocation), fallocate modes, st_blocks and du, the cache bound.
#[path = "e2e/mount_sparse.rs"]
mod mount_sparse;
// Permissions against a local directory: default ACLs and the umask, ACL grants, setuid/setgid.
#[path = "e2e/mount_acl_perms.rs"]
mod mount_acl_perms;
// Uploads that cost one request: tar x in write-back mode, the folded attribute changes.
#[path = "e2e/mount_upload_requests.rs"]
mod mount_upload_requests;
// inotify watchers of a mount told of names removed through another mount or in the export.
#[path = "e2e/mount_callbacks_inotify.rs"]
mod mount_callbacks_inotify;
// setuid/setgid cleared on write, truncate and chown exactly as in a local directory.
#[path = "e2e/mount_ns_killpriv.rs"]
mod mount_ns_killpriv;
// Which of atime, mtime and ctime a write, chmod, chown, link, rename and touch -a move, as locally.
#[path = "e2e/mount_ns_ctimes.rs"]
mod mount_ns_ctimes;
// rsync -aH of a tree with symlinks and hard links into a mount, twice.
#[path = "e2e/mount_ns_trees.rs"]
mod mount_ns_trees;
// A directory created through the mount: its empty listing held under a callback (requests counted).
#[path = "e2e/mount_mkdir_listing.rs"]
mod mount_mkdir_listing;
// Uploads streamed while a big file is written in order: before the close, cancelled by a seek back, a dead server, a conflict.
#[path = "e2e/mount_streamed_uploads.rs"]
mod mount_streamed_uploads;
// Prefetch during a tree walk: tar c finds the first file of each directory fetched ahead, never stale.
#[path = "e2e/mount_prefetch_walk.rs"]
mod mount_prefetch_walk;
// user. xattrs set before a file's first upload travel in its PUT (request counts).
#[path = "e2e/mount_xattr_uploads.rs"]
mod mount_xattr_uploads;
// Locks across a cut connection: kept through a resumed session, released after the grace.
#[path = "e2e/mount_locks_resume.rs"]
mod mount_locks_resume;
// A written file's ctime: kept across its upload and a remount, moved by every change.
#[path = "e2e/mount_ns_ctime_kept.rs"]
mod mount_ns_ctime_kept;
// Write-back closes and the cache disk: safe against kill -9 unflushed; a machine restart recovers unflushed ones aside.
#[path = "e2e/mount_writeback_flush.rs"]
mod mount_writeback_flush;
// FUSE passthrough under callbacks: kernel reads with rfmount stopped, pushed changes, writes joining it.
#[path = "e2e/mount_passthrough.rs"]
mod mount_passthrough;
// Write-back directory attributes: shown at once, one SETATTR, after the uploads into the directory.
#[path = "e2e/mount_rtt_dir_attrs.rs"]
mod mount_rtt_dir_attrs;
// A file not uploaded yet (write-back) renamed over one the server has: replaces it, no conflict.
#[path = "e2e/mount_unsent_rename.rs"]
mod mount_unsent_rename;
// A writer joining a passthrough reader uploads once per write, never for nothing.
#[path = "e2e/mount_passthrough_writers.rs"]
mod mount_passthrough_writers;
// A directory with unsent new files (write-back): stat asks nothing; the server's attributes once they land.
#[path = "e2e/mount_unsent_parents.rs"]
mod mount_unsent_parents;
// Reads of a file still arriving, right behind the fetch or across its chunks, get its bytes.
#[path = "e2e/mount_cold_reads.rs"]
mod mount_cold_reads;
// A second walk after server changes is prefetched again and never stale.
#[path = "e2e/mount_prefetch_rewalk.rs"]
mod mount_prefetch_rewalk;
// truncate(2) by name of a file not uploaded yet (write-back queue, failed close): reaches the server, sync waits for it.
#[path = "e2e/mount_unsent_truncate.rs"]
mod mount_unsent_truncate;
// A hard link's other name removed keeps the directory's listing (git's link-then-unlink).
#[path = "e2e/mount_link_lookups.rs"]
mod mount_link_lookups;
