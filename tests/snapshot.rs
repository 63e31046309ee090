//! Snapshots against real masters under continuous writes: the stored file, loaded into a
//! fresh server of the master's version, has the master's `DEBUG DIGEST` at the snapshot's
//! offset; the manifest describes it; the pause is recorded. And the daemon's schedule:
//! cron every 2 s with keep_last = 2 leaves the expected ids and at most two snapshots.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Timelike;
use replisnap::replication::{Replica, ReplicaHandle, Settings};
use replisnap::snapshot::{JobState, NoEvents, Options, Reason, Snapshotter, TakeError};
use replisnap::storage::{LocalStorage, Storage};
use support::{wait_for, Reply, ServerBin, TestServer};

fn master_offset(m: &TestServer) -> i64 {
    m.info_field("replication", "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn start_replica(m: &TestServer) -> (ReplicaHandle, std::thread::JoinHandle<()>) {
    let (r, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6391,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    (h, std::thread::spawn(move || r.run()))
}

/// Wait until the replica applied everything the master wrote; the master's offset then.
fn caught_up(m: &TestServer, h: &ReplicaHandle, what: &str) -> i64 {
    let mut offset = -1;
    let ok = support::wait_until(Duration::from_secs(30), || {
        offset = master_offset(m);
        h.status.offset.load(Ordering::Relaxed) == offset && master_offset(m) == offset
    });
    assert!(
        ok,
        "{what}: replica at {} of {offset}; link up {}, errors {}, forced {} ({})",
        h.status.offset.load(Ordering::Relaxed),
        h.status.link_up.load(Ordering::Relaxed),
        h.status.link_errors.load(Ordering::Relaxed),
        h.status.forced_resyncs.load(Ordering::Relaxed),
        h.status.last_forced_reason.lock().unwrap()
    );
    offset
}

fn has_functions(bin: &ServerBin) -> bool {
    bin.is_valkey() || bin.major_minor() >= (7, 0)
}

fn populate(m: &TestServer, bin: &ServerBin) {
    for db in ["0", "3"] {
        m.must(&["SELECT", db]);
        for i in 0..500 {
            m.must(&["SET", &format!("s:{i}"), &format!("value-{i}")]);
        }
        m.must(&["HSET", "h", "a", "1", "b", "2"]);
        m.must(&["RPUSH", "l", "x", "y", "z"]);
        m.must(&["SADD", "set", "1", "2", "3"]);
        m.must(&["ZADD", "z", "1", "a", "2.5", "b"]);
        m.must(&["XADD", "x", "1-1", "f", "v"]);
        m.must(&["SET", "ttl", "v", "EX", "100000"]);
    }
    m.must(&["SELECT", "0"]);
    if has_functions(bin) {
        m.must(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=snaplib\nredis.register_function('snapf', function() return 1 end)",
        ]);
    }
}

/// Writes to the master without pause until stopped; `gate` held by the test pauses it
/// between two commands (or two whole transactions).
struct Writer {
    stop: Arc<AtomicBool>,
    gate: Arc<Mutex<()>>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(m: &TestServer) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Mutex::new(()));
        let count = Arc::new(AtomicU64::new(0));
        let mut conn = m.connect().expect("writer connection");
        let (s, g, c) = (stop.clone(), gate.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut i: u64 = 0;
            while !s.load(Ordering::Relaxed) {
                let _held = g.lock().unwrap();
                let db = if i.is_multiple_of(3) {
                    b"3" as &[u8]
                } else {
                    b"0"
                };
                let k = format!("w:{}", i % 5000);
                let n = i.to_string();
                let cmds: Vec<Vec<&[u8]>> = match i % 6 {
                    0 => vec![vec![b"SET", k.as_bytes(), n.as_bytes()]],
                    1 => vec![vec![b"HSET", b"wh", k.as_bytes(), n.as_bytes()]],
                    2 => vec![vec![b"RPUSH", b"wl", n.as_bytes()]],
                    3 => vec![vec![b"INCRBY", b"counter", b"7"]],
                    4 => vec![
                        vec![b"MULTI"],
                        vec![b"SET", k.as_bytes(), b"tx"],
                        vec![b"EXPIRE", k.as_bytes(), b"100000"],
                        vec![b"SADD", b"ws", n.as_bytes()],
                        vec![b"EXEC"],
                    ],
                    _ => vec![vec![b"DEL", k.as_bytes()]],
                };
                let r = conn.cmd(&[b"SELECT", db]);
                assert!(matches!(r, Ok(Reply::Status(_))), "{r:?}");
                for c in cmds {
                    let r = conn.cmd(&c).expect("writer command");
                    assert!(!r.is_error(), "{c:?}: {r:?}");
                }
                i += 1;
                c.store(i, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            gate,
            count,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        self.count.load(Ordering::Relaxed)
    }
}

fn snapshot_under_writes(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    populate(&m, &bin);
    let (h, replica) = start_replica(&m);
    wait_for("full sync", Duration::from_secs(30), || {
        h.status.ready.load(Ordering::Relaxed)
    });
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()));
    let snap = Snapshotter::start(
        h.clone(),
        storage.clone(),
        Options {
            address: m.addr(),
            compress: true,
            retention: None,
        },
        Arc::new(NoEvents),
    )
    .unwrap();
    let w = Writer::start(&m);
    for round in 0..3 {
        // Let the stream run for a while, then pause the writer between two commands.
        std::thread::sleep(Duration::from_millis(300));
        let paused = w.gate.lock().unwrap();
        // The master also writes on its own (PING every 10 s), so the offset is read again
        // until it holds still around the digest.
        let (offset, digest, keys) = loop {
            let offset = caught_up(&m, &h, &format!("{name} round {round}"));
            let (digest, keys) = (m.digest(), m.dbsize_all());
            if master_offset(&m) == offset {
                break (offset, digest, keys);
            }
        };
        let replid = m.info_field("replication", "master_replid").unwrap();
        let id = snap.take(Reason::Manual).expect("take");
        drop(paused); // writes resume while the snapshot is written
                      // Never two at once.
        match snap.take(Reason::Manual) {
            Err(TakeError::Busy(_)) => {}
            Ok(other) => {
                // The first finished before the second was asked: possible on a tiny dataset.
                assert_eq!(
                    snap.wait(&id, Duration::from_secs(1)).map(|s| s.state),
                    Some(JobState::Stored)
                );
                snap.wait(&other, Duration::from_secs(60));
                storage.delete(&other).unwrap();
            }
            Err(e) => panic!("{name}: second take: {e}"),
        }
        let st = snap.wait(&id, Duration::from_secs(60)).expect("status");
        assert_eq!(st.state, JobState::Stored, "{name}: {st:?}");
        // Equal unless a master PING slipped in before the capture (no data change).
        assert!(
            st.offset >= offset && st.offset < offset + 100,
            "{st:?} vs {offset}"
        );
        let man = storage.get_manifest(&id).expect("manifest");
        assert_eq!(
            man.source.offset as i64, st.offset,
            "{name}: manifest offset"
        );
        assert_eq!(man.source.replid, replid, "{name}: manifest replid");
        assert_eq!(man.source.address, m.addr());
        assert_eq!(man.digest, digest, "{name} round {round}: manifest digest");
        assert_eq!(man.keys_total, keys, "{name}: keys_total");
        assert_eq!(
            man.databases.iter().map(|d| d.db).collect::<Vec<_>>(),
            vec![0, 3],
            "{name}: databases"
        );
        let fam = if bin.is_valkey() { "valkey" } else { "redis" };
        assert_eq!(
            serde_json::to_value(man.source.server).unwrap(),
            fam,
            "{name}"
        );
        assert!(
            man.durations.pause_seconds < 0.05,
            "{name}: pause {}",
            man.durations.pause_seconds
        );
        eprintln!(
            "{name} round {round}: offset {offset} keys {keys} pause {:.1} µs write {:.3} s bytes {}",
            man.durations.pause_seconds * 1e6,
            man.durations.write_seconds,
            man.rdb.bytes
        );
        // The file, loaded by a fresh server of the same version, is the master's data.
        let file = dir.path().join(id.as_str()).join("dump.rdb");
        let fresh = TestServer::start_with_rdb(&bin, &file, &[]).expect("load snapshot");
        assert_eq!(
            fresh.digest(),
            digest,
            "{name} round {round}: loaded digest"
        );
        assert_eq!(fresh.dbsize_all(), keys);
        if has_functions(&bin) {
            let r = fresh.must(&["FUNCTION", "LIST", "LIBRARYNAME", "snaplib"]);
            assert_eq!(r.as_array().map(<[Reply]>::len), Some(1), "{name}: {r:?}");
        }
        let info = fresh.info("persistence");
        assert!(info.contains("loading:0"), "{info}");
    }
    let written = w.finish();
    assert!(written > 100, "{name}: the writer wrote {written} batches");
    assert_eq!(h.status.forced_resyncs.load(Ordering::Relaxed), 0);
    snap.shutdown();
    h.stop();
    replica.join().unwrap();
}

