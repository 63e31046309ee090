//! Strings restored together (`MSETNX`, `MSET` with `--replace`) are refused whole when
//! the target refuses one of them: each is then sent alone, so only the key the target
//! refuses is lost, counted and named — with `--keep-going` the rest of its group is
//! restored; without it the restore stops naming that very key. Collections sent as the
//! file holds them, and strings sent together, give the source's `DEBUG DIGEST`.

mod support;

use support::{replisnap, TestServer};

/// 300 strings with a key the target's user may not write in the middle, in db 0 and db 3,
/// and collections of every compact encoding.
const FILL: &str = r#"
for i = 0, 299 do redis.call('SET', 's:' .. i, 'value ' .. i) end
redis.call('SET', 'xdenied', 'no')
for i = 300, 599 do redis.call('SET', 's:' .. i, i) end
redis.call('HSET', 'h', 'a', '1', 'b', 'two')
redis.call('ZADD', 'z', 1.5, 'a', 0.1, 'b', 3, 'c')
redis.call('SADD', 'iset', 1, 2, 3)
redis.call('SADD', 'sset', 'a', 'b')
redis.call('RPUSH', 'l', 'a', 1, 'c')
return 1
"#;

#[test]
fn a_refused_string_of_a_group_is_the_only_one_lost() {
    for name in ["redis-7.0", "valkey-9.1"] {
        let Some(bin) = support::require(name) else {
            continue;
        };
        let src = TestServer::start(&bin, &[]).expect("source");
        src.must(&["EVAL", FILL, "0"]);
        src.must(&["SELECT", "3"]);
        src.must(&["EVAL", FILL, "0"]);
        let rdb = src.save();
        let rdb = rdb.to_str().unwrap();
        let total = src.dbsize_all();
        assert_eq!(total, 2 * 606, "{name}");

        // Every key restored: the source's digest (strings grouped, collections as is).
        let target = TestServer::start(&bin, &[]).expect("target");
        let to = format!("redis://{}", target.addr());
        let (code, out, err) = replisnap(&["restore", "--from", rdb, "--to", &to]);
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert_eq!(target.digest(), src.digest(), "{name}");
        let stats = target.info("commandstats");
        assert!(stats.contains("cmdstat_msetnx"), "{name}: grouped: {stats}");

        // A user that may not write keys starting with x.
        for keep_going in [true, false] {
            let target = TestServer::start(&bin, &[]).expect("target");
            target.must(&["ACL", "SETUSER", "r", "on", ">pw", "~[^x]*", "&*", "+@all"]);
            let to = format!("redis://r:pw@{}", target.addr());
            let mut args = vec!["restore", "--from", rdb, "--to", &to, "--json"];
            if keep_going {
                args.push("--keep-going");
            }
            let (code, out, err) = replisnap(&args);
            assert_eq!(code, 1, "{name}: {out}{err}");
            assert!(
                err.contains("\"xdenied\"") && err.contains("NOPERM"),
                "{name}: names the key: {err}"
            );
            if keep_going {
                let v: serde_json::Value = serde_json::from_str(&out).expect("--json");
                assert_eq!(v["keys_failed"], 2, "{name}: {out}");
                assert_eq!(v["keys_restored"], total - 2, "{name}: {out}");
                assert_eq!(target.dbsize_all(), total - 2, "{name}");
                for db in ["0", "3"] {
                    target.must(&["SELECT", db]);
                    for k in ["s:0", "s:299", "s:300", "s:599", "h", "z", "l"] {
                        assert_eq!(
                            target.must(&["EXISTS", k]).as_int(),
                            Some(1),
                            "{name}: db {db} {k}"
                        );
                    }
                }
            }
        }
    }
}
