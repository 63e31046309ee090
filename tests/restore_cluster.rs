//! `restore` and `verify` of a cluster's snapshot sets, end to end on real servers: a
//! 3-shard source cluster (one replica per shard) backed up by `replisnap run` with
//! `[source] cluster = true`, one quiet set taken; `verify` of it green; the set restored
//! into a fresh 3-shard cluster (each target primary's `DEBUG DIGEST` equal to the source
//! primary of the same slots, functions on every primary), refused into it again (not
//! empty), restored into a 2-shard cluster (same key count, values and `DUMP`s equal key by
//! key), one shard's RDB restored with `--from` (routed by slot), a target with a hole in
//! its slot map refused before anything is written, and a flipped byte in one shard's
//! dump.rdb caught by `verify`, naming the set and the shard.

mod cluster_daemon;
mod daemon;
mod support;

#[path = "http/support.rs"]
#[allow(dead_code)]
mod http_support;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_daemon::{caught_up, take_set};
use daemon::{poll, Setup};
use http_support::req;
use support::cluster::TestCluster;

const LIBRARY: &str = "#!lua name=rslib\nredis.register_function('rsfn', function() return 7 end)";

fn total_keys(c: &TestCluster) -> u64 {
    c.primaries().iter().map(|p| p.dbsize_all()).sum()
}

/// `n` plain strings `bulk:<i>` of 64 bytes, each written pipelined to the primary of its
/// slot (a load big enough to time the restore).
fn load_bulk(c: &TestCluster, n: usize) {
    use std::io::{Read, Write};
    let primaries = c.primaries();
    let mut per: Vec<Vec<u8>> = vec![Vec::new(); primaries.len()];
    let mut count = vec![0usize; primaries.len()];
    let value = "v".repeat(64);
    for i in 0..n {
        let key = format!("bulk:{i}");
        let slot = support::cluster::slot_of(key.as_bytes());
        let owner = c
            .ranges
            .iter()
            .position(|&(a, b)| a <= slot && slot <= b)
            .unwrap();
        let cmd = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        );
        per[owner].extend_from_slice(cmd.as_bytes());
        count[owner] += 1;
    }
    for (i, p) in primaries.iter().enumerate() {
        let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut w = s.try_clone().unwrap();
        let body = std::mem::take(&mut per[i]);
        let writer = std::thread::spawn(move || w.write_all(&body).unwrap());
        let want = count[i] * 5; // "+OK\r\n"
        let mut got = Vec::with_capacity(want);
        let mut buf = [0u8; 65536];
        while got.len() < want {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "{}: closed", p.addr());
            got.extend_from_slice(&buf[..k]);
        }
        writer.join().unwrap();
        assert!(
            got.chunks(5).all(|r| r == b"+OK\r\n"),
            "{}",
            String::from_utf8_lossy(&got[..200.min(got.len())])
        );
    }
}

fn has_functions(bin: &support::ServerBin) -> bool {
    bin.is_valkey() || bin.major_minor() >= (7, 0)
}

