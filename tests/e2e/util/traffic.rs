//! What rfserve says it received: the per-session summary that SIGUSR1
//! logs (`session from PEER: ... X bytes in, Y bytes out`).

use std::time::Duration;

use super::Server;

/// Asks `srv` for its live sessions' counts (SIGUSR1) and returns the sum of
/// their "bytes in": frame bytes the server has read from its clients.
pub fn bytes_in(srv: &Server) -> u64 {
    session_bytes(srv, " bytes in")
}

/// As [`bytes_in`], for "bytes out": frame bytes the server has written to
/// its clients.
pub fn bytes_out(srv: &Server) -> u64 {
    session_bytes(srv, " bytes out")
}

/// The sum of the count before `what` over every live session's summary.
fn session_bytes(srv: &Server, what: &str) -> u64 {
    let before = srv.count("live session(s)");
    // SAFETY: plain syscall with a PID this test started.
    let r = unsafe { libc::kill(srv.pid() as libc::pid_t, libc::SIGUSR1) };
    assert_eq!(r, 0, "SIGUSR1 to rfserve");
    let got = srv.wait_count("live session(s)", before + 1, Duration::from_secs(10));
    assert!(got > before, "no session summary in {}", srv.log());
    // The summary lines follow the last header; wait until all are logged.
    let log = super::wait_for(Duration::from_secs(5), || {
        let log = srv.log();
        let (head, rest) = log.rsplit_once(" live session(s)")?;
        let n: usize = head
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        let lines: Vec<String> = rest
            .lines()
            .filter(|l| l.contains("session from ") && l.contains(what))
            .map(str::to_owned)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|| panic!("incomplete session summary in {}", srv.log()));
    log.iter()
        .map(|l| {
            let before = l.split(what).next().unwrap_or("");
            before
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no byte count in {l:?}"))
        })
        .sum()
}
