//! Fuzz command application: random argv (the write commands masters propagate, with
//! their option words, numbers, a few keys so types collide, and bulk commands that make
//! values big enough to be held natively) against the keyspace. Applying must never panic
//! (refusals are `ApplyError`s), snapshots are taken while it goes on, and every RDB we
//! write for a target must read back whole with our own reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replisnap::commands::{apply, StreamState};
use replisnap::keyspace::{write_snapshot, Keyspace};
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::rdb::{Options, RdbReader};

// As the daemon (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMES: &[&str] = &[
    "SET", "INCR", "DECR", "INCRBY", "DECRBY", "APPEND", "DELEX", "DELIFEQ", "MSETEX",
    "SETRANGE", "MSET", "MSETNX", "SETNX", "SETEX", "PSETEX", "SORT", "RESTORE", "LPUSH",
    "RPUSH", "LPUSHX", "RPUSHX", "LPOP", "RPOP", "LSET", "LTRIM", "LREM", "LINSERT", "LMOVE",
    "RPOPLPUSH", "HSET", "HMSET", "HSETNX", "HDEL", "HINCRBY", "HPEXPIREAT", "HPEXPIRE",
    "HEXPIREAT", "HEXPIRE", "HPERSIST", "HSETEX", "SADD", "SREM", "SMOVE", "SINTERSTORE",
    "SUNIONSTORE", "SDIFFSTORE", "ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE", "ZRANGESTORE",
    "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREMRANGEBYLEX", "SETBIT", "BITOP", "BITFIELD",
    "PFADD", "PFMERGE", "PFCOUNT", "ZADD", "ZINCRBY", "ZREM", "ZPOPMIN", "ZPOPMAX", "DEL",
    "UNLINK", "PEXPIREAT", "PEXPIRE", "EXPIREAT", "EXPIRE", "PERSIST", "RENAME", "RENAMENX",
    "COPY", "MOVE", "SWAPDB", "FUNCTION", "XADD", "XDEL", "XTRIM", "XSETID", "XDELEX",
    "XGROUP", "XACK", "XACKDEL", "XCLAIM", "SELECT", "MULTI", "EXEC", "FLUSHDB", "FLUSHALL",
    "PING", "SCRIPT",
];

const WORDS: &[&str] = &[
    "NX", "XX", "GT", "LT", "CH", "INCR", "EX", "PX", "EXAT", "PXAT", "KEEPTTL", "GET",
    "LIMIT", "WITHSCORES", "BYSCORE", "BYLEX", "REV", "-inf", "+inf", "(1", "[a", "-", "+",
    "*", "$", "0-0", "1-1", "5-*", "MAXLEN", "MINID", "~", "=", "0", "1", "-1", "2", "100",
    "3.5", "-0", "nan", "inf", "LEFT", "RIGHT", "BEFORE", "AFTER", "FIELDS", "FNX", "FXX",
    "REPLACE", "DB", "WEIGHTS", "AGGREGATE", "SUM", "MIN", "MAX", "STORE", "BY", "ALPHA",
    "ASC", "DESC", "FLUSH", "LOAD", "DELETE", "CREATE", "SETID", "DESTROY",
    "CREATECONSUMER", "DELCONSUMER", "MKSTREAM", "ENTRIESREAD", "IDLE", "TIME", "RETRYCOUNT",
    "FORCE", "JUSTID", "LASTID", "AND", "OR", "XOR", "NOT", "DIFF", "DIFF1", "ANDOR", "ONE",
    "u8", "i16", "#1", "OVERFLOW", "WRAP", "SAT", "FAIL", "INCRBY", "SET", "KEEPREF",
    "DELREF", "ACKED", "IFEQ", "IFNE", "ABSTTL", "IDLETIME", "FREQ", "NOMKSTREAM",
];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, rest) = self.0.split_at(n);
        self.0 = rest;
        a.to_vec()
    }
}

