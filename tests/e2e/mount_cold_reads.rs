//! Reads of a file whose fetch is still running: a sequential reader right
//! behind the arriving bytes (answered from the chunks that just came) and
//! readers at offsets that cross the fetch's 256 KiB chunks, or lag far
//! behind (answered from the cache file), all get the file's own bytes.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::FileExt;

use crate::mount_common::*;
use crate::util::*;

const CHUNK: u64 = 256 * 1024;

#[test]
fn reads_of_a_file_still_arriving_return_its_bytes_wherever_they_fall() {
    skip_without_fuse!();
    let root = TestDir::new("root");
    // Random throughout: a read served from the wrong chunk cannot match.
    let size = 96 * MIB + 12_345;
    let src = root.write_random("big", size, 0xc01d);
    let want = fs::read(&src).unwrap();
    let srv = Server::start(root.path(), &[]);
    let m = Mount::start(&srv, &[]);
    let path = m.join("big");
    std::thread::scope(|s| {
        let seq = s.spawn(|| {
            let mut got = Vec::with_capacity(want.len());
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut got))
                .expect("sequential read");
            got
        });
        let mut pokes = Vec::new();
        for t in 0..3u64 {
            let (path, want) = (&path, &want);
            pokes.push(s.spawn(move || {
                let f = File::open(path).expect("open for preads");
                // Straddling chunk boundaries, from the front and the back.
                for k in 0..24u64 {
                    let chunk = if t == 1 { 380 - k * 15 } else { k * 15 + t };
                    let at = (chunk * CHUNK).saturating_sub(777 + t * 4096).min(size - 1);
                    let len = (CHUNK as usize + 5000).min((size - at) as usize);
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, at)
                        .unwrap_or_else(|e| panic!("pread of {len} at {at}: {e}"));
                    assert!(
                        buf == want[at as usize..at as usize + len],
                        "bytes {at}..+{len} differ from the server's file"
                    );
                }
            }));
        }
        for p in pokes {
            p.join().unwrap();
        }
        let got = seq.join().unwrap();
        assert_eq!(got.len(), want.len(), "sequential read length");
        assert!(
            got == want,
            "the sequential read differs from the server's file"
        );
    });
    // The copy the fetch left in the cache is whole too.
    tool(&m, &srv, "cmp").arg(&src).arg("big").ok();
}
