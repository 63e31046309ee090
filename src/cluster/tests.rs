use super::parse;
use super::*;
use crate::resp::Frame;

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Some(s.as_bytes().to_vec()))
}

fn arr(v: Vec<Frame>) -> Frame {
    Frame::Array(Some(v))
}

const A: &str = "9fa5ebb80e1e25e5400330975fea6c3fb7b15ffd";
const B: &str = "dae06fdd1bdfce76ebb0af2b19df2c37ce1b0c96";
const C: &str = "db265abdc99861df05afebbf95d28218ead5e915";
const D: &str = "0d31811330193b1df220ff6a9f3b541242fc535e";

fn node(
    id: &str,
    port: i64,
    tls_port: Option<i64>,
    endpoint: &str,
    role: &str,
    health: &str,
) -> Frame {
    let mut v = vec![bulk("id"), bulk(id), bulk("port"), Frame::Integer(port)];
    if let Some(t) = tls_port {
        v.extend([bulk("tls-port"), Frame::Integer(t)]);
    }
    v.extend([
        bulk("ip"),
        bulk("127.0.0.1"),
        bulk("endpoint"),
        bulk(endpoint),
        bulk("role"),
        bulk(role),
        bulk("replication-offset"),
        Frame::Integer(42),
        bulk("health"),
        bulk(health),
    ]);
    arr(v)
}

fn shard(slots: &[i64], nodes: Vec<Frame>, id: Option<&str>) -> Frame {
    let mut v = vec![
        bulk("slots"),
        arr(slots.iter().map(|s| Frame::Integer(*s)).collect()),
        bulk("nodes"),
        arr(nodes),
    ];
    if let Some(id) = id {
        v.extend([bulk("id"), bulk(id)]);
    }
    arr(v)
}

/// As Valkey 9.1 answered a 2-shard cluster with one replica and an empty primary.
fn sample() -> Frame {
    arr(vec![
        shard(
            &[8192, 16383],
            vec![node(C, 7001, None, "127.0.0.1", "master", "online")],
            Some("d56683f2993fd8c3531c939930860632954c71c2"),
        ),
        shard(
            &[0, 100, 101, 8191],
            vec![
                node(A, 7000, Some(8000), "127.0.0.1", "master", "online"),
                node(B, 7002, Some(8002), "::1", "replica", "loading"),
            ],
            None,
        ),
        shard(
            &[],
            vec![node(D, 7003, None, "127.0.0.1", "master", "online")],
            None,
        ),
    ])
}

#[test]
fn key_slots_as_the_servers_compute_them() {
    // Answers of CLUSTER KEYSLOT (redis 6.2 to valkey 9.1 agree).
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"{user1000}.following"), 3443);
    assert_eq!(key_slot(b"{user1000}.followers"), 3443);
    // CRC16/XMODEM's check value.
    assert_eq!(slot::crc16(b"123456789"), 0x31c3);
    // Empty tag: the whole key; only the first {…} counts.
    assert_eq!(key_slot(b"foo{}{bar}"), slot::crc16(b"foo{}{bar}") % SLOTS);
    assert_eq!(key_slot(b"foo{{bar}}zap"), slot::crc16(b"{bar") % SLOTS);
    assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    assert_eq!(key_slot(b"{"), slot::crc16(b"{") % SLOTS);
    assert_eq!(key_slot(b""), 0);
}

#[test]
fn cluster_shards_is_read() {
    let t = parse::shards(&sample(), false).unwrap();
    assert_eq!(t.shards.len(), 2, "the primary without slots is left out");
    let s0 = &t.shards[0];
    assert_eq!(s0.slots, vec![(0, 8191)], "adjacent ranges merged");
    assert_eq!(s0.name(), "0-8191");
    assert_eq!(s0.shard_id, None);
    assert_eq!(s0.primary.id, A);
    assert_eq!(s0.primary.address, "127.0.0.1:7000");
    assert!(s0.primary.primary && s0.primary.healthy);
    assert_eq!(s0.replicas.len(), 1);
    assert_eq!(s0.replicas[0].address, "[::1]:7002");
    assert!(!s0.replicas[0].healthy, "a loading replica");
    let s1 = &t.shards[1];
    assert_eq!(s1.name(), "8192-16383");
    assert_eq!(
        s1.shard_id.as_deref(),
        Some("d56683f2993fd8c3531c939930860632954c71c2")
    );
    assert!(s1.holds_slot(12182) && !s0.holds_slot(12182));
    assert!(t.missing_slots().is_empty());
    // TLS configured: the tls-port where the node has one.
    let t = parse::shards(&sample(), true).unwrap();
    assert_eq!(t.shards[0].primary.address, "127.0.0.1:8000");
    assert_eq!(t.shards[1].primary.address, "127.0.0.1:7001");
}

