//! Codec tests: round trips of every message, golden bytes that pin the
//! format to `PROTOCOL_VERSION`, and hostile input that must decode to an
//! error, never a panic.

use proptest::prelude::*;

use super::*;
use crate::checksum::Checksum;
use crate::error::{ErrorCode, WireError};
use crate::frame::{FrameError, MAX_FRAME, read_frame, write_frame};
use crate::path::RelPath;

fn p(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn meta() -> Meta {
    Meta {
        kind: FileKind::File,
        size: 5,
        mode: 0o644,
        mtime: Timestamp {
            secs: 1_700_000_000,
            nanos: 42,
        },
        version: 0x0102_0304_0506_0708,
        uid: 1000,
        gid: 100,
        nlink: 1,
        file_id: FileId {
            dev: 0x801,
            ino: 12,
        },
        atime: Timestamp {
            secs: 1_700_000_001,
            nanos: 7,
        },
        ctime: Timestamp {
            secs: 1_700_000_002,
            nanos: 9,
        },
        rdev: 0,
        target: None,
        blocks: 8,
    }
}

fn link_meta() -> Meta {
    Meta {
        kind: FileKind::Symlink,
        size: 1,
        mode: 0o777,
        target: Some("f".into()),
        ..meta()
    }
}

fn all_client_msgs() -> Vec<ClientMsg> {
    let ops = vec![
        Op::List { path: p("d") },
        Op::Stat { path: p("a/b") },
        Op::Get {
            path: p("f"),
            have: Some(9),
            sparse: false,
        },
        Op::Get {
            path: p("f"),
            have: None,
            sparse: false,
        },
        Op::Put {
            path: p("f"),
            size: 3,
            mode: Some(0o600),
            mtime: Some(Timestamp::default()),
            owner: Some(Owner { uid: 1, gid: 2 }),
            ext: Default::default(),
        },
        Op::Remove { path: p("f") },
        Op::Rename {
            from: p("a"),
            to: p("b/c"),
            flags: RENAME_NOREPLACE,
        },
        Op::Mkdir {
            path: p("d"),
            mode: 0o755,
            owner: None,
        },
        Op::Rmdir { path: p("d") },
        Op::SetAttr {
            path: p("f"),
            attr: SetAttr {
                mode: Some(0o600),
                size: Some(0),
                atime: Some(SetTime::Now),
                mtime: Some(SetTime::At(Timestamp { secs: -1, nanos: 5 })),
                uid: Some(1000),
                gid: None,
            },
        },
        Op::StatFs,
        Op::Ping,
        Op::Symlink {
            path: p("l"),
            target: "../x/y".into(),
            owner: Some(Owner { uid: 3, gid: 4 }),
        },
        Op::ReadLink { path: p("l") },
        Op::Link {
            from: p("f"),
            to: p("g"),
        },
        Op::Mknod {
            path: p("n"),
            kind: FileKind::CharDev,
            mode: 0o600,
            rdev: 0x103,
            owner: None,
        },
        Op::GetXattr {
            path: p("f"),
            name: "user.k".into(),
        },
        Op::ListXattr { path: p("f") },
        Op::SetXattr {
            path: p("f"),
            name: "user.k".into(),
            value: vec![0, 1, 2],
            flags: XATTR_CREATE,
        },
        Op::RemoveXattr {
            path: p("f"),
            name: "user.k".into(),
        },
        Op::Put {
            path: p("f"),
            size: 10,
            mode: None,
            mtime: None,
            owner: None,
            ext: PutExt {
                atime: Some(Timestamp { secs: 1, nanos: 2 }),
                expect: PutExpect::Version(7),
                layout: Some(PutLayout {
                    base: Some(7),
                    extents: vec![Extent { offset: 4, len: 2 }],
                }),
                open_ended: false,
                xattrs: vec![XattrValue {
                    name: "user.k".into(),
                    value: vec![1],
                }],
            },
        },
        Op::Put {
            path: p("f"),
            size: 0,
            mode: None,
            mtime: None,
            owner: None,
            ext: PutExt {
                expect: PutExpect::Absent,
                open_ended: true,
                ..PutExt::default()
            },
        },
        Op::Get {
            path: p("f"),
            have: None,
            sparse: true,
        },
        Op::Lock {
            path: p("f"),
            owner: 0x1122,
            flavor: LockFlavor::Posix,
            kind: LockKind::Write,
            start: 10,
            end: u64::MAX,
            wait: true,
            pid: 42,
        },
        Op::Lock {
            path: p("f"),
            owner: 1,
            flavor: LockFlavor::Flock,
            kind: LockKind::Unlock,
            start: 0,
            end: 0,
            wait: false,
            pid: 0,
        },
        Op::TestLock {
            path: p("f"),
            owner: 1,
            flavor: LockFlavor::Posix,
            kind: LockKind::Read,
            start: 0,
            end: 99,
        },
    ];
    let mut msgs = vec![
        ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce: [7; 32],
            subdir: None,
            client_id: None,
        }),
        ClientMsg::Hello(ClientHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            client_nonce: [7; 32],
            subdir: Some(p("a/b")),
            client_id: Some([5; 16]),
        }),
        ClientMsg::Auth { proof: [1; 32] },
        ClientMsg::PutData {
            id: 3,
            data: vec![1, 2, 3],
        },
        ClientMsg::PutEnd {
            id: 3,
            checksum: Checksum([9; 32]),
        },
        ClientMsg::Cancel { id: 3 },
    ];
    msgs.extend(
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| ClientMsg::Request { id: i as u64, op }),
    );
    msgs
}

