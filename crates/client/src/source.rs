//! The server argument of `rf` and `rfmount`, in the syntax sshfs users
//! know: `HOST[:PORT][:/SUBDIR]`, with `[ADDR]` for IPv6 (`[::1]:9500:/docs`).
//!
//! `HOST:/SUBDIR` mounts or addresses a subdirectory of the export; the
//! server confines the session to it (the client never fakes that by
//! prefixing paths). The canonical text form ([`std::fmt::Display`]) is what
//! the mount table shows as the mount's source.

use std::fmt;
use std::net::Ipv6Addr;

use rfmount_proto::{DEFAULT_PORT, RelPath};

use crate::connection::ConnectConfig;

/// A parsed `HOST[:PORT][:/SUBDIR]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// The port, when one was given.
    pub port: Option<u16>,
    /// The subdirectory of the export, when one was given (never the root).
    pub subdir: Option<RelPath>,
}

/// Why a server argument cannot be used: a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("bad server {input:?}: {why}; the form is HOST[:PORT][:/SUBDIR]")]
pub struct SourceError {
    input: String,
    why: String,
}

impl Source {
    /// Parses `HOST`, `HOST:PORT`, `HOST:/SUBDIR`, `HOST:PORT:/SUBDIR`,
    /// `[IPV6]...` and a bare IPv6 address.
    ///
    /// # Errors
    /// A [`SourceError`] naming what is wrong.
    pub fn parse(input: &str) -> Result<Source, SourceError> {
        let err = |why: &str| SourceError {
            input: input.to_owned(),
            why: why.to_owned(),
        };
        let (host, rest) = if let Some(after) = input.strip_prefix('[') {
            let (h, rest) = after.split_once(']').ok_or_else(|| err("missing ']'"))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| err("not an IPv6 address between [ ]"))?;
            (h.to_owned(), rest)
        } else if input.parse::<Ipv6Addr>().is_ok() {
            (input.to_owned(), "")
        } else {
            match input.find(':') {
                Some(i) => (input[..i].to_owned(), &input[i..]),
                None => (input.to_owned(), ""),
            }
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("the host contains a space or control character"));
        }
        let mut src = Source {
            host,
            port: None,
            subdir: None,
        };
        let Some(rest) = rest.strip_prefix(':') else {
            return if rest.is_empty() {
                Ok(src)
            } else {
                Err(err("expected ':' after the host"))
            };
        };
        let (port, dir) = if rest.starts_with('/') || rest.is_empty() {
            ("", rest)
        } else {
            match rest.split_once(':') {
                Some((p, d)) => (p, d),
                None => (rest, ""),
            }
        };
        if !port.is_empty() {
            src.port = Some(parse_port(port).map_err(|why| err(&why))?);
        }
        if !dir.is_empty() {
            if !dir.starts_with('/') {
                return Err(err("the subdirectory must start with '/'"));
            }
            let p = RelPath::from_user(dir).map_err(|e| err(&format!("subdirectory: {e}")))?;
            src.subdir = (!p.is_root()).then_some(p);
        }
        Ok(src)
    }

    /// Sets the port from `-p PORT` / `-o port=N`; a different port in the
    /// server argument itself is a conflict.
    ///
    /// # Errors
    /// When both are given and differ.
    pub fn with_port(mut self, port: u16) -> Result<Source, SourceError> {
        match self.port {
            Some(p) if p != port => Err(SourceError {
                input: self.to_string(),
                why: format!("port {p} conflicts with the port option {port}"),
            }),
            _ => {
                self.port = Some(port);
                Ok(self)
            }
        }
    }

    /// `host:port` (IPv6 in brackets) for connecting, with 9500 by default.
    pub fn addr(&self) -> String {
        let port = self.port.unwrap_or(DEFAULT_PORT);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// The connection settings for this source: address and subdirectory.
    pub fn connect_config(&self) -> ConnectConfig {
        let mut cfg = ConnectConfig::new(self.addr());
        // The server confines the session; the client never prefixes paths.
        cfg.subdir = self.subdir.clone().filter(|s| !s.is_root());
        cfg
    }
}

