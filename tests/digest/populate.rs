//! Data generation for the digest tests: every type in its small and large encodings, edge
//! and random scores, and the per-key diagnosis used when a digest differs.

use std::fs::File;
use std::path::{Path, PathBuf};

use replisnap::digest::{mix, value, Rules};
use replisnap::rdb::{Item, Options, RdbReader};

use crate::now_ms;
use crate::support::{Conn, Reply, ServerBin, TestServer};

/// Run one command on `c`, failing the test on an error reply.
pub fn run(c: &mut Conn, args: &[&[u8]]) -> Reply {
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

pub fn runs(c: &mut Conn, args: &[&str]) -> Reply {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    run(c, &v)
}

/// A command with a fixed head and many generated arguments.
pub fn run_many(c: &mut Conn, head: &[&str], tail: &[String]) -> Reply {
    let mut v: Vec<&[u8]> = head.iter().map(|a| a.as_bytes()).collect();
    v.extend(tail.iter().map(|a| a.as_bytes()));
    run(c, &v)
}

/// Scores that stress every formatting rule: signs of zero, infinities, the extremes,
/// integers on both sides of the listpack-integer limit, and decimals with no short form.
pub const EDGE_SCORES: &[&str] = &[
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

pub fn zadd_pairs(prefix: &str, scores: &[&str]) -> Vec<String> {
    scores
        .iter()
        .enumerate()
        .flat_map(|(i, s)| [s.to_string(), format!("{prefix}{i}")])
        .collect()
}

/// Deterministic pseudo-random doubles spread over many magnitudes.
pub fn random_scores(n: usize, seed: u64) -> Vec<String> {
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

pub fn has_field_ttl(bin: &ServerBin) -> bool {
    let (maj, min) = bin.major_minor();
    if bin.is_valkey() {
        maj >= 9
    } else {
        (maj, min) >= (7, 4)
    }
}

/// Fill db 0 with every type in its small and large encodings, and a few other dbs.
pub fn populate(srv: &TestServer) {
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
pub fn diagnose(rdb: &Path, rules: &Rules, srv: &TestServer) -> Vec<String> {
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
pub fn make_dump(bin: &ServerBin, out_dir: &Path) -> (PathBuf, String) {
    let srv = TestServer::start(bin, &[]).expect("start server");
    populate(&srv);
    let live = srv.digest();
    let dump = out_dir.join(format!("{}.rdb", bin.name));
    std::fs::copy(srv.save(), &dump).expect("copy dump");
    (dump, live)
}
