//! Errors as one line for a user: the `anyhow` chain joined with `: `, with
//! a cause left out when the text so far already ends with it (many error
//! types print their source in their own message too), and line breaks
//! folded so that a message is always exactly one line.

/// `context: cause: cause`, each part said once, on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for part in e.chain().map(ToString::to_string) {
        let part = part.trim();
        if part.is_empty() || out.ends_with(part) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(part);
    }
    out.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// Prints its source in its own message, as many error types do.
    #[derive(Debug, thiserror::Error)]
    #[error("token file /x: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = Err::<(), _>(Repeats(io))
            .context("cannot start")
            .unwrap_err();
        assert_eq!(
            one_line(&e),
            "cannot start: token file /x: No such file or directory (os error 2)"
        );
        let e = anyhow::anyhow!("first\nsecond").context("ctx");
        assert_eq!(one_line(&e), "ctx: first second");
    }
}
