//! `rf shell SERVER`: the classic interactive client (`>>> ls`, `get x`,
//! `put y`, `close`) grown into a small ftp-like shell with a remote
//! working directory (`cd`, `pwd`), a local one (`lcd`, `lls`), and quoting
//! for names with spaces (`get "my file.txt"`, `get my\ file.txt`).
//!
//! On a terminal it edits lines with rustyline: history (kept in
//! `$XDG_STATE_HOME/rfmount/rf_history`), the arrow keys, and Tab completing
//! command names, remote names and (for `put`, `lcd`, `lls`) local ones.
//! Through a pipe it reads plain lines and prints a `>>> ` prompt per
//! command, as before, so it stays scriptable. A failed command prints one
//! error line and the shell goes on; the exit status says whether any
//! command failed.

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use rfmount_proto::{FileKind, RelPath};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};

use crate::remote::Remote;
use crate::report::one_line;

const HELP: &str = "\
commands (quote names with spaces: \"my file\" or my\\ file):
  ls [DIR]              list a remote directory
  cd [DIR]              change the remote directory (no DIR: the export root)
  pwd                   show the remote directory
  get [-f] NAME [LOCAL] download NAME into the local directory (or LOCAL);
                        -f replaces an existing local file
  put NAME [REMOTE]     upload the local file NAME (to REMOTE)
  mv FROM TO            rename or move a remote file or directory
  rm NAME               remove a remote file
  mkdir DIR             create a remote directory
  rmdir DIR             remove an empty remote directory
  stat NAME             show attributes
  lcd [DIR]             change the local directory (no DIR: home)
  lls [DIR]             list a local directory
  close                 close the connection and leave (also: quit, exit, EOF)
  help                  this text";

const COMMANDS: &[&str] = &[
    "ls", "cd", "pwd", "get", "put", "mv", "rm", "mkdir", "rmdir", "stat", "lcd", "lls", "close",
    "quit", "exit", "help",
];

/// Reads commands from the terminal with line editing, or from `stdin`
/// when it is not a terminal.
pub(crate) fn run_stdin(r: &dyn Remote, out: &mut dyn Write) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && std::io::stdout().is_terminal() {
        interactive(r, out)
    } else {
        run(r, stdin.lock(), out)
    }
}

/// The shell over plain lines (a pipe, a file, a test).
pub(crate) fn run(r: &dyn Remote, input: impl BufRead, out: &mut dyn Write) -> Result<ExitCode> {
    let sh = Shell::new(r);
    let mut failed = false;
    let mut lines = input.lines();
    loop {
        write!(out, ">>> ")?;
        out.flush()?;
        let Some(line) = lines.next() else {
            writeln!(out)?;
            break;
        };
        match sh.line(&line?, out) {
            Ok(Flow::Go) => {}
            Ok(Flow::Quit) => break,
            Err(e) if super::is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                failed = true;
            }
        }
    }
    Ok(exit(failed))
}

fn interactive(r: &dyn Remote, out: &mut dyn Write) -> Result<ExitCode> {
    let sh = Shell::new(r);
    let mut ed: Editor<Complete<'_>, _> =
        Editor::new().context("cannot set up line editing on this terminal")?;
    ed.set_helper(Some(Complete {
        sh: &sh,
        files: FilenameCompleter::new(),
    }));
    let history = history_file();
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    writeln!(out, "connected; type help for the commands, close to leave")?;
    let mut failed = false;
    loop {
        let prompt = format!("rf:{}> ", sh.cwd.borrow());
        let line = match ed.readline(&prompt) {
            Ok(l) => l,
            // Ctrl-C drops the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow!("reading the command line: {e}")),
        };
        if !line.trim().is_empty() {
            let _ = ed.add_history_entry(line.as_str());
        }
        match sh.line(&line, out) {
            Ok(Flow::Go) => {}
            Ok(Flow::Quit) => break,
            Err(e) => {
                eprintln!("error: {}", one_line(&e));
                failed = true;
            }
        }
    }
    if let Some(h) = &history {
        if let Some(dir) = h.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = ed.save_history(h);
    }
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn history_file() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let dir = match var("XDG_STATE_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(var("HOME")?).join(".local/state"),
    };
    Some(dir.join("rfmount").join("rf_history"))
}

