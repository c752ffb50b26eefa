//! Callback liveness against a scripted server that answers pings and then
//! falls silent: the callbacks are suspended well before the connection's
//! timeout, and resumed when the server speaks again.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rfmount_proto::{
    ClientMsg, Invalidation, Limits, MAGIC, PROTOCOL_VERSION, Reply, ServerHello, ServerMsg,
    Welcome, read_frame, write_frame,
};

use crate::callbacks::{CallbackHub, CallbackSink};
use crate::connection::{ConnectConfig, Connection};

#[derive(Default)]
struct Counts {
    connected: AtomicUsize,
    broken: AtomicUsize,
}

impl CallbackSink for Counts {
    fn invalidated(&self, _: &[Invalidation]) {}
    fn connected(&self, _: bool) {
        self.connected.fetch_add(1, Ordering::SeqCst);
    }
    fn broken(&self) {
        self.broken.fetch_add(1, Ordering::SeqCst);
    }
}

/// Greets with callbacks on, then answers every ping unless `silent`
/// (pings that arrive while silent are answered when it speaks again).
fn serve(mut s: TcpStream, silent: Arc<AtomicBool>) {
    let _: ClientMsg = read_frame(&mut s).unwrap();
    let hello = ServerHello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        auth_challenge: None,
    };
    write_frame(&mut s, &ServerMsg::Hello(hello)).unwrap();
    let welcome = Welcome {
        export_id: "e".into(),
        read_only: false,
        limits: Limits {
            max_frame: 1 << 20,
            chunk_size: 1 << 18,
            max_in_flight: 64,
            idle_timeout_secs: 60,
        },
        callbacks: true,
        resumed: false,
    };
    write_frame(&mut s, &ServerMsg::Welcome(welcome)).unwrap();
    while let Ok(ClientMsg::Request { id, .. }) = read_frame::<_, ClientMsg>(&mut s) {
        while silent.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let reply = ServerMsg::Reply {
            id,
            result: Ok(Reply::Done),
        };
        if write_frame(&mut s, &reply).is_err() {
            return;
        }
    }
}

fn wait_until(within: Duration, f: impl Fn() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn a_silent_server_suspends_callbacks_before_the_timeout_and_speaking_resumes_them() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let silent = Arc::new(AtomicBool::new(false));
    let s2 = silent.clone();
    std::thread::spawn(move || serve(l.accept().unwrap().0, s2));

    let counts = Arc::new(Counts::default());
    let hub = CallbackHub::default();
    hub.subscribe(counts.clone());
    let mut cfg = ConnectConfig::new(addr).with_timeout(Duration::from_secs(8));
    cfg.callbacks = hub;
    let conn = Connection::open(&cfg).unwrap();
    assert_eq!(counts.connected.load(Ordering::SeqCst), 1);

    // Answering its pings, the server keeps its callbacks (a ping goes out
    // every second here, an eighth of the timeout).
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        counts.broken.load(Ordering::SeqCst),
        0,
        "suspended while answering"
    );

    silent.store(true, Ordering::SeqCst);
    let froze = Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || counts
            .broken
            .load(Ordering::SeqCst)
            == 1),
        "callbacks still trusted {:?} after the server fell silent",
        froze.elapsed()
    );
    // Two liveness intervals at most, far less than the 8 s timeout.
    assert!(
        froze.elapsed() < Duration::from_millis(2500),
        "{:?}",
        froze.elapsed()
    );
    assert!(
        conn.dead_reason().is_none(),
        "the connection itself is not dead yet"
    );

    silent.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(3), || counts
            .connected
            .load(Ordering::SeqCst)
            == 2),
        "callbacks never resumed once the server answered again"
    );
    assert_eq!(counts.broken.load(Ordering::SeqCst), 1);
    assert!(conn.dead_reason().is_none());
}
