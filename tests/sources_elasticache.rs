//! What an ElastiCache master adds to its replication stream, played by a proxy between a
//! real master and replisnap: `REPLCONF TIMESTAMP <ms>` (its replicas' lag clock) and, for
//! good measure, a `REPLCONF` subcommand nobody knows. Neither may force a resync.
//!
//! Offsets: every byte of the stream counts into a replica's offset, as the servers'
//! replica counts it (REPLCONF included; the ACK after GETACK excepted). On ElastiCache the
//! master writes TIMESTAMP into its own stream, so it is in the master's offset too and the
//! two agree. Here the proxy adds the bytes the master never wrote: replisnap's offset (and
//! the ACK the master sees) runs ahead of the master's by exactly the injected bytes. That
//! is what we assert — we do not try to recognise injected bytes, since on the real service
//! they are the master's own. (A partial resync after such a test-only gap would ask for an
//! offset past the master's and get a full sync; that cannot happen on the real service.)

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replisnap::keyspace::digest_snapshot;
use replisnap::replication::ReplicaHandle;
use support::replica::{now_ms, offset, replica, stat};
use support::{ServerBin, TestServer};

fn timestamp() -> Vec<u8> {
    let ms = now_ms().to_string();
    assert_eq!(ms.len(), 13);
    format!("*3\r\n$8\r\nREPLCONF\r\n$9\r\nTIMESTAMP\r\n$13\r\n{ms}\r\n").into_bytes()
}

const UNKNOWN: &[u8] = b"*3\r\n$8\r\nREPLCONF\r\n$3\r\nFOO\r\n$3\r\nbar\r\n";

/// replisnap holds the master's offset plus the injected bytes: nothing is in flight.
fn caught_up(m: &TestServer, h: &ReplicaHandle, injected: i64, step: &str) {
    support::wait_for(step, Duration::from_secs(30), || {
        h.status.link_up.load(Ordering::Relaxed)
            && h.status.offset.load(Ordering::Relaxed) == offset(m) + injected
    });
}

fn replconf_injected_on(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    // No PING from the master in the test's time: between our writes the stream is quiet,
    // so an injection falls between two commands.
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-ping-replica-period",
            "3600",
        ],
    )
    .expect("master");
    for i in 0..500 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let p = support::proxy::proxy(m.addr());
    let (h, t) = replica(&p.addr);
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let mut injected = 0i64;
    // Right after the full-sync payload, before the master's first command.
    let ts = timestamp();
    assert_eq!(p.inject(&ts), 1);
    injected += ts.len() as i64;
    caught_up(&m, &h, injected, "after the first TIMESTAMP");
    for round in 0..3 {
        m.must(&["SELECT", &round.to_string()]);
        m.must(&["SET", &format!("r{round}"), "x"]);
        m.must(&["RPUSH", "list", &format!("e{round}")]);
        m.must(&["HSET", "hash", &format!("f{round}"), "v"]);
        caught_up(&m, &h, injected, &format!("round {round}"));
        let extra = if round == 1 {
            UNKNOWN.to_vec()
        } else {
            timestamp()
        };
        assert_eq!(p.inject(&extra), 1);
        injected += extra.len() as i64;
        caught_up(&m, &h, injected, &format!("round {round}: injected"));
    }
    m.must(&["SELECT", "0"]);
    m.must(&["INCR", "counter"]);
    caught_up(&m, &h, injected, "the last write");

    let s = &h.status;
    assert!(injected > 0);
    assert_eq!(
        s.offset.load(Ordering::Relaxed) - offset(&m),
        injected,
        "{name}: the injected bytes count in our offset, not in the master's"
    );
    // The master sees that offset in our ACK (INFO replication: slave0:...,offset=N,...).
    let ours = s.offset.load(Ordering::Relaxed);
    support::wait_for("our ACK at the master", Duration::from_secs(10), || {
        m.info("replication").contains(&format!("offset={ours},"))
    });
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    assert_eq!(digest(snap, &bin), m.digest(), "{name}: digest");
    assert_eq!(s.full_syncs.load(Ordering::Relaxed), 1, "{name}: no resync");
    assert_eq!(s.partial_syncs.load(Ordering::Relaxed), 0);
    assert_eq!(s.forced_resyncs.load(Ordering::Relaxed), 0);
    assert_eq!(
        s.link_errors.load(Ordering::Relaxed),
        0,
        "{name}: {}",
        s.last_link_error.lock().unwrap()
    );
    assert_eq!(stat(&m, "sync_full"), 1, "{name}: the master forked once");
    h.stop();
    t.join().expect("replica thread");
}