enum Flow {
    Go,
    Quit,
}

struct Shell<'a> {
    r: &'a dyn Remote,
    /// The remote working directory.
    cwd: RefCell<RelPath>,
}

impl<'a> Shell<'a> {
    fn new(r: &'a dyn Remote) -> Self {
        Shell {
            r,
            cwd: RefCell::new(RelPath::root()),
        }
    }

    fn line(&self, line: &str, out: &mut dyn Write) -> Result<Flow> {
        let words = shlex::split(line).ok_or_else(|| anyhow!("unbalanced quotes"))?;
        let Some((cmd, rest)) = words.split_first() else {
            return Ok(Flow::Go);
        };
        if matches!(cmd.as_str(), "close" | "quit" | "exit") {
            return Ok(Flow::Quit);
        }
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        self.command(cmd, &rest, out)?;
        Ok(Flow::Go)
    }

    /// `arg` against the remote working directory (`/` starts at the root).
    fn resolve(&self, arg: &str) -> Result<RelPath> {
        let mut parts: Vec<String> = if arg.starts_with('/') {
            Vec::new()
        } else {
            let cwd = self.cwd.borrow();
            cwd.as_str()
                .split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        };
        for comp in arg.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                c => parts.push(c.to_owned()),
            }
        }
        super::remote_path(&parts.join("/"))
    }

    fn command(&self, cmd: &str, args: &[&str], out: &mut dyn Write) -> Result<()> {
        let r = self.r;
        match (cmd, args) {
            ("help", _) => writeln!(out, "{HELP}")?,
            ("ls", []) => super::ls(r, &self.cwd.borrow(), out)?,
            ("ls", [dir]) => super::ls(r, &self.resolve(dir)?, out)?,
            ("pwd", []) => writeln!(out, "{}", self.cwd.borrow())?,
            ("cd", []) => *self.cwd.borrow_mut() = RelPath::root(),
            ("cd", [dir]) => {
                let p = self.resolve(dir)?;
                let m = r.stat(&p).with_context(|| format!("cd {p}"))?;
                if m.kind != FileKind::Dir {
                    bail!("cd {p}: not a directory");
                }
                *self.cwd.borrow_mut() = p;
            }
            ("get", ["-f", name]) | ("get", ["-f", name, _]) => {
                self.get(name, args.get(2).copied(), true, out)?;
            }
            ("get", [name]) | ("get", [name, _]) => {
                self.get(name, args.get(1).copied(), false, out)?;
            }
            ("put", [name]) => {
                let here = format!("{}/", self.cwd.borrow());
                let target = super::put(r, Path::new(name), Some(&here), false)?;
                writeln!(out, "uploaded {target}")?;
            }
            ("put", [name, remote]) => {
                let mut to = self.resolve(remote)?.to_string();
                if remote.ends_with('/') && !to.ends_with('/') {
                    to.push('/');
                }
                let target = super::put(r, Path::new(name), Some(&to), false)?;
                writeln!(out, "uploaded {target}")?;
            }
            ("mv", [from, to]) => {
                let (from, to) = (self.resolve(from)?, self.resolve(to)?);
                r.rename(&from, &to, 0)
                    .with_context(|| format!("mv {from} {to}"))?;
            }
            ("rm", [name]) => {
                let p = self.resolve(name)?;
                r.remove(&p).with_context(|| format!("rm {p}"))?;
            }
            ("mkdir", [name]) => {
                let p = self.resolve(name)?;
                r.mkdir(&p, 0o755, None)
                    .with_context(|| format!("mkdir {p}"))?;
            }
            ("rmdir", [name]) => {
                let p = self.resolve(name)?;
                r.rmdir(&p).with_context(|| format!("rmdir {p}"))?;
            }
            ("stat", [name]) => {
                let p = self.resolve(name)?;
                let m = r.stat(&p).with_context(|| format!("stat {p}"))?;
                writeln!(out, "{}", super::format::stat_text(&p, &m))?;
            }
            ("lcd", []) => {
                let home =
                    std::env::var_os("HOME").ok_or_else(|| anyhow!("lcd: HOME is not set"))?;
                lcd(Path::new(&home))?;
            }
            ("lcd", [dir]) => lcd(Path::new(dir))?,
            ("lls", []) => lls(Path::new("."), out)?,
            ("lls", [dir]) => lls(Path::new(dir), out)?,
            (
                "ls" | "cd" | "pwd" | "get" | "put" | "mv" | "rm" | "mkdir" | "rmdir" | "stat"
                | "lcd" | "lls",
                _,
            ) => bail!("wrong arguments for {cmd}; type help"),
            _ => bail!(
                "unknown command {:?}; type help",
                super::format::escape_name(cmd)
            ),
        }
        Ok(())
    }

    fn get(&self, name: &str, local: Option<&str>, force: bool, out: &mut dyn Write) -> Result<()> {
        let saved = super::get(self.r, &self.resolve(name)?, local.map(Path::new), force)?;
        writeln!(out, "saved {}", saved.display())?;
        Ok(())
    }

    /// Remote names in the directory of `partial` that start with its last
    /// component, directories with a trailing `/`.
    fn remote_candidates(&self, partial: &str) -> Vec<String> {
        let (dir, prefix) = match partial.rfind('/') {
            Some(i) => (&partial[..=i], &partial[i + 1..]),
            None => ("", partial),
        };
        let Ok(dir_path) = self.resolve(if dir.is_empty() { "." } else { dir }) else {
            return Vec::new();
        };
        let Ok(entries) = self.r.list(&dir_path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .into_iter()
            .filter(|e| e.name.starts_with(prefix))
            .map(|e| {
                let slash = if e.meta.kind == FileKind::Dir {
                    "/"
                } else {
                    ""
                };
                format!("{dir}{}{slash}", e.name)
            })
            .collect();
        names.sort();
        names
    }
}

