//! `[source] full_sync_from`: a primary that never forks for us. The full sync is taken from
//! a real replica of the primary, then the link moves to the primary with
//! `PSYNC <replid> <offset+1>`; the primary's `sync_full` (INFO stats) never moves. When
//! the primary cannot continue (another history, a backlog too short), no PSYNC reaches
//! it under the default `full_sync_fallback = "never"`: replisnap goes back to the replica.

mod daemon;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use replisnap::metrics::LinkErrorReason;
use replisnap::replication::handoff::{Fallback, FullSyncFrom};
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::replica::{assert_in_sync, offset, stat};
use support::{Conn, TestServer};

/// replisnap attached to `primary`, taking its full syncs from `from`.
fn replisnap(
    primary: &str,
    from: &str,
    fallback: Fallback,
) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    replisnap_as(primary, from, fallback, None)
}

/// [`replisnap`] as an ACL user (user, password) on both servers.
fn replisnap_as(
    primary: &str,
    from: &str,
    fallback: Fallback,
    user: Option<(&str, &str)>,
) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (mut r, h) = Replica::new(Settings {
        address: primary.to_string(),
        username: user.map(|u| u.0.to_string()),
        password: user.map(|u| u.1.to_string()),
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    r.set_full_sync_from(FullSyncFrom {
        address: from.to_string(),
        fallback,
    });
    (h, std::thread::spawn(move || r.run()))
}

/// A real replica of `m`, caught up.
fn server_replica(bin: &support::ServerBin, m: &TestServer, extra: &[&str]) -> TestServer {
    let port = m.port().to_string();
    let mut args = vec![
        "--replicaof",
        "127.0.0.1",
        &port,
        "--repl-diskless-sync-delay",
        "0",
    ];
    args.extend_from_slice(extra);
    let r = TestServer::start(bin, &args).expect("replica");
    support::wait_for(
        "the server replica in sync",
        Duration::from_secs(30),
        || {
            r.info_field("replication", "master_link_status").as_deref() == Some("up")
                && offset(&r) == offset(m)
        },
    );
    r
}

/// Writes on `m` on a connection of its own until the flag is set: mostly in database 3,
/// selected once, so the stream after any offset holds no SELECT for it (what the
/// replica's `repl-stream-db` must tell us). Returns the number of commands sent.
fn writer(m: &TestServer, value_len: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let port = m.port();
    std::thread::spawn(move || {
        let mut c = Conn::connect(port, Duration::from_secs(5)).expect("writer");
        c.cmd(&[b"SELECT", b"3"]).expect("SELECT");
        let value = vec![b'v'; value_len];
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let key = format!("w{}", n % 5000);
            let r = match n % 4 {
                0 => c.cmd(&[b"SET", key.as_bytes(), &value]),
                1 => c.cmd(&[b"INCR", b"counter"]),
                2 => c.cmd(&[b"RPUSH", b"list", key.as_bytes()]),
                _ => c.cmd(&[b"HSET", b"hash", key.as_bytes(), &value]),
            };
            assert!(!r.expect("write").is_error());
            n += 1;
        }
        n
    })
}

fn from_a_replica_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("primary");
    for i in 0..2000 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    m.must(&["SELECT", "3"]);
    let r = server_replica(&bin, &m, &[]);
    let full_before = stat(&m, "sync_full");
    assert_eq!(full_before, 1, "{name}: the server replica's own full sync");
    let partial_before = stat(&m, "sync_partial_ok");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, 100, stop.clone());
    // Writes during replisnap's sync and the move to the primary.
    std::thread::sleep(Duration::from_millis(200));
    let (h, t) = replisnap(&m.addr(), &r.addr(), Fallback::Never);
    support::wait_for("replisnap on the primary", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = w.join().expect("writer");
    assert!(written > 100, "{name}: {written} writes during the sync");
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, &format!("{name}: after the writes"));
    let s = &h.status;
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "{name}: the primary did not fork for replisnap"
    );
    assert_eq!(
        stat(&m, "sync_partial_ok"),
        partial_before + 1,
        "{name}: replisnap continued on the primary"
    );
    assert_eq!(
        stat(&r, "sync_full"),
        1,
        "{name}: the replica served the full sync"
    );
    assert_eq!(s.full_syncs.load(Ordering::Relaxed), 1, "{name}");
    assert_eq!(s.full_syncs_from_replica.load(Ordering::Relaxed), 1);
    assert_eq!(s.partial_syncs.load(Ordering::Relaxed), 1);
    assert_eq!(s.handoff_refusals.load(Ordering::Relaxed), 0);
    assert_eq!(*s.master_address.lock().unwrap(), m.addr());
    assert_eq!(
        Some(s.replid.lock().unwrap().clone()),
        m.info_field("replication", "master_replid")
    );
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn full_sync_from_a_replica_redis_7_0() {
    from_a_replica_on("redis-7.0");
}

