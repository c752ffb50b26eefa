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

// FUSE mount tests go here, one module per area, e.g.:
// #[path = "e2e/mount_basic.rs"]
// mod mount_basic;
