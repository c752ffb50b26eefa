//! The shared worker pool: a client that stops reading holds no worker
//! another session needs, and a pool far smaller than the work still
//! answers everything.

mod common;

use std::time::{Duration, Instant};

use common::{Client, content, p, start};
use rfmount_proto::{ClientMsg, Op, Reply, ServerMsg};
use rfmount_server::ServerConfig;

fn tiny_pool() -> ServerConfig {
    ServerConfig {
        workers: 1,
        max_transfers: 1,
        ..ServerConfig::default()
    }
}

#[test]
fn a_client_that_stops_reading_takes_no_worker_other_sessions_need() {
    let h = start(tiny_pool());
    std::fs::write(h.root.join("big"), content(20 << 20, 3)).unwrap();
    std::fs::write(h.root.join("small"), b"small").unwrap();
    std::fs::create_dir(h.root.join("d")).unwrap();
    let mut stuck = h.client();
    common::set_rcvbuf(&stuck.s, 64 * 1024);
    // A big download that fills every buffer towards this client, then
    // more requests, all while never reading: the download holds the one
    // transfer thread, and the answers to the others pile up in its queue.
    stuck.send(&ClientMsg::Request {
        id: 1,
        op: Op::Get {
            path: p("big"),
            have: None,
            sparse: false,
        },
    });
    for id in 2..40 {
        let op = if id % 2 == 0 {
            Op::Stat { path: p("small") }
        } else {
            Op::Get {
                path: p("small"),
                have: None,
                sparse: false,
            }
        };
        stuck.send(&ClientMsg::Request { id, op });
    }
    std::thread::sleep(Duration::from_millis(300));

    // Another session is served in full meanwhile, by the one quick worker.
    let started = Instant::now();
    let mut other = h.client();
    assert!(matches!(
        other.request(1, Op::Stat { path: p("small") }),
        Ok(Reply::Meta(_))
    ));
    let (_, data) = other.get(2, "small");
    assert_eq!(data, b"small");
    assert!(matches!(
        other.put(3, "new", b"fresh", 2),
        Ok(Reply::Changed { meta: Some(m), .. }) if m.size == 5
    ));
    assert!(matches!(
        other.request(4, Op::List { path: p("d") }),
        Ok(Reply::Entries { more: false, .. })
    ));
    assert!(matches!(
        other.request(
            5,
            Op::Mkdir {
                path: p("d/sub"),
                mode: 0o755,
                owner: None
            }
        ),
        Ok(Reply::Changed { meta: Some(_), .. })
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the other session waited {:?}",
        started.elapsed()
    );
    assert_eq!(std::fs::read(h.root.join("new")).unwrap(), b"fresh");

    // The stuck client, reading at last, gets every answer.
    let (mut big, mut answered) = (0usize, std::collections::BTreeSet::new());
    while answered.len() < 39 {
        match stuck.recv() {
            ServerMsg::Data { id: 1, data } => big += data.len(),
            ServerMsg::DataEnd { id, result } => {
                result.unwrap();
                answered.insert(id);
            }
            ServerMsg::Reply {
                id,
                result: Ok(Reply::Meta(_)),
            } => {
                answered.insert(id);
            }
            ServerMsg::Reply {
                result: Ok(Reply::Get(_)),
                ..
            }
            | ServerMsg::Data { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(big, 20 << 20);
    assert_eq!(answered, (1..40).collect());
}

#[test]
fn many_sessions_pipelining_through_one_worker_all_get_answers() {
    let h = start(tiny_pool());
    std::fs::write(h.root.join("f"), b"x").unwrap();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let addr = h.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                c.hello();
                c.welcome();
                for id in 0..30 {
                    c.send(&ClientMsg::Request {
                        id,
                        op: Op::Stat { path: p("f") },
                    });
                }
                let mut seen = std::collections::BTreeSet::new();
                while seen.len() < 30 {
                    match c.recv() {
                        ServerMsg::Reply {
                            id,
                            result: Ok(Reply::Meta(m)),
                        } => {
                            assert_eq!(m.size, 1);
                            assert!(seen.insert(id), "answer {id} twice");
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
