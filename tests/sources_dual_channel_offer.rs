//! Dual-channel full sync beyond the first master (issue 14's remnants), against real
//! servers: its counters as Prometheus metrics of the real daemon; a master that refused
//! it is offered it again once the master behind the same address changed (a promoted
//! replica: a new replication ID); and `[source] full_sync_from`'s replica serves it
//! (Valkey's `syncCommand` has no role check before `+DUALCHANNELSYNC`), the primary
//! still never forking.

mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use daemon::{poll, Setup};
use http_support::{req, sample};
use replisnap::replication::handoff::{Fallback, FullSyncFrom};
use replisnap::replication::{Replica, Settings};
use support::replica::{assert_in_sync, offset, stat};
use support::{Conn, ServerBin, TestServer};

/// The server's log line of a full sync it serves on a second connection.
fn dual_log_line(bin: &ServerBin) -> &'static str {
    if bin.is_valkey() {
        "using: dual-channel"
    } else {
        "(rdb-channel)"
    }
}

/// Server arguments that make it serve dual-channel full syncs, diskless, at once.
fn dual_args(bin: &ServerBin) -> Vec<&'static str> {
    let mut a = vec![
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ];
    if bin.is_valkey() {
        a.extend_from_slice(&["--dual-channel-replication-enabled", "yes"]);
    } else {
        a.extend_from_slice(&["--repl-rdb-channel", "yes"]);
    }
    a
}

/// `keys` strings in database 0 and as many in database 2.
fn fill(m: &TestServer, keys: usize) {
    let mut c = m.connect().expect("connect");
    for db in ["0", "2"] {
        c.cmd(&[b"SELECT", db.as_bytes()]).expect("SELECT");
        for i in 0..keys {
            let k = format!("k{i}");
            assert!(!c
                .cmd(&[b"SET", k.as_bytes(), b"v"])
                .expect("SET")
                .is_error());
        }
    }
}

/// Writes on `m` until the flag is set, in database 3 selected once (so the stream after
/// an offset holds no SELECT for it), transactions among them; returns how many.
fn writer(m: &TestServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let port = m.port();
    std::thread::spawn(move || {
        let mut c = Conn::connect(port, Duration::from_secs(5)).expect("writer");
        c.cmd(&[b"SELECT", b"3"]).expect("SELECT");
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("w{}", n % 2000);
            let r = match n % 4 {
                0 => c.cmd(&[b"SET", key.as_bytes(), b"0123456789abcdef"]),
                1 => c.cmd(&[b"INCR", b"counter"]),
                2 => c.cmd(&[b"RPUSH", b"list", key.as_bytes()]),
                _ => {
                    c.cmd(&[b"MULTI"]).expect("MULTI");
                    c.cmd(&[b"HSET", b"hash", key.as_bytes(), b"v"])
                        .expect("HSET");
                    c.cmd(&[b"EXEC"])
                }
            };
            assert!(!r.expect("write").is_error());
            n += 1;
        }
        n
    })
}

fn settings(addr: &str, user: Option<(&str, &str)>) -> Settings {
    Settings {
        address: addr.to_string(),
        username: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    }
}

fn run(r: Replica) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || r.run())
}