fn arg(inp: &mut Input) -> Option<Vec<u8>> {
    let b = inp.byte()?;
    Some(match b {
        0..=63 => format!("k{}", b % 4).into_bytes(),
        64..=127 => WORDS[usize::from(b) % WORDS.len()].as_bytes().to_vec(),
        128..=191 => {
            let hi = inp.byte().unwrap_or(0);
            let lo = inp.byte().unwrap_or(0);
            i16::from_be_bytes([hi, lo]).to_string().into_bytes()
        }
        _ => {
            let n = usize::from(inp.byte().unwrap_or(0) % 24);
            inp.bytes(n)
        }
    })
}

/// A command that makes a value big enough (300 elements) to be held natively.
fn bulk(inp: &mut Input) -> Vec<Vec<u8>> {
    let kind = inp.byte().unwrap_or(0);
    let key = format!("k{}", kind / 8 % 4).into_bytes();
    let base = usize::from(inp.byte().unwrap_or(0));
    let mut argv: Vec<Vec<u8>> = match kind % 5 {
        0 => vec![b"SADD".to_vec(), key],
        1 => vec![b"HSET".to_vec(), key],
        2 => vec![b"ZADD".to_vec(), key],
        3 => vec![b"RPUSH".to_vec(), key],
        _ => {
            // XADD one entry at a time would take 300 commands; a few big entries instead.
            let mut v = vec![b"XADD".to_vec(), key, b"*".to_vec()];
            for i in 0..300 {
                v.push(format!("f{i}").into_bytes());
                v.push(format!("{}", base * i).into_bytes());
            }
            return v;
        }
    };
    for i in 0..300 {
        if kind % 5 == 2 {
            argv.push(format!("{}", (base + i) % 17).into_bytes());
        }
        argv.push(format!("m{}", base + i).into_bytes());
        if kind % 5 == 1 {
            argv.push(format!("v{i}").into_bytes());
        }
    }
    argv
}

fn check_snapshot(ks: &mut Keyspace, version: &str) {
    let Some(snap) = ks.snapshot() else { return };
    let Ok(target) = Target::for_server(version.parse().expect("version")) else {
        return;
    };
    // A target may refuse what it cannot hold (e.g. field TTLs below 7.4): an error, fine.
    let Ok((bytes, _)) = write_snapshot(snap, &[], Vec::new(), target, &[], WriteOptions::default())
    else {
        return;
    };
    let len = bytes.len() as u64;
    let mut r = RdbReader::new(&bytes[..], Some(len), Options::default())
        .unwrap_or_else(|e| panic!("our RDB for {version} does not open: {e}"));
    loop {
        match r.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("our RDB for {version} does not read back: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    // A fresh keyspace per input (nothing carries over, so every crash reproduces from its
    // input alone), with 8 shards per database instead of 4,096: creating, flushing and
    // walking an empty database was most of the time (~460 exec/s). Sharding is the same
    // code whatever the count (tests/keyspace.rs runs the snapshot test with 8 and 1).
    let mut ks = Keyspace::with_shards(8);
    let mut st = StreamState::default();
    let versions = ["redis-7.0", "redis-7.4", "valkey-9.1", "redis-6.2"];
    let mut n = 0u32;
    while let Some(b) = inp.byte() {
        let argv = if b == 255 {
            bulk(&mut inp)
        } else {
            let mut argv = vec![NAMES[usize::from(b) % NAMES.len()].as_bytes().to_vec()];
            let args = inp.byte().unwrap_or(0) % 10;
            for _ in 0..args {
                match arg(&mut inp) {
                    Some(a) => argv.push(a),
                    None => break,
                }
            }
            argv
        };
        let _ = apply(&mut ks, &mut st, &argv);
        n += 1;
        if n % 16 == 0 && !st.in_multi {
            check_snapshot(&mut ks, versions[(n / 16) as usize % versions.len()]);
        }
    }
    if !st.in_multi {
        check_snapshot(&mut ks, "redis-7.4");
    }
});
