//! The keyspace: a snapshot sees exactly the data as of the instant it was taken while
//! writes go on, and files loaded into it come back out with the servers' own digests.

mod common;
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::time::{SystemTime, UNIX_EPOCH};

use replisnap::keyspace::{digest_snapshot, load_rdb, write_snapshot, Keyspace};
use replisnap::rdb::value::HashField;
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::rdb::{Options, RdbReader, Value};
use support::TestServer;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn value_for(i: u64, gen: u64) -> Value {
    match i % 4 {
        0 => Value::String(format!("v{i}-{gen}").into_bytes()),
        1 => Value::List(
            (0..(i % 7 + 1))
                .map(|j| format!("{j}:{gen}").into_bytes())
                .collect(),
        ),
        2 => Value::Hash(
            (0..(i % 5 + 1))
                .map(|j| HashField {
                    field: format!("f{j}").into_bytes(),
                    value: format!("{gen}").into_bytes(),
                    expire_ms: None,
                })
                .collect(),
        ),
        _ => Value::SortedSet(
            (0..(i % 6 + 1))
                .map(|j| (format!("m{j}").into_bytes(), (j + gen) as f64 / 4.0))
                .collect(),
        ),
    }
}

type View = BTreeMap<(u64, Vec<u8>), (Option<i64>, Value)>;

fn dump(ks: &Keyspace, keys: &[(u64, Vec<u8>)]) -> View {
    let mut v = BTreeMap::new();
    for (db, k) in keys {
        if let Some(x) = ks.get(*db, k).unwrap() {
            v.insert((*db, k.clone()), x);
        }
    }
    v
}

#[test]
fn snapshot_is_exact_while_writes_go_on() {
    snapshot_exact_with(Keyspace::new());
}

/// The same with few shards (as the fuzzer uses): 8 per database, and a single one, where
/// the walker's first shard is a whole database.
#[test]
fn snapshot_is_exact_with_few_shards() {
    snapshot_exact_with(Keyspace::with_shards(8));
    snapshot_exact_with(Keyspace::with_shards(1));
}

fn snapshot_exact_with(mut ks: Keyspace) {
    let mut all_keys = Vec::new();
    for i in 0..30_000u64 {
        let db = i % 3 * 4;
        let key = format!("key:{i}").into_bytes();
        ks.set(
            db,
            &key,
            (i % 10 == 0).then_some(4_000_000_000_000),
            &value_for(i, 0),
            None,
        )
        .unwrap();
        all_keys.push((db, key));
    }
    // Keys that will be created after the snapshot, including in a db that does not exist yet.
    for i in 30_000..33_000u64 {
        all_keys.push((
            if i % 2 == 0 { 1 } else { 7 },
            format!("key:{i}").into_bytes(),
        ));
    }
    let expected = dump(&ks, &all_keys);
    let snap = ks.snapshot().expect("no snapshot running");
    assert!(ks.snapshot().is_none(), "snapshots never overlap");
    // The walker takes its first shard, lets the writer start, then walks slowly, so most
    // shards are visited after the writes to them.
    let (tx, rx) = std::sync::mpsc::channel();
    let walker = std::thread::spawn(move || {
        let mut snap = snap;
        let mut seen = Vec::new();
        let mut shards = 0;
        while let Some((db, entries)) = snap.next_shard() {
            seen.extend(entries.into_iter().map(|e| (db, e)));
            shards += 1;
            if shards == 1 {
                tx.send(()).expect("signal");
            }
            if shards % 64 == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        seen
    });
    rx.recv().expect("walker started");
    // Rewrite, delete and create keys while the walker runs.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for n in 0..60_000u64 {
        let (db, key) = &all_keys[(rng.next() % all_keys.len() as u64) as usize];
        match n % 5 {
            0 => {
                ks.remove(*db, key);
            }
            _ => ks.set(*db, key, None, &value_for(n, n + 1), None).unwrap(),
        }
    }
    let seen = walker.join().expect("walker");
    let mut got: View = BTreeMap::new();
    for (db, e) in seen {
        let v = e.decode().unwrap();
        assert!(
            got.insert((db, e.key().to_vec()), (e.expire_ms(), v))
                .is_none(),
            "a key seen twice"
        );
    }
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "the snapshot differs from the data as of its start"
    );
    // The keyspace moved on; a new snapshot sees the new state, and records were cleared.
    let now = dump(&ks, &all_keys);
    assert_ne!(now, expected);
    let mut again = BTreeMap::new();
    ks.snapshot()
        .expect("the first one finished")
        .walk(|db, e| {
            let v = e.decode().unwrap();
            again.insert((db, e.key().to_vec()), (e.expire_ms(), v));
        });
    assert!(again == now);
}

