//! Names for content recovered after a crash: a file that was still open
//! for writing when rfmount died is uploaded as a sibling
//! `NAME.recovered-HOST-YYYYMMDD-HHMMSS` (UTC), never over `NAME`.

use std::time::{SystemTime, UNIX_EPOCH};

use rfmount_proto::RelPath;

/// Longest file name most filesystems accept.
const NAME_MAX: usize = 255;

/// This machine's host name, with anything odd for a file name replaced.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates
    // within it or truncates.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let raw = if r == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown-host".into()
    } else {
        clean
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub(crate) fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm), so that no date crate is needed for one file name.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The sibling of `path` that recovered content is kept under; `n > 1`
/// tells apart several recoveries in the same second. The original name is
/// shortened (at a character boundary) when the result would be too long.
pub(crate) fn sibling(path: &RelPath, host: &str, stamp: &str, n: u32) -> Option<RelPath> {
    tagged_sibling(path, "recovered", host, stamp, n)
}

/// As [`sibling`], for `NAME.TAG-HOST-STAMP` (e.g. `conflict`).
pub(crate) fn tagged_sibling(
    path: &RelPath,
    tag: &str,
    host: &str,
    stamp: &str,
    n: u32,
) -> Option<RelPath> {
    let name = path.file_name()?;
    let mut suffix = format!(".{tag}-{host}-{stamp}");
    if n > 1 {
        suffix.push_str(&format!("-{n}"));
    }
    let room = NAME_MAX.checked_sub(suffix.len())?;
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    path.parent()?
        .join(&format!("{}{suffix}", &name[..cut]))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101-000000");
        // 2024-02-29 23:59:58 UTC, a leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_198);
        assert_eq!(utc_stamp(t), "20240229-235958");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
        assert_eq!(utc_stamp(t), "20270101-000000");
    }

    #[test]
    fn sibling_names_stay_in_the_directory_and_within_name_max() {
        let p = RelPath::new("d/e/report.txt").unwrap();
        let s = sibling(&p, "box", "20260101-010203", 1).unwrap();
        assert_eq!(s.as_str(), "d/e/report.txt.recovered-box-20260101-010203");
        let s2 = sibling(&p, "box", "20260101-010203", 2).unwrap();
        assert_eq!(
            s2.as_str(),
            "d/e/report.txt.recovered-box-20260101-010203-2"
        );
        let top = RelPath::new("f").unwrap();
        assert_eq!(
            sibling(&top, "h", "x", 1).unwrap().as_str(),
            "f.recovered-h-x"
        );
        let long = RelPath::new(&"é".repeat(120)).unwrap();
        let s = sibling(&long, "host", "20260101-010203", 1).unwrap();
        let name = s.file_name().unwrap();
        assert!(name.len() <= NAME_MAX, "{}", name.len());
        assert!(name.ends_with(".recovered-host-20260101-010203"));
    }

    #[test]
    fn hostname_is_a_usable_name() {
        let h = hostname();
        assert!(!h.is_empty());
        assert!(!h.contains('/'));
    }
}
