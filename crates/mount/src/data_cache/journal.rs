//! The cache's index on disk: one append-only journal per export instead of
//! a record file per entry. Every change of an entry is one `write(2)` of a
//! framed record (`u32` length, 8 bytes of BLAKE3 of the payload, payload),
//! so a crash of rfmount never loses a record that was written, and a torn
//! tail (power loss mid-append) is recognised by its checksum and dropped.
//! At open the live records are rewritten into a fresh journal (through a
//! temporary file, fsynced, renamed), and again whenever dead records
//! outnumber live ones, so the journal stays proportional to the cache.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use log::warn;
use rfmount_proto::RelPath;

use super::index::{EntryInfo, format_meta, parse_meta};

const NAME: &str = "index.journal";
const DEL_MAGIC: &str = "rfmount-cache del";
/// Records longer than this are corrupt (a path is at most a few KiB).
const MAX_RECORD: u32 = 64 * 1024;

/// One change of the index.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// `path` now holds `info`.
    Put(RelPath, EntryInfo),
    /// `path` is no longer cached.
    Del(RelPath),
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let payload = match self {
            Record::Put(p, info) => format_meta(p, info),
            Record::Del(p) => format!("{DEL_MAGIC}\npath {}\n", p.as_str()),
        };
        let mut out = Vec::with_capacity(12 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&blake3::hash(payload.as_bytes()).as_bytes()[..8]);
        out.extend_from_slice(payload.as_bytes());
        out
    }

    fn decode(payload: &str) -> Option<Record> {
        if let Some(rest) = payload.strip_prefix(DEL_MAGIC) {
            let path = rest.strip_prefix("\npath ")?.strip_suffix('\n')?;
            return Some(Record::Del(RelPath::try_from(path.to_owned()).ok()?));
        }
        let (p, info) = parse_meta(payload)?;
        Some(Record::Put(p, info))
    }
}