fn load(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The real daemon's `/metrics` after a dual-channel full sync under writes.
fn metrics_of_the_daemon(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &dual_args(&bin)).expect("master");
    fill(&m, 10_000);
    // 20,000 keys at 50 µs: about a second of transfer, while the writer goes on.
    m.must(&["CONFIG", "SET", "rdb-key-save-delay", "50"]);
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, stop.clone());
    let setup = Setup::new(&m.addr(), "0 0 0 1 1 *", "");
    setup.replica_line("checkpoint_on_shutdown = false");
    let http = setup.http_addr();
    let mut dmn = setup.start("daemon.log");
    assert!(
        poll(Duration::from_secs(90), || {
            dmn.assert_running();
            std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
        }),
        "{name}: never ready\n{}",
        dmn.log_text()
    );
    stop.store(true, Ordering::Relaxed);
    let written = w.join().expect("writer");
    assert!(written > 100, "{name}: {written} writes");
    let metrics = || req(http, "GET", "/metrics").body;
    let value = |page: &str, s: &str| sample(page, &format!("replisnap_{s}")).unwrap_or(-1.0);
    // The poller copies the replica's counters once a second.
    assert!(
        poll(Duration::from_secs(10), || {
            value(&metrics(), "dual_channel_syncs_total") == 1.0
        }),
        "{name}: no dual-channel sync counted\n{}\n{}",
        metrics(),
        dmn.log_text()
    );
    let page = metrics();
    http_support::assert_exposition_parses(&page);
    assert_eq!(value(&page, "full_resyncs_total"), 1.0, "{name}");
    assert_eq!(value(&page, "dual_channel_refusals_total"), 0.0, "{name}");
    let buffered = value(&page, "dual_channel_buffered_bytes_total");
    assert!(buffered > 1000.0, "{name}: {buffered} bytes buffered");
    assert_eq!(
        value(&page, "dual_channel_spilled_bytes_total"),
        0.0,
        "{name}: {buffered} bytes fit in 64 MiB"
    );
    assert!(m.log().contains(dual_log_line(&bin)), "{name}: {}", m.log());
    let (status, log) = dmn.terminate(Duration::from_secs(20));
    assert!(status.success(), "{name}: {status:?}\n{log}");
}

#[test]
fn dual_channel_metrics_valkey_9_1() {
    metrics_of_the_daemon("valkey-9.1");
}

#[test]
fn dual_channel_metrics_redis_8_6() {
    metrics_of_the_daemon("redis-8.6");
}

