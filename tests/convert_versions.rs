//! `convert` across server versions and families: the same commands run on the source and
//! on the target server; the source's dump converted for the target and loaded there must
//! give the target's own `DEBUG DIGEST` of that data. What a target cannot hold is refused,
//! naming the key.

mod support;

use std::fs::File;

use replisnap::convert::convert;
use replisnap::rdb::writer::WriteOptions;
use replisnap::rdb::{Options, RdbReader};
use support::{ServerBin, TestServer};

/// A deterministic dataset every server from 6.2 on accepts: every type, small and large
/// (compact and plain encodings), integers, binary data, expiries, three databases.
fn populate(s: &TestServer) {
    let big = "x".repeat(9000);
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let c = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for db in ["0", "3", "9"] {
        cmds.push(c(&["SELECT", db]));
        cmds.push(c(&["SET", "s:int", "12345"]));
        cmds.push(c(&["SET", "s:neg", "-9223372036854775808"]));
        cmds.push(c(&["SET", "s:empty", ""]));
        cmds.push(c(&["SET", "s:long", &"abc".repeat(400)]));
        cmds.push(c(&["SET", "s:bin", "\u{0}\n\u{7f}é"]));
        cmds.push(c(&["SET", "s:ttl", "v", "PX", "100000000"]));
        cmds.push(c(&["RPUSH", "l:small", "a", "1", "-5", ""]));
        let mut l = c(&["RPUSH", "l:big"]);
        for i in 0..700 {
            l.push(format!("element-{i}-{}", "y".repeat(i % 40)));
        }
        cmds.push(l);
        cmds.push(c(&["RPUSH", "l:huge", &big, "tail"]));
        cmds.push(c(&[
            "SADD",
            "set:ints",
            "1",
            "-2",
            "300",
            "70000",
            "5000000000",
        ]));
        let mut si = c(&["SADD", "set:manyints"]);
        for i in 0..600 {
            si.push((i * 7).to_string());
        }
        cmds.push(si);
        cmds.push(c(&["SADD", "set:str", "a", "b", "c", "10"]));
        let mut ss = c(&["SADD", "set:big"]);
        for i in 0..200 {
            ss.push(format!("m{i}"));
        }
        cmds.push(ss);
        cmds.push(c(&[
            "ZADD", "z:small", "1", "a", "2.5", "b", "-inf", "c", "inf", "d", "1e300", "e", "0.1",
            "f",
        ]));
        let mut zb = c(&["ZADD", "z:big"]);
        for i in 0..300 {
            zb.push(format!("{}", (i as f64) / 3.0));
            zb.push(format!("member-{i}"));
        }
        cmds.push(zb);
        cmds.push(c(&["HSET", "h:small", "f1", "v1", "f2", "2", "", "empty"]));
        let mut hb = c(&["HSET", "h:big"]);
        for i in 0..200 {
            hb.push(format!("field{i}"));
            hb.push(format!("value{i}"));
        }
        cmds.push(hb);
        cmds.push(c(&["HSET", "h:longval", "f", &"z".repeat(100)]));
        for i in 1..=150 {
            cmds.push(c(&[
                "XADD",
                "x:stream",
                &format!("{i}-1"),
                "f",
                &i.to_string(),
                "g",
                "v",
            ]));
        }
        cmds.push(c(&["XADD", "x:stream", "151-0", "other", "fields"]));
        cmds.push(c(&["XDEL", "x:stream", "5-1", "77-1"]));
        cmds.push(c(&["XGROUP", "CREATE", "x:stream", "g1", "0"]));
        cmds.push(c(&["XGROUP", "CREATE", "x:stream", "g2", "$"]));
    }
    for cmd in cmds {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        s.must(&args);
    }
}

fn convert_file(src: &std::path::Path, dst: &std::path::Path, target: &str) -> Result<(), String> {
    let f = File::open(src).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let r = RdbReader::new(f, Some(len), Options::default()).map_err(|e| e.to_string())?;
    let out = File::create(dst).map_err(|e| e.to_string())?;
    convert(
        r,
        out,
        Some(target.parse().map_err(|e| format!("{e}"))?),
        WriteOptions::default(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn target_name(bin: &ServerBin) -> String {
    let (major, minor) = bin.major_minor();
    format!("{}-{major}.{minor}", bin.kind)
}

fn check(from: &str, to: &str) {
    let (Some(src_bin), Some(dst_bin)) = (support::require(from), support::require(to)) else {
        return;
    };
    let src = TestServer::start(&src_bin, &[]).expect("start source");
    populate(&src);
    let dump = src.save();
    let direct = TestServer::start(&dst_bin, &[]).expect("start target");
    populate(&direct);
    let expected = direct.digest();
    let tmp = tempfile::tempdir().unwrap();
    let converted = tmp.path().join("converted.rdb");
    convert_file(&dump, &converted, &target_name(&dst_bin)).expect("convert");
    let loaded =
        TestServer::start_with_rdb(&dst_bin, &converted, &[]).expect("target loads our file");
    assert_eq!(
        loaded.dbsize_all(),
        direct.dbsize_all(),
        "{from} -> {to}: key count"
    );
    assert_eq!(loaded.digest(), expected, "{from} -> {to}: digest");
}

#[test]
fn redis_7_0_to_6_2() {
    check("redis-7.0", "redis-6.2");
}

#[test]
fn redis_6_2_to_7_0() {
    check("redis-6.2", "redis-7.0");
}

#[test]
fn redis_8_2_to_7_0() {
    check("redis-8.2", "redis-7.0");
}

#[test]
fn valkey_9_1_to_redis_7_0() {
    check("valkey-9.1", "redis-7.0");
}

#[test]
fn redis_7_0_to_valkey_9_1() {
    check("redis-7.0", "valkey-9.1");
}

#[test]
fn valkey_8_1_to_redis_6_2() {
    check("valkey-8.1", "redis-6.2");
}

#[test]
fn redis_8_6_to_8_2() {
    check("redis-8.6", "redis-8.2");
}

#[test]
fn hash_field_ttls_are_refused_where_the_target_cannot_hold_them() {
    let Some(bin) = support::require("redis-8.2") else {
        return;
    };
    let s = TestServer::start(&bin, &[]).expect("start");
    s.must(&["SET", "plain", "v"]);
    s.must(&["HSET", "sessions", "a", "1", "b", "2"]);
    s.must(&["HPEXPIRE", "sessions", "100000000", "FIELDS", "1", "a"]);
    let dump = s.save();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.rdb");
    let err = convert_file(&dump, &out, "redis-7.0").expect_err("7.0 cannot hold field TTLs");
    assert!(
        err.contains("key \"sessions\"") && err.contains("hash field TTLs"),
        "{err}"
    );
    // The same file converts for Valkey 9.1, which has its own field-TTL type, and loads.
    let Some(vk) = support::require("valkey-9.1") else {
        return;
    };
    convert_file(&dump, &out, "valkey-9.1").expect("valkey 9.1 holds field TTLs");
    let loaded = TestServer::start_with_rdb(&vk, &out, &[]).expect("valkey loads it");
    assert_eq!(loaded.dbsize_all(), 2);
    let ttl = loaded.must(&["HPEXPIRETIME", "sessions", "FIELDS", "2", "a", "b"]);
    let ttls: Vec<i64> = ttl
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_int().unwrap())
        .collect();
    assert!(ttls[0] > 0 && ttls[1] == -1, "{ttls:?}");
}

/// Each matrix server's own dump, converted for that same server, loads with its digest.
#[test]
fn every_matrix_server_to_itself() {
    for name in support::MATRIX {
        check(name, name);
    }
}
