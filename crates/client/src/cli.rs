//! The `rf` command: one-shot file operations and the classic interactive
//! shell, for scripts and for machines without FUSE.
//!
//! `main` turns every failure into one line on stderr and a non-zero exit:
//! 1 for an operation that failed, 2 for bad usage. A closed stdout (`rf get
//! host f - | head`) counts as success.

mod format;
mod ping;
mod progress;
mod shell;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use rfmount_proto::{ErrorCode, FileKind, PutExpect, RelPath};

use crate::remote::{GetOutcome, PutOptions, Remote};
use crate::report::one_line;
use crate::source::{Source, SourceError};
use crate::tcp::TcpRemote;
use crate::tls::TlsArgs;

/// Command line of `rf`.
#[derive(Parser, Debug)]
#[command(
    name = "rf",
    version,
    about = "Copy, list and change files on an rfserve export without mounting it",
    after_help = "SERVER is HOST[:PORT][:/SUBDIR] as with rfmount: the port is 9500 when \
                  omitted, an IPv6 address goes in brackets ([::1]:9500), and /SUBDIR \
                  works inside that subdirectory of the export."
)]
struct Args {
    /// File holding the export's shared secret.
    #[arg(long, global = true, env = "RF_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List a directory, `ls -l` style (control characters in names are
    /// shown as `\n`, `\t`, `\ooo`, like `ls -b`).
    Ls { server: String, dir: Option<String> },
    /// Download a file (LOCAL `-` writes to stdout). An existing local file
    /// is not replaced unless -f is given.
    Get {
        server: String,
        remote: String,
        local: Option<PathBuf>,
        /// Replace an existing local file.
        #[arg(short, long)]
        force: bool,
    },
    /// Upload a file. It replaces the remote file only if nobody changed
    /// that file while the upload ran (else it fails and nothing changes).
    Put {
        server: String,
        local: PathBuf,
        remote: Option<String>,
        /// Replace the remote file whatever happened to it meanwhile.
        #[arg(short, long)]
        force: bool,
    },
    /// Remove a file.
    Rm { server: String, path: String },
    /// Rename or move.
    Mv {
        server: String,
        from: String,
        to: String,
    },
    /// Create a directory.
    Mkdir {
        server: String,
        path: String,
        /// Create missing parents, no error if it exists.
        #[arg(short, long)]
        parents: bool,
    },
    /// Remove an empty directory.
    Rmdir { server: String, path: String },
    /// Show one entry's attributes.
    Stat { server: String, path: String },
    /// Interactive shell: ls, cd, get, put, mv, ... with line editing,
    /// history and completion of remote names; also reads commands from a
    /// pipe.
    Shell { server: String },
    /// Check that a server answers: its protocol version, export, whether
    /// it is read-only and needs a token, and the round-trip time.
    Ping {
        server: String,
        /// Number of pings.
        #[arg(short = 'c', long, default_value_t = 3,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        count: u32,
    },
}

/// The clap definition of `rf`, for man pages and shell completions.
pub fn command() -> clap::Command {
    <Args as clap::CommandFactory>::command()
}

