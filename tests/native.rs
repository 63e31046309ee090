//! Big collections held natively: a snapshot taken while they are changed in place sees
//! each exactly as it was when the snapshot began (copy-on-write per chunk), and one
//! command with a million members (or a DEL of a million keys) costs time linear in its
//! size, not quadratic.

use std::collections::BTreeMap;

use replisnap::commands::{apply, StreamState};
use replisnap::keyspace::{Entry, Keyspace};
use replisnap::rdb::Value;

#[path = "native/complexity.rs"]
mod complexity;
mod support;

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

fn run(ks: &mut Keyspace, st: &mut StreamState, argv: Vec<Vec<u8>>) {
    if let Err(e) = apply(ks, st, &argv) {
        panic!("{}: {e}", String::from_utf8_lossy(&argv[0]));
    }
}

/// Every key's value in a canonical form (sets and hashes sorted: their order is free).
fn canonical(v: Value) -> Value {
    match v {
        Value::Set(mut m) => {
            m.sort();
            Value::Set(m)
        }
        Value::Hash(mut f) => {
            f.sort_by(|a, b| a.field.cmp(&b.field));
            Value::Hash(f)
        }
        v => v,
    }
}

type View = BTreeMap<Vec<u8>, (Option<i64>, Value)>;

fn view_of(entries: &[Entry]) -> View {
    entries
        .iter()
        .map(|e| {
            (
                e.key().to_vec(),
                (e.expire_ms(), canonical(e.decode().unwrap())),
            )
        })
        .collect()
}

fn grow(ks: &mut Keyspace, st: &mut StreamState, n: usize) {
    for b in 0..n / 1000 {
        let mut sadd = cmd(&[b"SADD", b"set"]);
        let mut hset = cmd(&[b"HSET", b"hash"]);
        let mut zadd = cmd(&[b"ZADD", b"zset"]);
        let mut push = cmd(&[b"RPUSH", b"list"]);
        for i in b * 1000..(b + 1) * 1000 {
            let m = format!("m{i}").into_bytes();
            sadd.push(m.clone());
            hset.extend([m.clone(), format!("v{i}").into_bytes()]);
            zadd.extend([format!("{}", i % 977).into_bytes(), m.clone()]);
            push.push(m);
        }
        for c in [sadd, hset, zadd, push] {
            run(ks, st, c);
        }
    }
}

#[test]
fn snapshot_of_native_values_is_exact_while_they_change_in_place() {
    let mut ks = Keyspace::new();
    let mut st = StreamState::default();
    grow(&mut ks, &mut st, 50_000);
    for k in [&b"set"[..], b"hash", b"zset", b"list"] {
        assert!(
            matches!(ks.entry(0, k), Some(Entry::Native(_))),
            "{} is held natively",
            String::from_utf8_lossy(k)
        );
    }
    let mut before = Vec::new();
    ks.snapshot().unwrap().walk(|_, e| before.push(e.clone()));
    let expected = view_of(&before);
    drop(before);

    let snap = ks.snapshot().expect("no snapshot running");
    let (tx, rx) = std::sync::mpsc::channel();
    let walker = std::thread::spawn(move || {
        // Hold the view until every write is done: the walk then sees only old chunks.
        rx.recv().expect("writes done");
        let mut seen = Vec::new();
        snap.walk(|_, e| seen.push(e.clone()));
        seen
    });
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for n in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let m = format!("m{}", x % 60_000).into_bytes();
        let c = match n % 12 {
            0 => cmd(&[b"SADD", b"set", &m]),
            1 => cmd(&[b"SREM", b"set", &m]),
            2 => cmd(&[b"HSET", b"hash", &m, b"changed"]),
            3 => cmd(&[b"HDEL", b"hash", &m]),
            4 => cmd(&[b"ZADD", b"zset", b"-0", &m]),
            5 => cmd(&[b"ZINCRBY", b"zset", b"2.5", &m]),
            6 => cmd(&[b"ZPOPMIN", b"zset", b"2"]),
            7 => cmd(&[b"LPUSH", b"list", &m]),
            8 => cmd(&[b"RPOP", b"list"]),
            9 => cmd(&[b"LSET", b"list", b"100", &m]),
            10 => cmd(&[b"EXPIRE", b"set", b"1000"]),
            _ => cmd(&[b"LTRIM", b"list", b"1", b"-2"]),
        };
        run(&mut ks, &mut st, c);
    }
    tx.send(()).unwrap();
    let seen = walker.join().expect("walker");
    let got = view_of(&seen);
    assert_eq!(got.len(), expected.len());
    for (k, v) in &expected {
        assert!(
            got.get(k) == Some(v),
            "{} differs from its value when the snapshot began",
            String::from_utf8_lossy(k)
        );
    }
    // The live keyspace did change.
    let mut now = Vec::new();
    ks.snapshot().unwrap().walk(|_, e| now.push(e.clone()));
    assert_ne!(view_of(&now), expected);
}

