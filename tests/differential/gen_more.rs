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

/// One command of the families this file adds.
pub fn extra(r: &mut Rng, caps: Caps) -> Vec<Vec<u8>> {
    let _ = i;
    stream_group(r, caps)
}
