//! Values too long for one `RESTORE` on a target with a lowered `proto-max-bulk-len`: a
//! 5 M-member set, big sorted set (with -0 and ±inf scores), list and hash (with field
//! TTLs) are rebuilt with plain commands in chunks and give the source's `DEBUG DIGEST`; a
//! string longer than the target's limit, which no command can create there, is refused
//! before anything of it is sent, with a line naming the key and the setting.

mod support;

use support::{replisnap, TestServer};

const FILL: &str =
    "for i = 1, tonumber(ARGV[2]) do redis.call(ARGV[1], KEYS[1], 'member:' .. i) end";

#[test]
fn big_values_are_rebuilt_in_chunks_under_a_low_proto_max_bulk_len() {
    let Some(bin) = support::require("redis-8.2") else {
        return;
    };
    let src = TestServer::start(&bin, &[]).expect("source");
    src.must(&["EVAL", FILL, "1", "bigset", "SADD", "5000000"]);
    src.must(&["EVAL", FILL, "1", "biglist", "RPUSH", "300000"]);
    src.must(&[
        "EVAL",
        "for i = 1, 200000 do redis.call('ZADD', KEYS[1], i / 7, 'z' .. i) end",
        "1",
        "bigzset",
    ]);
    src.must(&[
        "ZADD", "bigzset", "-0", "negzero", "inf", "top", "-inf", "bottom",
    ]);
    src.must(&[
        "EVAL",
        "for i = 1, 200000 do redis.call('HSET', KEYS[1], 'f' .. i, string.rep('v', i % 50)) end",
        "1",
        "bighash",
    ]);
    src.must(&[
        "HPEXPIRE",
        "bighash",
        "100000000",
        "FIELDS",
        "2",
        "f1",
        "f7",
    ]);
    src.must(&["PEXPIRE", "bigset", "100000000"]);
    // Exactly the target's limit: one SET, no chunking needed.
    src.must(&["SET", "at-limit", &"s".repeat(1 << 20)]);
    for i in 0..100 {
        src.must(&["SET", &format!("small:{i}"), &i.to_string()]);
    }
    let rdb = src.save();
    let want = src.digest();

    let target = TestServer::start(&bin, &["--proto-max-bulk-len", "1mb"]).expect("target");
    assert_eq!(
        target.config_get("proto-max-bulk-len").as_deref(),
        Some("1048576")
    );
    let to = format!("redis://{}", target.addr());
    let (code, out, err) = replisnap(&["restore", "--from", rdb.to_str().unwrap(), "--to", &to]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("digest checked"), "{out}");
    assert_eq!(
        target.digest(),
        want,
        "the target holds what the source held"
    );
    assert_eq!(
        target.must(&["SCARD", "bigset"]).as_int(),
        Some(5_000_000),
        "every member of the big set"
    );
    let ttl = target.must(&["PTTL", "bigset"]).as_int().unwrap_or(-1);
    assert!(ttl > 90_000_000, "the big set keeps its TTL: {ttl}");

    // One byte longer than the limit: no command can make it on this target.
    src.must(&["SET", "too-long", &"t".repeat((1 << 20) + 1)]);
    let rdb = src.save();
    let target = TestServer::start(&bin, &["--proto-max-bulk-len", "1mb"]).expect("target");
    let to = format!("redis://{}", target.addr());
    let (code, out, err) = replisnap(&["restore", "--from", rdb.to_str().unwrap(), "--to", &to]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("too-long") && err.contains("proto-max-bulk-len"),
        "names the key and the setting: {err}"
    );
    assert_eq!(
        target.must(&["EXISTS", "too-long"]).as_int(),
        Some(0),
        "nothing of it was sent"
    );
    // --keep-going restores the rest and counts it.
    let target = TestServer::start(&bin, &["--proto-max-bulk-len", "1mb"]).expect("target");
    let to = format!("redis://{}", target.addr());
    let (code, out, err) = replisnap(&[
        "restore",
        "--from",
        rdb.to_str().unwrap(),
        "--to",
        &to,
        "--keep-going",
        "--json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
    assert_eq!(v["keys_failed"], 1, "{out}");
    assert_eq!(target.dbsize_all(), src.dbsize_all() - 1);
}
