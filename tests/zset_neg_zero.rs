//! The soak's "-0 sorted set" finding, minimised and made deterministic: a master holds a
//! sorted set as a skiplist with ≤ 128 short members (it grew past a threshold, then
//! shrank, or a *STORE built it with a long member that was later removed) and a -0 score
//! is added. On every matrix server, against a real master and our replica:
//! - the premise: `OBJECT ENCODING` on the master says skiplist;
//! - replisnap holds exactly what the master holds: our live keyspace's digest as held, and
//!   our snapshot file read back as held, equal the master's `DEBUG DIGEST`;
//! - the file's digest (what the manifest carries: a server's answer after loading it) is
//!   not the master's live digest where a loader rebuilds the set compact and turns -0 into
//!   0 (Redis 7.0+, Valkey): no RDB can carry that set as held, the master's own `SAVE`
//!   file included. That is what the soak's quiet-point check compared, and why it failed.
//!   The soak's oracle (`tests/soak/oracle.rs`) accepts the snapshot here and rejects a file
//!   that holds one of the sets compact (the bug the soak's report suspected).

mod support;

#[path = "soak/oracle.rs"]
mod oracle;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replisnap::digest::Rules;
use replisnap::keyspace::{digest_snapshot, digest_snapshot_as_held, write_snapshot, Keyspace};
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::rdb::Value;
use replisnap::replication::{Replica, Settings};
use support::{wait_for, ServerBin, TestServer};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Keys the master holds plain (skiplist) with ≤ 128 short members and -0 scores.
const PLAIN: &[&str] = &["shrunk_long", "shrunk_count", "union"];

/// The deterministic sequence. `union` mirrors the soak's `z1` (a ZUNIONSTORE over a set).
fn workload(m: &TestServer) {
    let long = "x".repeat(65);
    let short62 = "x".repeat(62);
    // A long member makes the set plain; removing it leaves 1 short member, still plain.
    m.must(&["ZADD", "shrunk_long", "1", &long, "2", "m2"]);
    m.must(&["ZREM", "shrunk_long", &long]);
    m.must(&["ZADD", "shrunk_long", "-0", "m1", "-0", "m4"]);
    // 129 members make it plain; a range removal leaves 3.
    let mut big = vec!["ZADD".to_string(), "shrunk_count".to_string()];
    for i in 0..129 {
        big.push(i.to_string());
        big.push(format!("m{i}"));
    }
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    m.must(&big);
    m.must(&["ZREMRANGEBYRANK", "shrunk_count", "0", "-4"]);
    m.must(&["ZADD", "shrunk_count", "-0", "m1"]);
    // A union over a set holding a long member: built plain; the long member popped later.
    m.must(&["SADD", "t", &long, "v12", &short62]);
    m.must(&["ZUNIONSTORE", "union", "1", "t", "WEIGHTS", "1"]);
    m.must(&["ZREM", "union", &long]);
    m.must(&["ZADD", "union", "-0", "6", "-0", "m10", "inf", "m9"]);
    // Compact on the master: -0 is stored as 0 there from Redis 7.0 (Valkey: always).
    m.must(&["ZADD", "compact", "-0", "m1", "-0", "m4"]);
}

fn encoding(m: &TestServer, key: &str) -> String {
    m.must(&["OBJECT", "ENCODING", key])
        .as_string()
        .unwrap_or_default()
}

