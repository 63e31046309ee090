//! `replisnap digest` against real servers: the corpus digests recorded in digests.tsv,
//! data generated on every installed server (each type, encoding and edge score), loads
//! across versions, and the CLI's contract.

mod common;
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::digest::{digest_rdb, mix, value, DigestError, DigestOptions, DigestReport, Rules};
use replisnap::rdb::{Item, Options, RdbReader};
use replisnap::server_version::ServerVersion;
use support::{Conn, Reply, ServerBin, TestServer};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn digest_file(
    path: &Path,
    target: Option<&str>,
    relaxed: bool,
) -> Result<DigestReport, DigestError> {
    let f = File::open(path).expect("open rdb");
    let len = f.metadata().unwrap().len();
    let opts = Options {
        relaxed_version: relaxed,
        ..Options::default()
    };
    let reader = RdbReader::new(f, Some(len), opts)?;
    let mut d = DigestOptions::new(now_ms());
    d.target = target.map(|t| t.parse().expect("target name"));
    d.relaxed = relaxed;
    digest_rdb(reader, &d, |_| {})
}

// ---------------------------------------------------------------------------------------
// 1. The corpus: every digest a real server recorded after loading a file.
// ---------------------------------------------------------------------------------------

#[test]
fn corpus_digests_match_what_servers_recorded() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let mut tally: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut failures = Vec::new();
    for row in rows.values().flatten().filter(|r| r.loaded) {
        let (target, relaxed) = match row.server.as_str() {
            "redis-7.0.15" => ("redis-7.0", false),
            "redis-6.2.14" => ("redis-6.2", false),
            "valkey-9.1.2" => ("valkey-9.1", false),
            "valkey-9.1.2(relaxed)" => ("valkey-9.1", true),
            other => panic!("digests.tsv names an unknown server {other}"),
        };
        let got = digest_file(&dir.join(&row.file), Some(target), relaxed);
        let t = tally.entry(row.server.clone()).or_default();
        match got {
            Err(DigestError::Module { .. }) => continue, // needs the module: no claim
            Ok(r) if r.hex() == row.digest => t.0 += 1,
            Ok(r) => {
                t.1 += 1;
                failures.push(format!(
                    "{} on {}: ours {}, server {}",
                    row.file,
                    row.server,
                    r.hex(),
                    row.digest
                ));
            }
            Err(e) => {
                t.1 += 1;
                failures.push(format!("{} on {}: error {e}", row.file, row.server));
            }
        }
    }
    for (server, (pass, fail)) in &tally {
        eprintln!("digests.tsv {server}: {pass} match, {fail} differ");
    }
    assert!(
        tally.values().map(|t| t.0).sum::<u32>() > 300,
        "the corpus should have hundreds of loaded rows"
    );
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// 2. Generated data on each server.
// ---------------------------------------------------------------------------------------

/// Run one command on `c`, failing the test on an error reply.
fn run(c: &mut Conn, args: &[&[u8]]) -> Reply {
    match c.cmd(args) {
        Ok(Reply::Error(e)) => panic!(
            "{:?} -> {e}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        ),
        Ok(r) => r,
        Err(e) => panic!("I/O error: {e}"),
    }
}

fn runs(c: &mut Conn, args: &[&str]) -> Reply {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    run(c, &v)
}

/// A command with a fixed head and many generated arguments.
fn run_many(c: &mut Conn, head: &[&str], tail: &[String]) -> Reply {
    let mut v: Vec<&[u8]> = head.iter().map(|a| a.as_bytes()).collect();
    v.extend(tail.iter().map(|a| a.as_bytes()));
    run(c, &v)
}

/// Scores that stress every formatting rule: signs of zero, infinities, the extremes,
/// integers on both sides of the listpack-integer limit, and decimals with no short form.
const EDGE_SCORES: &[&str] = &[
    "inf",
    "-inf",
    "-0",
    "0",
    "1e300",
    "-1e300",
    "5e-324",
    "2.2250738585072014e-308",
    "1.7976931348623157e308",
    "0.1",
    "0.3",
    "0.3333333333333333",
    "1",
    "-1",
    "100",
    "65536",
    "10000000",
    "100000000",
    "1e15",
    "1e16",
    "1e17",
    "1e21",
    "9007199254740993",
    "4611686018427387904",
    "9223372036854775808",
    "1e-5",
    "1e-7",
    "123.456",
    "-2.5",
    "1000000000000000.2",
    "3.0000000000000004",
    // Grisu2 prints these with more digits than the shortest round-trip form.
    "-3.5199547955152924e-168",
    "165793407361858.12",
    "-2311524594107360300",
];

fn zadd_pairs(prefix: &str, scores: &[&str]) -> Vec<String> {
    scores
        .iter()
        .enumerate()
        .flat_map(|(i, s)| [s.to_string(), format!("{prefix}{i}")])
        .collect()
}

/// Deterministic pseudo-random doubles spread over many magnitudes.
fn random_scores(n: usize, seed: u64) -> Vec<String> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let mant = (s >> 11) as f64 / (1u64 << 53) as f64;
            let exp = ((s & 0x7f) as i32) - 64;
            let v = mant * 10f64.powi(exp) * if s & 0x80 != 0 { -1.0 } else { 1.0 };
            format!("{v:e}")
        })
        .collect()
}

