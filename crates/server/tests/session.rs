//! Sessions over real TCP with raw frames: handshake, authentication,
//! hostile input, timeouts, uploads, downloads, listings and interleaving.

mod common;

use std::time::{Duration, Instant};

use common::{Client, checksum, content, p, start, wait_logged};
use rfmount_proto::{
    AuthKey, ClientMsg, ErrorCode, FileKind, MAGIC, Op, PROTOCOL_VERSION, Reply, ServerMsg, SetAttr,
};
use rfmount_server::ServerConfig;

fn token_config(token: &str) -> ServerConfig {
    ServerConfig {
        auth: Some(AuthKey::from_token(token.as_bytes())),
        ..ServerConfig::default()
    }
}

#[test]
fn handshake_announces_export_and_limits() {
    let h = start(ServerConfig::default());
    let mut c = Client::connect(h.addr);
    let hello = c.hello();
    assert_eq!(hello.magic, MAGIC);
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.auth_challenge, None);
    let welcome = c.welcome();
    assert_eq!(welcome.export_id, h.export_id);
    assert!(!welcome.read_only);
    assert_eq!(welcome.limits.max_frame as usize, rfmount_proto::MAX_FRAME);
    assert_eq!(
        welcome.limits.chunk_size as usize,
        rfmount_proto::CHUNK_SIZE
    );
    assert_eq!(welcome.limits.max_in_flight, 64);
    assert_eq!(welcome.limits.idle_timeout_secs, 300);
    assert_eq!(c.request(1, Op::Ping), Ok(Reply::Done));
    match c.request(2, Op::StatFs) {
        Ok(Reply::StatFs(s)) => assert!(s.blocks > 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_mismatch_gets_our_hello_then_close() {
    let h = start(ServerConfig::default());
    let mut c = Client::connect(h.addr);
    c.send_hello(PROTOCOL_VERSION + 1);
    match c.recv() {
        ServerMsg::Hello(hello) => assert_eq!(hello.version, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.expect_closed(), None);
    wait_logged(&format!(
        "client speaks protocol {}, server speaks {PROTOCOL_VERSION}",
        PROTOCOL_VERSION + 1
    ));

    // A future client's hello may carry fields we cannot decode; its frozen
    // prefix still tells us its version.
    let mut payload = vec![0, 0, 0, 0];
    payload.extend_from_slice(&MAGIC);
    payload.extend_from_slice(&7u32.to_le_bytes());
    payload.extend_from_slice(&[9; 50]);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    let mut c = Client::connect(h.addr);
    c.send_raw(&frame);
    match c.recv() {
        ServerMsg::Hello(hello) => assert_eq!(hello.version, PROTOCOL_VERSION),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.expect_closed(), None);
}

#[test]
fn bad_magic_or_wrong_first_frame_is_fatal() {
    let h = start(ServerConfig::default());
    let mut c = Client::connect(h.addr);
    c.send(&ClientMsg::Hello(rfmount_proto::ClientHello {
        magic: *b"HTTP",
        version: PROTOCOL_VERSION,
        client_nonce: [0; 32],
        subdir: None,
        client_id: None,
    }));
    assert_eq!(c.expect_closed().unwrap().code, ErrorCode::Protocol);
    let mut c = Client::connect(h.addr);
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Ping,
    });
    assert_eq!(c.expect_closed().unwrap().code, ErrorCode::Protocol);
}

#[test]
fn auth_with_the_right_token_succeeds() {
    let h = start(token_config("s3cret"));
    let mut c = Client::connect(h.addr);
    let hello = c.hello();
    let challenge = hello.auth_challenge.expect("a challenge");
    assert_eq!(c.auth(b"s3cret\n", &challenge), Ok(()));
    assert_eq!(c.welcome().export_id, h.export_id);
    assert_eq!(c.request(1, Op::Ping), Ok(Reply::Done));
}

#[test]
fn auth_with_a_wrong_proof_is_refused_and_closed() {
    let h = start(token_config("s3cret"));
    let mut c = Client::connect(h.addr);
    let challenge = c.hello().auth_challenge.unwrap();
    let err = c.auth(b"guess", &challenge).unwrap_err();
    assert_eq!(err.code, ErrorCode::Access);
    assert_eq!(err.message, "authentication failed");
    c.expect_closed();

    // Skipping authentication is no way around it.
    let mut c = Client::connect(h.addr);
    c.hello();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::List { path: p("") },
    });
    assert_eq!(c.expect_closed().unwrap().code, ErrorCode::Protocol);
}