fn all_server_msgs() -> Vec<ServerMsg> {
    let err = WireError::new(ErrorCode::NotFound, "/x");
    vec![
        ServerMsg::Hello(ServerHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            auth_challenge: Some([2; 32]),
        }),
        ServerMsg::Hello(ServerHello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            auth_challenge: None,
        }),
        ServerMsg::Welcome(Welcome {
            export_id: "abc".into(),
            read_only: true,
            limits: Limits {
                max_frame: 1,
                chunk_size: 2,
                max_in_flight: 3,
                idle_timeout_secs: 4,
            },
            callbacks: false,
            resumed: false,
        }),
        ServerMsg::AuthResult(Ok(())),
        ServerMsg::AuthResult(Err(err.clone())),
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Entries {
                entries: vec![DirEntry {
                    name: "n".into(),
                    meta: meta(),
                }],
                more: false,
            }),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Meta(meta())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Meta(link_meta())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Target("../x".into())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Xattr(vec![1, 2, 3])),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::XattrNames(vec!["user.a".into(), "user.b".into()])),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Get(meta())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::NotModified(meta())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Done),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::StatFs(StatFs::default())),
        },
        ServerMsg::Reply {
            id: 1,
            result: Err(err.clone()),
        },
        ServerMsg::Data {
            id: 2,
            data: vec![0; 10],
        },
        ServerMsg::DataEnd {
            id: 2,
            result: Ok(Checksum([3; 32])),
        },
        ServerMsg::DataEnd {
            id: 2,
            result: Err(err.clone()),
        },
        ServerMsg::Fatal(err),
        ServerMsg::Welcome(Welcome {
            export_id: "abc".into(),
            read_only: false,
            limits: Limits {
                max_frame: 1,
                chunk_size: 2,
                max_in_flight: 3,
                idle_timeout_secs: 4,
            },
            callbacks: true,
            resumed: true,
        }),
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Changed {
                meta: Some(meta()),
                parents: vec![meta(), link_meta()],
            }),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Changed {
                meta: None,
                parents: vec![meta()],
            }),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Lock(Some(LockHolder {
                kind: LockKind::Write,
                start: 0,
                end: u64::MAX,
                pid: 7,
            }))),
        },
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Lock(None)),
        },
        ServerMsg::Reply {
            id: 1,
            result: Err(WireError::new(ErrorCode::WouldBlock, "f")),
        },
        ServerMsg::Invalidate(vec![
            Invalidation {
                path: p("d/f"),
                file_id: FileId { dev: 1, ino: 2 },
                change: Change::Content,
            },
            Invalidation {
                path: p("d"),
                file_id: FileId::default(),
                change: Change::All,
            },
        ]),
        ServerMsg::DataHole {
            id: 2,
            len: 1 << 20,
        },
    ]
}

fn roundtrip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut wire = Vec::new();
    write_frame(&mut wire, msg).unwrap();
    read_frame(&mut wire.as_slice()).unwrap()
}