#[test]
fn full_sync_from_a_replica_valkey_9_1() {
    from_a_replica_on("valkey-9.1");
}

#[test]
fn full_sync_from_a_replica_redis_6_2() {
    from_a_replica_on("redis-6.2");
}

#[test]
fn full_sync_from_a_replica_redis_8_6() {
    from_a_replica_on("redis-8.6");
}

#[test]
fn full_sync_from_a_replica_redis_7_2() {
    from_a_replica_on("redis-7.2");
}

#[test]
fn full_sync_from_a_replica_redis_7_4() {
    from_a_replica_on("redis-7.4");
}

#[test]
fn full_sync_from_a_replica_redis_8_2() {
    from_a_replica_on("redis-8.2");
}

#[test]
fn full_sync_from_a_replica_valkey_8_0() {
    from_a_replica_on("valkey-8.0");
}

#[test]
fn full_sync_from_a_replica_valkey_8_1() {
    from_a_replica_on("valkey-8.1");
}

#[test]
fn full_sync_from_a_replica_valkey_9_0() {
    from_a_replica_on("valkey-9.0");
}

/// The replica given belongs to another primary: its replication ID is not the
/// primary's. Under the default no PSYNC reaches the primary (its `sync_full` stays 1),
/// the reason is kept for the status, and the replica is asked again after a backoff;
/// with `full_sync_fallback = "primary"` the primary gives an ordinary full sync.
fn another_history_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("primary");
    m.must(&["SET", "mine", "1"]);
    let _r = server_replica(&bin, &m, &[]);
    let other = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("other");
    other.must(&["SET", "theirs", "1"]);
    let other_replica = server_replica(&bin, &other, &[]);
    let full_before = stat(&m, "sync_full");
    assert_eq!(full_before, 1);

    let (h, t) = replisnap(&m.addr(), &other_replica.addr(), Fallback::Never);
    support::wait_for("two refusals", Duration::from_secs(30), || {
        h.status.handoff_refusals.load(Ordering::Relaxed) >= 2
    });
    let s = &h.status;
    let why = s.last_link_error.lock().unwrap().clone();
    assert!(
        why.contains("primary cannot continue") && why.contains("replication IDs"),
        "{name}: {why}"
    );
    assert!(s.full_syncs_from_replica.load(Ordering::Relaxed) >= 2);
    assert!(!s.ready.load(Ordering::Relaxed), "{name}: never attached");
    assert_eq!(s.partial_syncs.load(Ordering::Relaxed), 0);
    // Counted as link errors of their own reason, not as handshake refusals.
    let kind = |r: LinkErrorReason| {
        let i = LinkErrorReason::ALL.iter().position(|k| *k == r).unwrap();
        s.link_error_kinds[i].load(Ordering::Relaxed)
    };
    assert!(kind(LinkErrorReason::HandoffRefused) >= 2, "{name}");
    assert_eq!(LinkErrorReason::HandoffRefused.as_str(), "handoff_refused");
    assert_eq!(kind(LinkErrorReason::Handshake), 0, "{name}");
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "{name}: the primary never forked"
    );
    assert_eq!(
        stat(&m, "sync_partial_err"),
        0,
        "{name}: no PSYNC reached it"
    );
    h.stop();
    t.join().expect("replica thread");

    let (h, t) = replisnap(&m.addr(), &other_replica.addr(), Fallback::Primary);
    support::wait_for("the fallback full sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, &format!("{name}: after the fallback"));
    assert_eq!(
        stat(&m, "sync_full"),
        full_before + 1,
        "{name}: forked once"
    );
    assert_eq!(h.status.handoff_refusals.load(Ordering::Relaxed), 1);
    assert_eq!(h.status.full_syncs.load(Ordering::Relaxed), 2);
    h.stop();
    t.join().expect("replica thread");
}

