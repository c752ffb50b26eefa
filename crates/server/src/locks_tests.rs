use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

const FILE: FileId = FileId { dev: 1, ino: 7 };

fn req(owner: u64, kind: LockKind, start: u64, end: u64) -> LockReq {
    LockReq {
        file: FILE,
        owner,
        flavor: LockFlavor::Posix,
        kind,
        start,
        end,
        pid: 100 + owner as u32,
    }
}

fn flock(owner: u64, kind: LockKind) -> LockReq {
    LockReq {
        flavor: LockFlavor::Flock,
        ..req(owner, kind, 0, 0)
    }
}

fn never() -> bool {
    false
}

#[test]
fn write_locks_of_two_sessions_conflict_and_reads_share() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let w = req(1, LockKind::Write, 0, 99);
    assert_eq!(t.try_lock(a.session(), &w, false), Attempt::Done);
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Blocked);
    // Outside the range: no conflict.
    let other = req(1, LockKind::Write, 100, 199);
    assert_eq!(t.try_lock(b.session(), &other, false), Attempt::Done);
    let held = t
        .test(b.session(), &req(1, LockKind::Read, 50, 50))
        .unwrap();
    assert_eq!(
        (held.kind, held.start, held.end, held.pid),
        (LockKind::Write, 0, 99, 101)
    );
    // The same owner number in another session is another owner, but the
    // session's own lock never conflicts with itself.
    assert!(
        t.test(a.session(), &req(1, LockKind::Write, 0, 99))
            .is_none()
    );
    let r = req(2, LockKind::Read, 300, 400);
    assert_eq!(t.try_lock(a.session(), &r, false), Attempt::Done);
    assert_eq!(t.try_lock(b.session(), &r, false), Attempt::Done);
    assert_eq!(
        t.try_lock(b.session(), &req(3, LockKind::Write, 350, 350), false),
        Attempt::Blocked
    );
}

#[test]
fn posix_ranges_split_on_unlock_and_merge_on_lock() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let s = a.session();
    assert_eq!(
        t.try_lock(s, &req(1, LockKind::Write, 0, u64::MAX), false),
        Attempt::Done
    );
    // Punch a hole: two locks remain, and the hole is free for others.
    assert_eq!(
        t.try_lock(s, &req(1, LockKind::Unlock, 10, 19), false),
        Attempt::Done
    );
    assert_eq!(t.count(), 2);
    assert_eq!(
        t.try_lock(b.session(), &req(9, LockKind::Write, 10, 19), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(b.session(), &req(9, LockKind::Unlock, 0, u64::MAX), false),
        Attempt::Done
    );
    // Filling the hole merges everything back into one lock.
    assert_eq!(
        t.try_lock(s, &req(1, LockKind::Write, 10, 19), false),
        Attempt::Done
    );
    assert_eq!(t.count(), 1);
    // Downgrading a middle part splits into three of two kinds.
    assert_eq!(
        t.try_lock(s, &req(1, LockKind::Read, 5, 5), false),
        Attempt::Done
    );
    assert_eq!(t.count(), 3);
    assert_eq!(
        t.try_lock(b.session(), &req(9, LockKind::Read, 5, 5), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(b.session(), &req(9, LockKind::Read, 6, 6), false),
        Attempt::Blocked
    );
    assert_eq!(
        t.try_lock(s, &req(1, LockKind::Unlock, 0, u64::MAX), false),
        Attempt::Done
    );
    assert_eq!(t.count(), 1, "only b's read lock is left");
}

#[test]
fn flock_and_posix_locks_do_not_interact_and_flock_converts() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    assert_eq!(
        t.try_lock(a.session(), &flock(1, LockKind::Read), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(b.session(), &flock(2, LockKind::Read), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(b.session(), &req(2, LockKind::Write, 0, u64::MAX), false),
        Attempt::Done
    );
    // An upgrade is blocked by the other shared holder.
    assert_eq!(
        t.try_lock(a.session(), &flock(1, LockKind::Write), false),
        Attempt::Blocked
    );
    assert_eq!(
        t.try_lock(b.session(), &flock(2, LockKind::Unlock), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(a.session(), &flock(1, LockKind::Write), false),
        Attempt::Done
    );
    assert_eq!(
        t.try_lock(b.session(), &flock(2, LockKind::Read), false),
        Attempt::Blocked
    );
}

#[test]
fn a_waiter_is_granted_when_the_holder_releases_and_interrupted_when_cancelled() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let w = req(1, LockKind::Write, 0, 0);
    t.lock(a.session(), &w, false, &never).unwrap();
    let e = t.lock(b.session(), &w, false, &never).unwrap_err();
    assert_eq!(e.code, ErrorCode::WouldBlock);
    let bs = b.session();
    let t2 = Arc::clone(&t);
    let waiter = std::thread::spawn(move || t2.lock(bs, &w, true, &never));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "granted while still held");
    t.lock(
        a.session(),
        &req(1, LockKind::Unlock, 0, u64::MAX),
        false,
        &never,
    )
    .unwrap();
    waiter.join().unwrap().unwrap();

    let cancel = Arc::new(AtomicBool::new(false));
    let (t2, c2, s) = (Arc::clone(&t), Arc::clone(&cancel), a.session());
    let waiter = std::thread::spawn(move || t2.lock(s, &w, true, &|| c2.load(Ordering::SeqCst)));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished());
    cancel.store(true, Ordering::SeqCst);
    t.wake();
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Interrupted);
}