#[test]
fn under_writes_redis_6_2() {
    snapshot_under_writes("redis-6.2");
}
#[test]
fn under_writes_redis_7_0() {
    snapshot_under_writes("redis-7.0");
}
#[test]
fn under_writes_redis_8_2() {
    snapshot_under_writes("redis-8.2");
}
#[test]
fn under_writes_redis_8_6() {
    snapshot_under_writes("redis-8.6");
}
#[test]
fn under_writes_valkey_8_1() {
    snapshot_under_writes("valkey-8.1");
}
#[test]
fn under_writes_valkey_9_1() {
    snapshot_under_writes("valkey-9.1");
}

/// Before the first full sync there is nothing to snapshot.
#[test]
fn refused_before_the_first_sync() {
    let (_r, h) = Replica::new(Settings {
        address: "127.0.0.1:1".into(),
        username: None,
        password: None,
        announce_port: 1,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_millis(100),
        tls: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let snap = Snapshotter::start(
        h,
        Arc::new(LocalStorage::new(dir.path())),
        Options {
            address: "x:1".into(),
            compress: false,
            retention: None,
        },
        Arc::new(NoEvents),
    )
    .unwrap();
    assert!(!snap.ready());
    assert!(matches!(
        snap.take(Reason::Manual),
        Err(TakeError::NotReady(_))
    ));
    snap.shutdown();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

mod daemon;

/// The daemon's schedule: every 2 s with keep_last = 2. After ~7 s: snapshots were taken
/// on even UTC seconds, named `YYYYMMDDTHHMMSSZ` after their creation time, at most two
/// are kept, their manifests are valid, and the verbs show them.
#[test]
fn cron_every_two_seconds_keep_last_two() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let m = TestServer::start(&bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    m.must(&["SET", "a", "1"]);
    let setup = daemon::Setup::new(&m.addr(), "*/2 * * * * *", "keep_last = 2");
    let mut d = setup.start("daemon.log");
    assert!(
        daemon::poll(Duration::from_secs(30), || {
            d.assert_running();
            !setup.snapshots().is_empty()
        }),
        "no first snapshot:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_secs(7));
    d.assert_running();
    let log = d.log_text();
    let stored = log.matches("snapshot stored").count();
    assert!(stored >= 3, "{stored} snapshots in ~8 s:\n{log}");
    assert!(
        log.contains("decision=\"delete\""),
        "retention deleted:\n{log}"
    );
    let (st, log) = d.terminate(Duration::from_secs(30));
    assert!(st.success(), "{log}");
    let snaps = setup.snapshots();
    assert!(
        !snaps.is_empty() && snaps.len() <= 2,
        "{} kept:\n{log}",
        snaps.len()
    );
    for s in &snaps {
        let id = s.id.as_str();
        let b = id.as_bytes();
        assert!(id.len() == 16 && b[8] == b'T' && b[15] == b'Z', "id {id}");
        assert_eq!(
            s.id.time(),
            s.created_at
                .with_nanosecond(0)
                .expect("truncate to the second"),
            "{id}: named after its creation time"
        );
        // Taken at the tick: an even second, plus the scheduler's polling (500 ms) and
        // some slack for a loaded machine.
        let late_ms = s.created_at.timestamp_millis().rem_euclid(2000);
        assert!(late_ms < 1500, "{id}: {late_ms} ms after an even second");
        assert_eq!(s.source.offset, master_offset(&m) as u64);
        assert_eq!(s.digest, m.digest());
        assert!(s.durations.write_seconds >= 0.0 && s.rdb.bytes > 0);
    }
    // The verbs see the same.
    let (code, out, err) = setup.verb(&["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let ids: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    let want: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, want, "list --json, newest first");
    let (code, out, err) = setup.verb(&["retention", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("last snapshot"), "{out}");
    assert!(!out.contains("delete"), "{out}");
    let (code, out, _) = setup.verb(&["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(want[0]), "{out}");
}
