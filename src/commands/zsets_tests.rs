//! Tests of `zsets.rs`: the typed parse and its application.
use super::*;

fn argv(a: &str) -> Vec<Vec<u8>> {
    a.split(' ').map(|s| s.as_bytes().to_vec()).collect()
}

/// zsets' commands and zstore's (that file is at its size limit).
#[test]
fn malformed_fails_in_parse() {
    for bad in [
        "ZADD k",
        "ZADD k nx 1",
        "ZADD k 1 a nan b",
        "ZINCRBY k x m",
        "ZPOPMIN k 1 2",
        "ZUNIONSTORE d 0 k",
        "ZUNIONSTORE d 2 k",
        "ZINTERSTORE d 2 a b WEIGHTS 1",
        "ZINTERSTORE d 1 a WEIGHTS x",
        "ZINTERSTORE d 1 a AGGREGATE avg",
        "ZRANGESTORE d s 0 1 LIMIT 0",
        "ZRANGESTORE d s (x 5 BYSCORE",
        "ZRANGESTORE d s a b BYLEX",
        "ZREMRANGEBYSCORE k 1 x",
        "ZREMRANGEBYLEX k - b",
    ] {
        assert!(super::super::parse(&argv(bad)).is_err(), "{bad}");
    }
    for good in [
        "ZADD k nx CH 1 a 2 nx",
        "ZUNIONSTORE d 2 a b aggregate MIN weights 1 -inf",
        "ZRANGESTORE d s +inf (1 byscore rev limit 0 -1",
        "ZREMRANGEBYLEX k [a +",
    ] {
        assert!(super::super::parse(&argv(good)).is_ok(), "{good}");
    }
    let a = argv("k xx incr 1.5 m");
    let Ok(Cmd::Add { flags, pairs, .. }) = parse(Parse::new("ZADD", &a)) else {
        panic!("not a ZADD");
    };
    assert!(flags.xx && flags.incr && !flags.nx);
    assert_eq!(pairs, [(1.5, &b"m"[..])]);
}
