//! Full resyncs the replica cannot avoid, through a TCP proxy the test controls: writes
//! beyond the master's backlog while the replica is away, and a master restarted with
//! other data. The dataset's digest equals the master's afterwards.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::replica::{assert_in_sync, replica, stat};
use support::TestServer;

use support::proxy::proxy;

fn wait_for(what: &str, f: impl FnMut() -> bool) {
    support::wait_for(what, Duration::from_secs(30), f);
}

fn sync_full(m: &TestServer) -> u64 {
    stat(m, "sync_full")
}

fn check(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-backlog-size",
            "16384",
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
    .expect("master");
    for i in 0..100 {
        m.must(&["SET", &format!("k{i}"), "v"]);
    }
    let p = proxy(m.addr());
    let (h, t) = replica(&p.addr);
    wait_for("first sync", || h.status.ready.load(Ordering::Relaxed));
    assert_in_sync(&m, &h, &bin, "after the first sync");

    // Away for longer than the backlog holds.
    p.hold.store(true, Ordering::Relaxed);
    let kind = if bin.is_redis() && bin.major_minor() < (7, 0) {
        "slave"
    } else {
        "replica"
    };
    m.must(&["CLIENT", "KILL", "TYPE", kind]);
    let big = "x".repeat(1000);
    for i in 0..100 {
        m.must(&["SET", &format!("away{i}"), &big]);
    }
    let full_before = sync_full(&m);
    p.hold.store(false, Ordering::Relaxed);
    wait_for("a full resync after the backlog overflowed", || {
        sync_full(&m) > full_before
    });
    assert_in_sync(&m, &h, &bin, "after the backlog overflow");

    // The master restarts (a new server, new replication ID, other data).
    let m2 = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("second master");
    m2.must(&["SET", "only-in-the-new-master", "1"]);
    *p.upstream.lock().unwrap() = m2.addr();
    drop(m);
    wait_for("a full sync from the restarted master", || {
        sync_full(&m2) >= 1
    });
    assert_in_sync(&m2, &h, &bin, "after the master restart");
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 3);

    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn redis_6_2() {
    check("redis-6.2");
}
#[test]
fn redis_7_0() {
    check("redis-7.0");
}
#[test]
fn redis_8_2() {
    check("redis-8.2");
}
#[test]
fn redis_8_6() {
    check("redis-8.6");
}
#[test]
fn valkey_8_1() {
    check("valkey-8.1");
}
#[test]
fn valkey_9_1() {
    check("valkey-9.1");
}