fn digest(snap: replisnap::keyspace::Snapshot, bin: &ServerBin) -> String {
    let (a, b) = bin.major_minor();
    digest_snapshot(
        snap,
        format!("{}-{a}.{b}", bin.kind).parse().unwrap(),
        now_ms(),
    )
    .unwrap()
}

#[test]
fn replconf_timestamp_injected_redis_7_0() {
    replconf_injected_on("redis-7.0");
}

#[test]
fn replconf_timestamp_injected_valkey_9_1() {
    replconf_injected_on("valkey-9.1");
}

#[test]
fn replconf_timestamp_injected_redis_6_2() {
    replconf_injected_on("redis-6.2");
}

/// The same injections into a busy stream: a writer runs while a TIMESTAMP (or the unknown
/// REPLCONF) is put between two of the master's commands every few milliseconds, the
/// first one right after the full-sync payload.
fn replconf_in_a_busy_stream_on(name: &str, diskless: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync-delay",
            "0",
            "--repl-diskless-sync",
            diskless,
        ],
    )
    .expect("master");
    for i in 0..500 {
        m.must(&["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    let p = support::proxy::proxy_tapped(m.addr());
    p.inject_between_commands(timestamp());
    let (h, t) = replica(&p.addr);
    support::wait_for("first sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = m.port();
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = support::Conn::connect(port, Duration::from_secs(5)).expect("writer");
        c.cmd(&[b"SELECT", b"2"]).expect("SELECT");
        let mut n = 0u64;
        while !stop_w.load(Ordering::Relaxed) {
            let key = format!("w{}", n % 300);
            let r = match n % 3 {
                0 => c.cmd(&[b"SET", key.as_bytes(), b"some value"]),
                1 => c.cmd(&[b"INCR", b"counter"]),
                _ => c.cmd(&[b"LPUSH", b"list", key.as_bytes()]),
            };
            assert!(!r.expect("write").is_error());
            n += 1;
        }
        n
    });
    let mut queued = 1;
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        let extra = if queued % 5 == 0 {
            UNKNOWN.to_vec()
        } else {
            timestamp()
        };
        p.inject_between_commands(extra);
        queued += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    // The writer's next commands carry the last queued injections out.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");
    m.must(&["SET", "last", "1"]);
    let injected = p.injected.load(Ordering::Relaxed);
    // Every queued one went out: 13-digit TIMESTAMPs (all of one length) and the unknown.
    let unknown = ((queued - 1) / 5) as i64;
    let expected =
        unknown * UNKNOWN.len() as i64 + (queued as i64 - unknown) * timestamp().len() as i64;
    assert_eq!(injected, expected, "{name}: {queued} queued");
    assert!(
        queued > 50 && written > 1000,
        "{name}: {queued} injections, {written} writes"
    );
    caught_up(&m, &h, injected, &format!("{name}: busy stream"));
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    assert_eq!(digest(snap, &bin), m.digest(), "{name}: digest");
    let s = &h.status;
    assert_eq!(s.full_syncs.load(Ordering::Relaxed), 1, "{name}: no resync");
    assert_eq!(s.forced_resyncs.load(Ordering::Relaxed), 0);
    assert_eq!(s.link_errors.load(Ordering::Relaxed), 0);
    assert_eq!(stat(&m, "sync_full"), 1);
    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn replconf_in_a_busy_stream_redis_7_0_diskless() {
    replconf_in_a_busy_stream_on("redis-7.0", "yes");
}

#[test]
fn replconf_in_a_busy_stream_valkey_9_1_disk() {
    replconf_in_a_busy_stream_on("valkey-9.1", "no");
}
