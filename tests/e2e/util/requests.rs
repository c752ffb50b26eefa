//! The requests rfserve logged (`request op=OP path=PATH ...`), as
//! `OP path`, for tests that count round trips.

use super::Server;

/// Lines in rfserve's log so far: a mark for [`requests_after`].
pub fn log_mark(srv: &Server) -> usize {
    srv.log().lines().count()
}

/// The requests rfserve logged after the first `mark` log lines, less
/// the keep-alive `PING`s (sent whenever the connection has been idle).
pub fn requests_after(srv: &Server, mark: usize) -> Vec<String> {
    srv.log()
        .lines()
        .skip(mark)
        .filter_map(|l| {
            let rest = &l[l.find("request op=")? + "request op=".len()..];
            let mut it = rest.split_whitespace();
            let op = it.next().filter(|op| *op != "PING")?;
            let path = it.next()?.trim_start_matches("path=");
            Some(format!("{op} {path}"))
        })
        .collect()
}