#[test]
fn garbage_closes_only_that_connection() {
    let h = start(ServerConfig::default());
    let mut good = h.client();
    let mut bad = h.client();
    bad.send_raw(&[12, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(bad.expect_closed().unwrap().code, ErrorCode::Protocol);
    assert_eq!(good.request(1, Op::Ping), Ok(Reply::Done));
    // Garbage before any hello, too.
    let mut raw = Client::connect(h.addr);
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    raw.expect_closed();
    assert_eq!(good.request(2, Op::Ping), Ok(Reply::Done));
}

#[test]
fn oversized_length_prefix_closes() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    c.send_raw(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
    let fatal = c.expect_closed().unwrap();
    assert_eq!(fatal.code, ErrorCode::Protocol);
    assert!(fatal.message.contains("exceeds"), "{fatal:?}");
}

#[test]
fn raw_frame_with_dotdot_path_is_rejected() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    // Request { id: 1, op: Stat { path: "../x" } }, encoded by hand because
    // RelPath cannot even hold such a path.
    let mut payload = Vec::new();
    payload.extend_from_slice(&2u32.to_le_bytes());
    payload.extend_from_slice(&1u64.to_le_bytes());
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&4u64.to_le_bytes());
    payload.extend_from_slice(b"../x");
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&payload);
    c.send_raw(&frame);
    assert_eq!(c.expect_closed().unwrap().code, ErrorCode::Protocol);
}

#[test]
fn silent_client_is_closed_after_the_idle_timeout() {
    let h = start(ServerConfig {
        idle_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    });
    let mut c = h.client();
    let t = Instant::now();
    let fatal = c.expect_closed().unwrap();
    assert!(fatal.message.contains("idle"), "{fatal:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Silence before the hello is bounded the same way.
    let mut c = Client::connect(h.addr);
    let t = Instant::now();
    c.expect_closed();
    assert!(t.elapsed() < Duration::from_secs(5));
    // While frames keep coming the connection lives on.
    let mut c = h.client();
    for id in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(c.request(id, Op::Ping), Ok(Reply::Done));
    }
}

#[test]
fn put_then_get_round_trips_with_checksum() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    let data = content(3 * rfmount_proto::CHUNK_SIZE + 12345, 1);
    let meta = match c.put(1, "big.bin", &data, rfmount_proto::CHUNK_SIZE) {
        Ok(Reply::Changed { meta: Some(m), .. }) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (meta.kind, meta.size, meta.mode),
        (FileKind::File, data.len() as u64, 0o644)
    );
    assert_eq!(common::read_to_vec(&h.root.join("big.bin")), data);
    let (got_meta, got) = c.get(2, "big.bin");
    // Reading the file above may have moved its atime.
    assert_eq!(
        rfmount_proto::Meta {
            atime: meta.atime,
            ..got_meta
        },
        meta
    );
    assert_eq!(got, data);
    assert!(h.temp_files().is_empty());
    // An empty file works as well.
    assert!(
        matches!(c.put(3, "empty", &[], 1), Ok(Reply::Changed { meta: Some(m), .. }) if m.size == 0)
    );
    assert_eq!(c.get(4, "empty").1, Vec::<u8>::new());
    wait_logged(&format!(
        "request op=GET path=/big.bin result=data bytes={}",
        data.len()
    ));
    wait_logged(&format!(
        "request op=PUT path=/big.bin result=ok bytes={}",
        data.len()
    ));
}