fn check(bin: &ServerBin) {
    let name = oracle::target_name(bin);
    let m = TestServer::start(bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let (r, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6394,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    let t = std::thread::spawn(move || r.run());
    wait_for("first sync", Duration::from_secs(20), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    workload(&m);
    let offset = || -> i64 {
        m.info_field("replication", "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    wait_for(
        "our replica at the master's offset",
        Duration::from_secs(20),
        || h.status.offset.load(Ordering::Relaxed) == offset(),
    );
    for k in PLAIN {
        assert_eq!(
            encoding(&m, k),
            "skiplist",
            "{name}: the master holds {k} plain"
        );
    }
    let zero = m.must(&["ZSCORE", "shrunk_long", "m1"]).as_string();
    assert_eq!(zero.as_deref(), Some("-0"), "{name}: the master keeps -0");

    let version = name.parse().unwrap();
    let live = m.digest();
    let (snap, _, _, functions) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    let held = digest_snapshot_as_held(snap, version, now_ms()).unwrap();
    assert_eq!(
        held, live,
        "{name}: our live keyspace as held vs the master"
    );

    // Our snapshot file, and the digest its manifest would carry.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("snap.rdb");
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    let target = Target::for_server(version).unwrap();
    let out = std::fs::File::create(&file).unwrap();
    write_snapshot(snap, &functions, out, target, &[], WriteOptions::default()).unwrap();
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(5)).expect("snapshot");
    let manifest = digest_snapshot(snap, version, now_ms()).unwrap();
    h.stop();
    t.join().unwrap();

    assert_eq!(
        oracle::digest_as_held(bin, &file).unwrap(),
        live,
        "{name}: our file read back as held vs the master"
    );
    let loaded = TestServer::start_with_rdb(bin, &file, &[]).expect("a fresh server loads ours");
    let round = oracle::master_round_trip(&m).unwrap();
    assert_eq!(
        loaded.digest(),
        manifest,
        "{name}: the manifest digest is the loaded one"
    );
    assert_eq!(
        manifest, round,
        "{name}: ours loaded vs the master's own file loaded"
    );
    // The soak's old check (manifest digest == live master): it cannot hold wherever a
    // loader turns a plain set's -0 into 0.
    let drops = Rules::for_target(version)
        .unwrap()
        .listpack_drops_negative_zero;
    assert_eq!(
        manifest == live,
        !drops,
        "{name}: a file can carry the master's -0 in a shrunk skiplist only where listpacks keep -0"
    );
    assert_eq!(
        oracle::check_snapshot(&m, &file, &manifest, true, &mut None),
        Ok(if drops {
            oracle::Agreement::AsLoaded
        } else {
            oracle::Agreement::Live
        }),
        "{name}: the soak's oracle on our snapshot"
    );

    // The suspected bug, made on purpose: `shrunk_long` held compact with 0. The oracle
    // must refuse that file (as held its digest differs from the master's).
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::File::open(&file).unwrap();
    let mut reader =
        replisnap::rdb::RdbReader::new(f, Some(len), replisnap::rdb::Options::default()).unwrap();
    let mut ks = Keyspace::new();
    replisnap::keyspace::load_rdb(&mut ks, &mut reader, None).unwrap();
    let pairs = vec![
        (b"m1".to_vec(), 0.0),
        (b"m4".to_vec(), 0.0),
        (b"m2".to_vec(), 2.0),
    ];
    ks.set(0, b"shrunk_long", None, &Value::SortedSet(pairs), None)
        .unwrap();
    let wrong = tmp.path().join("wrong.rdb");
    let snap = ks.snapshot().unwrap();
    let out = std::fs::File::create(&wrong).unwrap();
    write_snapshot(snap, &functions, out, target, &[], WriteOptions::default()).unwrap();
    let wrong_manifest = digest_snapshot(ks.snapshot().unwrap(), version, now_ms()).unwrap();
    drop(ks);
    assert_ne!(
        oracle::digest_as_held(bin, &wrong).unwrap(),
        live,
        "{name}: a compact shrunk_long differs as held"
    );
    let verdict = oracle::check_snapshot(&m, &wrong, &wrong_manifest, true, &mut None);
    assert!(
        verdict.is_err(),
        "{name}: the oracle accepted a compact shrunk_long: {verdict:?}"
    );
    // Not strict (after a second failover in the soak): only the loaded data counts. A
    // loader turns the master's -0 into 0 from 7.0 on, so the compact file agrees there;
    // redis-6.2 keeps -0 in a listpack and still tells them apart.
    let verdict = oracle::check_snapshot(&m, &wrong, &wrong_manifest, false, &mut None);
    if drops {
        assert_eq!(
            verdict,
            Ok(oracle::Agreement::AsLoadedNotHeld),
            "{name}: not strict"
        );
    } else {
        assert!(verdict.is_err(), "{name}: not strict, 6.2: {verdict:?}");
    }
}

#[test]
fn plain_small_sorted_sets_keep_negative_zero() {
    let bins = support::require_matrix();
    for bin in &bins {
        check(bin);
    }
    eprintln!("checked on {} servers", bins.len());
}
