//! `rf shell HOST:PORT`: the classic interactive client (`>>> ls`, `get x`,
//! `put y`, `close`). It reads commands from stdin, so it can be scripted
//! through a pipe; a failed command prints one error line and the shell goes
//! on, and the exit status says whether any command failed.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::remote::Remote;

const HELP: &str = "\
commands:
  ls [DIR]            list a directory
  get NAME [LOCAL]    download NAME into the current directory (or LOCAL)
  put NAME [REMOTE]   upload the local file NAME (to REMOTE)
  rm NAME             remove a file
  mkdir DIR           create a directory
  stat NAME           show attributes
  close               close the connection and leave (also: quit, exit, EOF)
  help                this text";

pub(crate) fn run(r: &dyn Remote, input: impl BufRead, out: &mut dyn Write) -> Result<ExitCode> {
    let mut failed = false;
    let mut lines = input.lines();
    loop {
        write!(out, ">>> ")?;
        out.flush()?;
        let Some(line) = lines.next() else {
            writeln!(out)?;
            break;
        };
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&cmd, rest)) = words.split_first() else {
            continue;
        };
        if matches!(cmd, "close" | "quit" | "exit") {
            break;
        }
        if let Err(e) = command(r, cmd, rest, out) {
            if super::is_broken_pipe(&e) {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("error: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn command(r: &dyn Remote, cmd: &str, args: &[&str], out: &mut dyn Write) -> Result<()> {
    use super::remote_path;
    match (cmd, args) {
        ("help", _) => writeln!(out, "{HELP}")?,
        ("ls", []) => super::ls(r, &remote_path("")?, out)?,
        ("ls", [dir]) => super::ls(r, &remote_path(dir)?, out)?,
        ("get", [name]) | ("get", [name, _]) => {
            let local = args.get(1).map(Path::new);
            let saved = super::get(r, &remote_path(name)?, local)?;
            writeln!(out, "saved {}", saved.display())?;
        }
        ("put", [name]) | ("put", [name, _]) => {
            let target = super::put(r, Path::new(name), args.get(1).copied())?;
            writeln!(out, "uploaded {target}")?;
        }
        ("rm", [name]) => r.remove(&remote_path(name)?)?,
        ("mkdir", [name]) => {
            r.mkdir(&remote_path(name)?, 0o755, None)?;
        }
        ("stat", [name]) => {
            let p = remote_path(name)?;
            writeln!(out, "{}", super::format::stat_text(&p, &r.stat(&p)?))?;
        }
        ("ls" | "get" | "put" | "rm" | "mkdir" | "stat", _) => {
            bail!("wrong arguments for {cmd}; type help")
        }
        _ => bail!("unknown command {cmd:?}; type help"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MemRemote;

    #[test]
    fn scripted_session_lists_and_reports_errors() {
        let r = MemRemote::new(false);
        r.write_file("a.txt", b"hello");
        let mut out = Vec::new();
        let code = run(
            &r,
            "ls\nbogus\nstat a.txt\nclose\nls\n".as_bytes(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(" a.txt\n"), "{text}");
        assert!(text.contains("size: 5"), "{text}");
        // Three prompts: the commands after `close` never ran.
        assert_eq!(text.matches(">>> ").count(), 4, "{text}");
        assert_eq!(code, ExitCode::FAILURE);
    }
}
