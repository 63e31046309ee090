//! `restore --via-sync`: the target made a replica of replisnap for one full sync, sent the
//! snapshot as that sync's payload, and made a master again. It ends with the source's
//! `DEBUG DIGEST` (same version, and across versions the digest replisnap computed of what
//! it sent), a master that takes writes, its `repl-diskless-load` as it was; a target
//! holding keys or function libraries is refused and left as it was.

mod support;

use support::{replisnap, TestServer};

/// Every compact encoding and a big one of each type, strings of every kind, a key with a
/// future expiry, keys in db 0 and db 2.
const FILL: &str = r#"
for i = 0, 499 do redis.call('SET', 's:' .. i, 'value ' .. i) end
for i = 0, 99 do redis.call('SET', 'n:' .. i, i * 7) end
redis.call('SET', 'big', string.rep('x', 70000))
redis.call('SET', 'ttl', 'v', 'PX', 3600000)
redis.call('HSET', 'h', 'a', '1', 'b', 'two')
redis.call('ZADD', 'z', 1.5, 'a', 0.1, 'b', 3, 'c')
redis.call('SADD', 'iset', 1, 2, 3)
redis.call('SADD', 'sset', 'a', 'b')
redis.call('RPUSH', 'l', 'a', 1, 'c')
for i = 0, 999 do
  redis.call('HSET', 'bigh', 'f' .. i, 'v' .. i)
  redis.call('ZADD', 'bigz', i, 'm' .. i)
  redis.call('SADD', 'bigs', 'm' .. i)
  redis.call('RPUSH', 'bigl', 'e' .. i)
end
redis.call('XADD', 'st', '1-1', 'f', 'v')
return 1
"#;

const LIBRARY: &str =
    "#!lua name=synclib\nredis.register_function('synced', function() return 1 end)";

fn source(bin: &support::ServerBin) -> (TestServer, std::path::PathBuf) {
    let src = TestServer::start(bin, &[]).expect("source");
    src.must(&["EVAL", FILL, "0"]);
    src.must(&["SELECT", "2"]);
    src.must(&["EVAL", FILL, "0"]);
    if bin.major_minor() >= (7, 0) {
        src.must(&["FUNCTION", "LOAD", LIBRARY]);
    }
    let rdb = src.save();
    (src, rdb)
}

fn restore(rdb: &std::path::Path, target: &TestServer, extra: &[&str]) -> (i32, String, String) {
    restore_to(rdb, &format!("redis://{}", target.addr()), extra)
}

fn restore_to(rdb: &std::path::Path, to: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "restore",
        "--from",
        rdb.to_str().expect("path"),
        "--to",
        to,
        "--via-sync",
        "--json",
    ];
    args.extend_from_slice(extra);
    replisnap(&args)
}

#[test]
fn a_sync_gives_the_source_digest_and_leaves_a_master() {
    for name in [
        "redis-7.0",
        "valkey-9.1",
        "redis-6.2",
        "redis-8.6",
        "valkey-8.1",
    ] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let (src, rdb) = source(&bin);
        let target = TestServer::start(&bin, &[]).expect("target");
        let before = target.config_get("repl-diskless-load");
        let (code, out, err) = restore(&rdb, &target, &[]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
        assert_eq!(v["via_sync"], "diskless", "{name}: {out}");
        assert_eq!(v["keys_restored"], src.dbsize_all(), "{name}: {out}");
        assert_eq!(v["target_keys"], src.dbsize_all(), "{name}: {out}");
        assert_eq!(target.digest(), src.digest(), "{name}");
        assert_eq!(
            target.info_field("replication", "role").as_deref(),
            Some("master"),
            "{name}"
        );
        assert_eq!(target.config_get("repl-diskless-load"), before, "{name}");
        assert!(target.must(&["SET", "after", "1"]).is_ok(), "{name}");
        let ttl = target.must(&["PTTL", "ttl"]).as_int().expect("PTTL");
        assert!(ttl > 3_000_000 && ttl <= 3_600_000, "{name}: {ttl}");
        if bin.major_minor() >= (7, 0) {
            assert_eq!(target.must(&["FCALL", "synced", "0"]).as_int(), Some(1));
        }
    }
}

#[test]
fn a_sync_into_another_version_gives_what_was_sent() {
    let (Some(from), Some(into_new), Some(into_old)) = (
        support::require("redis-7.0"),
        support::require("valkey-9.1"),
        support::require("redis-6.2"),
    ) else {
        return;
    };
    let (src, rdb) = source(&from);
    for bin in [into_new, into_old] {
        let target = TestServer::start(&bin, &[]).expect("target");
        let (code, out, err) = restore(&rdb, &target, &[]);
        if bin.major_minor() < (7, 0) {
            // A file with a function library cannot be loaded by 6.2: named, target untouched.
            assert_ne!(code, 0, "{out}{err}");
            assert!(err.contains("functions"), "{err}");
            assert_eq!(
                target.info_field("replication", "role").as_deref(),
                Some("master")
            );
            continue;
        }
        assert_eq!(code, 0, "{}: {out}{err}", bin.name);
        let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
        assert_eq!(v["target_keys"], src.dbsize_all(), "{out}");
        assert_eq!(v["target_digest"], v["digest_sent"], "{out}");
        assert!(v["digest_sent"].is_string(), "{out}");
    }
}

#[test]
fn a_target_holding_keys_or_libraries_is_left_alone() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let (src, rdb) = source(&bin);
    let target = TestServer::start(&bin, &[]).expect("target");
    target.must(&["SET", "mine", "1"]);
    let (code, out, err) = restore(&rdb, &target, &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("holds 1 keys"), "{err}");
    assert_eq!(target.dbsize_all(), 1);
    assert_eq!(
        target.info_field("replication", "role").as_deref(),
        Some("master")
    );

    let target = TestServer::start(&bin, &[]).expect("target");
    target.must(&["FUNCTION", "LOAD", LIBRARY]);
    let (code, out, err) = restore(&rdb, &target, &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("function libraries"), "{err}");
    assert_eq!(
        target.info_field("replication", "role").as_deref(),
        Some("master")
    );
    // With --flush both are replaced.
    target.must(&["SET", "mine", "1"]);
    let (code, out, err) = restore(&rdb, &target, &["--flush"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(target.digest(), src.digest());
}

#[test]
fn a_user_without_config_syncs_through_the_targets_disk() {
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let (src, rdb) = source(&bin);
    let target = TestServer::start(&bin, &[]).expect("target");
    target.must(&[
        "ACL", "SETUSER", "r", "on", ">pw", "~*", "&*", "+@all", "-config",
    ]);
    let to = format!("redis://r:pw@{}", target.addr());
    let (code, out, err) = restore_to(&rdb, &to, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
    assert_eq!(v["via_sync"], "disk", "{out}");
    assert_eq!(v["target_keys"], src.dbsize_all(), "{out}");
    assert_eq!(target.digest(), src.digest());
    assert_eq!(
        target.config_get("repl-diskless-load").as_deref(),
        Some("disabled")
    );
    assert_eq!(
        target.info_field("replication", "role").as_deref(),
        Some("master")
    );
}
