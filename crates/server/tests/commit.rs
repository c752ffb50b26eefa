//! Group commit keeps the promise of a PUT's reply: once it is sent, the
//! new version is in place for everyone, even while many uploads into the
//! same directory share their directory fsyncs.

mod common;

use common::{Client, content, p};
use rfmount_proto::{Op, Reply};
use rfmount_server::ServerConfig;

#[test]
fn a_put_reply_is_never_sent_before_the_new_version_is_in_place() {
    let h = common::start(ServerConfig::default());
    std::fs::create_dir(h.root.join("d")).unwrap();
    let addr = h.addr;
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            std::thread::spawn(move || {
                let connect = || {
                    let mut c = Client::connect(addr);
                    c.hello();
                    c.welcome();
                    c
                };
                let (mut writer, mut reader) = (connect(), connect());
                let replaced = format!("d/replaced{t}");
                for i in 0..20u64 {
                    // A new file, and a new version of one this thread keeps
                    // replacing, while the other threads commit into the
                    // same directory.
                    let own = format!("d/t{t}-{i}");
                    let data = content(100 + (i as usize) * 37, t * 100 + i);
                    let Ok(Reply::Changed {
                        meta: Some(put), ..
                    }) = writer.put(2 * i, &own, &data, 64)
                    else {
                        panic!("PUT {own} failed");
                    };
                    let Ok(Reply::Meta(seen)) = reader.request(2 * i, Op::Stat { path: p(&own) })
                    else {
                        panic!("STAT {own} right after its PUT reply failed");
                    };
                    assert_eq!(seen.version, put.version, "{own}");
                    assert_eq!(reader.get(2 * i + 1, &own).1, data, "{own}");
                    let Ok(Reply::Changed {
                        meta: Some(put), ..
                    }) = writer.put(2 * i + 1, &replaced, &data, 64)
                    else {
                        panic!("PUT {replaced} failed");
                    };
                    let Ok(Reply::Meta(seen)) =
                        reader.request(1000 + i, Op::Stat { path: p(&replaced) })
                    else {
                        panic!("STAT {replaced} failed");
                    };
                    assert_eq!(seen.version, put.version, "{replaced} version {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..6u64 {
        for i in 0..20u64 {
            let want = content(100 + (i as usize) * 37, t * 100 + i);
            assert_eq!(
                std::fs::read(h.root.join(format!("d/t{t}-{i}"))).unwrap(),
                want
            );
        }
    }
}
