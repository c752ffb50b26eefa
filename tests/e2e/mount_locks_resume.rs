//! Locks across a broken connection (issue 7: "released when the holder
//! closes or its connection dies, after a grace period on reconnect"): a
//! mount whose connection breaks and that comes back within the server's
//! grace period still holds its `flock` and `fcntl` locks, and once it
//! releases them the other mount gets them; a mount that never comes back
//! loses them to the other mount when the grace has run out, not before.

use std::time::{Duration, Instant};

use crate::util::*;

const EX_NB: i32 = libc::LOCK_EX | libc::LOCK_NB;

/// B's attempts at both locks A holds: `flock` on `f`, `fcntl` on `g`.
fn b_refused(p: &LockPair, gb: &std::fs::File, when: &str) {
    assert_eq!(
        flock(&p.fb, EX_NB),
        Err(libc::EWOULDBLOCK),
        "B got the flock A holds {when}"
    );
    assert_eq!(
        setlk(gb, libc::F_WRLCK, 0, 1, false),
        Err(libc::EAGAIN),
        "B got the fcntl lock A holds {when}"
    );
}

#[test]
fn locks_kept_across_a_resumed_connection_go_to_the_other_mount_once_released() {
    skip_without_fuse!();
    // A long grace: on a loaded machine the reconnect must not outlast it.
    let p = LockPair::start(
        "f",
        "flock me",
        &["--lock-grace", "120"],
        &["-o", "timeout=1"],
    );
    p.root.write("g", "fcntl me");
    p.root.write("h", "time me out");
    let (ga, gb) = (open_rw(&p.a.join("g")), open_rw(&p.b.join("g")));
    let ha = open_rw(&p.a.join("h"));
    flock(&p.fa, EX_NB).expect("A takes the flock");
    setlk(&ga, libc::F_WRLCK, 0, 0, false).expect("A takes the fcntl lock");
    b_refused(&p, &gb, "before the cut");

    // Cut A's connection: with the server stopped, A's next request gets no
    // answer within its 1 s timeout and A gives the connection up. The
    // server sees it end once it runs again, and A reconnects.
    let mut frozen = Frozen::new(p.srv.pid());
    assert_eq!(
        setlk(&ha, libc::F_WRLCK, 0, 1, false),
        Err(libc::ENOLCK),
        "a lock request to a stopped server"
    );
    assert!(
        p.a.log().contains("unreachable"),
        "A did not give its connection up:\n{}",
        tail(&p.a.log(), 20)
    );
    frozen.thaw();
    let resumed = wait_for(Duration::from_secs(30), || {
        p.a.log()
            .contains("the server kept this mount's locks across the reconnect")
            .then_some(())
    });
    assert!(
        resumed.is_some(),
        "A never resumed its session:\nA: {}\nserver: {}",
        tail(&p.a.log(), 20),
        tail(&p.srv.log(), 20)
    );
    assert!(
        p.srv.log().contains("lock(s) of a disconnected client"),
        "the server never saw A's connection end: {}",
        tail(&p.srv.log(), 20)
    );
    b_refused(&p, &gb, "after A resumed");

    // A releases on its new connection: B gets both at once.
    flock(&p.fa, libc::LOCK_UN).expect("A lets go of the flock");
    setlk(&ga, libc::F_UNLCK, 0, 0, false).expect("A lets go of the fcntl lock");
    flock(&p.fb, EX_NB).expect("B takes the flock A released");
    setlk(&gb, libc::F_WRLCK, 0, 1, false).expect("B takes the fcntl lock A released");
    // And A is refused now: the locks are B's, not left over anywhere.
    let ha2 = open_rw(&p.a.join("f"));
    assert_eq!(flock(&ha2, EX_NB), Err(libc::EWOULDBLOCK));
    assert_eq!(setlk(&ga, libc::F_WRLCK, 0, 1, false), Err(libc::EAGAIN));
}

#[test]
fn locks_of_a_mount_that_never_comes_back_go_to_the_other_after_the_grace() {
    skip_without_fuse!();
    const GRACE: u64 = 3;
    let grace = GRACE.to_string();
    let mut p = LockPair::start("f", "flock me", &["--lock-grace", &grace], &[]);
    p.root.write("g", "fcntl me");
    let (ga, gb) = (open_rw(&p.a.join("g")), open_rw(&p.b.join("g")));
    flock(&p.fa, EX_NB).expect("A takes the flock");
    setlk(&ga, libc::F_WRLCK, 0, 0, false).expect("A takes the fcntl lock");
    b_refused(&p, &gb, "while A runs");

    // A dies: its connection ends with it, and nothing of A comes back.
    let killed = Instant::now();
    p.a.kill();
    let got = wait_for(Duration::from_secs(GRACE + 30), || {
        flock(&p.fb, EX_NB).ok().map(|()| killed.elapsed())
    });
    let Some(after) = got else {
        panic!(
            "B never got the flock of the dead mount A: {}",
            tail(&p.srv.log(), 20)
        );
    };
    // The grace starts when the server sees the connection end, after the
    // kill: no sooner than that may the locks go.
    assert!(
        after >= Duration::from_secs(GRACE),
        "A's locks were released {after:?} after it died, within the {GRACE} s grace"
    );
    setlk(&gb, libc::F_WRLCK, 0, 1, false).expect("B takes the fcntl lock of the dead mount");
    assert!(
        p.srv
            .log()
            .contains("grace period over: released 2 lock(s) of a client that did not come back"),
        "{}",
        tail(&p.srv.log(), 20)
    );
    drop(ga);
}
