//! Helpers the HLL tests share: randomness, crafted elements, server access, comparisons.

#![allow(dead_code)]

pub use std::collections::BTreeMap;
pub use std::time::Duration;

pub use crate::support::{Reply, ServerBin, TestServer};
pub use replisnap::hll::{self, HllError, DENSE_LEN, HEADER_LEN, REGISTERS};

// ---------------------------------------------------------------------------------------------
// Randomness and crafted elements
// ---------------------------------------------------------------------------------------------

/// xorshift64: tiny, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seed of every random draw unless `HLL_SEED` is set.
pub const DEFAULT_SEED: u64 = 0x5eed_f411;

pub const M: u64 = 0xc6a4_a793_5bd1_e995;
pub const SEED: u64 = 0xadc8_3b19;

/// MurmurHash2-64A of an 8-byte input with the servers' seed (to check the inversion).
pub fn murmur8(data: [u8; 8]) -> u64 {
    let mut h = SEED ^ 8u64.wrapping_mul(M);
    let mut k = u64::from_le_bytes(data).wrapping_mul(M);
    k ^= k >> 47;
    k = k.wrapping_mul(M);
    h ^= k;
    h = h.wrapping_mul(M);
    h ^= h >> 47;
    h = h.wrapping_mul(M);
    h ^ (h >> 47)
}

/// The 8-byte element whose hash is `target`. Every step of the 8-byte hash is a bijection
/// (odd multiplier; a 47-bit xorshift is its own inverse), so we can run it backwards instead
/// of searching: this is how the workload reaches register values up to 51.
pub fn element_with_hash(target: u64) -> [u8; 8] {
    let mut inv = M; // Newton's iteration for the inverse of an odd number mod 2^64.
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(M.wrapping_mul(inv)));
    }
    let unshift = |x: u64| x ^ (x >> 47);
    let mut h = unshift(target);
    h = unshift(h.wrapping_mul(inv));
    h = h.wrapping_mul(inv);
    let mut k = h ^ SEED ^ 8u64.wrapping_mul(M);
    k = unshift(k.wrapping_mul(inv)).wrapping_mul(inv);
    k.to_le_bytes()
}

/// An element that raises register `index` to `count` (1..=51).
pub fn crafted(rng: &mut Rng, index: usize, count: u8) -> Vec<u8> {
    let high = if count <= 50 {
        // (count - 1) zero bits above the index bits, then a 1, then anything.
        ((rng.next() << 1) | 1) << (14 + u32::from(count) - 1)
    } else {
        0 // all 50 bits zero: the guard bit makes it 51
    };
    let target = index as u64 | high;
    let e = element_with_hash(target);
    assert_eq!(murmur8(e), target, "hash inversion");
    e.to_vec()
}

// ---------------------------------------------------------------------------------------------
// Server helpers
// ---------------------------------------------------------------------------------------------

/// MATRIX servers (missing ones handled by `require`) plus any installed extras.
pub fn servers() -> Vec<ServerBin> {
    let mut v = crate::support::require_matrix();
    v.extend(
        crate::support::EXTRAS
            .iter()
            .filter_map(|n| crate::support::find(n)),
    );
    v
}

pub fn send(srv: &TestServer, args: &[&[u8]]) -> Reply {
    srv.cmd(args)
        .unwrap_or_else(|e| panic!("{}: {:?}: {e}", srv.bin().name, show_args(args)))
}

pub fn get(srv: &TestServer, key: &str) -> Option<Vec<u8>> {
    match send(srv, &[b"GET", key.as_bytes()]) {
        Reply::Bulk(b) => b,
        r => panic!("{}: GET {key} answered {r:?}", srv.bin().name),
    }
}

pub fn set_max_bytes(srv: &TestServer, n: usize) {
    let r = srv.must(&["CONFIG", "SET", "hll-sparse-max-bytes", &n.to_string()]);
    assert!(r.is_ok(), "{}: CONFIG SET answered {r:?}", srv.bin().name);
}

pub fn show_args(args: &[&[u8]]) -> String {
    let parts: Vec<String> = args
        .iter()
        .take(6)
        .map(|a| {
            if a.iter().all(|b| b.is_ascii_graphic()) && a.len() <= 40 {
                String::from_utf8_lossy(a).into_owned()
            } else {
                format!("<{} bytes>", a.len())
            }
        })
        .collect();
    let more = args.len().saturating_sub(6);
    if more > 0 {
        format!("{} ... (+{more} args)", parts.join(" "))
    } else {
        parts.join(" ")
    }
}

pub fn describe(v: Option<&[u8]>) -> String {
    match v {
        None => "missing".into(),
        Some(v) if v.len() >= HEADER_LEN && v.starts_with(b"HYLL") => format!(
            "{} bytes, {}, card {:02x?}",
            v.len(),
            if v[4] == 0 { "dense" } else { "sparse" },
            &v[8..16]
        ),
        Some(v) => format!("{} bytes (not an HLL)", v.len()),
    }
}

pub fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// Panic with a useful message unless `server` equals `ours`.
pub fn assert_same(bin: &ServerBin, what: &str, server: Option<&[u8]>, ours: Option<&[u8]>) {
    if server == ours {
        return;
    }
    let first_diff = match (server, ours) {
        (Some(a), Some(b)) => a.iter().zip(b).position(|(x, y)| x != y),
        _ => None,
    };
    let window = |v: Option<&[u8]>| {
        let (Some(v), Some(at)) = (v, first_diff) else {
            return String::new();
        };
        let lo = at.saturating_sub(8);
        format!("{:02x?}", &v[lo..(at + 8).min(v.len())])
    };
    panic!(
        "{bin}: {what}\n  server: {}\n  ours:   {}\n  first difference at byte {first_diff:?}\n  \
         server there: {}\n  ours there:   {}",
        describe(server),
        describe(ours),
        window(server),
        window(ours)
    );
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------