/// A Valkey master whose ACL user may not `SYNC` answers `+DUALCHANNELSYNC` and refuses
/// the rdb channel's `SYNC`: one refusal, then classic full syncs from it. Its replica is
/// promoted behind the same proxy address (`+CONTINUE <new id>`), and the next full sync,
/// forced by a backlog too short for what was written while replisnap could not reach it,
/// is dual-channel again.
fn offered_again_after_a_failover(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let mut args = dual_args(&bin);
    let a = TestServer::start(&bin, &args).expect("master a");
    fill(&a, 1000);
    let port = a.port().to_string();
    args.extend_from_slice(&["--replicaof", "127.0.0.1", &port]);
    let b = TestServer::start(&bin, &args).expect("replica b");
    let user = ["ACL", "SETUSER", "backup", "on", ">secret", "-@all"];
    let perms = ["+psync", "+replconf", "+ping", "+info"];
    a.must(&[&user[..], &perms[..]].concat());
    b.must(&[&user[..], &perms[..], &["+sync"]].concat());
    let px = support::proxy::proxy(a.addr());
    let (mut r, h) = Replica::new(settings(&px.addr, Some(("backup", "secret"))));
    r.set_dual_channel(true);
    let t = run(r);
    support::wait_for("synced with a", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let s = &h.status;
    assert_eq!(load(&s.dual_channel_refusals), 1, "{name}: a refused once");
    assert_eq!(load(&s.dual_channel_syncs), 0, "{name}");
    assert_eq!(load(&s.full_syncs), 1, "{name}: then a classic full sync");
    a.must(&["SET", "on-a", "1"]);
    assert_in_sync(&a, &h, &bin, &format!("{name}: on a"));
    // A link loss: a is still the master, still not offered dual-channel.
    px.cut();
    support::wait_for("partial resync on a", Duration::from_secs(30), || {
        load(&s.partial_syncs) == 1 && s.link_up.load(Ordering::Relaxed)
    });
    assert_eq!(load(&s.dual_channel_refusals), 1, "{name}");

    // Failover behind the same address: b promoted, the proxy pointed at it.
    support::wait_for("b in sync", Duration::from_secs(30), || {
        offset(&b) == offset(&a)
    });
    *px.upstream.lock().unwrap() = b.addr();
    b.must(&["REPLICAOF", "NO", "ONE"]);
    px.cut();
    support::wait_for("partial resync on b", Duration::from_secs(30), || {
        load(&s.partial_syncs) == 2 && s.link_up.load(Ordering::Relaxed)
    });
    assert_eq!(
        Some(s.replid.lock().unwrap().clone()),
        b.info_field("replication", "master_replid"),
        "{name}: +CONTINUE with b's new replication ID"
    );
    b.must(&["SET", "on-b", "1"]);
    assert_in_sync(&b, &h, &bin, &format!("{name}: on b"));
    assert!(!b.log().contains(dual_log_line(&bin)), "{name}");

    // Out of b's backlog (16 KiB) while replisnap cannot reach it: a full sync from b.
    b.must(&["CONFIG", "SET", "repl-backlog-size", "16384"]);
    px.hold.store(true, Ordering::Relaxed);
    px.cut();
    let value = "x".repeat(200);
    for i in 0..2000 {
        b.must(&["SET", &format!("gap{i}"), &value]);
    }
    px.hold.store(false, Ordering::Relaxed);
    support::wait_for("full sync from b", Duration::from_secs(60), || {
        load(&s.full_syncs) == 2 && s.link_up.load(Ordering::Relaxed)
    });
    b.must(&["SET", "after", "1"]);
    assert_in_sync(&b, &h, &bin, &format!("{name}: after the full sync from b"));
    assert_eq!(
        load(&s.dual_channel_syncs),
        1,
        "{name}: b is another master: offered dual-channel again\n{}",
        s.last_link_error.lock().unwrap()
    );
    assert_eq!(load(&s.dual_channel_refusals), 1, "{name}");
    assert!(b.log().contains(dual_log_line(&bin)), "{name}: {}", b.log());
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn dual_channel_offered_again_after_a_failover_valkey_9_1() {
    offered_again_after_a_failover("valkey-9.1");
}

#[test]
fn dual_channel_offered_again_after_a_failover_valkey_8_1() {
    offered_again_after_a_failover("valkey-8.1");
}

/// `full_sync_from` a replica that serves dual-channel: the RDB on a second connection to
/// the replica, the stream buffered meanwhile, then `PSYNC` on the primary, which never
/// forks for us.
fn full_sync_from_over_dual_channel(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let mut args = dual_args(&bin);
    let m = TestServer::start(&bin, &args).expect("primary");
    fill(&m, 10_000);
    let port = m.port().to_string();
    args.extend_from_slice(&["--replicaof", "127.0.0.1", &port]);
    let r = TestServer::start(&bin, &args).expect("replica");
    support::wait_for(
        "the server replica in sync",
        Duration::from_secs(30),
        || {
            r.info_field("replication", "master_link_status").as_deref() == Some("up")
                && offset(&r) == offset(&m)
        },
    );
    r.must(&["CONFIG", "SET", "rdb-key-save-delay", "50"]);
    let full_before = stat(&m, "sync_full");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let (mut rep, h) = Replica::new(settings(&m.addr(), None));
    rep.set_full_sync_from(FullSyncFrom {
        address: r.addr(),
        fallback: Fallback::Never,
    });
    let t = run(rep);
    support::wait_for("replisnap on the primary", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().expect("writer");
    assert!(written > 100, "{name}: {written} writes during the sync");
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: after the writes"));
    let s = &h.status;
    assert!(
        r.log().contains(dual_log_line(&bin)),
        "{name}: the replica served no dual-channel sync:\n{}",
        r.log()
    );
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "{name}: the primary forked"
    );
    assert_eq!(load(&s.dual_channel_syncs), 1, "{name}");
    assert!(load(&s.dual_channel_buffered_bytes) > 0, "{name}");
    assert_eq!(load(&s.full_syncs_from_replica), 1, "{name}");
    assert_eq!(
        load(&s.partial_syncs),
        1,
        "{name}: continued on the primary"
    );
    assert_eq!(
        load(&s.link_errors),
        0,
        "{name}: {}",
        s.last_link_error.lock().unwrap()
    );
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn full_sync_from_over_dual_channel_valkey_9_1() {
    full_sync_from_over_dual_channel("valkey-9.1");
}

#[test]
fn full_sync_from_over_dual_channel_redis_8_6() {
    full_sync_from_over_dual_channel("redis-8.6");
}
