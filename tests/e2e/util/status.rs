//! What `rfmount status --json` says about a mount: the counters in it,
//! and waiting for its connection to be back.

use std::time::Duration;

use super::*;

/// `rfmount status --json` of `m`.
pub fn status_json(m: &Mount) -> String {
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

/// Files of `m` with changes not yet on the server.
pub fn pending_files(m: &Mount) -> u64 {
    status_num(&status_json(m), "pending_files")
}

/// Waits up to `timeout` for `m` to be connected to its server again (a
/// mount that lost its connection fails requests at once until then);
/// panics with the last status otherwise.
pub fn wait_online(m: &Mount, timeout: Duration) {
    let online = wait_for(timeout, || {
        status_json(m)
            .contains("\"connection\":{\"state\":\"online\"")
            .then_some(())
    });
    assert!(
        online.is_some(),
        "the mount never reconnected: {}",
        status_json(m)
    );
}
