//! `rfmount status --json` of a mount, and the counters in it.

use super::{Mount, TestCommand, rfmount_bin, text};

/// The mount's status as JSON text.
pub fn mount_status_json(m: &Mount) -> String {
    let out = TestCommand::new(rfmount_bin())
        .args(["status", "--json"])
        .arg(m.path())
        .with_log("rfmount log", m.log_path())
        .ok();
    text(&out.stdout)
}

/// The number after `"key":` in `json`.
pub fn status_num(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} in {json}"))
}