/// `HOST:PORT[:/SUBDIR]`, the form the mount table shows.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr())?;
        if let Some(sub) = &self.subdir {
            write!(f, ":{sub}")?;
        }
        Ok(())
    }
}

/// A TCP port, 1 to 65535.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("bad port {s:?} (expected 1 to 65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Option<u16>, Option<String>) {
        let src = Source::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            src.host,
            src.port,
            src.subdir.map(|p| p.as_str().to_owned()),
        )
    }

    fn t(h: &str, p: Option<u16>, d: Option<&str>) -> (String, Option<u16>, Option<String>) {
        (h.to_owned(), p, d.map(str::to_owned))
    }

    #[test]
    fn sshfs_forms_parse() {
        assert_eq!(ok("host"), t("host", None, None));
        assert_eq!(ok("host:"), t("host", None, None));
        assert_eq!(ok("host:9500"), t("host", Some(9500), None));
        assert_eq!(ok("host:/srv/sub"), t("host", None, Some("srv/sub")));
        assert_eq!(ok("host:9500:/sub/"), t("host", Some(9500), Some("sub")));
        assert_eq!(ok("host:9500:/"), t("host", Some(9500), None));
        assert_eq!(ok("10.0.0.1:1"), t("10.0.0.1", Some(1), None));
        assert_eq!(ok("[::1]:9501"), t("::1", Some(9501), None));
        assert_eq!(ok("[::1]:9501:/d"), t("::1", Some(9501), Some("d")));
        assert_eq!(ok("[::1]:/d"), t("::1", None, Some("d")));
        assert_eq!(ok("[::1]"), t("::1", None, None));
        assert_eq!(ok("::1"), t("::1", None, None));
    }

    #[test]
    fn bad_forms_are_refused_with_a_reason() {
        for (s, why) in [
            ("", "no host"),
            (":9500", "no host"),
            ("host:port", "bad port"),
            ("host:0", "bad port"),
            ("host:70000", "bad port"),
            ("host:9500:sub", "must start with '/'"),
            ("host:9500:/a/../..", "subdirectory"),
            ("[::1", "missing ']'"),
            ("[nothost]:1", "IPv6"),
            ("[::1]x", "expected ':'"),
            ("ho st", "space"),
        ] {
            let e = Source::parse(s).expect_err(s).to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains("HOST[:PORT][:/SUBDIR]"), "{e}");
        }
    }

    #[test]
    fn canonical_form_and_address() {
        let s = Source::parse("host:/a/b").unwrap();
        assert_eq!(s.addr(), "host:9500");
        assert_eq!(s.to_string(), "host:9500:/a/b");
        let v6 = Source::parse("::1").unwrap().with_port(80).unwrap();
        assert_eq!(v6.addr(), "[::1]:80");
        assert!(
            Source::parse("h:1")
                .unwrap()
                .with_port(2)
                .unwrap_err()
                .to_string()
                .contains("conflicts")
        );
        assert_eq!(
            Source::parse("h:2").unwrap().with_port(2).unwrap().addr(),
            "h:2"
        );
    }

    #[test]
    fn subdir_is_carried_to_the_connection_not_faked() {
        let plain = Source::parse("h:1").unwrap().connect_config();
        assert_eq!(plain.addr, "h:1");
        let sub = Source::parse("h:1:/docs").unwrap();
        assert_eq!(sub.subdir.as_ref().map(RelPath::as_str), Some("docs"));
        let cfg = sub.connect_config();
        assert_eq!(cfg.subdir.as_ref().map(RelPath::as_str), Some("docs"));
        assert_eq!(Source::parse("h:1").unwrap().connect_config().subdir, None);
    }
}
