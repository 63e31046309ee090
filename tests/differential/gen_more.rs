//! More of the seeded workload: stream consumer groups, bitmaps, the *STORE commands,
//! RESTORE, SORT … STORE and the version-specific conditional writes. Split from gen.rs by
//! family; `command` there calls `extra` here for a share of the commands.

use super::gen::{value, Rng};

/// What the server under test understands.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub major: u32,
    pub minor: u32,
    pub valkey: bool,
}

impl Caps {
    fn redis_at_least(&self, major: u32, minor: u32) -> bool {
        !self.valkey && (self.major, self.minor) >= (major, minor)
    }
}

fn s(x: &str) -> Vec<u8> {
    x.as_bytes().to_vec()
}

fn n(x: u64) -> Vec<u8> {
    x.to_string().into_bytes()
}

fn i(x: i64) -> Vec<u8> {
    x.to_string().into_bytes()
}

/// Stream keys shared with gen.rs's stream commands (`x0`…), so groups meet trimming,
/// deletion and type collisions.
fn skey(r: &mut Rng) -> Vec<u8> {
    if r.below(5) == 0 {
        format!("shared{}", r.below(6)).into_bytes()
    } else {
        format!("x{}", r.below(8)).into_bytes()
    }
}

fn group(r: &mut Rng) -> Vec<u8> {
    format!("g{}", r.below(3)).into_bytes()
}

fn consumer(r: &mut Rng) -> Vec<u8> {
    format!("c{}", r.below(4)).into_bytes()
}

/// An ID somewhere in the recent past of the generator's stream IDs (may not exist).
fn recent_id(r: &mut Rng) -> Vec<u8> {
    let now = super::gen::current_ms();
    format!("{}-{}", now.saturating_sub(r.below(60)), r.below(3)).into_bytes()
}

/// A deletion policy (Redis 8.2+), or none.
fn policy(r: &mut Rng, c: &mut Vec<Vec<u8>>) {
    match r.below(4) {
        0 => c.push(s("KEEPREF")),
        1 => c.push(s("DELREF")),
        2 => c.push(s("ACKED")),
        _ => {}
    }
}

/// One stream consumer-group command, in the forms clients send (the master rewrites them).
pub fn stream_group(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    let k = skey(r);
    stream_group_on(r, caps, k)
}

