//! Sorting the `-o` options of `rfmount`.
//!
//! mount(8), fstab and mount.fuse3 hand every option of a line to the
//! helper, so rfmount takes what a kernel filesystem would: the generic
//! mount flags (applied to the mount: `nodev`, `noexec`, `noatime`, ...),
//! the options only mount(8) and systemd care about (`defaults`, `auto`,
//! `user`, `_netdev`, `nofail`, `x-*`, ...: accepted and ignored), the sshfs
//! ones (`port=`, `reconnect`, `debug`, `nonempty`), and the settings that
//! are command-line flags elsewhere (`cache_dir=`, `token_file=`, ... —
//! an fstab line has no other way to give them). Everything else goes to
//! [`crate::options::MountConfig::apply_options`], which refuses what it
//! does not know.

use std::path::PathBuf;

use rfmount_client::source::parse_port;

/// Flags of the mount itself, as for any kernel filesystem. FUSE mounts
/// default to `nodev,nosuid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KernelFlags {
    pub(crate) nodev: bool,
    pub(crate) nosuid: bool,
    pub(crate) noexec: bool,
    pub(crate) noatime: bool,
    pub(crate) strictatime: bool,
    pub(crate) nodiratime: bool,
    pub(crate) sync: bool,
    pub(crate) dirsync: bool,
}

impl Default for KernelFlags {
    fn default() -> Self {
        KernelFlags {
            nodev: true,
            nosuid: true,
            noexec: false,
            noatime: false,
            strictatime: false,
            nodiratime: false,
            sync: false,
            dirsync: false,
        }
    }
}

/// The `-o` options, sorted by who uses them.
#[derive(Debug, Default)]
pub(crate) struct CliOptions {
    pub(crate) flags: KernelFlags,
    /// Options for the filesystem core, comma-joined.
    pub(crate) fs_options: Vec<String>,
    pub(crate) port: Option<u16>,
    pub(crate) debug: bool,
    pub(crate) log_level: Option<String>,
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) cache_size: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) threads: Option<usize>,
}

/// Options mount(8), systemd and mount.fuse3 act on, meaningless to the
/// filesystem: accepted so that fstab lines work, and ignored.
const MOUNT_ONLY: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "async",
    "relatime",
    "atime",
    "dev",
    "suid",
    "exec",
    "diratime",
    "loud",
    "silent",
    // sshfs: reconnecting is what rfmount always does.
    "reconnect",
    // libfuse 3 and sshfs 3 mount over non-empty directories anyway.
    "nonempty",
];

impl CliOptions {
    /// Sorts every option of every `-o` argument.
    ///
    /// # Errors
    /// A bad value, named in the message (unknown options are only found
    /// later, by the filesystem's own parser).
    pub(crate) fn parse(args: &[String]) -> Result<CliOptions, String> {
        let mut o = CliOptions::default();
        for opt in args
            .iter()
            .flat_map(|a| a.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let need = |v: Option<&str>| {
                v.filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("option {key} needs a value ({key}=...)"))
            };
            match key {
                "nodev" => o.flags.nodev = true,
                "nosuid" => o.flags.nosuid = true,
                "noexec" => o.flags.noexec = true,
                "noatime" => o.flags.noatime = true,
                "strictatime" => o.flags.strictatime = true,
                "nodiratime" => o.flags.nodiratime = true,
                "sync" => o.flags.sync = true,
                "dirsync" => o.flags.dirsync = true,
                _ if value.is_none() && MOUNT_ONLY.contains(&key) => match key {
                    "dev" => o.flags.nodev = false,
                    "suid" => o.flags.nosuid = false,
                    "exec" => o.flags.noexec = false,
                    "atime" | "relatime" => {
                        o.flags.noatime = false;
                        o.flags.strictatime = false;
                    }
                    "diratime" => o.flags.nodiratime = false,
                    "async" => o.flags.sync = false,
                    _ => {}
                },
                _ if key.starts_with("x-") || key == "comment" => {}
                // mount.fuse3 names the subtype; the type stays fuse.rfmount.
                "subtype" | "fsname" if value.is_some() => {}
                "debug" if value.is_none() => o.debug = true,
                "port" => {
                    o.port = Some(parse_port(&need(value)?).map_err(|e| format!("port: {e}"))?)
                }
                "loglevel" => o.log_level = Some(need(value)?),
                "log_file" => o.log_file = Some(PathBuf::from(need(value)?)),
                "cache_dir" => o.cache_dir = Some(PathBuf::from(need(value)?)),
                "cache_size" => o.cache_size = Some(need(value)?),
                "token_file" => o.token_file = Some(PathBuf::from(need(value)?)),
                "threads" => {
                    let v = need(value)?;
                    o.threads = Some(
                        v.parse()
                            .map_err(|_| format!("threads={v}: not a number"))?,
                    );
                }
                _ => o.fs_options.push(opt.to_owned()),
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> CliOptions {
        CliOptions::parse(&[s.to_owned()]).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn fstab_and_mount_helper_options_are_accepted() {
        let o = parse(
            "defaults,rw,auto,noauto,user,users,nouser,_netdev,nofail,x-systemd.automount,\
             x-systemd.mount-timeout=30,reconnect,nonempty,subtype=rfmount,relatime",
        );
        assert_eq!(o.flags, KernelFlags::default());
        assert_eq!(o.fs_options, vec!["rw".to_owned()]);
    }

    #[test]
    fn generic_flags_are_applied() {
        let o = parse("noexec,noatime,dev,suid,sync");
        assert!(o.flags.noexec && o.flags.noatime && o.flags.sync);
        assert!(!o.flags.nodev && !o.flags.nosuid);
        let o = parse("noexec,exec,noatime,atime");
        assert!(!o.flags.noexec && !o.flags.noatime);
    }

    #[test]
    fn settings_and_sshfs_options() {
        let o = parse(
            "port=9600,debug,loglevel=trace,cache_dir=/c,cache_size=2G,token_file=/t,threads=4,allow_other,attr_timeout=2",
        );
        assert_eq!(o.port, Some(9600));
        assert!(o.debug);
        assert_eq!(o.log_level.as_deref(), Some("trace"));
        assert_eq!(o.cache_dir, Some(PathBuf::from("/c")));
        assert_eq!(o.cache_size.as_deref(), Some("2G"));
        assert_eq!(o.token_file, Some(PathBuf::from("/t")));
        assert_eq!(o.threads, Some(4));
        assert_eq!(o.fs_options, vec!["allow_other", "attr_timeout=2"]);
        for bad in ["port=x", "port=0", "port", "cache_dir=", "threads=many"] {
            assert!(CliOptions::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
        // Unknown options are left for the filesystem's parser to refuse.
        assert_eq!(parse("bogus").fs_options, vec!["bogus"]);
    }
}