#[test]
fn abandoned_snapshot_stops_recording() {
    let mut ks = Keyspace::new();
    for i in 0..1000u64 {
        ks.set(0, format!("k{i}").as_bytes(), None, &value_for(i, 0), None)
            .unwrap();
    }
    let mut snap = ks.snapshot().unwrap();
    let _ = snap.next_shard();
    drop(snap);
    ks.set(0, b"k1", None, &value_for(1, 9), None).unwrap();
    let mut n = 0;
    ks.snapshot()
        .expect("abandoned snapshot released")
        .walk(|_, _| n += 1);
    assert_eq!(n, 1000);
}

/// Every corpus file redis 7.0 loaded: into the keyspace (as a master loads it), then the
/// snapshot's digest and a file written from it match what redis 7.0 recorded.
#[test]
fn corpus_through_the_keyspace_keeps_its_digest() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let bin = support::require("redis-7.0");
    let target = Target::for_server("redis-7.0".parse().unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (file, rs) in &rows {
        let Some(row) = rs.iter().find(|r| r.server == "redis-7.0.15" && r.loaded) else {
            continue;
        };
        let f = File::open(dir.join(file)).unwrap();
        let len = f.metadata().unwrap().len();
        let mut ks = Keyspace::new();
        let now = now_ms();
        if let Err(e) = load_rdb(
            &mut ks,
            &mut RdbReader::new(f, Some(len), Options::default()).unwrap(),
            Some(now),
        ) {
            failures.push(format!("{file}: load: {e}"));
            continue;
        }
        let d = digest_snapshot(ks.snapshot().unwrap(), "redis-7.0".parse().unwrap(), now).unwrap();
        if d != row.digest {
            failures.push(format!(
                "{file}: snapshot digest {d}, redis-7.0 recorded {}",
                row.digest
            ));
        }
        let out = tmp.path().join("snap.rdb");
        for compress in [false, true] {
            let file_out = File::create(&out).unwrap();
            let functions = ks.functions.clone();
            write_snapshot(
                ks.snapshot().unwrap(),
                &functions,
                file_out,
                target,
                &[],
                WriteOptions { compress },
            )
            .unwrap();
            if let Some(bin) = &bin {
                if checked % 10 == 0 {
                    let s = TestServer::start_with_rdb(bin, &out, &[])
                        .expect("redis 7.0 loads the snapshot");
                    if s.digest() != row.digest {
                        failures.push(format!(
                            "{file}: written snapshot loads with digest {}",
                            s.digest()
                        ));
                    }
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} files");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// LFU and LRU hints ride along with their keys into snapshots.
#[test]
fn access_hints_survive_the_keyspace() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    for (file, want_freq) in [
        ("replicator__dump-lfu.rdb", true),
        ("replicator__dump-lru.rdb", false),
    ] {
        let read_hints = |path: &std::path::Path| {
            let f = File::open(path).unwrap();
            let len = f.metadata().unwrap().len();
            let mut r = RdbReader::new(f, Some(len), Options::default()).unwrap();
            let mut out = BTreeMap::new();
            while let Some(item) = r.next_item().unwrap() {
                if let replisnap::rdb::Item::Key(k) = item {
                    out.insert(k.key.clone(), (k.idle, k.freq, k.expire_ms));
                }
            }
            out
        };
        let src = dir.join(file);
        let before = read_hints(&src);
        assert!(
            before
                .values()
                .any(|(i, f, _)| if want_freq { f.is_some() } else { i.is_some() }),
            "{file} has the hints this test is about"
        );
        let f = File::open(&src).unwrap();
        let len = f.metadata().unwrap().len();
        let mut ks = Keyspace::new();
        load_rdb(
            &mut ks,
            &mut RdbReader::new(f, Some(len), Options::default()).unwrap(),
            None,
        )
        .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("o.rdb");
        let target = Target::for_server("redis-7.0".parse().unwrap()).unwrap();
        for compress in [false, true] {
            write_snapshot(
                ks.snapshot().unwrap(),
                &[],
                File::create(&out).unwrap(),
                target,
                &[],
                WriteOptions { compress },
            )
            .unwrap();
            assert_eq!(read_hints(&out), before, "{file} (compress {compress})");
        }
    }
}

/// A snapshot of `ks` exported for `target` into memory, as the daemon exports it.
fn export_in_memory(
    ks: &mut Keyspace,
    target: Target,
    rules: replisnap::digest::Rules,
    now: i64,
    compress: bool,
) -> replisnap::keyspace::Exported<Vec<u8>> {
    let functions = ks.functions.clone();
    replisnap::keyspace::export_snapshot(
        ks.snapshot().unwrap(),
        &functions,
        Vec::new(),
        target,
        &[],
        WriteOptions { compress },
        rules,
        now,
    )
    .unwrap()
}

/// A snapshot's digest reuses what the previous snapshot computed for keys that did not
/// change, and gives what a digest from scratch gives: after writes, deletes, new expiries,
/// keys expiring between two snapshots, and hash fields whose TTLs pass.
#[test]
fn remembered_key_digests_give_the_digest_from_scratch() {
    use replisnap::digest::Rules;
    use replisnap::keyspace::{digest_snapshot_with, Entry};

    for version in ["redis-7.0", "valkey-9.0"] {
        let server = version.parse().unwrap();
        let target = Target::for_server(server).unwrap();
        let rules = Rules::for_target(server).unwrap();
        let mut ks = Keyspace::new();
        let t0 = 1_800_000_000_000i64;
        for i in 0..5_000u64 {
            let key = format!("key:{i}").into_bytes();
            // Some keys expire between the snapshots below.
            let expire = match i % 10 {
                0 => Some(t0 + 1_000_000),
                1 => Some(t0 + 10),
                _ => None,
            };
            ks.set(i % 2, &key, expire, &value_for(i, 0), None).unwrap();
        }
        if version.starts_with("valkey") {
            // A hash whose digest depends on the time: one field's TTL passes at t0 + 10.
            let fields = Value::Hash(vec![
                HashField {
                    field: b"a".to_vec(),
                    value: b"1".to_vec(),
                    expire_ms: Some((t0 + 10) as u64),
                },
                HashField {
                    field: b"b".to_vec(),
                    value: b"2".to_vec(),
                    expire_ms: None,
                },
            ]);
            ks.set(0, b"ttl-fields", None, &fields, None).unwrap();
        }
        let export = |ks: &mut Keyspace, now: i64, compress: bool| {
            let e = export_in_memory(ks, target, rules, now, compress);
            let scratch = digest_snapshot_with(ks.snapshot().unwrap(), rules, now).unwrap();
            assert_eq!(e.digest, scratch, "{version} at {now}, compress {compress}");
            e.digest
        };
        let first = export(&mut ks, t0, true);
        // The first export remembered the digests of the keys it hashed.
        let remembered = |ks: &Keyspace, db, key: &[u8]| match ks.entry(db, key) {
            Some(Entry::Packed(p)) => p.remembered(rules.tag()).is_some(),
            _ => false,
        };
        assert!(remembered(&ks, 0, b"key:2"), "{version}");
        assert!(remembered(&ks, 1, b"key:3"), "{version}");
        // Remembered digests give the same answer, uncompressed too.
        assert_eq!(export(&mut ks, t0, true), first);
        assert_eq!(export(&mut ks, t0, false), first);
        // Writes, deletes and new expiries: the changed keys are hashed again.
        for i in (0..5_000u64).step_by(7) {
            let key = format!("key:{i}").into_bytes();
            match i % 3 {
                0 => ks.set(i % 2, &key, None, &value_for(i, 1), None).unwrap(),
                1 => {
                    ks.remove(i % 2, &key);
                }
                _ => ks
                    .set(i % 2, &key, Some(t0 + 5_000_000), &value_for(i, 0), None)
                    .unwrap(),
            }
        }
        assert!(!remembered(&ks, 0, b"key:14"), "{version}: a rewritten key");
        let second = export(&mut ks, t0, true);
        assert_ne!(second, first);
        // Time passes: keys (and hash fields) whose TTL passed no longer count.
        let later = export(&mut ks, t0 + 20, true);
        assert_ne!(later, second);
        assert_eq!(export(&mut ks, t0 + 20, false), later);
    }
}

/// A second export whose keys remember their digests writes and counts them as the first,
/// uncompressed too, where the held bytes are copied without decoding: streams (and every
/// type the copy takes) are counted under their own `TYPE`.
#[test]
fn remembered_digests_keep_the_type_counts() {
    use replisnap::digest::Rules;

    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let server = "redis-7.2".parse().unwrap();
    let target = Target::for_server(server).unwrap();
    let rules = Rules::for_target(server).unwrap();
    let now = now_ms();
    for file in [
        "librdb__misc_with_stream.rdb",
        "dragonfly__RDB_TYPE_STREAM_LISTPACKS_3.rdb",
    ] {
        let f = File::open(dir.join(file)).unwrap();
        let len = f.metadata().unwrap().len();
        let mut ks = Keyspace::new();
        load_rdb(
            &mut ks,
            &mut RdbReader::new(f, Some(len), Options::default()).unwrap(),
            Some(now),
        )
        .unwrap();
        for compress in [false, true] {
            let mut export = || {
                let e = export_in_memory(&mut ks, target, rules, now, compress);
                (format!("{:?}", e.databases), e.digest, e.out)
            };
            let first = export();
            let second = export();
            assert!(
                first.0.contains("\"stream\": ") && !first.0.contains("\"stream\": 0,"),
                "{file}: no stream counted: {}",
                first.0
            );
            assert_eq!(
                (&second.0, &second.1),
                (&first.0, &first.1),
                "{file}, compress {compress}"
            );
            assert!(
                second.2 == first.2,
                "{file}, compress {compress}: files differ"
            );
        }
    }
}