#[test]
fn put_with_wrong_checksum_or_size_keeps_the_old_file() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("f"), "old").unwrap();
    let mut c = h.client();
    let size = 5u64;
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 1,
        data: b"hello".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 1,
        checksum: checksum(b"jello"),
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 1,
            result: Err(e),
        } => assert!(e.message.contains("checksum mismatch"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(h.root.join("f")).unwrap(), "old");
    assert!(h.temp_files().is_empty());
    // Fewer bytes than announced.
    c.send(&ClientMsg::Request {
        id: 2,
        op: Op::Put {
            path: p("f"),
            size: 10,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 2,
        data: b"hello".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 2,
        checksum: checksum(b"hello"),
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 2,
            result: Err(e),
        } => assert_eq!(e.code, ErrorCode::Invalid),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(h.root.join("f")).unwrap(), "old");
    assert!(h.temp_files().is_empty());
    // More bytes than announced: refused at once, the rest is dropped.
    c.send(&ClientMsg::Request {
        id: 3,
        op: Op::Put {
            path: p("f"),
            size: 2,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 3,
        data: b"hello".to_vec(),
    });
    match c.recv() {
        ServerMsg::Reply {
            id: 3,
            result: Err(e),
        } => assert_eq!(e.code, ErrorCode::Invalid),
        other => panic!("{other:?}"),
    }
    c.send(&ClientMsg::PutData {
        id: 3,
        data: b"more".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 3,
        checksum: checksum(b"hello"),
    });
    assert_eq!(c.request(4, Op::Ping), Ok(Reply::Done));
    assert!(h.temp_files().is_empty());
}

#[test]
fn disconnect_mid_put_leaves_old_file_and_no_temporary() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("f"), "old").unwrap();
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size: 1 << 20,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 1,
        data: vec![7; 1 << 19],
    });
    // A round trip proves the chunk reached the temporary before we vanish.
    assert_eq!(c.request(2, Op::Ping), Ok(Reply::Done));
    assert_eq!(h.temp_files().len(), 1);
    drop(c);
    h.wait_no_temp_files();
    assert_eq!(std::fs::read_to_string(h.root.join("f")).unwrap(), "old");
}

#[test]
fn cancel_discards_a_put() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size: 10,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 1,
        data: b"12345".to_vec(),
    });
    c.send(&ClientMsg::Cancel { id: 1 });
    assert!(matches!(
        c.recv(),
        ServerMsg::Reply {
            id: 1,
            result: Err(_)
        }
    ));
    assert!(h.temp_files().is_empty());
    assert!(!h.root.join("f").exists());
    c.send(&ClientMsg::PutData {
        id: 1,
        data: b"67890".to_vec(),
    });
    assert_eq!(c.request(2, Op::Ping), Ok(Reply::Done));
}