/// One consumer-group command on stream `k`.
pub fn stream_group_on(r: &mut Rng, caps: Caps, k: Vec<u8>) -> Vec<Vec<u8>> {
    let g = group(r);
    let new_api = caps.redis_at_least(8, 2);
    match r.below(if new_api { 16 } else { 13 }) {
        0 | 1 => {
            let mut c = vec![s("XGROUP"), s("CREATE"), k, g];
            c.push(match r.below(3) {
                0 => s("$"),
                1 => s("0"),
                _ => recent_id(r),
            });
            if r.below(2) == 0 {
                c.push(s("MKSTREAM"));
            }
            if caps.major >= 7 && r.below(4) == 0 {
                c.extend([s("ENTRIESREAD"), n(r.below(30))]);
            }
            c
        }
        2 => {
            let mut c = vec![s("XGROUP"), s("SETID"), k, g];
            c.push(match r.below(3) {
                0 => s("$"),
                1 => s("0"),
                _ => recent_id(r),
            });
            if caps.major >= 7 && r.below(3) == 0 {
                c.extend([s("ENTRIESREAD"), n(r.below(30))]);
            }
            c
        }
        3 if r.below(4) == 0 => vec![s("XGROUP"), s("DESTROY"), k, g],
        3 => vec![s("XGROUP"), s("CREATECONSUMER"), k, g, consumer(r)],
        4 => vec![s("XGROUP"), s("DELCONSUMER"), k, g, consumer(r)],
        5..=7 => {
            let mut c = vec![s("XREADGROUP"), s("GROUP"), g, consumer(r)];
            c.extend([s("COUNT"), n(1 + r.below(4))]);
            if r.below(4) == 0 {
                c.push(s("NOACK"));
            }
            // Only new entries (`>`): a history read (`0`) raises delivery counts on the
            // master without propagating anything, so no replica (Redis's own included)
            // can follow it; docs/commands.md notes it.
            c.extend([s("STREAMS"), k, s(">")]);
            c
        }
        8 | 9 => {
            let mut c = vec![s("XACK"), k, g];
            for _ in 0..1 + r.below(3) {
                c.push(recent_id(r));
            }
            c
        }
        10 => {
            let mut c = vec![s("XCLAIM"), k, g, consumer(r), n(r.below(2))];
            for _ in 0..1 + r.below(3) {
                c.push(recent_id(r));
            }
            match r.below(3) {
                0 => c.extend([s("IDLE"), n(r.below(5000))]),
                1 => c.extend([s("TIME"), n(1_700_000_000_000 + r.below(1000))]),
                _ => {}
            }
            if r.below(3) == 0 {
                c.extend([s("RETRYCOUNT"), n(r.below(10))]);
            }
            if r.below(3) == 0 {
                c.push(s("FORCE"));
            }
            if r.below(3) == 0 {
                c.push(s("JUSTID"));
            }
            if r.below(4) == 0 {
                c.extend([s("LASTID"), recent_id(r)]);
            }
            c
        }
        11 | 12 => {
            let mut c = vec![
                s("XAUTOCLAIM"),
                k,
                g,
                consumer(r),
                n(0),
                s(r.pick(&["0", "0-0", "-"])),
            ];
            c.extend([s("COUNT"), n(1 + r.below(5))]);
            if r.below(3) == 0 {
                c.push(s("JUSTID"));
            }
            c
        }
        13 => {
            let mut c = vec![s("XACKDEL"), k, g];
            policy(r, &mut c);
            let ids = 1 + r.below(3);
            c.extend([s("IDS"), n(ids)]);
            for _ in 0..ids {
                c.push(recent_id(r));
            }
            c
        }
        14 => {
            let mut c = vec![s("XDELEX"), k];
            policy(r, &mut c);
            let ids = 1 + r.below(3);
            c.extend([s("IDS"), n(ids)]);
            for _ in 0..ids {
                c.push(recent_id(r));
            }
            c
        }
        _ => {
            // Trimming under a deletion policy, approximate or exact.
            let mut c = if r.below(2) == 0 {
                vec![s("XTRIM"), k]
            } else {
                vec![s("XADD"), k]
            };
            let xadd = c[0] == b"XADD";
            // MINID under DELREF/ACKED is left out: Redis 8.2+ propagate an approximate one
            // in a form no replica can replay (a Redis 8.6 replica diverges; we resync).
            if r.below(3) != 0 {
                c.extend([s("MAXLEN"), s(r.pick(&["=", "~"])), n(r.below(12))]);
                policy(r, &mut c);
            } else {
                c.extend([s("MINID"), s(r.pick(&["=", "~"])), recent_id(r)]);
                if r.below(2) == 0 {
                    c.push(s("KEEPREF"));
                }
            }
            if xadd {
                c.extend([s("*"), s("f"), value(r)]);
            }
            c
        }
    }
}

/// Keys of one family, or the names every type shares.
fn fkey(r: &mut Rng, prefix: &str) -> Vec<u8> {
    if r.below(5) == 0 {
        format!("shared{}", r.below(6)).into_bytes()
    } else {
        format!("{prefix}{}", r.below(8)).into_bytes()
    }
}