/// A snapshot written from native values is byte for byte what writing each decoded value
/// gives, and its digest is the decoded values' digest, for every target family.
#[test]
fn native_values_are_written_and_digested_as_their_decoded_form() {
    use replisnap::digest::{DatasetDigest, Rules};
    use replisnap::keyspace::{digest_snapshot, write_snapshot};
    use replisnap::rdb::writer::{KeyRecord, RdbWriter, Target, WriteOptions};
    use replisnap::rdb::KeyEntry;

    let mut ks = Keyspace::new();
    let mut st = StreamState::default();
    grow(&mut ks, &mut st, 5_000);
    // A hash with field TTLs, a sorted set with -0, sets shrunk back under the sizes where
    // the decoded path chooses compact encodings, an expiring list, and a second db.
    run(&mut ks, &mut st, cmd(&[b"HSET", b"ttl", b"a", b"1"]));
    let mut fields = cmd(&[b"HSET", b"ttl"]);
    for i in 0..300 {
        fields.extend([format!("f{i}").into_bytes(), b"v".to_vec()]);
    }
    run(&mut ks, &mut st, fields);
    run(
        &mut ks,
        &mut st,
        cmd(&[
            b"HPEXPIREAT",
            b"ttl",
            b"99999999999999",
            b"FIELDS",
            b"1",
            b"f7",
        ]),
    );
    run(
        &mut ks,
        &mut st,
        cmd(&[b"ZADD", b"zset", b"-0", b"negzero"]),
    );
    let mut ints = cmd(&[b"SADD", b"ints"]);
    ints.extend((0..300).map(|i: u32| i.to_string().into_bytes()));
    run(&mut ks, &mut st, ints);
    run(&mut ks, &mut st, cmd(&[b"EXPIRE", b"list", b"100000"]));
    run(&mut ks, &mut st, cmd(&[b"SELECT", b"3"]));
    let mut l = cmd(&[b"RPUSH", b"list3"]);
    l.extend((0..1000).map(|i: u32| vec![b'x'; (i % 200) as usize]));
    run(&mut ks, &mut st, l);
    assert!(matches!(ks.entry(0, b"ttl"), Some(Entry::Native(_))));
    assert!(matches!(ks.entry(0, b"ints"), Some(Entry::Native(_))));

    let now = 1_800_000_000_000;
    // Field TTLs first, on the servers that hold them; then without, on every family.
    for server in [
        "redis-8.2",
        "valkey-9.1",
        "-ttl",
        "redis-6.2",
        "redis-7.0",
        "valkey-8.1",
    ] {
        if server == "-ttl" {
            run(&mut ks, &mut st, cmd(&[b"SELECT", b"0"]));
            run(&mut ks, &mut st, cmd(&[b"DEL", b"ttl"]));
            continue;
        }
        let version = server.parse().unwrap();
        let target = Target::for_server(version).unwrap();
        let (ours, _) = write_snapshot(
            ks.snapshot().unwrap(),
            &[],
            Vec::new(),
            target,
            &[],
            WriteOptions::default(),
        )
        .unwrap();
        let mut w = RdbWriter::new(Vec::new(), target, WriteOptions::default()).unwrap();
        let rules = Rules::for_target(version).unwrap();
        let mut d = DatasetDigest::new(rules, now);
        let mut snap = ks.snapshot().unwrap();
        let mut current = None;
        while let Some((db, entries)) = snap.next_shard() {
            if current != Some(db) {
                w.select_db(db).unwrap();
                current = Some(db);
            }
            for e in &entries {
                let h = e.hints();
                let value = e.decode().unwrap();
                w.key(&KeyRecord {
                    key: e.key(),
                    value: &value,
                    expire_ms: h.expire_ms,
                    idle: h.idle,
                    freq: h.freq,
                    meta: &h.meta,
                    source_type: Some(e.rdb_type()),
                })
                .unwrap();
                d.add(&KeyEntry {
                    db,
                    key: e.key().to_vec(),
                    expire_ms: e.expire_ms(),
                    idle: None,
                    freq: None,
                    meta: Vec::new(),
                    rdb_type: e.rdb_type(),
                    value,
                    offset: 0,
                })
                .unwrap();
            }
        }
        drop(snap);
        let (decoded, _) = w.finish().unwrap();
        let digest = digest_snapshot(ks.snapshot().unwrap(), version, now).unwrap();
        assert_eq!(
            digest,
            replisnap::digest::mix::hex(&d.finish()),
            "{server}: digest of native values"
        );
        let reread = |bytes: &[u8]| {
            let mut r = replisnap::rdb::RdbReader::new(
                bytes,
                Some(bytes.len() as u64),
                replisnap::rdb::Options::default(),
            )
            .unwrap();
            let mut keys = BTreeMap::new();
            while let Some(item) = r.next_item().unwrap() {
                if let replisnap::rdb::Item::Key(k) = item {
                    keys.insert(
                        (k.db, k.key.clone()),
                        (k.rdb_type, k.expire_ms, canonical(k.value)),
                    );
                }
            }
            keys
        };
        assert!(
            reread(&ours) == reread(&decoded),
            "{server}: the files hold the same keys, types and values"
        );
    }
}