#[test]
fn get_answers_not_modified_for_the_current_version() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("f"), "v1").unwrap();
    let mut c = h.client();
    let Ok(Reply::Meta(meta)) = c.request(1, Op::Stat { path: p("f") }) else {
        panic!()
    };
    let get = |have| Op::Get {
        path: p("f"),
        have: Some(have),
        sparse: false,
    };
    assert_eq!(
        c.request(2, get(meta.version)),
        Ok(Reply::NotModified(meta.clone()))
    );
    wait_logged("request op=GET path=/f result=not-modified");
    std::fs::write(h.root.join("f"), "v2!").unwrap();
    match c.request(3, get(meta.version)) {
        Ok(Reply::Get(m)) => assert_ne!(m.version, meta.version),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.recv(), ServerMsg::Data { id: 3, .. }));
    assert!(matches!(
        c.recv(),
        ServerMsg::DataEnd {
            id: 3,
            result: Ok(_)
        }
    ));
    assert_eq!(
        c.request(
            4,
            Op::Get {
                path: p(""),
                have: None,
                sparse: false,
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::IsDir
    );
    assert_eq!(
        c.request(
            5,
            Op::Get {
                path: p("nope"),
                have: None,
                sparse: false,
            }
        )
        .unwrap_err()
        .code,
        ErrorCode::NotFound
    );
    wait_logged("request op=GET path=/nope result=err code=NotFound");
}

#[test]
fn list_of_a_huge_directory_arrives_in_parts() {
    let h = start(ServerConfig::default());
    let dir = h.root.join("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..20_000 {
        std::fs::File::create(dir.join(format!("file-with-a-longish-name-{i:05}"))).unwrap();
    }
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 9,
        op: Op::List { path: p("many") },
    });
    let (mut names, mut parts) = (Vec::new(), 0);
    loop {
        match c.recv() {
            ServerMsg::Reply {
                id: 9,
                result: Ok(Reply::Entries { entries, more }),
            } => {
                parts += 1;
                names.extend(entries.into_iter().map(|e| e.name));
                if !more {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(parts > 1, "one part only");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20_000);
    // An empty directory is one empty, final part.
    std::fs::create_dir(h.root.join("empty")).unwrap();
    assert_eq!(
        c.request(10, Op::List { path: p("empty") }),
        Ok(Reply::Entries {
            entries: vec![],
            more: false
        })
    );
    std::fs::write(h.root.join("file"), "x").unwrap();
    assert_eq!(
        c.request(11, Op::List { path: p("file") })
            .unwrap_err()
            .code,
        ErrorCode::NotDir
    );
    wait_logged("request op=LIST path=/many result=ok");
}

#[test]
fn read_only_refuses_every_change() {
    let h = start(ServerConfig {
        read_only: true,
        ..ServerConfig::default()
    });
    std::fs::write(h.root.join("f"), "x").unwrap();
    std::fs::create_dir(h.root.join("d")).unwrap();
    let mut c = Client::connect(h.addr);
    c.hello();
    assert!(c.welcome().read_only);
    let ops = [
        Op::Remove { path: p("f") },
        Op::Rename {
            from: p("f"),
            to: p("g"),
            flags: 0,
        },
        Op::Mkdir {
            path: p("n"),
            mode: 0o755,
            owner: None,
        },
        Op::Rmdir { path: p("d") },
        Op::SetAttr {
            path: p("f"),
            attr: SetAttr {
                mode: Some(0o600),
                ..SetAttr::default()
            },
        },
        Op::Put {
            path: p("f"),
            size: 1,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    ];
    for (id, op) in ops.into_iter().enumerate() {
        let err = c.request(id as u64, op).unwrap_err();
        assert_eq!(err.code, ErrorCode::ReadOnly);
        assert_eq!(err.message, "export is read-only");
    }
    // The refused PUT's data is dropped without desynchronising anything.
    c.send(&ClientMsg::PutData {
        id: 5,
        data: b"y".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 5,
        checksum: checksum(b"y"),
    });
    assert!(matches!(
        c.request(10, Op::Stat { path: p("f") }),
        Ok(Reply::Meta(_))
    ));
    assert!(matches!(
        c.request(11, Op::List { path: p("") }),
        Ok(Reply::Entries { .. })
    ));
    assert_eq!(std::fs::read_to_string(h.root.join("f")).unwrap(), "x");
    assert!(h.root.join("d").is_dir() && !h.root.join("n").exists());
    assert!(h.temp_files().is_empty());
}

#[test]
fn list_overtakes_a_large_get_on_the_same_connection() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("big"), content(20 << 20, 2)).unwrap();
    std::fs::create_dir(h.root.join("d")).unwrap();
    std::fs::write(h.root.join("d/x"), "x").unwrap();
    let mut c = h.client();
    // A small receive buffer, as a client busy writing its cache would
    // effectively have: what then bounds the LIST's wait is the server.
    common::set_rcvbuf(&c.s, 256 * 1024);
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Get {
            path: p("big"),
            have: None,
            sparse: false,
        },
    });
    c.send(&ClientMsg::Request {
        id: 2,
        op: Op::List { path: p("d") },
    });
    // Not reading for a moment lets the GET fill every buffer between us
    // and its worker, while the LIST is answered: the reply must then be
    // queued right behind the chunk being written, not behind the file.
    std::thread::sleep(Duration::from_millis(300));
    let (mut list_done, mut chunks_before_list, mut bytes) = (false, 0, 0);
    loop {
        match c.recv() {
            ServerMsg::Reply {
                id: 1,
                result: Ok(Reply::Get(_)),
            } => {}
            ServerMsg::Data { id: 1, data } => {
                bytes += data.len();
                if !list_done {
                    chunks_before_list += 1;
                }
            }
            ServerMsg::Reply {
                id: 2,
                result:
                    Ok(Reply::Entries {
                        entries,
                        more: false,
                    }),
            } => {
                assert_eq!(entries.len(), 1);
                list_done = true;
            }
            ServerMsg::DataEnd { id: 1, result } => {
                result.unwrap();
                assert!(list_done, "LIST waited for the whole GET");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(bytes, 20 << 20);
    eprintln!("LIST arrived after {chunks_before_list} of 80 chunks");
    assert!(
        chunks_before_list <= 12,
        "LIST arrived after {chunks_before_list} of 80 chunks"
    );
}

#[test]
fn too_many_requests_in_flight_get_busy() {
    let h = start(ServerConfig {
        max_in_flight: 1,
        ..ServerConfig::default()
    });
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size: 1,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    assert_eq!(c.request(2, Op::Ping).unwrap_err().code, ErrorCode::Busy);
    c.send(&ClientMsg::PutData {
        id: 1,
        data: b"z".to_vec(),
    });
    c.send(&ClientMsg::PutEnd {
        id: 1,
        checksum: checksum(b"z"),
    });
    assert!(matches!(
        c.recv(),
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Changed { meta: Some(_), .. })
        }
    ));
    assert_eq!(c.request(3, Op::Ping), Ok(Reply::Done));
}

