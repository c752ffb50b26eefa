//! Which export a server address led to last time, so that a mount can
//! start from its cache while the server is down.
//!
//! The cache is keyed by the export id, which only the server's hello
//! tells. After every successful connect the mount records, under
//! `<cache_dir>/.exports/<key>`, the export id and whether it was read-only;
//! `key` is a hash of everything that selects the export on the client side
//! (address, subdirectory, token), so a different server, port or token never picks up
//! another export's cache. The token itself is never stored: only a keyed
//! hash of it goes into the key.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rfmount_client::{ConnectConfig, ExportInfo};

const MAGIC: &str = "rfmount-export 1";

/// The record file for `cfg` under `cache_dir`.
fn record_path(cache_dir: &Path, cfg: &ConnectConfig) -> PathBuf {
    let mut h = blake3::Hasher::new();
    h.update(b"rfmount known export v1\0");
    h.update(cfg.addr.as_bytes());
    h.update(b"\0");
    // Anything else of ConnectConfig that selects what the server exports
    // to us belongs in this hash too.
    if let Some(dir) = &cfg.subdir {
        h.update(b"subdir\0");
        h.update(dir.as_str().as_bytes());
        h.update(b"\0");
    }
    if let Some(key) = &cfg.token {
        // A MAC over fixed nonces: stable for one token, reveals nothing.
        h.update(&key.proof(&[0; 32], &[1; 32]));
    }
    cache_dir
        .join(".exports")
        .join(&h.finalize().to_hex()[..32])
}

/// Records that `cfg` reached `info`.
///
/// # Errors
/// The cache directory cannot be written.
pub fn remember(cache_dir: &Path, cfg: &ConnectConfig, info: &ExportInfo) -> io::Result<()> {
    let path = record_path(cache_dir, cfg);
    let dir = path.parent().unwrap_or(cache_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let text = format!(
        "{MAGIC}\n{}\n{}\n",
        info.export_id,
        if info.read_only { "ro" } else { "rw" }
    );
    if fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}

/// The export `cfg` reached last time, if recorded.
pub fn recall(cache_dir: &Path, cfg: &ConnectConfig) -> Option<ExportInfo> {
    let text = fs::read_to_string(record_path(cache_dir, cfg)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let export_id = lines.next()?.to_owned();
    let read_only = match lines.next()? {
        "ro" => true,
        "rw" => false,
        _ => return None,
    };
    if export_id.is_empty() {
        return None;
    }
    Some(ExportInfo {
        export_id,
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rfmount_proto::AuthKey;

    #[test]
    fn records_are_per_address_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let a = ConnectConfig::new("host:1");
        let info = ExportInfo {
            export_id: "abc-123".into(),
            read_only: true,
        };
        assert_eq!(recall(dir.path(), &a), None);
        remember(dir.path(), &a, &info).unwrap();
        assert_eq!(recall(dir.path(), &a), Some(info.clone()));
        assert_eq!(recall(dir.path(), &ConnectConfig::new("host:2")), None);
        let mut with_token = ConnectConfig::new("host:1");
        with_token.token = Some(AuthKey::from_token(b"secret"));
        assert_eq!(recall(dir.path(), &with_token), None);
        let other = ExportInfo {
            export_id: "def".into(),
            read_only: false,
        };
        remember(dir.path(), &with_token, &other).unwrap();
        assert_eq!(recall(dir.path(), &with_token), Some(other));
        assert_eq!(recall(dir.path(), &a), Some(info));
        // The token never lands on disk.
        for f in fs::read_dir(dir.path().join(".exports")).unwrap() {
            let text = fs::read_to_string(f.unwrap().path()).unwrap();
            assert!(!text.contains("secret"), "{text}");
        }
    }

    #[test]
    fn garbage_records_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = ConnectConfig::new("host:1");
        let p = record_path(dir.path(), &a);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "something else\n").unwrap();
        assert_eq!(recall(dir.path(), &a), None);
        fs::write(&p, format!("{MAGIC}\nid\nmaybe\n")).unwrap();
        assert_eq!(recall(dir.path(), &a), None);
    }
}