#[test]
fn a_cycle_of_posix_waiters_is_refused_as_a_deadlock() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    t.lock(a.session(), &req(1, LockKind::Write, 0, 0), false, &never)
        .unwrap();
    t.lock(b.session(), &req(1, LockKind::Write, 1, 1), false, &never)
        .unwrap();
    let (t2, s) = (Arc::clone(&t), a.session());
    let waiter =
        std::thread::spawn(move || t2.lock(s, &req(1, LockKind::Write, 1, 1), true, &never));
    let until = Instant::now() + Duration::from_secs(5);
    while t.state.lock().waiting.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = t
        .lock(b.session(), &req(1, LockKind::Write, 0, 0), true, &never)
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Deadlock);
    t.lock(
        b.session(),
        &req(1, LockKind::Unlock, 0, u64::MAX),
        false,
        &never,
    )
    .unwrap();
    waiter.join().unwrap().unwrap();
}

#[test]
fn a_named_client_takes_its_locks_over_within_the_grace_period() {
    let t = LockTable::new(Duration::from_millis(300));
    let id = [7u8; 16];
    let (a, resumed) = t.attach(Some(id));
    assert!(!resumed);
    let (b, _) = t.attach(None);
    let w = req(1, LockKind::Write, 0, 0);
    t.lock(a.session(), &w, false, &never).unwrap();
    a.end();
    // Still held while the grace runs.
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Blocked);
    let (a2, resumed) = t.attach(Some(id));
    assert!(resumed);
    assert_eq!(a2.session(), a.session());
    std::thread::sleep(Duration::from_millis(500));
    // The old connection's timer must not release the new one's locks.
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Blocked);
    drop(a);
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Blocked);
    a2.end();
    // A waiter is woken when the grace expires.
    let (t2, s) = (Arc::clone(&t), b.session());
    let started = Instant::now();
    std::thread::spawn(move || t2.lock(s, &w, true, &never))
        .join()
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    let (_a3, resumed) = t.attach(Some(id));
    assert!(!resumed, "the session is gone after the grace");
}

#[test]
fn the_grace_starts_only_when_the_last_connection_of_a_client_ends() {
    let t = LockTable::new(Duration::from_millis(100));
    let id = [9u8; 16];
    let (live, _) = t.attach(Some(id));
    let (b, _) = t.attach(None);
    let w = req(1, LockKind::Write, 0, 0);
    t.lock(live.session(), &w, false, &never).unwrap();
    // A connection the client gave up during its handshake (to a stopped
    // server) is served after the one that took the session over, and
    // ends at once: the live connection's locks stay.
    let (stale, resumed) = t.attach(Some(id));
    assert!(resumed);
    stale.end();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        t.try_lock(b.session(), &w, false),
        Attempt::Blocked,
        "a stale connection's end released the live connection's locks"
    );
    // The live one ends too: now the grace runs, and then they are free.
    live.end();
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Blocked);
    let (t2, s) = (Arc::clone(&t), b.session());
    std::thread::spawn(move || t2.lock(s, &w, true, &never))
        .join()
        .unwrap()
        .unwrap();
}

#[test]
fn an_anonymous_session_loses_its_locks_with_its_connection() {
    let t = LockTable::new(Duration::from_secs(60));
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let w = flock(1, LockKind::Write);
    t.lock(a.session(), &w, false, &never).unwrap();
    drop(a);
    assert_eq!(t.try_lock(b.session(), &w, false), Attempt::Done);
}

const NEW: FileId = FileId { dev: 1, ino: 8 };

/// What an upload's commit does: the rename, with `FILE` at the name.
fn replace(t: &LockTable, new: FileId) {
    t.replace(new, &mut || Ok(Some(FILE))).unwrap();
}

fn on(file: FileId, r: LockReq) -> LockReq {
    LockReq { file, ..r }
}