/// Entry point of the `rf` binary.
pub fn main() -> ExitCode {
    init_logging();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rf: error: {}", one_line(&e));
            // A server argument that does not parse is bad usage.
            if e.downcast_ref::<SourceError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("warn");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let io = c.downcast_ref::<io::Error>().or_else(|| {
            match c.downcast_ref::<crate::error::RemoteError>() {
                Some(crate::error::RemoteError::Local { error, .. }) => Some(error),
                _ => None,
            }
        });
        io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn connect(source: &Source, token: Option<&Path>, tls: &TlsArgs) -> Result<TcpRemote> {
    let mut cfg = source.connect_config();
    if let Some(t) = token {
        cfg = cfg.with_token_file(t)?;
    }
    cfg.tls = tls.options()?;
    Ok(TcpRemote::connect(cfg)?)
}

pub(crate) fn remote_path(s: &str) -> Result<RelPath> {
    RelPath::from_user(s).map_err(|e| anyhow!("bad remote path: {e}"))
}

fn run(args: Args) -> Result<ExitCode> {
    let token = args.token_file.as_deref();
    let server = match &args.cmd {
        Cmd::Ls { server, .. }
        | Cmd::Get { server, .. }
        | Cmd::Put { server, .. }
        | Cmd::Rm { server, .. }
        | Cmd::Mv { server, .. }
        | Cmd::Mkdir { server, .. }
        | Cmd::Rmdir { server, .. }
        | Cmd::Stat { server, .. }
        | Cmd::Ping { server, .. }
        | Cmd::Shell { server } => server.clone(),
    };
    let source = Source::parse(&server)?;
    if let Cmd::Ping { count, .. } = args.cmd {
        return ping::run(&source, token, &args.tls, count, &mut io::stdout().lock());
    }
    // Paths are validated before any connection is made.
    let remote_arg = match &args.cmd {
        Cmd::Ls { dir, .. } => Some(remote_path(dir.as_deref().unwrap_or(""))?),
        Cmd::Get { remote, .. }
        | Cmd::Rm { path: remote, .. }
        | Cmd::Rmdir { path: remote, .. } => Some(remote_path(remote)?),
        Cmd::Mkdir { path, .. } | Cmd::Stat { path, .. } => Some(remote_path(path)?),
        _ => None,
    };
    let r = connect(&source, token, &args.tls)?;
    let out = &mut io::stdout().lock();
    match args.cmd {
        Cmd::Ls { .. } => ls(&r, &remote_arg.unwrap_or_default(), out)?,
        Cmd::Get { local, force, .. } => {
            let remote = remote_arg.unwrap_or_default();
            get(&r, &remote, local.as_deref(), force)?;
        }
        Cmd::Put {
            local,
            remote,
            force,
            ..
        } => {
            put(&r, &local, remote.as_deref(), force)?;
        }
        Cmd::Rm { .. } => {
            let p = remote_arg.unwrap_or_default();
            r.remove(&p).with_context(|| format!("rm {p}"))?;
        }
        Cmd::Mv { from, to, .. } => {
            let (from, to) = (remote_path(&from)?, remote_path(&to)?);
            r.rename(&from, &to, 0)
                .with_context(|| format!("mv {from} {to}"))?;
        }
        Cmd::Mkdir { parents, .. } => mkdir(&r, &remote_arg.unwrap_or_default(), parents)?,
        Cmd::Rmdir { .. } => {
            let p = remote_arg.unwrap_or_default();
            r.rmdir(&p).with_context(|| format!("rmdir {p}"))?;
        }
        Cmd::Stat { .. } => {
            let p = remote_arg.unwrap_or_default();
            let m = r.stat(&p).with_context(|| format!("stat {p}"))?;
            writeln!(out, "{}", format::stat_text(&p, &m))?;
        }
        Cmd::Shell { .. } => return shell::run_stdin(&r, out),
        Cmd::Ping { .. } => unreachable!("answered before connecting"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn ls(r: &dyn Remote, dir: &RelPath, out: &mut dyn Write) -> Result<()> {
    let meta = r.stat(dir).with_context(|| format!("ls {dir}"))?;
    if meta.kind != FileKind::Dir {
        writeln!(
            out,
            "{}",
            format::ls_line(dir.file_name().unwrap_or(""), &meta)
        )?;
        return Ok(());
    }
    let mut entries = r.list(dir).with_context(|| format!("ls {dir}"))?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in &entries {
        writeln!(out, "{}", format::ls_line(&e.name, &e.meta))?;
    }
    Ok(())
}

fn mkdir(r: &dyn Remote, p: &RelPath, parents: bool) -> Result<()> {
    if !parents {
        r.mkdir(p, 0o755, None)
            .with_context(|| format!("mkdir {p}"))?;
        return Ok(());
    }
    let mut cur = RelPath::root();
    for comp in p.as_str().split('/').filter(|c| !c.is_empty()) {
        cur = cur.join(comp)?;
        match r.mkdir(&cur, 0o755, None) {
            Ok(_) => {}
            Err(e) if e.code() == Some(rfmount_proto::ErrorCode::Exists) => {
                let m = r.stat(&cur).with_context(|| format!("mkdir {cur}"))?;
                if m.kind != FileKind::Dir {
                    bail!("mkdir {cur}: exists and is not a directory");
                }
            }
            Err(e) => return Err(e).with_context(|| format!("mkdir {cur}")),
        }
    }
    Ok(())
}

/// Downloads `remote` to `local` (default: its name in the current
/// directory; a directory means "inside it"; `-` is stdout). The content
/// lands in a temporary file beside the target first, so a failed transfer
/// never leaves a truncated file under the real name. An existing regular
/// file is only replaced with `force`.
pub(crate) fn get(
    r: &dyn Remote,
    remote: &RelPath,
    local: Option<&Path>,
    force: bool,
) -> Result<PathBuf> {
    let name = remote
        .file_name()
        .ok_or_else(|| anyhow!("get: {remote} is a directory"))?;
    if local == Some(Path::new("-")) {
        let mut out = io::stdout().lock();
        r.get(remote, None, &mut out)
            .with_context(|| format!("get {remote}"))?;
        out.flush()?;
        return Ok(PathBuf::from("-"));
    }
    let target = match local {
        None => PathBuf::from(name),
        Some(l) if l.is_dir() => l.join(name),
        Some(l) => l.to_path_buf(),
    };
    // A device or FIFO (`/dev/null`, a named pipe) is written through: a
    // rename over it would replace the node itself.
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .with_context(|| format!("opening {}", target.display()))?;
        r.get(remote, None, &mut f)
            .with_context(|| format!("get {remote}"))?;
        return Ok(target);
    }
    if !force && std::fs::symlink_metadata(&target).is_ok() {
        bail!(
            "get {remote}: {} exists (use -f to replace it)",
            target.display()
        );
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let size = r.stat(remote).map(|m| m.size).unwrap_or(0);
    let mut tmp = tempfile::Builder::new()
        .prefix(".rf-get-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let bar = progress::Bar::new(size, name);
    let outcome = {
        let mut sink = bar.writer(io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()));
        let o = r
            .get(remote, None, &mut sink)
            .with_context(|| format!("get {remote}"))?;
        sink.flush()?;
        o
    };
    bar.finish();
    if let GetOutcome::Fetched(meta) = outcome {
        let f = tmp.as_file();
        let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            meta.mode & 0o777,
        ));
        let _ = f.set_modified(meta.mtime.to_system());
    }
    tmp.persist(&target)
        .with_context(|| format!("saving {}", target.display()))?;
    Ok(target)
}

/// Uploads `local` to `remote` (default: its file name at the export root;
/// a trailing `/` or an existing remote directory means "inside it").
pub(crate) fn put(
    r: &dyn Remote,
    local: &Path,
    remote: Option<&str>,
    force: bool,
) -> Result<RelPath> {
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("put: {} has no usable file name", local.display()))?;
    let target = match remote {
        None => RelPath::root().join(name)?,
        Some(s) => {
            let p = remote_path(s)?;
            let is_dir = s.ends_with('/')
                || p.is_root()
                || r.stat(&p).is_ok_and(|m| m.kind == FileKind::Dir);
            if is_dir { p.join(name)? } else { p }
        }
    };
    let file =
        File::open(local).with_context(|| format!("put: cannot open {}", local.display()))?;
    let md = file
        .metadata()
        .with_context(|| format!("put: {}", local.display()))?;
    if !md.is_file() {
        bail!("put: {} is not a regular file", local.display());
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777;
    let expect = if force {
        PutExpect::Any
    } else {
        put_expectation(r, &target)?
    };
    let bar = progress::Bar::new(md.len(), name);
    let mut src = bar.reader(io::BufReader::with_capacity(1 << 20, file));
    r.put(
        &target,
        &mut src,
        md.len(),
        PutOptions {
            mode: Some(mode),
            expect,
            ..PutOptions::default()
        },
    )
    .map_err(|e| match e.code() {
        Some(ErrorCode::Conflict) => anyhow!(
            "put {target}: changed on the server while uploading; nothing was replaced \
             (use --force to overwrite it anyway)"
        ),
        _ => anyhow::Error::new(e).context(format!("put {target}")),
    })?;
    bar.finish();
    Ok(target)
}

/// What an upload without `--force` may replace: the file as it is now
/// (so a change landing during the upload is never overwritten), or no
/// file at all for a new name.
fn put_expectation(r: &dyn Remote, target: &RelPath) -> Result<PutExpect> {
    match r.stat(target) {
        Ok(m) => Ok(PutExpect::Version(m.version)),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(PutExpect::Absent),
        Err(e) => Err(anyhow::Error::new(e).context(format!("put {target}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_port_is_added_only_when_missing() {
        let addr = |s: &str| Source::parse(s).unwrap().addr();
        assert_eq!(addr("host"), "host:9500");
        assert_eq!(addr("host:1234"), "host:1234");
        assert_eq!(addr("[::1]:80"), "[::1]:80");
        assert_eq!(addr("::1"), "[::1]:9500");
    }
}