fn has_field_ttl(bin: &ServerBin) -> bool {
    let (maj, min) = bin.major_minor();
    if bin.is_valkey() {
        maj >= 9
    } else {
        (maj, min) >= (7, 4)
    }
}

/// Fill db 0 with every type in its small and large encodings, and a few other dbs.
fn populate(srv: &TestServer) {
    let bin = srv.bin().clone();
    let mut c = srv.connect().expect("connect");
    let long = "x".repeat(200);

    // Strings: raw, embedded, integer-encoded, binary, empty, with expiry.
    runs(&mut c, &["SET", "s:plain", "hello"]);
    runs(&mut c, &["SET", "s:int", "12345"]);
    runs(&mut c, &["SET", "s:neg", "-42"]);
    runs(&mut c, &["SET", "s:max", "9223372036854775807"]);
    runs(&mut c, &["SET", "s:lead0", "007"]);
    runs(&mut c, &["SET", "s:float", "3.14"]);
    runs(&mut c, &["SET", "s:empty", ""]);
    runs(&mut c, &["SET", "s:long", &long]);
    run(&mut c, &[b"SET", b"s:bin", b"\x00\xff\r\n\x7f"]);
    runs(&mut c, &["INCRBY", "s:counter", "77"]);
    runs(&mut c, &["SET", "s:ttl", "v", "EX", "86400"]);
    runs(&mut c, &["SET", "s:pttl", "12", "PX", "86400000"]);

    // Lists: a small packed one, a long multi-node one, integers among strings.
    runs(&mut c, &["RPUSH", "l:small", "a", "b", "1", "-2", "", "b"]);
    let items: Vec<String> = (0..1500)
        .map(|i| {
            if i % 3 == 0 {
                i.to_string()
            } else if i % 7 == 0 {
                format!("{i}{long}")
            } else {
                format!("item-{i}")
            }
        })
        .collect();
    run_many(&mut c, &["RPUSH", "l:big"], &items);
    runs(&mut c, &["LPUSH", "l:ttl", "z", "y", "x"]);
    runs(&mut c, &["EXPIRE", "l:ttl", "86400"]);

    // Sets: intset, small strings, large intset and hashtable, long member.
    runs(
        &mut c,
        &[
            "SADD",
            "set:int",
            "1",
            "2",
            "3",
            "-5",
            "100000",
            "9223372036854775807",
        ],
    );
    runs(&mut c, &["SADD", "set:small", "a", "b", "c", "10"]);
    let ints: Vec<String> = (0..700).map(|i| (i * 37 - 5000).to_string()).collect();
    run_many(&mut c, &["SADD", "set:bigint"], &ints);
    let strs: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    run_many(&mut c, &["SADD", "set:big"], &strs);
    runs(&mut c, &["SADD", "set:long", "a", &long]);

    // Sorted sets: small (listpack/ziplist), large (skiplist), a small one held as a
    // skiplist because of a long member, one shrunk below the limit (skiplist live,
    // listpack after a reload), random scores.
    run_many(&mut c, &["ZADD", "zs:small"], &zadd_pairs("m", EDGE_SCORES));
    let mut big = zadd_pairs("b", EDGE_SCORES);
    for (i, s) in random_scores(300, 7).iter().enumerate() {
        big.push(s.clone());
        big.push(format!("r{i}"));
    }
    run_many(&mut c, &["ZADD", "zs:big"], &big);
    let mut lm = zadd_pairs("l", &["-0", "0.1", "1e21", "-inf"]);
    lm.push("2.5".into());
    lm.push(long.clone());
    run_many(&mut c, &["ZADD", "zs:longmember"], &lm);
    runs(
        &mut c,
        &["ZADD", "zs:int", "1", "10", "2", "20", "3", "-30"],
    );
    runs(&mut c, &["ZADD", "zs:ttl", "1.5", "a"]);
    runs(
        &mut c,
        &["PEXPIREAT", "zs:ttl", &(now_ms() + 86_400_000).to_string()],
    );
    for (i, chunk) in random_scores(120, 99).chunks(40).enumerate() {
        let pairs: Vec<String> = chunk
            .iter()
            .enumerate()
            .flat_map(|(j, s)| [s.clone(), format!("q{j}")])
            .collect();
        run_many(&mut c, &["ZADD", &format!("zs:rand{i}")], &pairs);
    }

    // Hashes: small, large, long value, integer fields and values.
    runs(
        &mut c,
        &[
            "HSET", "h:small", "f1", "v1", "f2", "2", "3", "", "empty", "",
        ],
    );
    let fields: Vec<String> = (0..300)
        .flat_map(|i| [format!("f{i}"), (i * 11).to_string()])
        .collect();
    run_many(&mut c, &["HSET", "h:big"], &fields);
    runs(&mut c, &["HSET", "h:long", "a", &long, "b", "c"]);
    runs(&mut c, &["HSET", "h:ttl", "x", "1"]);
    runs(&mut c, &["EXPIRE", "h:ttl", "86400"]);
    if has_field_ttl(&bin) {
        runs(&mut c, &["HSET", "hf:small", "a", "1", "b", "2", "c", "3"]);
        runs(
            &mut c,
            &["HEXPIRE", "hf:small", "86400", "FIELDS", "2", "a", "c"],
        );
        run_many(&mut c, &["HSET", "hf:big"], &fields);
        let some: Vec<String> = (0..300).step_by(7).map(|i| format!("f{i}")).collect();
        let mut args = vec!["86400".to_string(), "FIELDS".into(), some.len().to_string()];
        args.extend(some);
        run_many(&mut c, &["HEXPIRE", "hf:big"], &args);
        runs(&mut c, &["HSET", "hf:all", "only", "one"]);
        runs(
            &mut c,
            &["HPEXPIRE", "hf:all", "86400000", "FIELDS", "1", "only"],
        );
        runs(&mut c, &["EXPIRE", "hf:all", "86400"]);
    }

    // Streams: entries with deletions, several listpacks, groups with a PEL, empty ones.
    for i in 1..=600u32 {
        let id = format!("{}-{}", 1_000 + i / 7, i % 7);
        let n = i.to_string();
        runs(
            &mut c,
            &["XADD", "st:big", &id, "n", &n, "text", "abc", "f", "v"],
        );
    }
    runs(&mut c, &["XADD", "st:small", "1-1", "a", "1"]);
    runs(&mut c, &["XADD", "st:small", "1-2", "a", "2", "b", "x"]);
    runs(
        &mut c,
        &["XADD", "st:small", "5-0", "other", "fields", "here", "now"],
    );
    runs(&mut c, &["XDEL", "st:small", "1-2"]);
    runs(&mut c, &["XDEL", "st:big", "1003-3", "1050-0"]);
    runs(&mut c, &["XGROUP", "CREATE", "st:small", "g1", "0"]);
    runs(
        &mut c,
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "1",
            "STREAMS",
            "st:small",
            ">",
        ],
    );
    runs(&mut c, &["XGROUP", "CREATE", "st:big", "g2", "$"]);
    runs(
        &mut c,
        &["XGROUP", "CREATE", "st:empty", "g", "$", "MKSTREAM"],
    );
    runs(&mut c, &["XADD", "st:trimmed", "7-7", "k", "v"]);
    runs(&mut c, &["XTRIM", "st:trimmed", "MAXLEN", "0"]);
    runs(&mut c, &["XADD", "st:ttl", "9-9", "k", "v"]);
    runs(&mut c, &["EXPIRE", "st:ttl", "86400"]);

    // Redis 8.8+ sparse arrays: strings, integers, floats, holes.
    if bin.is_redis() && bin.major_minor() >= (8, 8) {
        for (i, v) in [
            "hello", "42", "1.5", "3.0", "-0", "1e300", &long, "0.1", "1e21", "-7",
        ]
        .iter()
        .enumerate()
        {
            runs(&mut c, &["ARSET", "ar:mixed", &(i * 3).to_string(), v]);
        }
        runs(&mut c, &["ARSET", "ar:far", "5000", "x"]);
    }

    // Other databases, including a sparse pattern and the last one.
    for (db, n) in [(1u32, 1usize), (3, 5), (9, 3), (15, 2)] {
        runs(&mut c, &["SELECT", &db.to_string()]);
        for i in 0..n {
            runs(&mut c, &["SET", &format!("k{i}"), &format!("db{db}")]);
            runs(
                &mut c,
                &["RPUSH", &format!("l{i}"), "1", "2", &format!("{db}")],
            );
        }
    }
    // db 9: a zset built as a skiplist and shrunk: skiplist live (-0 kept), listpack
    // after a reload on 7.0+ (-0 becomes 0).
    runs(&mut c, &["SELECT", "9"]);
    let mut shrink = zadd_pairs("s", EDGE_SCORES);
    for i in 0..200 {
        shrink.push(i.to_string());
        shrink.push(format!("pad{i}"));
    }
    run_many(&mut c, &["ZADD", "zs:shrunk"], &shrink);
    runs(
        &mut c,
        &["ZREMRANGEBYSCORE", "zs:shrunk", "1e-300", "1e200"],
    );
    runs(&mut c, &["SELECT", "0"]);
}