fn lcd(dir: &Path) -> Result<()> {
    std::env::set_current_dir(dir).with_context(|| format!("lcd {}", dir.display()))
}

fn lls(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
        .with_context(|| format!("lls {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    names.sort();
    for (n, is_dir) in names {
        let slash = if is_dir { "/" } else { "" };
        writeln!(out, "{}{slash}", super::format::escape_name(&n))?;
    }
    Ok(())
}

/// Tab completion: commands first, then remote names, or local names for
/// the commands that take local paths.
struct Complete<'s> {
    sh: &'s Shell<'s>,
    files: FilenameCompleter,
}

impl Completer for Complete<'_> {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = word_start(before);
        let word = &before[start..];
        let first = before[..start].split_whitespace().next();
        let Some(cmd) = first else {
            let pairs = COMMANDS
                .iter()
                .filter(|c| c.starts_with(word))
                .map(|c| Pair {
                    display: (*c).to_owned(),
                    replacement: format!("{c} "),
                })
                .collect();
            return Ok((start, pairs));
        };
        let args_before = before[..start].split_whitespace().count() - 1;
        let local = matches!(cmd, "lcd" | "lls")
            || (cmd == "put" && args_before == 0)
            || (cmd == "get" && args_before >= 1 && !before.contains(" -f "))
            || (cmd == "get" && args_before >= 2);
        if local {
            return self.files.complete(line, pos, ctx);
        }
        let partial = unescape(word);
        let pairs = self
            .sh
            .remote_candidates(&partial)
            .into_iter()
            .map(|c| Pair {
                display: c.rsplit_once('/').map_or(c.as_str(), |(_, n)| n).to_owned(),
                replacement: escape(&c),
            })
            .collect();
        Ok((start, pairs))
    }
}

