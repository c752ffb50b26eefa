//! `rfmount-dist man DIR` and `rfmount-dist completions DIR`: the man pages
//! rfserve(8), rfmount(8) and rf(1), and bash, zsh and fish completions,
//! generated from the same clap definitions that parse the command lines,
//! so they cannot drift from `--help`. scripts/package.sh runs it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap_complete::Shell;

/// Each command with its man section.
fn commands() -> Vec<(clap::Command, &'static str)> {
    vec![
        (rfmount_server::cli::command(), "8"),
        (rfmount_mount::cli::command(), "8"),
        (rfmount_client::cli::command(), "1"),
    ]
}

fn man(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (cmd, section) in commands() {
        let name = cmd.get_name().to_owned();
        let page = clap_mangen::Man::new(cmd)
            .section(section)
            .manual("rfmount manual")
            .source(format!("rfmount {}", env!("CARGO_PKG_VERSION")));
        let mut buf = Vec::new();
        page.render(&mut buf)?;
        let path = dir
            .join(format!("man{section}"))
            .join(format!("{name}.{section}"));
        write(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (mut cmd, _) in commands() {
        let name = cmd.get_name().to_owned();
        for (shell, sub, file) in [
            (Shell::Bash, "bash", name.clone()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, name.clone(), &mut buf);
            let path = dir.join(sub).join(file);
            write(&path, &buf)?;
            written.push(path);
        }
    }
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let written = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["man", dir] => man(Path::new(dir))?,
        ["completions", dir] => completions(Path::new(dir))?,
        _ => bail!("usage: rfmount-dist man DIR | rfmount-dist completions DIR"),
    };
    for p in written {
        println!("{}", p.display());
    }
    Ok(())
}