/// Files written by real servers load into native values element by element (a full
/// sync's path), with the server's digest, and come back out loadable with it.
#[test]
fn big_values_from_server_files_load_natively_with_the_servers_digest() {
    use replisnap::keyspace::{digest_snapshot, load_rdb, write_snapshot};
    use replisnap::rdb::writer::{Target, WriteOptions};
    use replisnap::rdb::{Options, RdbReader};
    use support::TestServer;

    for name in ["redis-6.2", "redis-7.0", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let s = TestServer::start(&bin, &[]).expect("server");
        for b in 0..20 {
            let mut sadd = vec!["SADD".to_string(), "set".into()];
            let mut hset = vec!["HSET".to_string(), "hash".into()];
            let mut zadd = vec!["ZADD".to_string(), "zset".into()];
            let mut push = vec!["RPUSH".to_string(), "list".into()];
            for i in b * 500..(b + 1) * 500 {
                sadd.push(format!("member:{i}"));
                hset.extend([format!("field:{i}"), format!("v{}", i * 3)]);
                zadd.extend([
                    if i % 7 == 0 {
                        "-0".into()
                    } else {
                        format!("{}", i % 13)
                    },
                    format!("m{i}"),
                ]);
                push.push(format!("element-{i}-{}", "x".repeat(i % 40)));
            }
            for c in [sadd, hset, zadd, push] {
                let args: Vec<&str> = c.iter().map(String::as_str).collect();
                s.must(&args);
            }
        }
        // A stream of 3 000 entries (30 nodes on the server), a few deleted, with a group.
        for i in 1..=3000u32 {
            let (id, v) = (format!("{i}-{}", i % 3), format!("{}", i * 7));
            if i % 100 == 0 {
                s.must(&["XADD", "stream", &id, "other", &v]);
            } else {
                s.must(&["XADD", "stream", &id, "sensor", &v, "temp", "21.5"]);
            }
        }
        s.must(&["XDEL", "stream", "10-1", "1500-0", "2999-2"]);
        s.must(&["XGROUP", "CREATE", "stream", "g", "0"]);
        s.must(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "5",
            "STREAMS",
            "stream",
            ">",
        ]);
        s.must(&["PEXPIRE", "zset", "100000000"]);
        let file = s.save();
        let len = std::fs::metadata(&file).unwrap().len();
        let mut ks = Keyspace::new();
        let mut reader = RdbReader::new(
            std::fs::File::open(&file).unwrap(),
            Some(len),
            Options::default(),
        )
        .unwrap();
        let report = load_rdb(&mut ks, &mut reader, None).unwrap();
        assert_eq!(report.keys, 5, "{name}");
        for k in [&b"set"[..], b"hash", b"zset", b"list", b"stream"] {
            assert!(
                matches!(ks.entry(0, k), Some(Entry::Native(_))),
                "{name}: {} loaded natively",
                String::from_utf8_lossy(k)
            );
        }
        let version = name.parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert_eq!(
            digest_snapshot(ks.snapshot().unwrap(), version, now).unwrap(),
            s.digest(),
            "{name}: the loaded values' digest"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("snap.rdb");
        write_snapshot(
            ks.snapshot().unwrap(),
            &[],
            std::fs::File::create(&out).unwrap(),
            Target::for_server(version).unwrap(),
            &[],
            WriteOptions::default(),
        )
        .unwrap();
        let fresh = TestServer::start_with_rdb(&bin, &out, &[]).expect("loads our snapshot");
        assert_eq!(fresh.digest(), s.digest(), "{name}: our snapshot loaded");
    }
}