/// Where the word under the cursor starts: after the last space that is
/// not escaped with a backslash.
fn word_start(before: &str) -> usize {
    let b = before.as_bytes();
    let mut i = b.len();
    while i > 0 {
        if b[i - 1] == b' ' && !(i >= 2 && b[i - 2] == b'\\') {
            return i;
        }
        i -= 1;
    }
    0
}

fn unescape(word: &str) -> String {
    let w = word.trim_start_matches(['"', '\'']);
    let mut out = String::with_capacity(w.len());
    let mut chars = w.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A name as typed: shell-special characters escaped with a backslash.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_whitespace() || "\\'\"$`!*?[]{}()<>|&;#~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Hinter for Complete<'_> {
    type Hint = String;
}
impl Highlighter for Complete<'_> {}
impl Validator for Complete<'_> {}
impl Helper for Complete<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::MemRemote;

    fn session(r: &MemRemote, script: &str) -> (String, ExitCode) {
        let mut out = Vec::new();
        let code = run(r, script.as_bytes(), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), code)
    }

    #[test]
    fn scripted_session_lists_and_reports_errors() {
        let r = MemRemote::new(false);
        r.write_file("a.txt", b"hello");
        let (text, code) = session(&r, "ls\nbogus\nstat a.txt\nclose\nls\n");
        assert!(text.contains(" a.txt\n"), "{text}");
        assert!(text.contains("size: 5"), "{text}");
        // Three prompts: the commands after `close` never ran.
        assert_eq!(text.matches(">>> ").count(), 4, "{text}");
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn cd_pwd_mv_and_quoted_names() {
        let r = MemRemote::new(false);
        r.mkdir(&RelPath::new("d").unwrap(), 0o755, None).unwrap();
        r.write_file("d/my file.txt", b"x");
        let (text, code) = session(
            &r,
            "cd d\npwd\nls\nmv \"my file.txt\" other\\ name.txt\nstat 'other name.txt'\ncd ..\npwd\nstat d/other\\ name.txt\ncd /d/../d\npwd\n",
        );
        assert_eq!(code, ExitCode::SUCCESS, "{text}");
        assert!(text.contains(">>> /d\n"), "{text}");
        assert!(text.contains(" my file.txt\n"), "{text}");
        assert!(text.contains("path: /d/other name.txt"), "{text}");
        assert!(text.contains(">>> /\n"), "{text}");
        let (_, code) = session(&r, "cd nowhere\n");
        assert_eq!(code, ExitCode::FAILURE);
        let (_, code) = session(&r, "cd d/other\\ name.txt\n");
        assert_eq!(code, ExitCode::FAILURE);
        let (_, code) = session(&r, "ls \"unbalanced\n");
        assert_eq!(code, ExitCode::FAILURE);
    }

    #[test]
    fn completion_offers_remote_names_relative_to_cwd() {
        let r = MemRemote::new(false);
        r.mkdir(&RelPath::new("docs").unwrap(), 0o755, None)
            .unwrap();
        r.write_file("docs/a b.txt", b"x");
        r.write_file("docs/abc", b"x");
        r.write_file("top", b"x");
        let sh = Shell::new(&r);
        assert_eq!(sh.remote_candidates("d"), vec!["docs/"]);
        assert_eq!(
            sh.remote_candidates("docs/a"),
            vec!["docs/a b.txt", "docs/abc"]
        );
        *sh.cwd.borrow_mut() = RelPath::new("docs").unwrap();
        assert_eq!(sh.remote_candidates("ab"), vec!["abc"]);
        assert_eq!(sh.remote_candidates("../t"), vec!["../top"]);
        assert_eq!(escape("a b.txt"), "a\\ b.txt");
        assert_eq!(unescape("\"a\\ b"), "a b");
        assert_eq!(word_start("get a\\ b"), 4);
    }
}