/// As Valkey 9.1 answers after an automatic failover: the dead former primary stays in
/// its shard, role master, health fail.
#[test]
fn a_failed_former_primary_beside_the_promoted_one() {
    let r = arr(vec![shard(
        &[0, 5460],
        vec![
            node(A, 7000, None, "127.0.0.1", "master", "fail"),
            node(B, 7002, None, "127.0.0.1", "master", "online"),
        ],
        None,
    )]);
    let t = parse::shards(&r, false).unwrap();
    assert_eq!(t.shards[0].primary.id, B);
    assert_eq!(t.shards[0].replicas.len(), 1);
    assert_eq!(t.shards[0].replicas[0].id, A);
    assert!(!t.shards[0].replicas[0].healthy);
    let both_failed = arr(vec![shard(
        &[0, 5460],
        vec![
            node(A, 7000, None, "127.0.0.1", "master", "fail"),
            node(B, 7002, None, "127.0.0.1", "master", "failed"),
        ],
        None,
    )]);
    let e = parse::shards(&both_failed, false).unwrap_err();
    assert!(e.contains("2 primaries, 0 of them healthy"), "{e}");
}

#[test]
fn an_unknown_endpoint_falls_back_to_the_ip_and_failed_primaries_are_marked() {
    let r = arr(vec![shard(
        &[0, 16383],
        vec![node(A, 7000, None, "?", "master", "failed")],
        None,
    )]);
    let t = parse::shards(&r, false).unwrap();
    assert_eq!(t.shards[0].primary.address, "127.0.0.1:7000");
    assert!(!t.shards[0].primary.healthy);
}

const NODES_62: &str = "\
71f143eb3dafd43a8a544050a3e4c09f0c62ee98 127.0.0.1:31002@41002 slave 6086f8a6a55761b0711c63a1d2cd89dc946ef0e7 0 1796407651000 1 connected
6086f8a6a55761b0711c63a1d2cd89dc946ef0e7 127.0.0.1:31000@41000 myself,master - 0 1796407650000 1 connected 0-8190 8191 [8191->-c138012cd8614775aeb0cfbfa619df3cecf94f5c]
15dd11208235d751479e95a4d54c5a096fe391c4 127.0.0.1:31003@41003 master - 0 1796407650963 2 connected
c138012cd8614775aeb0cfbfa619df3cecf94f5c ::1:31001@41001,host-b master,fail - 0 1796407651063 0 connected 8192-9000 10000-16383 [8191-<-6086f8a6a55761b0711c63a1d2cd89dc946ef0e7]
";

#[test]
fn cluster_nodes_is_read() {
    let t = parse::nodes(NODES_62.as_bytes()).unwrap();
    assert_eq!(t.shards.len(), 2);
    let s0 = &t.shards[0];
    assert_eq!(
        s0.name(),
        "0-8191",
        "migrating/importing markers are not ownership"
    );
    assert_eq!(s0.primary.address, "127.0.0.1:31000");
    assert!(s0.primary.healthy);
    assert_eq!(s0.replicas.len(), 1);
    assert_eq!(
        s0.replicas[0].id,
        "71f143eb3dafd43a8a544050a3e4c09f0c62ee98"
    );
    assert_eq!(s0.replicas[0].address, "127.0.0.1:31002");
    let s1 = &t.shards[1];
    assert_eq!(s1.name(), "8192-9000_10000-16383");
    assert_eq!(s1.primary.address, "[::1]:31001");
    assert!(!s1.primary.healthy, "flag fail");
    assert_eq!(t.missing_slots(), vec![(9001, 9999)]);
    assert_eq!(t.shard_of_slot(9500), None);
}

