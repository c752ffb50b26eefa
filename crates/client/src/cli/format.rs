//! Text output of `rf`: `ls -l`-style lines and `stat`.

use rfmount_proto::{FileKind, Meta, RelPath, Timestamp};

/// `drwxr-xr-x  1000  1000         4096 2026-11-23 13:30:00 name`: kind and
/// permissions, owner and group as numbers (the server's, as `ls -n` shows
/// them), size, mtime in UTC, name; a symlink ends in ` -> target`, escaped
/// like the name.
pub(crate) fn ls_line(name: &str, m: &Meta) -> String {
    let target = match &m.target {
        Some(t) => format!(" -> {}", escape_name(t)),
        None => String::new(),
    };
    format!(
        "{}{} {:>5} {:>5} {:>12} {} {}{target}",
        kind_char(m.kind),
        perms(m.mode),
        m.uid,
        m.gid,
        m.size,
        utc(m.mtime),
        escape_name(name)
    )
}

/// A name with control characters and backslashes escaped as `ls -b` does
/// (`\n`, `\t`, `\\`, `\ooo` for the rest), so that one entry is always
/// one line and cannot move the terminal's cursor.
pub(crate) fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Multi-line attributes of one entry.
pub(crate) fn stat_text(path: &RelPath, m: &Meta) -> String {
    format!(
        "path: {}\nkind: {}\nsize: {}\nmode: {:04o} ({}{})\nmtime: {} UTC\nversion: {:016x}",
        escape_name(&path.to_string()),
        kind_name(m.kind),
        m.size,
        m.mode & 0o7777,
        kind_char(m.kind),
        perms(m.mode),
        utc(m.mtime),
        m.version
    )
}

fn kind_char(k: FileKind) -> char {
    match k {
        FileKind::File => '-',
        FileKind::Dir => 'd',
        FileKind::Symlink => 'l',
        FileKind::Other => '?',
        FileKind::Fifo => 'p',
        FileKind::CharDev => 'c',
        FileKind::BlockDev => 'b',
        FileKind::Socket => 's',
    }
}

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::File => "file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symlink",
        FileKind::Other => "special",
        FileKind::Fifo => "fifo",
        FileKind::CharDev => "character device",
        FileKind::BlockDev => "block device",
        FileKind::Socket => "socket",
    }
}

fn perms(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, set_ch, unset_ch) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set_ch,
            (false, true) => unset_ch,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, without a time-zone database.
fn utc(t: Timestamp) -> String {
    let days = t.secs.div_euclid(86_400);
    let secs = t.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_ls() {
        let m = Meta {
            kind: FileKind::File,
            size: 42,
            mode: 0o4755,
            mtime: Timestamp {
                secs: 1_700_000_000,
                nanos: 0,
            },
            version: 1,
            uid: 1000,
            gid: 65534,
            ..Meta::default()
        };
        assert_eq!(
            ls_line("x", &m),
            "-rwsr-xr-x  1000 65534           42 2023-11-14 22:13:20 x"
        );
        let l = Meta {
            kind: FileKind::Symlink,
            size: 5,
            mode: 0o777,
            target: Some("a/b c".into()),
            ..m.clone()
        };
        assert_eq!(
            ls_line("l", &l),
            "lrwxrwxrwx  1000 65534            5 2023-11-14 22:13:20 l -> a/b c"
        );
        assert_eq!(perms(0o1777), "rwxrwxrwt");
        assert_eq!(
            escape_name("a\nb\tc\\d\u{1b}[A\u{7f}é"),
            "a\\nb\\tc\\\\d\\033[A\\177é"
        );
        assert_eq!(utc(Timestamp { secs: 0, nanos: 0 }), "1970-01-01 00:00:00");
        assert_eq!(
            utc(Timestamp {
                secs: 951_782_400,
                nanos: 0
            }),
            "2000-02-29 00:00:00"
        );
    }
}
