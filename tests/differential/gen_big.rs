//! The big-collection workload: a few keys of every collection type grown past 100 k
//! members with bulk writes, then changed by every command that touches them (the
//! in-place native paths and the rarer ones that rebuild a value), with -0 and infinite
//! scores, field TTLs, type collisions, renames and expiries; and a stream of a tenth of
//! that many entries, with deletions, trimming and consumer groups. `DIFF_BIG_MEMBERS` sets
//! the size (default 110 000).

use super::gen::{current_ms, stream_id, value, Rng};
use super::gen_more::{stream_group_on, Caps};

fn s(x: &str) -> Vec<u8> {
    x.as_bytes().to_vec()
}

fn n(x: u64) -> Vec<u8> {
    x.to_string().into_bytes()
}

fn member(r: &mut Rng, space: u64) -> Vec<u8> {
    match r.below(20) {
        0 => value(r),
        _ => format!("m{}", r.below(space)).into_bytes(),
    }
}

/// A sorted-set member: short, so that a ZADD that changes nothing never converts a compact
/// set on the master alone (a gap in the servers' own replication, docs/commands.md).
fn zmember(r: &mut Rng, space: u64) -> Vec<u8> {
    format!("m{}", r.below(space)).into_bytes()
}

fn score(r: &mut Rng) -> Vec<u8> {
    match r.below(10) {
        0 => s("-0"),
        1 => s("inf"),
        2 => s("-inf"),
        3 => n(r.below(5)),
        _ => format!("{}.25", r.below(100_000) as i64 - 50_000).into_bytes(),
    }
}

fn pick(r: &mut Rng, keys: &[&str]) -> Vec<u8> {
    if r.below(40) == 0 {
        s("shared0")
    } else {
        s(keys[r.below(keys.len() as u64) as usize])
    }
}