fn restores_sets(name: &str) {
    let Some(bin) = support::require(name) else {
        return;
    };
    // The source: 3 shards, a replica each, every slot loaded, a function library on
    // every primary (a cluster does not propagate functions between shards).
    let src = TestCluster::start(&bin, 3, 1).expect("source cluster");
    src.load_across_slots(300);
    load_bulk(&src, 30_000);
    if has_functions(&bin) {
        for p in src.primaries() {
            p.must(&["FUNCTION", "LOAD", LIBRARY]);
        }
    }
    let setup = Setup::new(&src.nodes[0].addr(), "0 0 0 1 1 *", "keep_last = 10");
    let text = fs::read_to_string(setup.config()).unwrap();
    fs::write(
        setup.config(),
        text.replacen("[source]\n", "[source]\ncluster = true\n", 1),
    )
    .unwrap();
    let mut d = setup.start("daemon.log");
    let http = setup.http_addr();
    let ready = poll(Duration::from_secs(90), || {
        std::net::TcpStream::connect(http).is_ok() && req(http, "GET", "/readyz").status == 200
    });
    assert!(ready, "{name}: not ready: {}", d.log_text());
    assert!(
        poll(Duration::from_secs(60), || caught_up(&setup, &src)),
        "{name}: not caught up: {}",
        d.log_text()
    );
    let set = take_set(&setup, &mut d);
    assert!(set.complete, "{name}: {set:?}");
    let source_keys = total_keys(&src);
    assert_eq!(
        set.shards.iter().map(|s| s.keys_total).sum::<u64>(),
        source_keys,
        "{name}: the set holds every key"
    );

    // verify: every shard of the set good.
    let (code, out, err) = setup.verb(&["verify", "latest"]);
    assert_eq!(code, 0, "{name}: verify: {out}{err}");
    for s in &set.shards {
        assert!(
            out.contains(&format!("set {} shard {}: ok", set.id, s.shard)),
            "{name}: {out}"
        );
    }

    // --server: each shard's file loaded by a real server of the source's version.
    let bin_path = bin.path.to_str().unwrap();
    let (code, out, err) = setup.verb(&["verify", "latest", "--server", bin_path]);
    assert_eq!(code, 0, "{name}: verify --server: {out}{err}");
    assert_eq!(out.matches(", loaded by ").count(), 3, "{name}: {out}");
    assert!(out.contains(&bin.version), "{name}: {out}");

    // A fresh cluster of the same shape: each primary ends with its source twin's data.
    let same = TestCluster::start(&bin, 3, 0).expect("target cluster");
    let seed = format!("redis://{}", same.nodes[1].addr());
    let started = Instant::now();
    let (code, out, err) = setup.verb(&["restore", "latest", "--to", &seed]);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{name}: restore: {out}{err}");
    eprintln!(
        "{name}: restore of {source_keys} keys into 3 primaries: {:.0} keys/s over the whole verb ({took:.2} s); the verb says: {}",
        source_keys as f64 / took,
        out.lines().last().unwrap_or_default()
    );
    for i in 0..3 {
        assert_eq!(same.ranges[i], src.ranges[i]);
        let (want, got) = (src.shard_primary(i), same.shard_primary(i));
        assert_eq!(
            got.digest(),
            want.digest(),
            "{name}: slots {:?}",
            same.ranges[i]
        );
        assert_eq!(got.dbsize_all(), want.dbsize_all(), "{name}");
        if has_functions(&bin) {
            let r = got.must(&["FCALL", "rsfn", "0"]);
            assert_eq!(r.as_int(), Some(7), "{name}: {r:?}");
        }
    }
    // Again: the target holds keys now, so nothing is written.
    let before = same.shard_primary(0).digest();
    let (code, _, err) = setup.verb(&["restore", "latest", "--to", &seed]);
    assert_eq!(code, 1, "{name}: {err}");
    assert!(err.contains("holds") && err.contains("--replace"), "{err}");
    assert_eq!(same.shard_primary(0).digest(), before);

    // --if-target-empty: a primary holds keys, so nothing to do, and success.
    let (code, _, err) = setup.verb(&["restore", "latest", "--if-target-empty", "--to", &seed]);
    assert_eq!(code, 0, "{name}: {err}");
    assert!(err.contains("nothing to do"), "{err}");

    // One plain server: every shard of the set into it (its DEBUG DIGEST checked by the
    // verb against what was sent).
    let plain = support::TestServer::start(&bin, &[]).expect("plain server");
    let (code, out, err) = setup.verb(&[
        "restore",
        "latest",
        "--to",
        &format!("redis://{}", plain.addr()),
    ]);
    assert_eq!(code, 0, "{name}: set into one server: {out}{err}");
    assert!(out.contains("digest checked"), "{out}");
    assert_eq!(plain.dbsize_all(), source_keys, "{name}");
    drop(plain);

    // Two shards: other slot boundaries, the same keys and values.
    let two = TestCluster::start(&bin, 2, 0).expect("2-shard cluster");
    let seed2 = format!("redis://{}", two.nodes[0].addr());
    let (code, out, err) = setup.verb(&["restore", "latest", "--to", &seed2, "--json"]);
    assert_eq!(code, 0, "{name}: restore into 2 shards: {out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("restore --json");
    assert_eq!(doc["keys_restored"].as_u64(), Some(source_keys), "{out}");
    assert_eq!(doc["targets"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(total_keys(&two), source_keys, "{name}");
    for key in [
        "str:1",
        "str:17",
        "hash:42",
        "list:7",
        "stream:10",
        "stream:250",
        "bulk:0",
        "bulk:29999",
    ] {
        let want = src.write(&["DUMP", key]);
        assert!(
            matches!(&want, support::resp::Reply::Bulk(Some(_))),
            "{key}: {want:?}"
        );
        assert_eq!(two.write(&["DUMP", key]), want, "{name}: DUMP {key}");
        let ttl = |c: &TestCluster| c.write(&["PTTL", key]).as_int().map(|t| t > 0);
        assert_eq!(ttl(&two), ttl(&src), "{name}: {key} TTL");
    }
    // Sorted sets: their DUMP too, the writer storing each score as the server's own
    // `d2string` does ("0.10000000000000001" before 7.2, "0.1" after; 1e17 as an integer
    // from 7.0). Sets: the same members. Not their DUMP: before 7.2 a non-integer set is a hash
    // table whose order follows each server's random hash seed.
    for i in [5, 123, 299] {
        let key = format!("set:{i}");
        let members = |c: &TestCluster| {
            let mut v: Vec<Vec<u8>> = c
                .write(&["SMEMBERS", &key])
                .as_array()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.as_bytes().map(<[u8]>::to_vec))
                .collect();
            v.sort();
            v
        };
        let want = members(&src);
        assert_eq!(want.len(), 2, "{name}: {key}");
        assert_eq!(members(&two), want, "{name}: {key}");
    }
    for i in [3, 150, 299] {
        let key = format!("zset:{i}");
        let range = |c: &TestCluster| c.write(&["ZRANGE", &key, "0", "-1", "WITHSCORES"]);
        assert_eq!(range(&two), range(&src), "{name}: {key}");
        assert_eq!(
            two.write(&["DUMP", &key]),
            src.write(&["DUMP", &key]),
            "{name}: DUMP {key}"
        );
    }
    // One shard's RDB as a file, routed by slot into the 2-shard cluster (flushed first).
    let out_dir = setup.dir.path().join("fetched");
    let (code, out, err) = setup.verb(&["fetch", "latest", out_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let shard0 = &set.shards[0];
    let file = out_dir.join(format!("{}.rdb", shard0.shard));
    let o = Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(["restore", "--flush", "--from"])
        .arg(&file)
        .args(["--to", &seed2])
        .output()
        .expect("restore --from");
    let (o_out, o_err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{name}: restore --from: {o_out}{o_err}");
    assert_eq!(total_keys(&two), shard0.keys_total, "{name}: {o_out}");

    // A hole in the target's slot map: refused before anything is written (no FLUSHALL).
    two.del_slots(100, 199);
    let (code, out, err) = setup.verb(&["restore", "latest", "--flush", "--to", &seed2]);
    assert_eq!(code, 1, "{name}: {out}{err}");
    assert!(
        err.contains("100-199") && err.contains("served by no primary"),
        "{err}"
    );
    assert_eq!(
        total_keys(&two),
        shard0.keys_total,
        "{name}: written after all"
    );

    // One flipped byte in one shard's dump.rdb: verify names the set and the shard.
    let bad = &set.shards[1];
    let rdb = setup.storage_path().join(format!(
        "shards/{}/{}/dump.rdb",
        bad.shard,
        bad.snapshot.as_ref().unwrap()
    ));
    let mut bytes = fs::read(&rdb).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&rdb, &bytes).unwrap();
    let (code, out, err) = setup.verb(&["verify", "latest"]);
    assert_eq!(code, 1, "{name}: {out}{err}");
    let line = format!("error: set {} shard {}:", set.id, bad.shard);
    assert!(err.contains(&line), "{name}: {err}");
    for good in [&set.shards[0], &set.shards[2]] {
        assert!(
            !err.contains(&format!("shard {}:", good.shard)),
            "{name}: {err}"
        );
    }

    let (status, log) = d.terminate(Duration::from_secs(30));
    assert!(status.success(), "{name}: {status:?}\n{log}");
}

#[test]
fn redis_7_0_cluster_sets() {
    restores_sets("redis-7.0");
}

#[test]
fn valkey_9_1_cluster_sets() {
    restores_sets("valkey-9.1");
}

#[test]
fn redis_8_2_cluster_sets() {
    restores_sets("redis-8.2");
}

/// A target whose slots moved after discovery (simulated by a route table that sends every
/// key to the other primary): the MOVED reply stops the restore naming the key, even with
/// `keep_going`, and nothing is counted as restored silently.
#[test]
fn moved_is_an_error_naming_the_key() {
    use replisnap::rdb::{Options, RdbReader};
    use replisnap::restore::{cluster, restore_routed, RestoreError, RestoreOptions, Router};
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let one = support::TestServer::start(&bin, &[]).expect("server");
    for i in 0..50 {
        one.must(&["SET", &format!("k:{i}"), "v"]);
    }
    let rdb = one.save();
    let target = TestCluster::start(&bin, 2, 0).expect("2-shard cluster");
    let url = replisnap::restore::TargetUrl::parse(&format!("redis://{}", target.nodes[0].addr()))
        .unwrap();
    for keep_going in [false, true] {
        let mut c = cluster::connect(&url, None, Duration::from_secs(10)).expect("discover");
        assert_eq!(c.conns.len(), 2);
        let Router::Slots(right) = &c.router else {
            panic!("a cluster routes by slot")
        };
        let wrong = Router::Slots(right.iter().map(|&t| 1 - t).collect());
        let opts = RestoreOptions {
            batch: 8,
            keep_going,
            replace: true,
            ..RestoreOptions::default()
        };
        let r = restore_routed(&mut c.conns, &wrong, &opts, 0, |f| {
            let file = fs::File::open(&rdb).unwrap();
            let reader = RdbReader::new(file, None, Options::default()).unwrap();
            f.rdb(reader, &mut |_, _| {})
        });
        match r {
            Err(e @ RestoreError::Moved { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("key \"k:") && text.contains("MOVED"),
                    "{text}"
                );
            }
            other => panic!("keep_going {keep_going}: {other:?}"),
        }
    }
    assert_eq!(total_keys(&target), 0, "a redirected key was written");
}

#[test]
fn redis_6_2_cluster_sets() {
    restores_sets("redis-6.2");
}