/// The open journal of one export's cache.
pub(super) struct Journal {
    root: PathBuf,
    file: File,
    /// Records in the file, live or dead.
    records: u64,
    /// Records were appended since the file was last flushed to disk.
    unflushed: bool,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Journal {
    /// Opens the journal in `root` and returns every record it holds, in
    /// order. A torn or corrupt tail is cut off (and logged).
    pub fn open(root: &Path) -> io::Result<(Journal, Vec<Record>)> {
        let path = root.join(NAME);
        let mut records = Vec::new();
        let mut good = 0u64;
        match File::open(&path) {
            Ok(f) => {
                let len = f.metadata()?.len();
                let mut r = BufReader::with_capacity(256 * 1024, f);
                while let Some((rec, n)) = read_record(&mut r)? {
                    records.push(rec);
                    good += n;
                }
                if good < len {
                    warn!(
                        "cache index {}: dropping {} bytes of a torn or corrupt record at offset {good}",
                        path.display(),
                        len - good
                    );
                    OpenOptions::new().write(true).open(&path)?.set_len(good)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let journal = Journal {
            root: root.to_owned(),
            file: open_append(&path)?,
            records: records.len() as u64,
            unflushed: false,
        };
        Ok((journal, records))
    }

    /// Appends one record; with `durable`, it is on stable storage when
    /// this returns.
    pub fn append(&mut self, rec: &Record, durable: bool) -> io::Result<()> {
        // One write, so a crash of the process leaves it whole or absent.
        self.file.write_all(&rec.encode())?;
        self.records += 1;
        self.unflushed = true;
        if durable {
            self.file.sync_data()?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Appends `recs` in one write (not flushed to disk).
    pub fn append_all(&mut self, recs: &[Record]) -> io::Result<()> {
        let bytes: Vec<u8> = recs.iter().flat_map(Record::encode).collect();
        self.file.write_all(&bytes)?;
        self.records += recs.len() as u64;
        self.unflushed = true;
        Ok(())
    }

    /// A second descriptor of the journal when records were appended since
    /// it was last flushed, for flushing them without holding the index
    /// (a rewrite meanwhile makes its own file durable); they count as
    /// flushed from now on, so a failed flush must call
    /// [`Journal::flush_failed`].
    pub fn take_for_flush(&mut self) -> io::Result<Option<File>> {
        if !self.unflushed {
            return Ok(None);
        }
        let f = self.file.try_clone()?;
        self.unflushed = false;
        Ok(Some(f))
    }

    /// A flush of [`Journal::take_for_flush`]'s descriptor failed.
    pub fn flush_failed(&mut self) {
        self.unflushed = true;
    }

    /// Records in the file, live or dead.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Replaces the journal with just `live` (fsynced, then renamed into
    /// place, so a crash leaves the old journal or the new one).
    pub fn rewrite<'a>(
        &mut self,
        live: impl Iterator<Item = (&'a RelPath, &'a EntryInfo)>,
    ) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-journal")
            .tempfile_in(&self.root)?;
        let mut n = 0;
        {
            let mut w = io::BufWriter::with_capacity(256 * 1024, tmp.as_file_mut());
            for (p, info) in live {
                w.write_all(&Record::Put(p.clone(), info.clone()).encode())?;
                n += 1;
            }
            w.flush()?;
        }
        tmp.as_file().sync_data()?;
        let path = self.root.join(NAME);
        tmp.persist(&path).map_err(|e| e.error)?;
        File::open(&self.root)?.sync_all()?;
        self.file = open_append(&path)?;
        self.records = n;
        self.unflushed = false;
        Ok(())
    }
}

/// The next record and its size on disk; `None` at the end or at the first
/// record that is torn or corrupt.
fn read_record(r: &mut impl Read) -> io::Result<Option<(Record, u64)>> {
    let mut head = [0u8; 12];
    if !read_full(r, &mut head)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if !read_full(r, &mut payload)? {
        return Ok(None);
    }
    if blake3::hash(&payload).as_bytes()[..8] != head[4..12] {
        return Ok(None);
    }
    let Some(rec) = std::str::from_utf8(&payload).ok().and_then(Record::decode) else {
        return Ok(None);
    };
    Ok(Some((rec, 12 + u64::from(len))))
}

/// Fills `buf`; `false` if the input ends first.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// True for the leftover of a rewrite interrupted by a crash.
pub(super) fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp-journal")
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn info(size: u64) -> EntryInfo {
        EntryInfo {
            version: Some(size),
            dirty: size % 2 == 0,
            writing: size % 3 == 0,
            size,
            mode: None,
            mtime: None,
            changes: None,
            xattrs: Vec::new(),
            unsynced: None,
        }
    }

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, recs) = Journal::open(dir.path()).unwrap();
            assert!(recs.is_empty());
            j.append(&Record::Put(p("a"), info(1)), false).unwrap();
            j.append(&Record::Put(p("d/b c"), info(6)), true).unwrap();
            j.append(&Record::Del(p("a")), false).unwrap();
        }
        let file = dir.path().join(NAME);
        let whole = fs::metadata(&file).unwrap().len();
        // A power loss mid-append: half a record at the end.
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&Record::Put(p("x"), info(2)).encode()[..20])
            .unwrap();
        drop(f);
        let (mut j, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Put(p("a"), info(1)),
                Record::Put(p("d/b c"), info(6)),
                Record::Del(p("a")),
            ]
        );
        assert_eq!(
            fs::metadata(&file).unwrap().len(),
            whole,
            "torn tail cut off"
        );
        // Appends after the cut are read back.
        j.append(&Record::Put(p("y"), info(3)), false).unwrap();
        drop(j);
        let (_, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(recs.last(), Some(&Record::Put(p("y"), info(3))));
    }

    #[test]
    fn a_corrupt_record_ends_the_journal_there() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, _) = Journal::open(dir.path()).unwrap();
            j.append(&Record::Put(p("a"), info(1)), false).unwrap();
            j.append(&Record::Put(p("b"), info(2)), false).unwrap();
        }
        let file = dir.path().join(NAME);
        let mut bytes = fs::read(&file).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&file, &bytes).unwrap();
        let (_, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(recs, vec![Record::Put(p("a"), info(1))]);
    }

    #[test]
    fn rewrite_keeps_only_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        for i in 0..10 {
            j.append(&Record::Put(p("f"), info(i)), false).unwrap();
        }
        assert_eq!(j.records(), 10);
        let (path, last) = (p("f"), info(9));
        j.rewrite(std::iter::once((&path, &last))).unwrap();
        assert_eq!(j.records(), 1);
        j.append(&Record::Put(p("g"), info(4)), false).unwrap();
        drop(j);
        let (_, recs) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            recs,
            vec![Record::Put(p("f"), info(9)), Record::Put(p("g"), info(4))]
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| is_temp(n))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