#[test]
fn every_message_round_trips() {
    for m in all_client_msgs() {
        assert_eq!(roundtrip(&m), m);
    }
    for m in all_server_msgs() {
        assert_eq!(roundtrip(&m), m);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn frame_hex<T: serde::Serialize>(msg: &T) -> String {
    let mut wire = Vec::new();
    write_frame(&mut wire, msg).unwrap();
    hex(&wire)
}

/// If one of these fails, the wire format changed: bump `PROTOCOL_VERSION`,
/// describe the change in docs/PROTOCOL.md, then update the bytes.
#[test]
fn golden_bytes_version_bump_required() {
    assert_eq!(
        PROTOCOL_VERSION, 2,
        "version bump required: update the golden bytes below"
    );
    // len=46 | variant 0 Hello | magic "RFMT" | version 2 | nonce 32 x 07 | subdir None
    // | client_id None
    let hello = ClientMsg::Hello(ClientHello {
        magic: MAGIC,
        version: 2,
        client_nonce: [7; 32],
        subdir: None,
        client_id: None,
    });
    assert_eq!(
        frame_hex(&hello),
        format!(
            "2e000000{}{}{}{}{}",
            "00000000",
            "52464d54",
            "02000000",
            "07".repeat(32),
            "0000"
        )
    );
    // ... | subdir Some("sub"): tag 01, string length 3, "sub" | client_id
    // Some: tag 01, 16 raw bytes (a fixed-size array has no length)
    let hello = ClientMsg::Hello(ClientHello {
        magic: MAGIC,
        version: 2,
        client_nonce: [7; 32],
        subdir: Some(p("sub")),
        client_id: Some([0xab; 16]),
    });
    assert_eq!(
        frame_hex(&hello),
        format!(
            "49000000{}{}{}{}{}01{}",
            "00000000",
            "52464d54",
            "02000000",
            "07".repeat(32),
            "010300000000000000737562",
            "ab".repeat(16)
        )
    );
    // len=45 | variant 0 Hello | magic | version 2 | challenge Some(32 x 02)
    let server_hello = ServerMsg::Hello(ServerHello {
        magic: MAGIC,
        version: 2,
        auth_challenge: Some([2; 32]),
    });
    assert_eq!(
        frame_hex(&server_hello),
        format!(
            "2d000000{}{}{}01{}",
            "00000000",
            "52464d54",
            "02000000",
            "02".repeat(32)
        )
    );
    // Without a challenge: len=13 | ... | None
    let server_hello = ServerMsg::Hello(ServerHello {
        magic: MAGIC,
        version: 2,
        auth_challenge: None,
    });
    assert_eq!(
        frame_hex(&server_hello),
        concat!("0d000000", "00000000", "52464d54", "02000000", "00")
    );
    // len=34 | variant 6 Welcome | export_id "abc" | read_only | limits
    // | callbacks | resumed
    let welcome = ServerMsg::Welcome(Welcome {
        export_id: "abc".into(),
        read_only: true,
        limits: Limits {
            max_frame: MAX_FRAME as u32,
            chunk_size: 262_144,
            max_in_flight: 64,
            idle_timeout_secs: 300,
        },
        callbacks: true,
        resumed: false,
    });
    assert_eq!(
        frame_hex(&welcome),
        concat!(
            "22000000",         // len 34
            "06000000",         // ServerMsg::Welcome
            "0300000000000000", // export_id length 3
            "616263",           // "abc"
            "01",               // read_only true
            "00002000",         // max_frame 2 MiB
            "00000400",         // chunk_size 256 KiB
            "40000000",         // max_in_flight 64
            "2c010000",         // idle_timeout_secs 300
            "01",               // callbacks true
            "00",               // resumed false
        )
    );
    // len=25 | variant 2 Request | id 5 | op variant 1 Stat | path len 1 "f"
    let stat = ClientMsg::Request {
        id: 5,
        op: Op::Stat { path: p("f") },
    };
    assert_eq!(
        frame_hex(&stat),
        concat!(
            "19000000",
            "02000000",
            "0500000000000000",
            "01000000",
            "0100000000000000",
            "66"
        )
    );
    // len=23 | variant 3 Data | id 2 | byte-string len 3 | 61 62 63
    let data = ServerMsg::Data {
        id: 2,
        data: b"abc".to_vec(),
    };
    assert_eq!(
        frame_hex(&data),
        concat!(
            "17000000",
            "03000000",
            "0200000000000000",
            "0300000000000000",
            "616263"
        )
    );
    // Reply{id 1, Ok(Meta(...))}: pins Meta's field order.
    let reply = ServerMsg::Reply {
        id: 1,
        result: Ok(Reply::Meta(meta())),
    };
    assert_eq!(
        frame_hex(&reply),
        concat!(
            "81000000",         // len 129
            "02000000",         // Reply
            "0100000000000000", // id 1
            "00000000",         // Ok
            "01000000",         // Reply::Meta
            "00000000",         // FileKind::File
            "0500000000000000", // size 5
            "a4010000",         // mode 0o644
            "00f1536500000000", // mtime.secs
            "2a000000",         // mtime.nanos
            "0807060504030201", // version
            "e8030000",         // uid 1000
            "64000000",         // gid 100
            "0100000000000000", // nlink 1
            "0108000000000000", // file_id.dev 0x801
            "0c00000000000000", // file_id.ino 12
            "01f1536500000000", // atime.secs
            "07000000",         // atime.nanos
            "02f1536500000000", // ctime.secs
            "09000000",         // ctime.nanos
            "0000000000000000", // rdev 0
            "00",               // target None
            "0800000000000000", // blocks 8
        )
    );
    // Request{id 9, Symlink{"l" -> "f", owner Some(1, 2)}}: pins the
    // appended ops.
    let symlink = ClientMsg::Request {
        id: 9,
        op: Op::Symlink {
            path: p("l"),
            target: "f".into(),
            owner: Some(Owner { uid: 1, gid: 2 }),
        },
    };
    assert_eq!(
        frame_hex(&symlink),
        concat!(
            "2b000000",         // len 43
            "02000000",         // Request
            "0900000000000000", // id 9
            "0b000000",         // Op variant 11 = Symlink
            "0100000000000000", // path len 1
            "6c",               // "l"
            "0100000000000000", // target len 1
            "66",               // "f"
            "01",               // owner Some
            "01000000",         // uid 1
            "02000000",         // gid 2
        )
    );
    // Invalidate[{ "d/f", file id (1, 2), Content }]: pins the push message.
    let inval = ServerMsg::Invalidate(vec![Invalidation {
        path: p("d/f"),
        file_id: FileId { dev: 1, ino: 2 },
        change: Change::Content,
    }]);
    assert_eq!(
        frame_hex(&inval),
        concat!(
            "2b000000",         // len 43
            "07000000",         // ServerMsg variant 7 = Invalidate
            "0100000000000000", // one invalidation
            "0300000000000000", // path len 3
            "642f66",           // "d/f"
            "0100000000000000", // file_id.dev 1
            "0200000000000000", // file_id.ino 2
            "00000000",         // Change::Content
        )
    );
    // Request{id 1, Lock{"f", owner 2, Posix, Write, 0..=MAX, wait, pid 3}}
    let lock = ClientMsg::Request {
        id: 1,
        op: Op::Lock {
            path: p("f"),
            owner: 2,
            flavor: LockFlavor::Posix,
            kind: LockKind::Write,
            start: 0,
            end: u64::MAX,
            wait: true,
            pid: 3,
        },
    };
    assert_eq!(
        frame_hex(&lock),
        concat!(
            "3e000000",         // len 62
            "02000000",         // Request
            "0100000000000000", // id 1
            "13000000",         // Op variant 19 = Lock
            "0100000000000000", // path len 1
            "66",               // "f"
            "0200000000000000", // owner 2
            "00000000",         // LockFlavor::Posix
            "01000000",         // LockKind::Write
            "0000000000000000", // start 0
            "ffffffffffffffff", // end u64::MAX
            "01",               // wait true
            "03000000",         // pid 3
        )
    );
}

/// The version-1 hellos (the golden bytes of version 1) are no version-2
/// messages, but their frozen prefix still names their version.
#[test]
fn version_1_hellos_are_recognised_by_their_prefix() {
    let v1_client_hello = format!("00000000{}{}{}", "52464d54", "01000000", "07".repeat(32));
    let v1 = unhex(&v1_client_hello);
    assert_eq!(crate::hello_version(&v1), Some(1));
    assert!(crate::decode_payload::<ClientMsg>(&v1).is_err());
    // Version 1's ServerHello: export_id "abc", read_only, default limits, no challenge.
    let v1_server_hello = unhex(concat!(
        "00000000",
        "52464d54",
        "01000000",
        "0300000000000000616263",
        "01",
        "00002000",
        "00000400",
        "40000000",
        "2c010000",
        "00"
    ));
    assert_eq!(crate::hello_version(&v1_server_hello), Some(1));
    assert!(crate::decode_payload::<ServerMsg>(&v1_server_hello).is_err());
    // What a version-2 server answers a version-1 client: the old layout,
    // naming version 2 and revealing nothing.
    let answer = crate::v1_layout_server_hello(2);
    assert_eq!(
        hex(&answer),
        format!(
            "26000000{}{}{}{}00{}00",
            "00000000",
            "52464d54",
            "02000000",
            "00".repeat(8),
            "00".repeat(16)
        )
    );
    assert_eq!(crate::hello_version(&answer[4..]), Some(2));
    assert_eq!(crate::hello_version(b"GET / HTTP/1.1"), None);
    assert_eq!(crate::hello_version(&[0, 0, 0, 0, b'R']), None);
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn truncated_frames_are_errors() {
    for m in all_client_msgs() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &m).unwrap();
        for cut in 1..wire.len() {
            let r: Result<ClientMsg, _> = read_frame(&mut &wire[..cut]);
            assert!(r.is_err(), "decoded a frame cut at {cut} of {}", wire.len());
        }
    }
}

#[test]
fn empty_stream_is_closed_not_garbage() {
    let r: Result<ClientMsg, _> = read_frame(&mut &[][..]);
    assert!(matches!(r, Err(FrameError::Closed)));
}

#[test]
fn oversized_length_is_refused_before_allocating() {
    let wire = (u32::MAX).to_le_bytes();
    let r: Result<ServerMsg, _> = read_frame(&mut &wire[..]);
    assert!(matches!(r, Err(FrameError::TooLarge(n)) if n == u64::from(u32::MAX)));
    let wire = ((MAX_FRAME + 1) as u32).to_le_bytes();
    let r: Result<ServerMsg, _> = read_frame(&mut &wire[..]);
    assert!(matches!(r, Err(FrameError::TooLarge(_))));
}

#[test]
fn hostile_inner_length_is_an_error() {
    // A PutData claiming a 2^60-byte body inside a small frame.
    let mut payload = vec![3, 0, 0, 0];
    payload.extend_from_slice(&1u64.to_le_bytes());
    payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let mut wire = (payload.len() as u32).to_le_bytes().to_vec();
    wire.extend_from_slice(&payload);
    let r: Result<ClientMsg, _> = read_frame(&mut wire.as_slice());
    assert!(matches!(r, Err(FrameError::Decode(_))));
}

#[test]
fn unknown_variant_and_trailing_bytes_are_errors() {
    let mut wire = 4u32.to_le_bytes().to_vec();
    wire.extend_from_slice(&99u32.to_le_bytes());
    assert!(read_frame::<_, ClientMsg>(&mut wire.as_slice()).is_err());

    let mut good = Vec::new();
    write_frame(&mut good, &ClientMsg::Cancel { id: 1 }).unwrap();
    let len = u32::from_le_bytes(good[..4].try_into().unwrap()) + 1;
    let mut wire = len.to_le_bytes().to_vec();
    wire.extend_from_slice(&good[4..]);
    wire.push(0);
    assert!(matches!(
        read_frame::<_, ClientMsg>(&mut wire.as_slice()),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn bad_path_in_frame_is_an_error() {
    let msg = ClientMsg::Request {
        id: 1,
        op: Op::Stat { path: p("etc") },
    };
    let mut wire = Vec::new();
    write_frame(&mut wire, &msg).unwrap();
    // Turn "etc" into "../" in place; the length stays the same.
    let at = wire.len() - 3;
    wire[at..].copy_from_slice(b"../");
    assert!(matches!(
        read_frame::<_, ClientMsg>(&mut wire.as_slice()),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn timestamps_convert_both_ways() {
    for t in [
        Timestamp { secs: 0, nanos: 0 },
        Timestamp {
            secs: 1_700_000_000,
            nanos: 999_999_999,
        },
        Timestamp {
            secs: -5,
            nanos: 250,
        },
    ] {
        assert_eq!(Timestamp::from_system(t.to_system()), t);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut framed = (bytes.len() as u32).to_le_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        for input in [&bytes[..], &framed[..]] {
            if let Ok(m) = read_frame::<_, ClientMsg>(&mut &input[..]) {
                prop_assert_eq!(roundtrip(&m), m);
            }
            if let Ok(m) = read_frame::<_, ServerMsg>(&mut &input[..]) {
                prop_assert_eq!(roundtrip(&m), m);
            }
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic(idx in 0usize..64, pos in any::<usize>(), byte in any::<u8>()) {
        let msgs = all_client_msgs();
        let m = &msgs[idx % msgs.len()];
        let mut wire = Vec::new();
        write_frame(&mut wire, m).unwrap();
        let at = 4 + pos % (wire.len() - 4);
        wire[at] = byte;
        if let Ok(back) = read_frame::<_, ClientMsg>(&mut wire.as_slice()) {
            prop_assert_eq!(roundtrip(&back), back);
        }
    }
}
