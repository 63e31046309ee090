//! `keys_loadable` against the servers themselves: a file whose keys and hash fields expired
//! after the save is loaded by a fresh server, and the key count it holds once settled (after
//! its first active-expiry cycles) must equal ours.

mod support;

use std::fs::File;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use replisnap::rdb::{Options, RdbReader};
use replisnap::summary::summarize;
use support::TestServer;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn check(name: &str, field_ttls: bool) {
    let Some(bin) = support::require(name) else {
        return;
    };
    let a = TestServer::start(&bin, &[]).expect("start");
    a.must(&["SET", "kept", "v"]);
    a.must(&["SET", "gone", "v", "PX", "1200"]);
    a.must(&["RPUSH", "list", "x"]);
    a.must(&["SADD", "set", "1", "2"]);
    if field_ttls {
        // small (listpack) and large (hashtable) hashes, partly and wholly expiring
        a.must(&["HSET", "h_part", "a", "1", "b", "2"]);
        a.must(&["HPEXPIRE", "h_part", "1200", "FIELDS", "1", "a"]);
        a.must(&["HSET", "h_all", "a", "1", "b", "2"]);
        a.must(&["HPEXPIRE", "h_all", "1200", "FIELDS", "2", "a", "b"]);
        let mut args = vec!["HSET".to_string(), "big_all".to_string()];
        let mut fields = vec![
            "HPEXPIRE".to_string(),
            "big_all".into(),
            "1200".into(),
            "FIELDS".into(),
            "200".into(),
        ];
        for i in 0..200 {
            args.push(format!("f{i}"));
            args.push(format!("v{i}"));
            fields.push(format!("f{i}"));
        }
        a.must(&args.iter().map(String::as_str).collect::<Vec<_>>());
        a.must(&fields.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let dump = a.save();
    std::thread::sleep(Duration::from_millis(1600));
    let b = TestServer::start_with_rdb(&bin, &dump, &[]).expect("start from the dump");
    // Active expiry runs every 100 ms; give it a few cycles to settle.
    std::thread::sleep(Duration::from_millis(500));
    let server_keys = b.dbsize_all();

    let f = File::open(&dump).expect("open");
    let len = f.metadata().unwrap().len();
    let s = summarize(
        RdbReader::new(f, Some(len), Options::default()).unwrap(),
        now_ms(),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        s.keys_loadable, server_keys,
        "{name}: ours vs the server's key count after load"
    );
    assert!(
        s.keys_total > s.keys_loadable,
        "{name}: the file must hold expired keys for this test to mean anything"
    );
}

#[test]
fn redis_7_0_drops_expired_keys() {
    check("redis-7.0", false);
}

#[test]
fn redis_8_2_keeps_hashes_whose_fields_expired() {
    check("redis-8.2", true);
}

#[test]
fn redis_8_6_keeps_hashes_whose_fields_expired() {
    check("redis-8.6", true);
}

#[test]
fn valkey_9_1_drops_hashes_whose_fields_all_expired() {
    check("valkey-9.1", true);
}
