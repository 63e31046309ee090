//! The seeded workload: commands the replica applies, with odd arguments, colliding key
//! names across types (the master refuses those with WRONGTYPE and propagates nothing),
//! MULTI/EXEC blocks and several databases.

pub struct Rng(pub u64);

/// Stream IDs only grow: a counter the generator draws explicit IDs from.
static NEXT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub fn stream_id(r: &mut Rng) -> String {
    let ms = NEXT_MS.fetch_add(1 + r.below(3), std::sync::atomic::Ordering::Relaxed);
    format!("{ms}-{}", r.below(3))
}

/// The millisecond part the next generated stream ID starts from.
pub fn current_ms() -> u64 {
    NEXT_MS.load(std::sync::atomic::Ordering::Relaxed)
}

fn old_stream_id(r: &mut Rng) -> String {
    let now = NEXT_MS.load(std::sync::atomic::Ordering::Relaxed);
    format!("{}-{}", now.saturating_sub(r.below(40)), r.below(3))
}

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick(&mut self, xs: &[&'static str]) -> &'static str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "12",
    "127",
    "-128",
    "32767",
    "9223372036854775807",
    "-9223372036854775808",
    "007",
    "1e3",
    "3.5",
];

pub fn value(r: &mut Rng) -> Vec<u8> {
    match r.below(8) {
        0 => Vec::new(),
        1 => r.pick(INTS).as_bytes().to_vec(),
        2 => vec![0, 0xff, b'\n', b'\r'],
        3 => "x".repeat(60 + r.below(10) as usize).into_bytes(),
        4 => "long-".repeat(30).into_bytes(),
        _ => format!("v{}", r.below(50)).into_bytes(),
    }
}

fn key(r: &mut Rng, prefix: &str) -> String {
    // One in four names is shared by every type: collisions, WRONGTYPE, type changes.
    if r.below(4) == 0 {
        format!("shared{}", r.below(6))
    } else {
        format!("{prefix}{}", r.below(8))
    }
}

fn score(r: &mut Rng) -> String {
    match r.below(8) {
        0 => "inf".into(),
        1 => "-inf".into(),
        2 => format!("{}", r.below(100) as f64 / 7.0),
        3 => format!("{}", r.below(5)),
        4 => "1e300".into(),
        // -0: a compact (listpack) set on Redis 7.0+/Valkey stores it as 0, a plain one keeps it.
        5 => "-0".into(),
        _ => format!("-{}.5", r.below(20)),
    }
}

/// One command as arguments.
/// `field_ttl`: the server has hash-field expiry (HPEXPIRE, HPERSIST, HSETEX).
pub fn command(r: &mut Rng, caps: super::gen_more::Caps, field_ttl: bool) -> Vec<Vec<u8>> {
    let server_major = caps.major;
    if r.below(8) == 0 {
        return super::gen_more::extra(r, caps);
    }
    let s = |x: &str| x.as_bytes().to_vec();
    let n = |x: u64| x.to_string().into_bytes();
    if field_ttl && r.below(25) == 0 {
        let k = key(r, "h").into_bytes();
        let f = |r: &mut Rng| format!("f{}", r.below(10)).into_bytes();
        return match r.below(5) {
            0 => {
                let mut c = vec![
                    s(r.pick(&["HPEXPIRE", "HEXPIRE"])),
                    k,
                    n(100_000 + r.below(1000)),
                ];
                if r.below(2) == 0 {
                    c.push(s(r.pick(&["NX", "XX", "GT", "LT"])));
                }
                c.extend([s("FIELDS"), n(2), f(r), f(r)]);
                c
            }
            1 => vec![s("HPERSIST"), k, s("FIELDS"), n(1), f(r)],
            _ => {
                let mut c = vec![s("HSETEX"), k];
                match r.below(5) {
                    0 => c.push(s("FNX")),
                    1 => c.push(s("FXX")),
                    _ => {}
                }
                match r.below(4) {
                    0 => c.push(s("KEEPTTL")),
                    1 => c.extend([s("PX"), n(200_000 + r.below(1000))]),
                    2 => c.extend([s("EX"), n(300 + r.below(100))]),
                    _ => {}
                }
                // Two distinct fields: redis 8.6.3 fails an assertion (and dies) on
                // `HSETEX k FNX … FIELDS 2 f6 "" f6 x`, the same field twice.
                let a = r.below(10);
                let b = (a + 1 + r.below(9)) % 10;
                c.extend([
                    s("FIELDS"),
                    n(2),
                    format!("f{a}").into_bytes(),
                    value(r),
                    format!("f{b}").into_bytes(),
                    value(r),
                ]);
                c
            }
        };
    }
    if server_major >= 7 && r.below(150) == 0 {
        // Function libraries: names collide on purpose (LOAD of an existing one fails on the
        // master unless REPLACE; DELETE of a missing one fails), function names are unique.
        let lib = r.below(3);
        let v = r.below(5);
        let code = format!("#!lua name=lib{lib}\nredis.register_function('f{lib}', function(keys, args) return {v} end)");
        return match r.below(6) {
            0 => vec![s("FUNCTION"), s("DELETE"), format!("lib{lib}").into_bytes()],
            1 => vec![s("FUNCTION"), s("FLUSH")],
            2 | 3 => vec![s("FUNCTION"), s("LOAD"), s("REPLACE"), code.into_bytes()],
            _ => vec![s("FUNCTION"), s("LOAD"), code.into_bytes()],
        };
    }
    if r.below(60) == 0 {
        // A script: the master propagates its effects (wrapped in MULTI/EXEC), not the call.
        let script = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('RPUSH', KEYS[2], ARGV[1]); \
                      if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCR', KEYS[3]) end; return 1";
        return vec![
            s("EVAL"),
            s(script),
            n(3),
            key(r, "s").into_bytes(),
            key(r, "l").into_bytes(),
            format!("cnt{}", r.below(3)).into_bytes(),
            value(r),
        ];
    }
    if r.below(12) == 0 {
        let k = key(r, "x").into_bytes();
        return match r.below(6) {
            0 => {
                let mut c = vec![s("XDEL"), k];
                for _ in 0..1 + r.below(3) {
                    c.push(old_stream_id(r).into_bytes());
                }
                c
            }
            1 => match r.below(2) {
                0 => vec![
                    s("XTRIM"),
                    k,
                    s("MAXLEN"),
                    s(r.pick(&["=", "~"])),
                    n(r.below(20)),
                ],
                _ => vec![s("XTRIM"), k, s("MINID"), old_stream_id(r).into_bytes()],
            },
            // ENTRIESADDED only grows: lowering it below a group's read counter makes
            // Redis 8.2+'s own replicas cap that counter where the master does not.
            2 if server_major >= 7 => vec![
                s("XSETID"),
                k,
                stream_id(r).into_bytes(),
                s("ENTRIESADDED"),
                n(100_000 + current_ms()),
                s("MAXDELETEDID"),
                s("1-0"),
            ],
            _ => {
                let mut c = vec![s("XADD"), k];
                if r.below(4) == 0 {
                    c.extend([s("MAXLEN"), s(r.pick(&["=", "~"])), n(5 + r.below(30))]);
                }
                if r.below(3) == 0 {
                    c.push(s("*"));
                } else {
                    c.push(stream_id(r).into_bytes());
                }
                let fields = if r.below(2) == 0 { 1 } else { 2 };
                for j in 0..fields {
                    c.push(format!("f{}", j + r.below(2)).into_bytes());
                    c.push(value(r));
                }
                c
            }
        };
    }
    match r.below(44) {
        40 => {
            let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
            vec![
                s(r.pick(&["RENAME", "RENAMENX"])),
                key(r, p).into_bytes(),
                key(r, p).into_bytes(),
            ]
        }
        41 => {
            let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
            let mut c = vec![s("COPY"), key(r, p).into_bytes(), key(r, p).into_bytes()];
            if r.below(2) == 0 {
                c.extend([s("DB"), s(r.pick(&["0", "1", "3"]))]);
            }
            if r.below(2) == 0 {
                c.push(s("REPLACE"));
            }
            c
        }
        42 => {
            let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
            vec![
                s("MOVE"),
                key(r, p).into_bytes(),
                s(r.pick(&["0", "1", "3"])),
            ]
        }
        43 => vec![
            s("SWAPDB"),
            s(r.pick(&["0", "1", "3"])),
            s(r.pick(&["0", "1", "3"])),
        ],
        0..=2 => {
            let mut c = vec![s("SET"), key(r, "s").into_bytes(), value(r)];
            match r.below(6) {
                0 => c.extend([s("EX"), n(1000 + r.below(1000))]),
                1 => c.extend([s("PX"), n(100_000 + r.below(1000))]),
                2 => c.push(s("NX")),
                3 => c.push(s("XX")),
                4 => c.push(s("KEEPTTL")),
                _ => {}
            }
            c
        }
        3 => vec![s(r.pick(&["INCR", "DECR"])), key(r, "s").into_bytes()],
        4 => vec![
            s(r.pick(&["INCRBY", "DECRBY"])),
            key(r, "s").into_bytes(),
            s(r.pick(INTS)),
        ],
        5 => vec![s("APPEND"), key(r, "s").into_bytes(), value(r)],
        6 => vec![
            s("SETRANGE"),
            key(r, "s").into_bytes(),
            n(r.below(80)),
            value(r),
        ],
        7 => vec![
            s("MSET"),
            key(r, "s").into_bytes(),
            value(r),
            key(r, "s").into_bytes(),
            value(r),
        ],
        8 => vec![
            s(r.pick(&["SETNX", "MSETNX"])),
            key(r, "s").into_bytes(),
            value(r),
        ],
        9 => vec![
            s(r.pick(&["DEL", "UNLINK"])),
            {
                let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
                key(r, p)
            }
            .into_bytes(),
        ],
        10 => vec![
            s("EXPIRE"),
            {
                let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
                key(r, p)
            }
            .into_bytes(),
            n(500 + r.below(500)),
        ],
        11 => vec![
            s("PERSIST"),
            {
                let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
                key(r, p)
            }
            .into_bytes(),
        ],
        12..=13 => {
            let mut c = vec![
                s(r.pick(&["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"])),
                key(r, "l").into_bytes(),
            ];
            for _ in 0..1 + r.below(4) {
                c.push(value(r));
            }
            c
        }
        14 => {
            let mut c = vec![s(r.pick(&["LPOP", "RPOP"])), key(r, "l").into_bytes()];
            // LPOP/RPOP with a count exist from 6.2 on.
            if r.below(2) == 0 {
                c.push(n(r.below(4)));
            }
            c
        }
        15 => vec![
            s("LSET"),
            key(r, "l").into_bytes(),
            format!("{}", r.below(6) as i64 - 3).into_bytes(),
            value(r),
        ],
        16 => vec![
            s("LTRIM"),
            key(r, "l").into_bytes(),
            format!("{}", r.below(6) as i64 - 2).into_bytes(),
            format!("{}", r.below(10) as i64 - 3).into_bytes(),
        ],
        17 => vec![
            s("LREM"),
            key(r, "l").into_bytes(),
            format!("{}", r.below(5) as i64 - 2).into_bytes(),
            value(r),
        ],
        18 => vec![
            s("LINSERT"),
            key(r, "l").into_bytes(),
            s(r.pick(&["BEFORE", "AFTER"])),
            value(r),
            value(r),
        ],
        19 => vec![
            s("LMOVE"),
            key(r, "l").into_bytes(),
            key(r, "l").into_bytes(),
            s(r.pick(&["LEFT", "RIGHT"])),
            s(r.pick(&["LEFT", "RIGHT"])),
        ],
        20 => vec![
            s("RPOPLPUSH"),
            key(r, "l").into_bytes(),
            key(r, "l").into_bytes(),
        ],
        21..=23 => {
            let mut c = vec![s("HSET"), key(r, "h").into_bytes()];
            for _ in 0..1 + r.below(3) {
                c.push(format!("f{}", r.below(10)).into_bytes());
                c.push(value(r));
            }
            c
        }
        24 => vec![
            s("HSETNX"),
            key(r, "h").into_bytes(),
            format!("f{}", r.below(10)).into_bytes(),
            value(r),
        ],
        25 => vec![
            s("HDEL"),
            key(r, "h").into_bytes(),
            format!("f{}", r.below(10)).into_bytes(),
            format!("f{}", r.below(10)).into_bytes(),
        ],
        26 => vec![
            s("HINCRBY"),
            key(r, "h").into_bytes(),
            format!("f{}", r.below(10)).into_bytes(),
            s(r.pick(INTS)),
        ],
        27..=28 => {
            let mut c = vec![s("SADD"), key(r, "t").into_bytes()];
            for _ in 0..1 + r.below(4) {
                c.push(value(r));
            }
            c
        }
        29 => vec![s("SREM"), key(r, "t").into_bytes(), value(r), value(r)],
        30 => vec![
            s("SMOVE"),
            key(r, "t").into_bytes(),
            key(r, "t").into_bytes(),
            value(r),
        ],
        31..=33 => {
            let mut c = vec![s("ZADD"), key(r, "z").into_bytes()];
            match r.below(8) {
                0 => c.push(s("NX")),
                1 => c.push(s("XX")),
                2 => c.push(s("GT")),
                3 => c.push(s("LT")),
                4 => c.push(s("CH")),
                _ => {}
            }
            for _ in 0..1 + r.below(3) {
                c.push(score(r).into_bytes());
                // Integer members are stored as integer entries in a listpack.
                c.push(match r.below(4) {
                    0 => format!("{}", r.below(12) as i64 - 4).into_bytes(),
                    _ => format!("m{}", r.below(12)).into_bytes(),
                });
            }
            c
        }
        34 => vec![
            s("ZINCRBY"),
            key(r, "z").into_bytes(),
            score(r).into_bytes(),
            format!("m{}", r.below(12)).into_bytes(),
        ],
        35 => vec![
            s("ZREM"),
            key(r, "z").into_bytes(),
            format!("m{}", r.below(12)).into_bytes(),
        ],
        36 => vec![
            s(r.pick(&["ZPOPMIN", "ZPOPMAX"])),
            key(r, "z").into_bytes(),
            n(1 + r.below(3)),
        ],
        37 => vec![s("SELECT"), s(r.pick(&["0", "1", "3"]))],
        38 => vec![
            s("PEXPIREAT"),
            {
                let p = r.pick(&["s", "l", "h", "z", "t", "x"]);
                key(r, p)
            }
            .into_bytes(),
            n(4_000_000_000_000 + r.below(1000)),
        ],
        _ => vec![
            s(r.pick(&["SETEX", "PSETEX"])),
            key(r, "s").into_bytes(),
            n(100_000 + r.below(1000)),
            value(r),
        ],
    }
}