/// Bitmaps on the string keys (`s*`, shared with gen.rs's string commands).
pub fn bitmap(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    let k = fkey(r, "s");
    match r.below(6) {
        0 | 1 => vec![
            s("SETBIT"),
            k,
            n(match r.below(3) {
                0 => r.below(16),
                1 => r.below(700),
                _ => 4000 + r.below(100),
            }),
            n(r.below(2)),
        ],
        2 | 3 => {
            let ops: &[&'static str] = if caps.redis_at_least(8, 2) {
                &["AND", "OR", "XOR", "NOT", "DIFF", "DIFF1", "ANDOR", "ONE"]
            } else {
                &["AND", "OR", "XOR", "NOT"]
            };
            let op = r.pick(ops);
            let mut c = vec![s("BITOP"), s(op), fkey(r, "s")];
            let srcs = match op {
                "NOT" => 1,
                "DIFF" | "DIFF1" | "ANDOR" => 2 + r.below(2),
                _ => 1 + r.below(3),
            };
            for _ in 0..srcs {
                c.push(fkey(r, "s"));
            }
            c
        }
        _ => {
            let mut c = vec![s("BITFIELD"), k];
            for _ in 0..1 + r.below(3) {
                // OVERFLOW FAIL is left out: a failing write that grew the string leaves
                // the master with bytes it never propagates (every replica lacks them).
                if r.below(3) == 0 {
                    c.extend([s("OVERFLOW"), s(r.pick(&["WRAP", "SAT"]))]);
                }
                let signed = r.below(2) == 0;
                let bits = if signed {
                    1 + r.below(64)
                } else {
                    1 + r.below(63)
                };
                let ty = format!("{}{bits}", if signed { "i" } else { "u" }).into_bytes();
                let off = if r.below(3) == 0 {
                    format!("#{}", r.below(10)).into_bytes()
                } else {
                    n(r.below(200))
                };
                match r.below(3) {
                    0 => c.extend([s("GET"), ty, off]),
                    1 => c.extend([s("SET"), ty, off, i(r.next() as i64 >> r.below(64))]),
                    _ => c.extend([s("INCRBY"), ty, off, i((r.next() as i64) >> (r.below(64)))]),
                }
            }
            c
        }
    }
}

/// A score as a client writes it, edges included.
fn zscore(r: &mut Rng) -> Vec<u8> {
    s(r.pick(&[
        "0", "-0", "1", "2.5", "-3", "inf", "-inf", "1e300", "0.1", "7",
    ]))
}

/// The *STORE family and the range removals.
pub fn stores(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    match r.below(7) {
        0 | 1 => {
            let mut c = vec![
                s(r.pick(&["SINTERSTORE", "SUNIONSTORE", "SDIFFSTORE"])),
                fkey(r, "t"),
            ];
            for _ in 0..1 + r.below(3) {
                c.push(fkey(r, "t"));
            }
            c
        }
        2 | 3 => {
            let cmds: &[&'static str] = if caps.major >= 7 || (caps.major == 6 && caps.minor >= 2) {
                &["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"]
            } else {
                &["ZUNIONSTORE", "ZINTERSTORE"]
            };
            let cmd = r.pick(cmds);
            let keys = 1 + r.below(3);
            let mut c = vec![s(cmd), fkey(r, "z"), n(keys)];
            for _ in 0..keys {
                // Sets are valid sources too (members score 1).
                c.push(if r.below(4) == 0 {
                    fkey(r, "t")
                } else {
                    fkey(r, "z")
                });
            }
            if cmd != "ZDIFFSTORE" {
                if r.below(2) == 0 {
                    c.push(s("WEIGHTS"));
                    for _ in 0..keys {
                        c.push(zscore(r));
                    }
                }
                if r.below(2) == 0 {
                    c.extend([s("AGGREGATE"), s(r.pick(&["SUM", "MIN", "MAX"]))]);
                }
            }
            c
        }
        4 => {
            let mut c = vec![s("ZRANGESTORE"), fkey(r, "z"), fkey(r, "z")];
            let rev = r.below(3) == 0;
            match r.below(3) {
                0 => {
                    c.extend([i(r.below(8) as i64 - 4), i(r.below(10) as i64 - 3)]);
                }
                1 => {
                    let (a, b) = (zscore(r), zscore(r));
                    let mut a = a;
                    if r.below(3) == 0 {
                        a.insert(0, b'(');
                    }
                    c.extend([a, b, s("BYSCORE")]);
                }
                _ => {
                    // Lex ranges on sets of one score (on mixed scores a skiplist set's
                    // answer depends on the master's random levels: we resync on those).
                    c[2] = lex_key(r);
                    let bound = |r: &mut Rng| match r.below(4) {
                        0 => s("-"),
                        1 => s("+"),
                        2 => format!("[m{}", r.below(12)).into_bytes(),
                        _ => format!("(m{}", r.below(12)).into_bytes(),
                    };
                    let (a, b) = (bound(r), bound(r));
                    c.extend([a, b, s("BYLEX")]);
                }
            }
            if rev {
                c.push(s("REV"));
            }
            if (c.contains(&s("BYSCORE")) || c.contains(&s("BYLEX"))) && r.below(3) == 0 {
                c.extend([s("LIMIT"), n(r.below(3)), i(r.below(5) as i64 - 1)]);
            }
            c
        }
        5 => vec![
            s("ZREMRANGEBYRANK"),
            fkey(r, "z"),
            i(r.below(6) as i64 - 3),
            i(r.below(6) as i64 - 2),
        ],
        _ => {
            if r.below(2) == 0 {
                vec![s("ZREMRANGEBYSCORE"), fkey(r, "z"), zscore(r), zscore(r)]
            } else {
                vec![
                    s("ZREMRANGEBYLEX"),
                    lex_key(r),
                    s(r.pick(&["-", "[m3", "(m5"])),
                    s(r.pick(&["+", "[m8", "(m2"])),
                ]
            }
        }
    }
}

