//! Randomised collections (seeded, so the same every run): sizes around the compact-encoding
//! thresholds and elements of every integer width and of string lengths around the packed
//! formats' boundaries (63/64, 127/128, 253/254 bytes, 4095/4096, 16 KB+).

use crate::client::{Client, Cmd, Rng};
use crate::populate::{n, SCORES};

const SIZES: &[usize] = &[
    1, 2, 3, 5, 12, 63, 100, 127, 128, 129, 200, 511, 512, 513, 700,
];

fn elem(rng: &mut Rng) -> Vec<u8> {
    match rng.below(16) {
        0..=3 => n(rng.next() as i64 >> rng.below(64)),
        4 => n(rng.below(13)),
        5..=8 => {
            let l = rng.below(20) as usize;
            rng.word(l)
        }
        9 => {
            let l = 60 + rng.below(10) as usize;
            rng.word(l)
        }
        10 => {
            let l = 120 + rng.below(16) as usize;
            rng.binary(l)
        }
        11 => {
            let l = 248 + rng.below(12) as usize;
            rng.binary(l)
        }
        12 if rng.below(40) == 0 => {
            let l = 4090 + rng.below(12) as usize;
            rng.word(l)
        }
        13 if rng.below(80) == 0 => rng.compressible(17_000),
        _ => {
            let l = rng.below(8) as usize;
            rng.binary(l)
        }
    }
}

/// A random score, never -0: a small skiplist (ZADD counted duplicates) is loaded back as a
/// listpack, which stores -0 as 0, so DEBUG DIGEST would change on reload (seen on Valkey
/// 8.1). The fixed dataset keeps -0 where the encoding survives a reload.
fn score(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => match SCORES[rng.below(SCORES.len() as u64) as usize] {
            "-0.0" => "0".to_string(),
            s => s.to_string(),
        },
        1 => (rng.next() as i64 >> rng.below(64)).to_string(),
        2 => {
            let f = f64::from_bits(rng.next());
            if f.is_nan() || f == 0.0 {
                "0.5".to_string()
            } else {
                format!("{f:e}")
            }
        }
        _ => format!("{}", (rng.below(1 << 20) as f64) / 64.0 - 1000.0),
    }
}

/// About 150 keys of random type and size, a fifth of them with an expiry.
pub fn random_keys(c: &mut Client, rng: &mut Rng) {
    let mut cmds = Vec::new();
    for i in 0..150 {
        let key = format!("rnd:{i:03}");
        let size = SIZES[rng.below(SIZES.len() as u64) as usize];
        let ints_only = rng.below(3) == 0;
        let mut x = match i % 5 {
            0 => Cmd::new(if rng.below(2) == 0 { "RPUSH" } else { "LPUSH" }).arg(&key),
            1 => Cmd::new("SADD").arg(&key),
            2 => Cmd::new("ZADD").arg(&key),
            3 => Cmd::new("HSET").arg(&key),
            _ => Cmd::new("RPUSH").arg(&key),
        };
        for _ in 0..size {
            let e = if ints_only {
                n(rng.next() as i64 >> rng.below(64))
            } else {
                elem(rng)
            };
            x = match i % 5 {
                2 => x.arg(score(rng)).arg(e),
                3 => x.arg(e).arg(elem(rng)),
                _ => x.arg(e),
            };
        }
        cmds.push(x);
        if rng.below(5) == 0 {
            let at = crate::populate::EXP + rng.below(1 << 40);
            cmds.push(Cmd::new("PEXPIREAT").arg(&key).arg(at.to_string()));
        }
    }
    c.pipe(&cmds);
}
