//! Open-ended uploads (`PutExt.open_ended`) over real TCP with raw frames:
//! the content is whatever arrives before `PutEnd`, the name appears only
//! then, and a cancel, a layout or a bad checksum leave the old file.

mod common;

use common::{checksum, content, p, start};
use rfmount_proto::{ClientMsg, ErrorCode, Extent, Op, PutExt, PutLayout, ServerMsg};
use rfmount_server::ServerConfig;

fn open_ended(id: u64, path: &str) -> ClientMsg {
    ClientMsg::Request {
        id,
        op: Op::Put {
            path: p(path),
            // Ignored: the size is not known yet.
            size: 3,
            mode: None,
            mtime: None,
            owner: None,
            ext: PutExt {
                open_ended: true,
                ..PutExt::default()
            },
        },
    }
}

#[test]
fn the_content_is_every_byte_sent_before_put_end() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("f"), "old").unwrap();
    let mut c = h.client();
    let data = content(700_000, 7);
    c.send(&open_ended(1, "f"));
    for part in data.chunks(100_000) {
        c.send(&ClientMsg::PutData {
            id: 1,
            data: part.to_vec(),
        });
    }
    assert_eq!(std::fs::read(h.root.join("f")).unwrap(), b"old");
    c.send(&ClientMsg::PutEnd {
        id: 1,
        checksum: checksum(&data),
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 1,
            result: Ok(r),
        } => assert!(format!("{r:?}").contains("size: 700000"), "{r:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(h.root.join("f")).unwrap(), data);
    assert!(h.temp_files().is_empty());
}

#[test]
fn a_cancel_or_a_bad_checksum_keeps_the_old_file() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("f"), "old").unwrap();
    let mut c = h.client();
    c.send(&open_ended(1, "f"));
    c.send(&ClientMsg::PutData {
        id: 1,
        data: b"new content".to_vec(),
    });
    c.send(&ClientMsg::Cancel { id: 1 });
    assert!(matches!(
        c.recv(),
        ServerMsg::Reply {
            id: 1,
            result: Err(_)
        }
    ));
    c.send(&open_ended(2, "f"));
    c.send(&ClientMsg::PutData {
        id: 2,
        data: b"new content".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 2,
        checksum: checksum(b"other content"),
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 2,
            result: Err(e),
        } => assert!(e.message.contains("checksum mismatch"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(h.root.join("f")).unwrap(), b"old");
    assert!(h.temp_files().is_empty());
}

#[test]
fn an_open_ended_upload_with_a_layout_is_invalid() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size: 3,
            mode: None,
            mtime: None,
            owner: None,
            ext: PutExt {
                open_ended: true,
                layout: Some(PutLayout {
                    base: None,
                    extents: vec![Extent { offset: 0, len: 3 }],
                }),
                ..PutExt::default()
            },
        },
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 1,
            result: Err(e),
        } => assert_eq!(e.code, ErrorCode::Invalid, "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(!h.root.join("f").exists());
}