#[test]
fn big_streams_change_in_place_while_a_snapshot_sees_them_as_they_were() {
    use replisnap::keyspace::write_snapshot;
    use replisnap::rdb::writer::{Target, WriteOptions};
    use replisnap::rdb::{Item, Options, RdbReader};

    let mut ks = Keyspace::new();
    let mut st = StreamState::default();
    for i in 1..=20_000u64 {
        let id = format!("{}-{}", 1000 + i, i % 2).into_bytes();
        let v = (i * 31).to_string().into_bytes();
        run(
            &mut ks,
            &mut st,
            cmd(&[b"XADD", b"s", &id, b"sensor", &v, b"t", b"x"]),
        );
    }
    run(
        &mut ks,
        &mut st,
        cmd(&[b"XGROUP", b"CREATE", b"s", b"g", b"0"]),
    );
    assert!(matches!(ks.entry(0, b"s"), Some(Entry::Native(_))));
    let mut before = Vec::new();
    ks.snapshot().unwrap().walk(|_, e| before.push(e.clone()));
    let expected = view_of(&before);
    drop(before);

    let snap = ks.snapshot().expect("no snapshot running");
    let (tx, rx) = std::sync::mpsc::channel();
    let walker = std::thread::spawn(move || {
        rx.recv().expect("writes done");
        let mut seen = Vec::new();
        snap.walk(|_, e| seen.push(e.clone()));
        seen
    });
    let mut next_ms = 1_000_000u64;
    for n in 0..5_000u64 {
        let old = format!("{}-{}", 1000 + (n * 7919) % 20_000, n % 2).into_bytes();
        let c = match n % 6 {
            0 | 1 => {
                next_ms += 1;
                let id = format!("{next_ms}-0").into_bytes();
                cmd(&[b"XADD", b"s", &id, b"other", b"v"])
            }
            2 => cmd(&[b"XDEL", b"s", &old]),
            3 => cmd(&[b"XTRIM", b"s", b"MAXLEN", b"=", b"19000"]),
            4 => cmd(&[
                b"XCLAIM",
                b"s",
                b"g",
                b"c1",
                b"0",
                &old,
                b"TIME",
                b"1700000000000",
                b"FORCE",
                b"JUSTID",
            ]),
            _ => cmd(&[b"XACK", b"s", b"g", &old]),
        };
        run(&mut ks, &mut st, c);
    }
    tx.send(()).unwrap();
    let seen = walker.join().expect("walker");
    assert!(
        view_of(&seen) == expected,
        "the snapshot saw the stream change"
    );

    // The live stream changed, and written natively it reads back as its decoded form.
    let live = ks.entry(0, b"s").unwrap().decode().unwrap();
    let Value::Stream(ref st_live) = live else {
        panic!("not a stream")
    };
    // The last trim (n = 4995) left 19 000 entries; two XADDs followed it.
    assert_eq!(st_live.entries.len(), 19_002);
    assert_ne!(Some(&(None, live.clone())), expected.get(&b"s"[..]));
    for server in ["redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1"] {
        let (file, _) = write_snapshot(
            ks.snapshot().unwrap(),
            &[],
            Vec::new(),
            Target::for_server(server.parse().unwrap()).unwrap(),
            &[],
            WriteOptions::default(),
        )
        .unwrap();
        let len = file.len() as u64;
        let mut r = RdbReader::new(&file[..], Some(len), Options::default()).unwrap();
        let mut back = None;
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Key(k) = item {
                back = Some(k.value);
            }
        }
        let Some(Value::Stream(mut b)) = back else {
            panic!("{server}: no stream read back")
        };
        let Value::Stream(mut want) = live.clone() else {
            unreachable!()
        };
        // What each format carries: read counters are format 2+, the consumers' active
        // time format 3+.
        if server == "redis-6.2" {
            want.max_deleted_id = None;
        }
        if server == "redis-6.2" || server == "redis-7.0" {
            for g in want.groups.iter_mut().chain(b.groups.iter_mut()) {
                if server == "redis-6.2" {
                    g.entries_read = None;
                }
                for c in &mut g.consumers {
                    c.active_time_ms = None;
                }
            }
        }
        assert!(b.entries == want.entries, "{server}: entries differ");
        assert!(b.groups == want.groups, "{server}: groups differ");
        assert_eq!(
            (b.length, b.last_id, b.max_deleted_id),
            (want.length, want.last_id, want.max_deleted_id),
            "{server}: metadata"
        );
    }
}