/// The replica cannot be reached: under the default the primary is never asked for a full
/// sync (replisnap keeps trying the replica); with `"primary"` it is.
#[test]
fn a_replica_down_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("primary");
    m.must(&["SET", "mine", "1"]);
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (h, t) = replisnap(&m.addr(), &down, Fallback::Never);
    support::wait_for("three link errors", Duration::from_secs(30), || {
        h.status.link_errors.load(Ordering::Relaxed) >= 3
    });
    assert!(!h.status.ready.load(Ordering::Relaxed));
    assert_eq!(stat(&m, "sync_full"), 0, "the primary was not asked");
    assert_eq!(
        m.info_field("replication", "connected_slaves").as_deref(),
        Some("0")
    );
    h.stop();
    t.join().expect("replica thread");

    let (h, t) = replisnap(&m.addr(), &down, Fallback::Primary);
    support::wait_for("the fallback full sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, "after the fallback");
    assert_eq!(stat(&m, "sync_full"), 1);
    assert_eq!(h.status.full_syncs_from_replica.load(Ordering::Relaxed), 0);
    h.stop();
    t.join().expect("replica thread");
}

/// An ACL user that may replicate but not run INFO: the primary's answer cannot be read,
/// which is a "no" — the primary is not sent a PSYNC it might refuse.
#[test]
fn info_refused_is_a_no_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("primary");
    m.must(&["SET", "mine", "1"]);
    let r = server_replica(&bin, &m, &[]);
    let grant = [
        "ACL",
        "SETUSER",
        "backup",
        "on",
        ">secret",
        "+ping",
        "+replconf",
        "+psync",
        "+sync",
    ];
    m.must(&grant);
    r.must(&grant);
    let (h, t) = replisnap_as(
        &m.addr(),
        &r.addr(),
        Fallback::Never,
        Some(("backup", "secret")),
    );
    support::wait_for("two refusals", Duration::from_secs(30), || {
        h.status.handoff_refusals.load(Ordering::Relaxed) >= 2
    });
    let why = h.status.last_link_error.lock().unwrap().clone();
    assert!(why.contains("NOPERM") && why.contains("+info"), "{why}");
    assert!(h.status.full_syncs_from_replica.load(Ordering::Relaxed) >= 2);
    assert_eq!(stat(&m, "sync_full"), 1, "the primary never forked");
    h.stop();
    t.join().expect("replica thread");
    // With +info the same user continues on the primary.
    m.must(&["ACL", "SETUSER", "backup", "+info"]);
    let (h, t) = replisnap_as(
        &m.addr(),
        &r.addr(),
        Fallback::Never,
        Some(("backup", "secret")),
    );
    support::wait_for("on the primary", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, "with +info");
    assert_eq!(stat(&m, "sync_full"), 1, "the primary never forked");
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn another_history_is_refused_before_psync_redis_7_0() {
    another_history_on("redis-7.0");
}

#[test]
fn another_history_is_refused_before_psync_valkey_9_1() {
    another_history_on("valkey-9.1");
}

/// The primary's backlog (16 KiB, the least it takes) is overrun by writes while the
/// replica's payload loads: the check sees it and the primary is not asked to PSYNC.
#[test]
fn a_backlog_too_short_is_refused_before_psync_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "16384",
        ],
    )
    .expect("primary");
    // Enough data for the load to take a while.
    for i in 0..200 {
        let args: Vec<String> = ["MSET".to_string()]
            .into_iter()
            .chain((0..100).flat_map(|j| [format!("k{i}:{j}"), "x".repeat(200)]))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        m.must(&args);
    }
    let r = server_replica(&bin, &m, &[]);
    let full_before = stat(&m, "sync_full");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(&m, 4096, stop.clone());
    let (h, t) = replisnap(&m.addr(), &r.addr(), Fallback::Never);
    support::wait_for("two refusals", Duration::from_secs(60), || {
        h.status.handoff_refusals.load(Ordering::Relaxed) >= 2
    });
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");
    let why = h.status.last_link_error.lock().unwrap().clone();
    assert!(why.contains("backlog"), "{why}");
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "the primary never forked"
    );
    assert_eq!(stat(&m, "sync_partial_err"), 0, "no PSYNC reached it");
    // Once the writes stop, the next round through the replica continues on the primary.
    support::wait_for("replisnap on the primary", Duration::from_secs(60), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, "after the writes stopped");
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "the primary never forked"
    );
    assert_eq!(h.status.partial_syncs.load(Ordering::Relaxed), 1);
    h.stop();
    t.join().expect("replica thread");
}