#[test]
fn reusing_an_id_in_flight_is_fatal() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    let put = Op::Put {
        path: p("f"),
        size: 1,
        mode: None,
        mtime: None,
        owner: None,
        ext: Default::default(),
    };
    c.send(&ClientMsg::Request {
        id: 1,
        op: put.clone(),
    });
    c.send(&ClientMsg::Request { id: 1, op: put });
    assert_eq!(c.expect_closed().unwrap().code, ErrorCode::Protocol);
    h.wait_no_temp_files();
}

#[test]
fn connections_over_the_cap_are_refused_busy() {
    let h = start(ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    });
    let mut first = h.client();
    let mut second = Client::connect(h.addr);
    second.send_hello(PROTOCOL_VERSION);
    assert_eq!(second.expect_closed().unwrap().code, ErrorCode::Busy);
    assert_eq!(first.request(1, Op::Ping), Ok(Reply::Done));
}

#[test]
fn namespace_requests_over_the_wire() {
    let h = start(ServerConfig::default());
    let mut c = h.client();
    assert!(
        matches!(c.request(1, Op::Mkdir { path: p("d"), mode: 0o700, owner: None }), Ok(Reply::Changed { meta: Some(m), parents }) if m.mode == 0o700 && parents.len() == 1)
    );
    assert!(c.put(2, "d/a", b"abc", 2).is_ok());
    assert!(matches!(
        c.request(
            3,
            Op::Rename {
                from: p("d/a"),
                to: p("b"),
                flags: 0,
            }
        ),
        // The file under its new name, then both parents (d, the root).
        Ok(Reply::Changed { meta: Some(m), parents })
            if m.kind == FileKind::File && parents.len() == 2
                && parents.iter().all(|d| d.kind == FileKind::Dir)
    ));
    wait_logged("request op=RENAME path=/d/a result=ok to=/b");
    assert_eq!(
        c.request(4, Op::Remove { path: p("d") }).unwrap_err().code,
        ErrorCode::IsDir
    );
    assert!(matches!(
        c.request(5, Op::Rmdir { path: p("d") }),
        Ok(Reply::Changed { meta: None, parents }) if parents.len() == 1
    ));
    let attr = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    assert!(
        matches!(c.request(6, Op::SetAttr { path: p("b"), attr }), Ok(Reply::Changed { meta: Some(m), .. }) if m.size == 1)
    );
    assert!(matches!(
        c.request(7, Op::Remove { path: p("b") }),
        Ok(Reply::Changed { meta: None, parents }) if parents.len() == 1
    ));
    assert_eq!(
        c.request(8, Op::Stat { path: p("b") }).unwrap_err().code,
        ErrorCode::NotFound
    );
    std::os::unix::fs::symlink("/etc", h.root.join("etc")).unwrap();
    let err = c
        .request(
            9,
            Op::Stat {
                path: p("etc/passwd"),
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Access);
    assert!(err.message.contains("escapes"), "{err:?}");
    wait_logged("request op=STAT path=/etc/passwd result=err code=Access");
}

#[test]
fn shutdown_closes_sessions_and_removes_partial_uploads() {
    let mut h = start(ServerConfig::default());
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Put {
            path: p("f"),
            size: 100,
            mode: None,
            mtime: None,
            owner: None,
            ext: Default::default(),
        },
    });
    c.send(&ClientMsg::PutData {
        id: 1,
        data: vec![1; 10],
    });
    assert_eq!(c.request(2, Op::Ping), Ok(Reply::Done));
    assert_eq!(h.temp_files().len(), 1);
    let t = Instant::now();
    h.shutdown();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(h.temp_files().is_empty());
    c.expect_closed();
}