/// The value digests of every key in `rdb` that differ from the server's DIGEST-VALUE.
fn diagnose(rdb: &Path, rules: &Rules, srv: &TestServer) -> Vec<String> {
    let f = File::open(rdb).unwrap();
    let len = f.metadata().unwrap().len();
    let mut r = RdbReader::new(f, Some(len), Options::default()).unwrap();
    let mut c = srv.connect().unwrap();
    let mut out = Vec::new();
    let now = now_ms();
    while let Some(item) = r.next_item().unwrap() {
        let Item::Key(k) = item else { continue };
        let ours = match value::value_digest(rules, &k, now) {
            Ok(Some(d)) => mix::hex(&d),
            Ok(None) => "(dropped)".to_string(),
            Err(e) => format!("error {e}"),
        };
        runs(&mut c, &["SELECT", &k.db.to_string()]);
        let theirs = match run(&mut c, &[b"DEBUG", b"DIGEST-VALUE", &k.key]) {
            Reply::Array(Some(v)) => v[0].as_string().unwrap_or_default(),
            other => format!("{other:?}"),
        };
        if ours != theirs {
            out.push(format!(
                "db {} key {} (type byte {}): ours {ours}, server {theirs}",
                k.db,
                k.key.escape_ascii(),
                k.rdb_type
            ));
        }
    }
    out
}

