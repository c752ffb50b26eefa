//! Which bytes of a cached file differ from the server version it was
//! fetched as, so that its upload can send only those
//! ([`rfmount_proto::PutLayout`] with that version as the base).
//!
//! Kept in the index entry and written with its records. While an entry is
//! being written they may lag behind in the journal, which is safe: a crash
//! then recovers the content aside as a new file, uploaded whole. Once an
//! entry is sealed its record holds its changes. A record without them
//! (older layouts, too many ranges to record) means "unknown": the upload
//! is then a whole one, never a wrong file.

use rfmount_proto::Extent;

/// More ranges than this are merged (over-approximated) to keep a record
/// small; merging only ever sends more bytes, never fewer.
const MAX_RANGES: usize = 512;

/// Changed byte ranges since the base version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Size of the base version: bytes past it are new either way.
    pub base_size: u64,
    /// `[start, end)` ranges, sorted, disjoint and not touching.
    ranges: Vec<(u64, u64)>,
}

impl Changes {
    /// No change yet from a base version of `base_size` bytes.
    pub fn clean(base_size: u64) -> Changes {
        Changes {
            base_size,
            ranges: Vec::new(),
        }
    }

    /// Bytes `[offset, offset + len)` were written.
    pub fn write(&mut self, offset: u64, len: u64) {
        if len > 0 {
            self.add(offset, offset.saturating_add(len));
        }
    }

    /// The content was cut (or extended) to `size`: bytes of the base
    /// beyond it now read as zeros wherever the file grows back over them.
    pub fn truncate(&mut self, size: u64) {
        if size < self.base_size {
            self.add(size, self.base_size);
        }
    }

    /// The changed ranges within a file of `size` bytes, as extents.
    pub fn extents(&self, size: u64) -> Vec<Extent> {
        self.ranges
            .iter()
            .filter(|(s, _)| *s < size)
            .map(|&(s, e)| Extent {
                offset: s,
                len: e.min(size) - s,
            })
            .collect()
    }

    fn add(&mut self, start: u64, end: u64) {
        // First range that ends at or after `start` (touching merges).
        let i = self.ranges.partition_point(|&(_, e)| e < start);
        let mut j = i;
        let (mut s, mut e) = (start, end);
        while j < self.ranges.len() && self.ranges[j].0 <= end {
            s = s.min(self.ranges[j].0);
            e = e.max(self.ranges[j].1);
            j += 1;
        }
        self.ranges.splice(i..j, [(s, e)]);
        if self.ranges.len() > MAX_RANGES {
            self.coarsen();
        }
    }

    /// Merges neighbours across the smallest gaps until half the limit is
    /// left.
    fn coarsen(&mut self) {
        let mut gaps: Vec<u64> = self.ranges.windows(2).map(|w| w[1].0 - w[0].1).collect();
        gaps.sort_unstable();
        let bridge = gaps[gaps.len() - MAX_RANGES / 2];
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(MAX_RANGES);
        for &(s, e) in &self.ranges {
            match out.last_mut() {
                Some(last) if s - last.1 <= bridge => last.1 = e,
                _ => out.push((s, e)),
            }
        }
        self.ranges = out;
    }

    /// The record form: `BASE_SIZE START-END,START-END...`.
    pub fn format(&self) -> String {
        let ranges: Vec<String> = self
            .ranges
            .iter()
            .map(|(s, e)| format!("{s}-{e}"))
            .collect();
        format!("{} {}", self.base_size, ranges.join(","))
    }

    /// Reads [`Changes::format`]'s output; `None` for anything malformed.
    pub fn parse(text: &str) -> Option<Changes> {
        let (base, list) = text.split_once(' ')?;
        let base_size = base.parse().ok()?;
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for r in list.split(',').filter(|r| !r.is_empty()) {
            let (s, e) = r.split_once('-')?;
            let (s, e): (u64, u64) = (s.parse().ok()?, e.parse().ok()?);
            if s >= e || ranges.last().is_some_and(|l| l.1 >= s) {
                return None;
            }
            ranges.push((s, e));
        }
        Some(Changes { base_size, ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(c: &Changes, size: u64) -> Vec<(u64, u64)> {
        c.extents(size).iter().map(|e| (e.offset, e.len)).collect()
    }

    #[test]
    fn writes_merge_and_truncates_mark_the_cut_base() {
        let mut c = Changes::clean(100);
        c.write(10, 5);
        c.write(30, 5);
        c.write(15, 2);
        assert_eq!(ext(&c, 100), vec![(10, 7), (30, 5)]);
        c.write(12, 20);
        assert_eq!(ext(&c, 100), vec![(10, 25)]);
        c.truncate(50);
        assert_eq!(ext(&c, 200), vec![(10, 25), (50, 50)]);
        // Clamped to the size at upload.
        assert_eq!(ext(&c, 20), vec![(10, 10)]);
        c.truncate(0);
        assert_eq!(ext(&c, 200), vec![(0, 100)]);
        let mut grow = Changes::clean(10);
        grow.truncate(1000);
        assert!(ext(&grow, 1000).is_empty());
    }

    #[test]
    fn too_many_ranges_are_merged_never_dropped() {
        let mut c = Changes::clean(1 << 30);
        let mut written = Vec::new();
        for i in 0..5000u64 {
            let off = (i * 7919 * 4096) % (1 << 30);
            c.write(off, 100);
            written.push(off);
        }
        let e = c.extents(1 << 30);
        assert!(e.len() <= MAX_RANGES, "{}", e.len());
        for off in written {
            assert!(
                e.iter()
                    .any(|x| x.offset <= off && off + 100 <= x.offset + x.len),
                "{off} lost"
            );
        }
    }

    #[test]
    fn the_record_form_round_trips_and_rejects_garbage() {
        let mut c = Changes::clean(77);
        c.write(1, 2);
        c.write(10, 20);
        assert_eq!(Changes::parse(&c.format()), Some(c));
        assert_eq!(Changes::parse("5 "), Some(Changes::clean(5)));
        assert_eq!(Changes::parse("5 3-1"), None);
        assert_eq!(Changes::parse("5 1-4,2-6"), None);
        assert_eq!(Changes::parse("x 1-2"), None);
    }
}