#[test]
fn answers_in_progress_survive_a_half_close() {
    let h = start(ServerConfig::default());
    let data = content(3 << 20, 3);
    std::fs::write(h.root.join("f"), &data).unwrap();
    let mut c = h.client();
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Get {
            path: p("f"),
            have: None,
            sparse: false,
        },
    });
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    loop {
        match c.recv() {
            ServerMsg::Reply { id: 1, result } => assert!(matches!(result, Ok(Reply::Get(_)))),
            ServerMsg::Data { id: 1, data } => got.extend_from_slice(&data),
            ServerMsg::DataEnd { id: 1, result } => {
                assert_eq!(result.unwrap(), checksum(&data));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, data);
    assert_eq!(c.expect_closed(), None);
}

#[test]
fn cancel_stops_a_get() {
    let h = start(ServerConfig::default());
    std::fs::write(h.root.join("big"), content(20 << 20, 4)).unwrap();
    let mut c = h.client();
    common::set_rcvbuf(&c.s, 256 * 1024);
    c.send(&ClientMsg::Request {
        id: 1,
        op: Op::Get {
            path: p("big"),
            have: None,
            sparse: false,
        },
    });
    assert!(matches!(
        c.recv(),
        ServerMsg::Reply {
            id: 1,
            result: Ok(Reply::Get(_))
        }
    ));
    c.send(&ClientMsg::Cancel { id: 1 });
    let mut bytes = 0;
    loop {
        match c.recv() {
            ServerMsg::Data { id: 1, data } => bytes += data.len(),
            ServerMsg::DataEnd { id: 1, result } => {
                assert!(result.is_err(), "the GET ran to completion");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(bytes < 20 << 20);
    assert_eq!(c.request(2, Op::Ping), Ok(Reply::Done));
}