#[test]
fn missing_slots_and_merging() {
    assert_eq!(
        merge_ranges(vec![(5, 9), (0, 3), (4, 4), (20, 30), (25, 26)]),
        vec![(0, 9), (20, 30)]
    );
    assert_eq!(Topology::default().missing_slots(), vec![(0, 16383)]);
    let t = parse::nodes(
        format!("{A} 127.0.0.1:1@2 master - 0 0 1 connected 1-5 16000-16382\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(t.missing_slots(), vec![(0, 0), (6, 15999), (16383, 16383)]);
}

#[test]
fn malformed_replies_are_errors_naming_the_fault() {
    let bad_frames = [
        Frame::Integer(3),
        Frame::Array(None),
        arr(vec![Frame::Integer(1)]),
        arr(vec![arr(vec![bulk("slots")])]),
        arr(vec![arr(vec![bulk("slots"), Frame::Integer(1)])]),
        arr(vec![shard(&[0], vec![], None)]),
        arr(vec![shard(
            &[0, 16384],
            vec![node(A, 1, None, "h", "master", "online")],
            None,
        )]),
        arr(vec![shard(
            &[9, 3],
            vec![node(A, 1, None, "h", "master", "online")],
            None,
        )]),
        arr(vec![shard(
            &[-1, 3],
            vec![node(A, 1, None, "h", "master", "online")],
            None,
        )]),
        arr(vec![shard(
            &[0, 3],
            vec![node("xyz", 1, None, "h", "master", "online")],
            None,
        )]),
        arr(vec![shard(
            &[0, 3],
            vec![node(A, 70000, None, "h", "master", "online")],
            None,
        )]),
        arr(vec![shard(
            &[0, 3],
            vec![node(A, 1, None, "h", "boss", "online")],
            None,
        )]),
        arr(vec![shard(
            &[0, 3],
            vec![node(A, 1, None, "h", "replica", "online")],
            None,
        )]),
        arr(vec![shard(
            &[0, 3],
            vec![
                node(A, 1, None, "h", "master", "online"),
                node(B, 1, None, "h", "master", "online"),
            ],
            None,
        )]),
        arr(vec![
            shard(
                &[0, 10],
                vec![node(A, 1, None, "h", "master", "online")],
                None,
            ),
            shard(
                &[5, 20],
                vec![node(B, 1, None, "h", "master", "online")],
                None,
            ),
        ]),
    ];
    for f in &bad_frames {
        let r = parse::shards(f, false);
        assert!(r.is_err(), "{f:?} -> {r:?}");
        assert!(!r.unwrap_err().is_empty());
    }
    let bad_texts = [
        "x".to_string(),
        format!("{A} 127.0.0.1:1@2 master - 0 0"),
        format!("{A} 127.0.0.1:99999@2 master - 0 0 1 connected"),
        format!("{A} 127.0.0.1 master - 0 0 1 connected"),
        format!("{A} 127.0.0.1:1@2 master - 0 0 1 connected 0-16384"),
        format!("{A} 127.0.0.1:1@2 master - 0 0 1 connected 9-3"),
        format!("{A} 127.0.0.1:1@2 master - 0 0 1 connected a-b"),
        format!("{A} 127.0.0.1:1@2 slave nothex 0 0 1 connected"),
        format!("{A} 127.0.0.1:1@2 master - 0 0 1 connected 0-10\n{B} 127.0.0.1:3@4 master - 0 0 1 connected 10"),
    ];
    for t in &bad_texts {
        let r = parse::nodes(t.as_bytes());
        assert!(r.is_err(), "{t:?} -> {r:?}");
    }
    assert!(parse::nodes(&[0xff, 0xfe]).is_err());
}

/// Random damage to good replies: an answer or an error, never a panic.
#[test]
fn damaged_replies_never_panic() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let text = NODES_62.as_bytes();
    for _ in 0..5000 {
        let mut t = text.to_vec();
        for _ in 0..1 + rnd(6) {
            let i = rnd(t.len());
            match rnd(3) {
                0 => {
                    let alphabet = b" -:@,[]0123456789abcdef\n\xff";
                    t[i] = alphabet[rnd(alphabet.len())];
                }
                1 => {
                    t.remove(i);
                }
                _ => t.truncate(i),
            }
            if t.is_empty() {
                break;
            }
        }
        let _ = parse::nodes(&t);
    }
    fn damage(f: &Frame, rnd: &mut dyn FnMut(usize) -> usize) -> Frame {
        match (f, rnd(12)) {
            (_, 0) => Frame::Integer(-7),
            (_, 1) => Frame::Bulk(None),
            (_, 2) => bulk("?"),
            (Frame::Array(Some(v)), 3) if !v.is_empty() => {
                let mut v = v.clone();
                v.remove(rnd(v.len()));
                arr(v)
            }
            (Frame::Array(Some(v)), _) => arr(v.iter().map(|e| damage(e, rnd)).collect()),
            (f, _) => f.clone(),
        }
    }
    let good = sample();
    for _ in 0..5000 {
        let f = damage(&good, &mut rnd);
        let _ = parse::shards(&f, rnd(2) == 0);
    }
}

#[test]
fn addresses_bracket_ipv6() {
    assert_eq!(join_host_port("::1", 6379), "[::1]:6379");
    assert_eq!(join_host_port("[::1]", 6379), "[::1]:6379");
    assert_eq!(
        join_host_port("cache.example.com", 6379),
        "cache.example.com:6379"
    );
}