#[test]
fn an_upload_replacing_a_locked_file_keeps_its_locks() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    t.lock(a.session(), &req(1, LockKind::Write, 0, 9), false, &never)
        .unwrap();
    replace(&t, NEW);
    // A lookup after the commit finds the new inode: the lock is there.
    let on_new = on(NEW, req(1, LockKind::Write, 5, 5));
    let e = t.lock(b.session(), &on_new, false, &never).unwrap_err();
    assert_eq!(e.code, ErrorCode::WouldBlock);
    assert!(t.test(b.session(), &on_new).is_some());
    // The holder unlocks under the new id.
    let unlock = on(NEW, req(1, LockKind::Unlock, 0, u64::MAX));
    t.lock(a.session(), &unlock, false, &never).unwrap();
    t.lock(b.session(), &on_new, false, &never).unwrap();
}

#[test]
fn a_request_that_looked_the_file_up_before_the_commit_still_conflicts() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    t.lock(a.session(), &req(1, LockKind::Write, 0, 9), false, &never)
        .unwrap();
    // B looked the path up (and found the old inode) before the commit.
    let pass = t.resolving();
    replace(&t, NEW);
    let e = t
        .lock_as(
            pass,
            b.session(),
            &req(1, LockKind::Write, 5, 5),
            false,
            &never,
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WouldBlock);
    // Once no request is on its way, the old id is forgotten: no alias
    // outlives its use.
    assert_eq!(t.state.lock().ids_aliases(), 0);
}

#[test]
fn a_waiter_follows_the_file_to_its_new_inode() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let (c, _) = t.attach(None);
    t.lock(a.session(), &req(1, LockKind::Write, 0, 0), false, &never)
        .unwrap();
    let t2 = Arc::clone(&t);
    let bs = b.session();
    let waiter =
        std::thread::spawn(move || t2.lock(bs, &req(1, LockKind::Write, 0, 0), true, &never));
    std::thread::sleep(Duration::from_millis(100));
    replace(&t, NEW);
    assert!(!waiter.is_finished(), "granted while A holds the lock");
    // A third session, finding the new inode, is blocked by A as well.
    let on_new = on(NEW, req(3, LockKind::Write, 0, 0));
    let e = t.lock(c.session(), &on_new, false, &never).unwrap_err();
    assert_eq!(e.code, ErrorCode::WouldBlock);
    let unlock = on(NEW, req(1, LockKind::Unlock, 0, u64::MAX));
    t.lock(a.session(), &unlock, false, &never).unwrap();
    waiter.join().unwrap().unwrap();
    // The waiter's lock is on the file under its new id.
    let e = t.lock(c.session(), &on_new, false, &never).unwrap_err();
    assert_eq!(e.code, ErrorCode::WouldBlock);
}

#[test]
fn unlocking_one_file_leaves_the_owners_locks_on_others() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let other = on(NEW, req(1, LockKind::Write, 0, 9));
    t.lock(a.session(), &req(1, LockKind::Write, 0, 9), false, &never)
        .unwrap();
    t.lock(a.session(), &other, false, &never).unwrap();
    t.lock(a.session(), &req(1, LockKind::Unlock, 0, 9), false, &never)
        .unwrap();
    assert!(
        t.test(b.session(), &other).is_some(),
        "unlocked another file"
    );
    assert!(
        t.test(b.session(), &req(1, LockKind::Write, 0, 9))
            .is_none()
    );
}

#[test]
fn a_request_cancelled_by_its_sessions_end_is_never_granted() {
    let t = LockTable::new(Duration::ZERO);
    let (a, _) = t.attach(None);
    let (b, _) = t.attach(None);
    let w = req(1, LockKind::Write, 0, 0);
    t.lock(a.session(), &w, false, &never).unwrap();
    // B's connection ends while its waiting request is on its way to the
    // table: the flag is set, then the session's locks go.
    let t2 = Arc::clone(&t);
    let bs = b.session();
    let cancel = Arc::new(AtomicBool::new(false));
    let c2 = Arc::clone(&cancel);
    let waiter = std::thread::spawn(move || t2.lock(bs, &w, true, &|| c2.load(Ordering::SeqCst)));
    std::thread::sleep(Duration::from_millis(100));
    cancel.store(true, Ordering::SeqCst);
    // The release that frees the lock wakes the waiter, before the table
    // hears of the cancel.
    t.lock(
        a.session(),
        &req(1, LockKind::Unlock, 0, u64::MAX),
        false,
        &never,
    )
    .unwrap();
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Interrupted);
    b.end();
    assert_eq!(t.count(), 0, "a lock was granted to an ended session");
    // Also one that never had to wait.
    let (c, _) = t.attach(None);
    let e = t.lock(c.session(), &w, true, &|| true).unwrap_err();
    assert_eq!(e.code, ErrorCode::Interrupted);
    assert_eq!(t.count(), 0);
}
