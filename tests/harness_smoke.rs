//! Smoke test of the test harness itself: every server of the matrix starts, takes a write,
//! saves an RDB, and a second server loads that RDB to the same DEBUG DIGEST.

mod support;

use support::*;

fn smoke(name: &str) {
    let Some(bin) = require(name) else { return };
    let a = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("start {bin}: {e}"));
    assert_eq!(a.digest(), "0".repeat(40), "{bin}: a fresh server is empty");

    assert!(a.must(&["SET", "replisnap:smoke", "hello"]).is_ok());
    assert_eq!(
        a.cmd(&[b"RPUSH".as_slice(), b"replisnap:list", b"\x00\xff", b"x"])
            .unwrap()
            .as_int(),
        Some(2)
    );
    assert_eq!(a.dbsize_all(), 2, "{bin}: INFO keyspace");

    let digest = a.digest();
    assert_eq!(digest.len(), 40, "{bin}: digest {digest:?}");
    assert!(
        digest.bytes().all(|c| c.is_ascii_hexdigit()),
        "{bin}: digest {digest:?}"
    );
    assert_ne!(
        digest,
        "0".repeat(40),
        "{bin}: digest of a non-empty dataset"
    );

    let rdb = a.save();
    let magic =
        std::fs::read(&rdb).unwrap_or_else(|e| panic!("{bin}: read {}: {e}", rdb.display()));
    assert!(
        magic.starts_with(b"REDIS") || magic.starts_with(b"VALKEY"),
        "{bin}: RDB starts {:?}",
        String::from_utf8_lossy(&magic[..magic.len().min(9)])
    );

    let b = TestServer::start_with_rdb(&bin, &rdb, &[])
        .unwrap_or_else(|e| panic!("restart {bin} from its RDB: {e}"));
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.port(), b.port());
    assert_eq!(b.digest(), digest, "{bin}: digest after loading the RDB");
    assert_eq!(b.dbsize_all(), 2);
    assert_eq!(
        b.cmd_str(&["GET", "replisnap:smoke"]).unwrap(),
        Reply::Bulk(Some(b"hello".to_vec()))
    );
    assert_eq!(
        b.info_field("server", "process_id").as_deref(),
        Some(b.pid().to_string().as_str()),
        "{bin}: the pid we hold is the server's"
    );
}

#[test]
fn smoke_redis_6_2() {
    smoke("redis-6.2");
}

#[test]
fn smoke_redis_7_0() {
    smoke("redis-7.0");
}

#[test]
fn smoke_redis_8_2() {
    smoke("redis-8.2");
}

#[test]
fn smoke_redis_8_6() {
    smoke("redis-8.6");
}

#[test]
fn smoke_valkey_8_1() {
    smoke("valkey-8.1");
}

#[test]
fn smoke_valkey_9_1() {
    smoke("valkey-9.1");
}

/// The extras are smoke-tested too when installed; missing ones are always a skip.
#[test]
fn smoke_extras() {
    for name in EXTRAS {
        if find(name).is_some() {
            smoke(name);
        }
    }
}

#[test]
fn matrix_is_covered() {
    assert_eq!(
        MATRIX,
        &[
            "redis-6.2",
            "redis-7.0",
            "redis-8.2",
            "redis-8.6",
            "valkey-8.1",
            "valkey-9.1"
        ]
    );
    for name in REQUIRED {
        assert!(MATRIX.contains(name));
    }
}

#[test]
fn resp_parser_roundtrip() {
    let wire = b"*5\r\n+OK\r\n-ERR bad\r\n:-7\r\n$-1\r\n*2\r\n$4\r\na\r\nb\r\n*-1\r\n";
    let mut r = std::io::BufReader::new(&wire[..]);
    assert_eq!(
        read_reply(&mut r).unwrap(),
        Reply::Array(Some(vec![
            Reply::Status("OK".into()),
            Reply::Error("ERR bad".into()),
            Reply::Int(-7),
            Reply::Bulk(None),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"a\r\nb".to_vec())),
                Reply::Array(None)
            ])),
        ]))
    );
    assert_eq!(
        encode_command(&[b"SET".as_slice(), b"k", b""]),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
    );
}

#[test]
fn major_minor_and_debug_option() {
    let mk = |kind: &str, v: &str| ServerBin {
        name: format!("{kind}-x"),
        path: "/nonexistent".into(),
        version: v.into(),
        kind: kind.into(),
    };
    assert_eq!(mk("redis", "6.2.14").major_minor(), (6, 2));
    assert!(!mk("redis", "6.2.14").knows_debug_option());
    assert!(mk("redis", "7.0.15").knows_debug_option());
    assert!(mk("redis", "8.10.2").knows_debug_option());
    assert_eq!(mk("redis", "8.10.2").major_minor(), (8, 10));
    assert!(mk("valkey", "8.1.8").knows_debug_option());
}
