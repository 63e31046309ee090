//! The replica against real masters: full sync (disk and diskless), the stream, ACKs seen by
//! the master (`INFO replication`, `WAIT`), partial resync after a killed link, and the
//! dataset's digest equal to the master's at every step.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use replisnap::keyspace::digest_snapshot;
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use support::{wait_for, ServerBin, TestServer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn target(bin: &ServerBin) -> String {
    let (a, b) = bin.major_minor();
    format!("{}-{a}.{b}", bin.kind)
}

fn populate(m: &TestServer) {
    for db in ["0", "2"] {
        m.must(&["SELECT", db]);
        for i in 0..300 {
            m.must(&["SET", &format!("s:{i}"), &format!("value-{i}")]);
        }
        m.must(&["SET", "ttl", "x", "PX", "100000000"]);
        m.must(&["RPUSH", "list", "a", "b", "1", "-2"]);
        let mut big = vec!["RPUSH".to_string(), "biglist".into()];
        big.extend((0..2000).map(|i| format!("e{i}")));
        m.must(&big.iter().map(String::as_str).collect::<Vec<_>>());
        m.must(&["SADD", "ints", "1", "2", "300"]);
        m.must(&["SADD", "strs", "a", "b"]);
        m.must(&["ZADD", "z", "1.5", "a", "-inf", "b", "3", "c"]);
        m.must(&["HSET", "h", "f", "v", "g", "1"]);
        // A field TTL where the server has them (Redis 7.4+, Valkey 9+; older ones refuse
        // the command). Valkey 9 sends such a hash only to a replica that announced a new
        // enough version (REPLCONF version): without it every full sync failed.
        m.must(&["HSET", "hf", "f", "v", "g", "w"]);
        let _ = m.cmd(&[b"HPEXPIRE", b"hf", b"100000000", b"FIELDS", b"1", b"f"]);
        for i in 1..50 {
            m.must(&["XADD", "x", &format!("{i}-0"), "f", &i.to_string()]);
        }
        m.must(&["XGROUP", "CREATE", "x", "g", "0"]);
    }
    m.must(&["SELECT", "0"]);
}

fn master_offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Wait until we applied everything the master wrote, then compare digests.
fn assert_in_sync(m: &TestServer, h: &ReplicaHandle, bin: &ServerBin, step: &str) {
    wait_for(
        &format!("{step}: replica offset = master offset"),
        Duration::from_secs(20),
        || {
            h.status.link_up.load(Ordering::Relaxed)
                && h.status.offset.load(Ordering::Relaxed) == master_offset(m)
        },
    );
    let (snap, replid, offset, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    assert_eq!(offset, master_offset(m), "{step}: snapshot offset");
    assert_eq!(
        Some(replid),
        m.info_field("replication", "master_replid"),
        "{step}: replid"
    );
    let ours = digest_snapshot(snap, target(bin).parse().unwrap(), now_ms()).unwrap();
    assert_eq!(ours, m.digest(), "{step}: digest");
}

fn start_replica(m: &TestServer) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (r, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6390,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    let t = std::thread::spawn(move || r.run());
    (h, t)
}

fn check(name: &str, diskless: bool) {
    check_with_delay(name, diskless, "0");
}

/// `delay`: the master's repl-diskless-sync-delay; while it waits, it sends bare newlines
/// even before its PSYNC reply.
fn check_with_delay(name: &str, diskless: bool, delay: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(
        &bin,
        &[
            "--repl-diskless-sync",
            if diskless { "yes" } else { "no" },
            "--repl-diskless-sync-delay",
            delay,
        ],
    )
    .expect("start master");
    populate(&m);
    let (h, t) = start_replica(&m);
    wait_for("full sync", Duration::from_secs(20), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    assert_in_sync(&m, &h, &bin, "after full sync");
    // The master sees a well-behaved replica.
    wait_for(
        "the master to list us online",
        Duration::from_secs(10),
        || m.info("replication").contains("state=online"),
    );
    let info = m.info("replication");
    assert_eq!(
        h.status.full_syncs.load(Ordering::Relaxed),
        1,
        "one full sync: {info}"
    );
    assert_eq!(
        h.status.link_errors.load(Ordering::Relaxed),
        0,
        "no link error: {info}"
    );
    assert!(info.contains("port=6390"), "{info}");
    let waited = m.must(&["WAIT", "1", "2000"]);
    assert_eq!(waited.as_int(), Some(1), "WAIT counts our ACK");

    // The stream: strings, deletes, expiries, databases, transactions.
    for i in 0..200 {
        m.must(&["SET", &format!("s:{i}"), &format!("new-{i}"), "EX", "1000"]);
    }
    m.must(&["DEL", "s:1", "s:2", "list"]);
    m.must(&["SELECT", "2"]);
    m.must(&["SET", "in2", "v", "KEEPTTL"]);
    m.must(&["PEXPIRE", "in2", "500000"]);
    m.must(&["MULTI"]);
    m.must(&["SET", "tx1", "a"]);
    m.must(&["SET", "tx2", "b", "NX"]);
    m.must(&["EXEC"]);
    m.must(&["PERSIST", "in2"]);
    m.must(&["SELECT", "0"]);
    m.must(&["UNLINK", "s:3"]);
    assert_in_sync(&m, &h, &bin, "after the stream");

    // Kill the link while writing: we come back with a partial resync.
    let full_before = m.info_field("stats", "sync_full").unwrap();
    let partial_before: u64 = m
        .info_field("stats", "sync_partial_ok")
        .unwrap()
        .parse()
        .unwrap();
    let kind = if bin.major_minor() < (7, 0) && bin.is_redis() {
        "slave"
    } else {
        "replica"
    };
    m.must(&["CLIENT", "KILL", "TYPE", kind]);
    for i in 0..100 {
        m.must(&["SET", &format!("after-kill:{i}"), "v"]);
    }
    wait_for("partial resync", Duration::from_secs(20), || {
        m.info_field("stats", "sync_partial_ok")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            > partial_before
    });
    assert_in_sync(&m, &h, &bin, "after the partial resync");
    assert_eq!(
        m.info_field("stats", "sync_full").unwrap(),
        full_before,
        "no second full sync"
    );
    assert!(h.status.partial_syncs.load(Ordering::Relaxed) >= 1);

    h.stop();
    t.join().expect("replica thread");
}

#[test]
fn redis_6_2_disk() {
    check("redis-6.2", false);
}
#[test]
fn redis_6_2_diskless() {
    check("redis-6.2", true);
}
#[test]
fn redis_7_0_disk() {
    check("redis-7.0", false);
}
#[test]
fn redis_7_0_diskless() {
    check("redis-7.0", true);
}
#[test]
fn redis_7_0_diskless_after_a_delay_with_keepalives() {
    check_with_delay("redis-7.0", true, "2");
}
#[test]
fn redis_8_2_disk() {
    check("redis-8.2", false);
}
#[test]
fn redis_8_2_diskless() {
    check("redis-8.2", true);
}
#[test]
fn redis_8_6_diskless() {
    check("redis-8.6", true);
}
#[test]
fn valkey_8_1_disk() {
    check("valkey-8.1", false);
}
#[test]
fn valkey_8_1_diskless() {
    check("valkey-8.1", true);
}
#[test]
fn valkey_9_1_disk() {
    check("valkey-9.1", false);
}
#[test]
fn valkey_9_1_diskless() {
    check("valkey-9.1", true);
}

/// AUTH with a password (requirepass) and with an ACL user, against real masters.
#[test]
fn auth_with_password_and_acl_user() {
    for name in ["redis-6.2", "redis-7.0", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
        m.must(&["SET", "k", "v"]);
        m.must(&[
            "ACL",
            "SETUSER",
            "replisnap",
            "on",
            ">s3cret",
            "+psync",
            "+replconf",
            "+ping",
            "+sync",
        ]);
        let try_auth = |user: Option<&str>, pass: &str| {
            let (r, h) = Replica::new(Settings {
                address: m.addr(),
                username: user.map(str::to_string),
                password: Some(pass.to_string()),
                announce_port: 6393,
                psync_command: "PSYNC".into(),
                connect_timeout: Duration::from_secs(5),
                tls: None,
            });
            let t = std::thread::spawn(move || r.run());
            let ok = {
                let start = Instant::now();
                loop {
                    if h.status.ready.load(Ordering::Relaxed) {
                        break true;
                    }
                    if start.elapsed() > Duration::from_secs(3) {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            h.stop();
            t.join().unwrap();
            ok
        };
        assert!(try_auth(Some("replisnap"), "s3cret"), "{name}: ACL user");
        assert!(
            !try_auth(Some("replisnap"), "wrong"),
            "{name}: a wrong password is refused"
        );
        m.must(&["CONFIG", "SET", "requirepass", "topsecret"]);
        assert!(try_auth(None, "topsecret"), "{name}: requirepass");
    }
}

/// FUNCTION LOAD / DUMP / FLUSH / RESTORE on a real master: our libraries follow, and the
/// DUMP payload is parsed with its checksum.
#[test]
fn function_libraries_follow_the_master() {
    for name in ["redis-7.0", "redis-8.2", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
        let (h, t) = start_replica(&m);
        wait_for("sync", Duration::from_secs(20), || {
            h.status.ready.load(Ordering::Relaxed)
        });
        let lib = |n: u32| {
            format!("#!lua name=lib{n}\nredis.register_function('f{n}', function() return {n} end)")
        };
        m.must(&["FUNCTION", "LOAD", &lib(1)]);
        m.must(&["FUNCTION", "LOAD", &lib(2)]);
        let dump = m.cmd(&[b"FUNCTION", b"DUMP"]).unwrap();
        let payload = dump.as_bytes().unwrap().to_vec();
        m.must(&["FUNCTION", "FLUSH"]);
        m.must(&["FUNCTION", "LOAD", &lib(3)]);
        m.cmd(&[b"FUNCTION", b"RESTORE", &payload, b"APPEND"])
            .unwrap();
        m.must(&["FUNCTION", "DELETE", "lib2"]);
        wait_for("caught up", Duration::from_secs(20), || {
            h.status.offset.load(Ordering::Relaxed)
                == m.info_field("replication", "master_repl_offset")
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
        });
        let (_, _, _, mut ours) = h.snapshot(Duration::from_secs(5)).unwrap();
        ours.sort();
        let want: Vec<Vec<u8>> = vec![lib(1).into_bytes(), lib(3).into_bytes()];
        assert_eq!(ours, want, "{name}");
        assert_eq!(h.status.forced_resyncs.load(Ordering::Relaxed), 0, "{name}");
        h.stop();
        t.join().unwrap();
    }
}