/// Populate `bin`, save, and return the dump (copied out) and the live digest.
fn make_dump(bin: &ServerBin, out_dir: &Path) -> (PathBuf, String) {
    let srv = TestServer::start(bin, &[]).expect("start server");
    populate(&srv);
    let live = srv.digest();
    let dump = out_dir.join(format!("{}.rdb", bin.name));
    std::fs::copy(srv.save(), &dump).expect("copy dump");
    (dump, live)
}

/// Every installed server: the matrix (missing ones reported as `require` does) and extras.
fn installed_servers() -> Vec<ServerBin> {
    let mut v = support::require_matrix();
    v.extend(support::EXTRAS.iter().filter_map(|n| support::find(n)));
    v
}

#[test]
fn generated_data_matches_each_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for bin in installed_servers() {
        let (dump, live) = make_dump(&bin, tmp.path());
        let ours = match digest_file(&dump, None, false) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{bin}: our digest failed: {e}"));
                continue;
            }
        };
        let loaded = TestServer::start_with_rdb(&bin, &dump, &[]).expect("load dump");
        let theirs = loaded.digest();
        eprintln!(
            "{}: ours {} (as {}, {} keys), server after load {}, live before save {}",
            bin.name,
            ours.hex(),
            ours.target,
            ours.keys,
            theirs,
            live
        );
        assert_eq!(ours.keys, loaded.dbsize_all(), "{bin}: key count");
        if ours.hex() != theirs {
            let rules = Rules::for_target(ours.target).unwrap();
            failures.push(format!(
                "{bin}: ours {} vs server {theirs}\n  {}",
                ours.hex(),
                diagnose(&dump, &rules, &loaded).join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A dump made by one server, digested for another, equals what that other answers
/// after loading it.
#[test]
fn cross_version_loads_match() {
    let pairs = [
        ("redis-6.2", "redis-7.0"),
        ("redis-6.2", "redis-8.2"),
        ("redis-6.2", "valkey-8.1"),
        ("redis-7.0", "valkey-9.1"),
        ("redis-7.0", "redis-8.6"),
        ("valkey-8.1", "valkey-9.1"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut dumps: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut failures = Vec::new();
    for (from, to) in pairs {
        let (Some(src), Some(dst)) = (support::require(from), support::require(to)) else {
            continue;
        };
        let dump = dumps
            .entry(from.to_string())
            .or_insert_with(|| make_dump(&src, tmp.path()).0)
            .clone();
        let ours = digest_file(&dump, Some(to), false).expect("digest");
        let loaded = TestServer::start_with_rdb(&dst, &dump, &[]).expect("load dump");
        let theirs = loaded.digest();
        eprintln!("{from} dump on {to}: ours {}, server {theirs}", ours.hex());
        if ours.hex() != theirs {
            let rules = Rules::for_target(to.parse().unwrap()).unwrap();
            failures.push(format!(
                "{from} dump on {to}: ours {} vs {theirs}\n  {}",
                ours.hex(),
                diagnose(&dump, &rules, &loaded).join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Keys whose time passed between SAVE and load are dropped by the loading server, and
/// so by us. Hash fields too: Valkey 9 drops them while loading, Redis 7.4+ in its first
/// expiry cycle after (so its answer is read once that has run).
#[test]
fn expired_on_load_is_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["redis-7.0", "redis-8.2", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let srv = TestServer::start(&bin, &[]).unwrap();
        let mut c = srv.connect().unwrap();
        runs(&mut c, &["SET", "stays", "1"]);
        runs(&mut c, &["SET", "goes", "1", "PX", "400"]);
        runs(&mut c, &["HSET", "h", "keep", "1", "lose", "2"]);
        runs(&mut c, &["HSET", "h2", "lose", "2"]);
        if has_field_ttl(&bin) {
            runs(&mut c, &["HPEXPIRE", "h", "400", "FIELDS", "1", "lose"]);
            runs(&mut c, &["HPEXPIRE", "h2", "400", "FIELDS", "1", "lose"]);
        }
        let dump = tmp.path().join(format!("{name}.rdb"));
        std::fs::copy(srv.save(), &dump).unwrap();
        drop(srv);
        std::thread::sleep(Duration::from_millis(800));
        let ours = digest_file(&dump, None, false).unwrap();
        let loaded = TestServer::start_with_rdb(&bin, &dump, &[]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(ours.hex(), loaded.digest(), "{name}");
        assert_eq!(ours.keys, loaded.dbsize_all(), "{name}");
        let dropped = if has_field_ttl(&bin) { 2 } else { 1 };
        assert_eq!(
            ours.dropped, dropped,
            "{name}: expired keys and emptied hashes"
        );
    }
}

/// Many random doubles (every magnitude, subnormals included) in one sorted set: the
/// server's DIGEST-VALUE equals ours only if every score was printed the same way.
#[test]
fn score_text_matches_servers_on_random_doubles() {
    for name in ["redis-7.0", "redis-8.2", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let srv = TestServer::start(&bin, &[]).unwrap();
        let mut c = srv.connect().unwrap();
        let version: ServerVersion = format!("{}-{}", bin.kind, bin.version).parse().unwrap();
        let rules = Rules::for_target(version).unwrap();
        let mut s: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..10 {
            let mut members = Vec::new();
            while members.len() < 1000 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let x = f64::from_bits(s);
                if x.is_finite() && x != 0.0 {
                    members.push((format!("m{}", members.len()).into_bytes(), x));
                }
            }
            let args: Vec<String> = members
                .iter()
                .flat_map(|(m, x)| [format!("{x:e}"), String::from_utf8(m.clone()).unwrap()])
                .collect();
            let key = format!("z{round}");
            run_many(&mut c, &["ZADD", &key], &args);
            let entry = replisnap::rdb::KeyEntry {
                db: 0,
                key: key.clone().into_bytes(),
                expire_ms: None,
                idle: None,
                freq: None,
                meta: Vec::new(),
                rdb_type: replisnap::rdb::types::ZSET_2,
                value: replisnap::rdb::Value::SortedSet(members),
                offset: 0,
            };
            let ours = mix::hex(&value::value_digest(&rules, &entry, 0).unwrap().unwrap());
            let theirs = match runs(&mut c, &["DEBUG", "DIGEST-VALUE", &key]) {
                Reply::Array(Some(v)) => v[0].as_string().unwrap(),
                r => panic!("{r:?}"),
            };
            assert_eq!(ours, theirs, "{name} round {round}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. The command line.
// ---------------------------------------------------------------------------------------

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_replisnap"))
        .args(args)
        .output()
        .expect("run replisnap")
}

#[test]
fn cli_prints_the_digest_and_nothing_else() {
    let Some((dir, rows)) = common::corpus::rows() else {
        return;
    };
    let file = "dragonfly__redis6_small.rdb";
    let want = |server: &str| {
        rows[file]
            .iter()
            .find(|r| r.server == server)
            .expect("row")
            .digest
            .clone()
    };
    let path = dir.join(file);
    let out = cli(&["digest", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", want("redis-6.2.14"))
    );

    // A sorted set with text scores: 6.2 and 7.0 disagree, and so must we.
    let path = dir.join("librdb__plain_zset_v6.rdb");
    for (t, s) in [
        ("redis-6.2", "redis-6.2.14"),
        ("redis-7.0", "redis-7.0.15"),
        ("valkey-9.1", "valkey-9.1.2"),
    ] {
        let out = cli(&["digest", path.to_str().unwrap(), "--target", t]);
        let want = rows["librdb__plain_zset_v6.rdb"]
            .iter()
            .find(|r| r.server == s)
            .unwrap()
            .digest
            .clone();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{want}\n"),
            "{t}"
        );
    }
}

#[test]
fn cli_refuses_module_values_naming_the_key() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let path = dir.join("librdb__module.rdb");
    let out = cli(&["digest", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("librdb__module.rdb"), "{err}");
    assert!(err.contains("key key1 (module test__rdb)"), "{err}");
}

#[test]
fn cli_failures_are_one_line_and_exit_1() {
    let Some(dir) = common::corpus::corpus_dir() else {
        return;
    };
    let v11 = dir.join("librdb__100_lists.rdb");
    let valkey = dir.join("hdt__valkey_hash2_with_hfe.rdb");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["/nonexistent/dump.rdb".into()], "cannot open"),
        (
            vec![
                v11.display().to_string(),
                "--target".into(),
                "redis-7.0".into(),
            ],
            "refuses RDB version 11",
        ),
        (
            vec![
                valkey.display().to_string(),
                "--target".into(),
                "redis-8.2".into(),
            ],
            "VALKEY",
        ),
        (
            vec![dir.join("kvrocks__empty.rdb").display().to_string()],
            "kvrocks__empty.rdb",
        ),
        (
            vec![
                dir.join("librdb__future_v19.rdb").display().to_string(),
                "--relaxed".into(),
            ],
            "checksum mismatch",
        ),
    ];
    for (args, needle) in cases {
        let mut a = vec!["digest".to_string()];
        a.extend(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = cli(&a);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{a:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{a:?}: {err}"
        );
    }
    let out = cli(&["digest", "x.rdb", "--target", "keydb-6.2"]);
    assert_eq!(out.status.code(), Some(2), "bad usage");
}

#[test]
fn target_names_parse_like_the_spec_says() {
    for t in [
        "redis-6.2",
        "redis-7.0",
        "redis-8.2",
        "valkey-8.1",
        "valkey-9.1",
    ] {
        let v: ServerVersion = t.parse().unwrap();
        assert!(Rules::for_target(v).is_ok(), "{t}");
    }
}