/// Sorted sets whose members all score 0, for lex ranges; sometimes over 128 members.
fn lex_key(r: &mut Rng) -> Vec<u8> {
    format!("lex{}", r.below(3)).into_bytes()
}

fn lex_fill(r: &mut Rng) -> Vec<Vec<u8>> {
    let mut c = vec![s("ZADD"), lex_key(r)];
    for _ in 0..1 + r.below(20) {
        c.push(s("0"));
        c.push(format!("m{}", r.below(200)).into_bytes());
    }
    c
}

/// HyperLogLogs (`p*`, colliding with the string and shared keys).
pub fn hll(r: &mut Rng) -> Vec<Vec<u8>> {
    let k = |r: &mut Rng| {
        if r.below(6) == 0 {
            fkey(r, "s")
        } else {
            format!("p{}", r.below(5)).into_bytes()
        }
    };
    match r.below(8) {
        0..=3 => {
            let mut c = vec![s("PFADD"), k(r)];
            // Sometimes many elements at once: sparse grows past its limit and turns dense.
            let count = if r.below(10) == 0 {
                400 + r.below(2000)
            } else {
                r.below(6)
            };
            let base = r.below(1_000_000);
            for j in 0..count {
                c.push(format!("e{}", base + j).into_bytes());
            }
            c
        }
        4 => {
            let mut c = vec![s("PFMERGE"), k(r)];
            for _ in 0..r.below(3) {
                c.push(k(r));
            }
            c
        }
        5 | 6 => vec![s("PFCOUNT"), k(r)],
        _ => vec![s("PFCOUNT"), k(r), k(r)],
    }
}

