//! `rf ping SERVER [-c N]`: is the server up, what does it run, and how far
//! away is it. Exits 0 only when the handshake (and authentication, when
//! the server asks for it) succeeded and every ping was answered.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::connection::Connection;
use crate::source::Source;

pub(crate) fn run(
    source: &Source,
    token: Option<&Path>,
    count: u32,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let mut cfg = source.connect_config();
    if let Some(t) = token {
        cfg = cfg.with_token_file(t)?;
    }
    let started = Instant::now();
    let conn = Connection::open(&cfg)?;
    let handshake = started.elapsed();
    let hello = conn.hello();
    writeln!(out, "server:    {}", source)?;
    writeln!(out, "protocol:  version {}", hello.version)?;
    writeln!(out, "export:    {}", conn.welcome().export_id)?;
    writeln!(
        out,
        "access:    {}",
        if conn.welcome().read_only {
            "read-only"
        } else {
            "read-write"
        }
    )?;
    writeln!(
        out,
        "auth:      {}",
        if hello.auth_challenge.is_some() {
            "token required, accepted"
        } else {
            "no token required"
        }
    )?;
    writeln!(out, "handshake: {}", ms(handshake))?;
    let mut rtts = Vec::with_capacity(count as usize);
    for seq in 1..=count {
        let rtt = conn
            .ping()
            .with_context(|| format!("ping {seq} to {}", source.addr()))?;
        writeln!(out, "ping {seq}:    {}", ms(rtt))?;
        rtts.push(rtt);
        if seq < count {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let min = rtts.iter().min().copied().unwrap_or_default();
    let max = rtts.iter().max().copied().unwrap_or_default();
    let avg = rtts.iter().sum::<Duration>() / count.max(1);
    writeln!(
        out,
        "rtt min/avg/max = {}/{}/{} over {count} ping(s)",
        ms(min),
        ms(avg),
        ms(max)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
