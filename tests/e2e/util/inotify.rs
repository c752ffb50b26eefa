//! `inotifywait -m` on a directory of a mount, its events read back as
//! lines (`EVENTS NAME`); the process is killed by PID when dropped.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::{Background, TestCommand, TestDir, in_ci, seen_within, which};

/// A running `inotifywait -m` and where its output goes.
pub struct Watcher {
    _child: Background,
    out: TestDir,
}

impl Watcher {
    /// Watches `dir` for the inotify `events` (as `inotifywait -e` names
    /// them, comma-separated); `None`, with a note, when inotifywait is
    /// missing outside CI (.ci/run installs it in CI).
    ///
    /// # Panics
    /// If inotifywait is missing in CI, or its watches are not established
    /// within 10 s.
    pub fn start(dir: &Path, events: &str) -> Option<Watcher> {
        if which("inotifywait").is_none() {
            assert!(
                !in_ci(),
                "inotifywait missing in CI (.ci/run installs inotify-tools)"
            );
            eprintln!("note: inotifywait missing; skipping");
            return None;
        }
        let out = TestDir::new("watch");
        let child = TestCommand::new("inotifywait")
            .args(["-m", "-e", events, "--format", "%e %f"])
            .arg(dir)
            .spawn_logged(out.path(), "inotifywait");
        let w = Watcher { _child: child, out };
        assert!(
            seen_within(Duration::from_secs(10), || w
                .stderr()
                .contains("Watches established")),
            "inotifywait did not start: {}",
            w.stderr()
        );
        Some(w)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.out.join("inotifywait.stderr")).unwrap_or_default()
    }

    /// Every event reported so far, one `EVENTS NAME` line each.
    pub fn events(&self) -> Vec<String> {
        fs::read_to_string(self.out.join("inotifywait.stdout"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// True once the event line `line` is reported, within `within`.
    pub fn saw_within(&self, within: Duration, line: &str) -> bool {
        seen_within(within, || self.events().iter().any(|l| l == line))
    }
}