/// Conditional and multi-key string writes of newer servers.
pub fn strings_new(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    let k = fkey(r, "s");
    let redis84 = caps.redis_at_least(8, 4);
    let valkey81 = caps.valkey && (caps.major, caps.minor) >= (8, 1);
    match r.below(4) {
        0 if redis84 || valkey81 => {
            let cond = if redis84 {
                r.pick(&["IFEQ", "IFNE"])
            } else {
                "IFEQ"
            };
            let mut c = vec![s("SET"), k, value(r), s(cond), value(r)];
            if r.below(3) == 0 {
                c.extend([s("PX"), n(100_000 + r.below(1000))]);
            }
            c
        }
        1 if redis84 => {
            let mut c = vec![s("DELEX"), k];
            if r.below(2) == 0 {
                c.extend([s(r.pick(&["IFEQ", "IFNE"])), value(r)]);
            }
            c
        }
        1 if caps.valkey && caps.major >= 9 => vec![s("DELIFEQ"), k, value(r)],
        2 if redis84 => {
            let pairs = 1 + r.below(3);
            let mut c = vec![s("MSETEX"), n(pairs)];
            for _ in 0..pairs {
                c.push(fkey(r, "s"));
                c.push(value(r));
            }
            match r.below(4) {
                0 => c.push(s("NX")),
                1 => c.push(s("XX")),
                _ => {}
            }
            match r.below(4) {
                0 => c.extend([s("PX"), n(100_000 + r.below(1000))]),
                1 => c.extend([s("EXAT"), n(4_000_000_000 + r.below(1000))]),
                2 => c.push(s("KEEPTTL")),
                _ => {}
            }
            c
        }
        _ => {
            // RESTORE from a DUMP inside a script: the master propagates the RESTORE.
            let p = r.pick(&["s", "l", "h", "z", "t", "x", "p"]);
            let script = "local d = redis.call('DUMP', KEYS[1]); \
                          if d then return redis.call('RESTORE', KEYS[2], ARGV[1], d, 'REPLACE', 'ABSTTL') end; return 0";
            vec![
                s("EVAL"),
                s(script),
                n(2),
                fkey(r, p),
                fkey(r, p),
                s(r.pick(&["0", "4000000000000"])),
            ]
        }
    }
}

/// SORT … STORE over lists, sets and sorted sets, with BY and GET patterns.
pub fn sort_store(r: &mut Rng) -> Vec<Vec<u8>> {
    // Not sorted sets: SORT converts one to a skiplist on the master even when it then
    // stores nothing and propagates nothing (no replica can follow that).
    let fam = r.pick(&["l", "t"]);
    // BY patterns sort lists only list commands touch (`sortl*`): on a set or sorted set
    // ALPHA BY ties take the master's internal order (we resync on those).
    let list = fam == "l" && r.below(5) != 0;
    let src = if list {
        let k = format!("sortl{}", r.below(3)).into_bytes();
        if r.below(3) == 0 {
            let mut c = vec![s("RPUSH"), k];
            for _ in 0..1 + r.below(6) {
                c.push(format!("{}", r.below(12)).into_bytes());
            }
            return c;
        }
        k
    } else {
        fkey(r, fam)
    };
    let mut c = vec![s("SORT"), src];
    // BY patterns on lists over the whole list: elsewhere ALPHA BY ties take the master's
    // internal order (we resync on those).
    let by_pattern = list && r.below(2) == 0;
    if by_pattern {
        c.extend([s("BY"), s(r.pick(&["s*", "h*->f1"]))]);
    } else if r.below(3) == 0 {
        c.extend([s("BY"), s("nosort")]);
    }
    if !by_pattern && r.below(3) == 0 {
        c.extend([s("LIMIT"), n(r.below(3)), i(r.below(5) as i64 - 1)]);
    }
    for _ in 0..r.below(3) {
        c.extend([s("GET"), s(r.pick(&["#", "s*", "h*->f2"]))]);
    }
    if r.below(2) == 0 {
        c.push(s("DESC"));
    }
    // ALPHA always: numeric sorts of our mixed values fail on the master (no effect).
    c.push(s("ALPHA"));
    c.extend([s("STORE"), fkey(r, "l")]);
    c
}

/// One command of the families this file adds.
pub fn extra(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    match r.below(11) {
        0 | 1 => stream_group(r, caps),
        2 => bitmap(r, caps),
        3 => lex_fill(r),
        4 | 5 => hll(r),
        6 => strings_new(r, caps),
        7 => sort_store(r),
        _ => stores(r, caps),
    }
}