/// `count` commands: the growth phase first, then random changes.
pub fn workload(
    r: &mut Rng,
    caps: Caps,
    field_ttl: bool,
    size: u64,
    count: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    const BATCH: u64 = 1000;
    for b in 0..size.div_ceil(BATCH) {
        let ids = b * BATCH..((b + 1) * BATCH).min(size);
        let mut sadd = vec![s("SADD"), s("bs0")];
        let mut hset = vec![s("HSET"), s("bh0")];
        let mut zadd = vec![s("ZADD"), s("bz0")];
        let mut push = vec![s("RPUSH"), s("bl0")];
        for i in ids {
            let m = format!("m{i}").into_bytes();
            sadd.push(m.clone());
            hset.extend([m.clone(), value(r)]);
            zadd.extend([score(r), m.clone()]);
            push.push(m);
        }
        out.extend([sadd, hset, zadd, push]);
    }
    for i in 0..size / 10 {
        let mut c = vec![s("XADD"), s("bx0"), stream_id(r).into_bytes()];
        c.extend([s("sensor"), n(i % 1000), s("temp"), value(r)]);
        if i % 50 == 0 {
            c.extend([s("other"), value(r)]);
        }
        out.push(c);
    }
    let space = size + size / 5;
    while out.len() < count {
        let c = match r.below(40) {
            0..=2 => {
                let mut c = vec![s("SADD"), pick(r, &["bs0", "bs1"])];
                for _ in 0..1 + r.below(30) {
                    c.push(member(r, space));
                }
                c
            }
            3 | 4 => {
                let mut c = vec![s("SREM"), pick(r, &["bs0", "bs1"])];
                for _ in 0..1 + r.below(10) {
                    c.push(member(r, space));
                }
                c
            }
            5 => vec![s("SPOP"), pick(r, &["bs0", "bs1"]), n(1 + r.below(5))],
            6 => vec![s("SMOVE"), s("bs0"), s("bs1"), member(r, space)],
            7..=9 => {
                let mut c = vec![s("HSET"), pick(r, &["bh0", "bh1"])];
                for _ in 0..1 + r.below(10) {
                    c.extend([member(r, space), value(r)]);
                }
                c
            }
            10 => vec![
                s("HDEL"),
                pick(r, &["bh0", "bh1"]),
                member(r, space),
                member(r, space),
            ],
            11 => vec![s("HINCRBY"), s("bh1"), s("counter"), n(r.below(100))],
            12 => vec![s("HINCRBYFLOAT"), s("bh1"), s("float"), s("1.5")],
            13 => vec![s("HSETNX"), s("bh0"), member(r, space), value(r)],
            14 if field_ttl => {
                let mut c = vec![s("HPEXPIRE"), s("bh0"), n(500_000 + r.below(1000))];
                if r.below(2) == 0 {
                    c.push(s(r.pick(&["NX", "XX", "GT", "LT"])));
                }
                c.extend([s("FIELDS"), n(2), member(r, space), member(r, space)]);
                c
            }
            15 if field_ttl => vec![s("HPERSIST"), s("bh0"), s("FIELDS"), n(1), member(r, space)],
            16..=18 => {
                let mut c = vec![s("ZADD"), pick(r, &["bz0", "bz1"])];
                match r.below(6) {
                    0 => c.push(s("NX")),
                    1 => c.push(s("XX")),
                    2 => c.push(s("GT")),
                    3 => c.push(s("LT")),
                    _ => {}
                }
                if r.below(8) == 0 {
                    c.extend([s("INCR"), score(r), zmember(r, space)]);
                } else {
                    for _ in 0..1 + r.below(20) {
                        c.extend([score(r), zmember(r, space)]);
                    }
                }
                c
            }
            19 => vec![
                s("ZINCRBY"),
                pick(r, &["bz0", "bz1"]),
                score(r),
                zmember(r, space),
            ],
            20 => vec![
                s("ZREM"),
                pick(r, &["bz0", "bz1"]),
                zmember(r, space),
                zmember(r, space),
            ],
            21 => vec![
                s(r.pick(&["ZPOPMIN", "ZPOPMAX"])),
                pick(r, &["bz0", "bz1"]),
                n(1 + r.below(3)),
            ],
            22 => match r.below(3) {
                0 => {
                    let k = pick(r, &["bz0", "bz1"]);
                    vec![s("ZREMRANGEBYRANK"), k, n(r.below(3)), n(r.below(3) + 3)]
                }
                1 => vec![
                    s("ZREMRANGEBYRANK"),
                    pick(r, &["bz0", "bz1"]),
                    s("-3"),
                    s("-1"),
                ],
                _ => {
                    let lo = r.below(100_000) as i64 - 50_000;
                    let (a, b) = match r.below(4) {
                        0 => (format!("({lo}.25"), format!("{}.25", lo + 3)),
                        1 => (format!("{lo}.25"), format!("({}.25", lo + 2)),
                        2 => ("-inf".to_string(), "-49990".to_string()),
                        _ => ("49990".to_string(), "+inf".to_string()),
                    };
                    let k = pick(r, &["bz0", "bz1"]);
                    vec![s("ZREMRANGEBYSCORE"), k, a.into_bytes(), b.into_bytes()]
                }
            },
            23..=25 => {
                let mut c = vec![s(r.pick(&["LPUSH", "RPUSH"])), pick(r, &["bl0", "bl1"])];
                for _ in 0..1 + r.below(20) {
                    c.push(member(r, space));
                }
                c
            }
            26 => vec![
                s(r.pick(&["LPOP", "RPOP"])),
                pick(r, &["bl0", "bl1"]),
                n(1 + r.below(5)),
            ],
            27 => vec![s("LSET"), s("bl0"), n(r.below(size)), value(r)],
            28 => vec![s("LTRIM"), s("bl1"), n(r.below(3)), s("-2")],
            29 => match r.below(2) {
                0 => vec![s("RPOPLPUSH"), s("bl0"), s("bl1")],
                _ => vec![
                    s("LMOVE"),
                    s("bl1"),
                    s("bl0"),
                    s(r.pick(&["LEFT", "RIGHT"])),
                    s(r.pick(&["LEFT", "RIGHT"])),
                ],
            },
            30 => vec![
                s("LINSERT"),
                s("bl1"),
                s("BEFORE"),
                member(r, space),
                value(r),
            ],
            31 => {
                let k = pick(r, &["bs0", "bh0", "bz0", "bl0"]);
                match r.below(2) {
                    0 => vec![s("EXPIRE"), k, n(100_000 + r.below(100))],
                    _ => vec![s("PERSIST"), k],
                }
            }
            32 => vec![s("COPY"), s("bz0"), s("bz2"), s("REPLACE")],
            34 | 35 => {
                let mut c = vec![s("XADD"), pick(r, &["bx0", "bx1"])];
                if r.below(4) == 0 {
                    c.extend([s("MAXLEN"), s("="), n(size / 10 - r.below(size / 100))]);
                }
                c.push(stream_id(r).into_bytes());
                c.extend([s("sensor"), n(r.below(1000)), s("temp"), value(r)]);
                c
            }
            36 => {
                let mut c = vec![s("XDEL"), pick(r, &["bx0", "bx1"])];
                for _ in 0..1 + r.below(3) {
                    let id = format!("{}-{}", 1 + r.below(current_ms()), r.below(3));
                    c.push(id.into_bytes());
                }
                c
            }
            37 => match r.below(2) {
                0 => vec![
                    s("XTRIM"),
                    s("bx0"),
                    s("MINID"),
                    format!("{}-0", r.below(current_ms() / 20)).into_bytes(),
                ],
                _ => vec![
                    s("XTRIM"),
                    pick(r, &["bx0", "bx1"]),
                    s("MAXLEN"),
                    n(size / 10 - r.below(size / 50)),
                ],
            },
            38 | 39 => stream_group_on(r, caps, s("bx0")),
            _ => vec![s("RENAME"), s("bs1"), s("bs2")],
        };
        out.push(c);
    }
    out
}