/// `replisnap run` with `[source] full_sync_from`: the config key reaches the replica, the
/// primary does not fork, and a stored snapshot's digest is the primary's `DEBUG DIGEST`.
#[test]
fn the_daemon_takes_its_full_sync_from_the_replica_redis_7_0() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("primary");
    for i in 0..1000 {
        m.must(&["HSET", &format!("h{}", i % 10), &format!("f{i}"), "v"]);
    }
    let r = server_replica(&bin, &m, &[]);
    let full_before = stat(&m, "sync_full");
    let partial_before = stat(&m, "sync_partial_ok");
    let setup = daemon::Setup::new(&m.addr(), "* * * * * *", "keep_last = 2");
    let text = std::fs::read_to_string(setup.config()).unwrap();
    let text = text.replacen(
        "[source]\n",
        &format!("[source]\nfull_sync_from = \"{}\"\n", r.addr()),
        1,
    );
    std::fs::write(setup.config(), text).unwrap();
    let mut d = setup.start("daemon.log");
    assert!(
        daemon::poll(Duration::from_secs(30), || {
            d.assert_running();
            stat(&m, "sync_partial_ok") > partial_before
        }),
        "replisnap did not continue on the primary:\n{}",
        d.log_text()
    );
    m.must(&["SET", "after", "1"]);
    let target = offset(&m) as u64;
    let digest = m.digest();
    assert!(
        daemon::poll(Duration::from_secs(30), || {
            d.assert_running();
            setup
                .snapshots()
                .iter()
                .any(|s| s.source.offset >= target && s.digest == digest)
        }),
        "no snapshot at offset {target} with the primary's digest {digest}:\n{}",
        d.log_text()
    );
    assert_eq!(
        stat(&m, "sync_full"),
        full_before,
        "the primary never forked"
    );
    assert_eq!(stat(&m, "sync_partial_ok"), partial_before + 1);
    assert_eq!(stat(&r, "sync_full"), 1, "the replica served the full sync");
    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(log.contains("full sync from the replica loaded"), "{log}");
}

/// A long outage after the move: the primary's backlog (16 KiB) no longer covers our
/// offset when the link comes back. The check sees it before any PSYNC, the next full sync
/// comes from the replica again, and the primary still never forks.
fn outage_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-backlog-size",
            "16384",
        ],
    )
    .expect("primary");
    for i in 0..500 {
        m.must(&["SET", &format!("k{i}"), "v"]);
    }
    let r = server_replica(&bin, &m, &[]);
    let partial_before = stat(&m, "sync_partial_ok");
    let p = support::proxy::proxy(m.addr());
    let (h, t) = replisnap(&p.addr, &r.addr(), Fallback::Never);
    support::wait_for("replisnap on the primary", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, "before the outage");
    // The outage: new connections wait, the open one is cut, the primary writes on.
    p.hold.store(true, Ordering::Relaxed);
    p.cut();
    let value = "x".repeat(1024);
    for i in 0..200 {
        m.must(&["SET", &format!("during{i}"), &value]);
    }
    support::wait_for(
        "the server replica caught up",
        Duration::from_secs(30),
        || offset(&r) == offset(&m),
    );
    p.hold.store(false, Ordering::Relaxed);
    support::wait_for(
        "a second full sync from the replica",
        Duration::from_secs(30),
        || {
            h.status.full_syncs_from_replica.load(Ordering::Relaxed) == 2
                && h.status.link_up.load(Ordering::Relaxed)
        },
    );
    m.must(&["SET", "after", "1"]);
    assert_in_sync(&m, &h, &bin, "after the outage");
    let s = &h.status;
    assert_eq!(s.handoff_refusals.load(Ordering::Relaxed), 1);
    assert!(
        s.last_link_error.lock().unwrap().contains("backlog"),
        "{}",
        s.last_link_error.lock().unwrap()
    );
    assert_eq!(s.full_syncs.load(Ordering::Relaxed), 2);
    assert_eq!(s.partial_syncs.load(Ordering::Relaxed), 2);
    assert_eq!(stat(&m, "sync_full"), 1, "the primary never forked");
    assert_eq!(stat(&m, "sync_partial_err"), 0, "no PSYNC it refused");
    assert_eq!(stat(&m, "sync_partial_ok"), partial_before + 2);
    assert_eq!(stat(&r, "sync_full"), 2, "the replica served both");
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn an_outage_past_the_backlog_resyncs_from_the_replica_redis_7_0() {
    outage_on("redis-7.0");
}

#[test]
fn an_outage_past_the_backlog_resyncs_from_the_replica_valkey_9_1() {
    outage_on("valkey-9.1");
}
