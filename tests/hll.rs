//! `replisnap::hll` against real servers: every value we compute must equal, byte for byte,
//! what the server stores (`GET key`) after the same command.
//!
//! * `workload_matches_servers`: seeded random PFADD / PFMERGE / PFCOUNT (one and several
//!   keys) / PFDEBUG TODENSE / DEL on a few keys, under several `hll-sparse-max-bytes`; after
//!   every command each key it touched is compared, and the replies too.
//! * `corrupt_values_match_servers`: mutated and hand-made values are SET on the server and
//!   one command runs on them; the server must refuse exactly when we return an error (with
//!   the same error code), and store our bytes when it accepts.
//! * `count_and_todense_propagate`: a real replica of the same version shows that a
//!   single-key PFCOUNT with a stale cache and PFDEBUG TODENSE on a sparse value reach
//!   replicas, and that a multi-key PFCOUNT writes nothing.
//! * `garbage_never_panics`: random mutations of valid values, no server.
//!
//! `HLL_SEED` picks the seed (default fixed), `HLL_COMMANDS` the commands per phase.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use replisnap::hll::{self, HllError, DENSE_LEN, HEADER_LEN, REGISTERS};
use support::{Reply, ServerBin, TestServer};

// ---------------------------------------------------------------------------------------------
// Randomness and crafted elements
// ---------------------------------------------------------------------------------------------

/// xorshift64: tiny, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seed of every random draw unless `HLL_SEED` is set.
const DEFAULT_SEED: u64 = 0x5eed_f411;

const M: u64 = 0xc6a4_a793_5bd1_e995;
const SEED: u64 = 0xadc8_3b19;

/// MurmurHash2-64A of an 8-byte input with the servers' seed (to check the inversion).
fn murmur8(data: [u8; 8]) -> u64 {
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
fn element_with_hash(target: u64) -> [u8; 8] {
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
fn crafted(rng: &mut Rng, index: usize, count: u8) -> Vec<u8> {
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
fn servers() -> Vec<ServerBin> {
    let mut v = support::require_matrix();
    v.extend(support::EXTRAS.iter().filter_map(|n| support::find(n)));
    v
}

fn send(srv: &TestServer, args: &[&[u8]]) -> Reply {
    srv.cmd(args)
        .unwrap_or_else(|e| panic!("{}: {:?}: {e}", srv.bin().name, show_args(args)))
}

fn get(srv: &TestServer, key: &str) -> Option<Vec<u8>> {
    match send(srv, &[b"GET", key.as_bytes()]) {
        Reply::Bulk(b) => b,
        r => panic!("{}: GET {key} answered {r:?}", srv.bin().name),
    }
}

fn set_max_bytes(srv: &TestServer, n: usize) {
    let r = srv.must(&["CONFIG", "SET", "hll-sparse-max-bytes", &n.to_string()]);
    assert!(r.is_ok(), "{}: CONFIG SET answered {r:?}", srv.bin().name);
}

fn show_args(args: &[&[u8]]) -> String {
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

fn describe(v: Option<&[u8]>) -> String {
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

fn hex(v: &[u8]) -> String {
    v.iter().map(|b| format!("{b:02x}")).collect()
}

/// Panic with a useful message unless `server` equals `ours`.
fn assert_same(bin: &ServerBin, what: &str, server: Option<&[u8]>, ours: Option<&[u8]>) {
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

const KEYS: &[&str] = &["h0", "h1", "h2", "h3", "h4", "h5"];

struct Workload<'a> {
    srv: &'a TestServer,
    rng: Rng,
    model: BTreeMap<&'static str, Vec<u8>>,
    max_bytes: usize,
    /// Elements reused on purpose (repeats change nothing and must say so).
    pool: Vec<Vec<u8>>,
    commands: u64,
    comparisons: u64,
    promotions: u64,
    /// Longest sparse value stored, per `hll-sparse-max-bytes` phase.
    longest_sparse: BTreeMap<usize, usize>,
    /// Whether the command being built may offer values above 32 (which promote a sparse
    /// value at once); rare, so sparse values also grow to the size limit.
    high_ok: bool,
}

impl Workload<'_> {
    fn key(&mut self) -> &'static str {
        KEYS[self.rng.below(KEYS.len() as u64) as usize]
    }

    fn element(&mut self) -> Vec<u8> {
        let r = &mut self.rng;
        match r.below(100) {
            0..=29 => {
                let len = r.below(25) as usize;
                r.bytes(len)
            }
            30..=44 => {
                let i = r.below(self.pool.len() as u64) as usize;
                self.pool[i].clone()
            }
            45..=49 => Vec::new(),
            50..=89 => {
                let index = r.below(REGISTERS as u64) as usize;
                let count = if self.high_ok && r.chance(5) {
                    r.range(33, 51) as u8 // needs dense: promotes a sparse value
                } else if r.chance(20) {
                    r.range(9, 32) as u8
                } else {
                    r.range(1, 8) as u8
                };
                crafted(r, index, count)
            }
            _ => {
                // A neighbour of a recent register with a small value: adjacent VALs of the
                // same value are what the merge window fuses.
                let base = (r.below(64) * 256) as usize;
                let index = base + r.below(6) as usize;
                let count = r.range(1, 3) as u8;
                crafted(r, index, count)
            }
        }
    }

    fn elements(&mut self) -> Vec<Vec<u8>> {
        self.high_ok = self.rng.chance(4);
        let n = match self.rng.below(100) {
            0..=69 => self.rng.range(1, 5),
            70..=79 => 0,
            80..=95 => self.rng.range(20, 200),
            _ => self.rng.range(500, 1500),
        };
        (0..n).map(|_| self.element()).collect()
    }

    /// Compare `GET key` with the model.
    fn check(&mut self, key: &str, after: &str) {
        let server = get(self.srv, key);
        let ours = self.model.get(key).map(Vec::as_slice);
        assert_same(
            self.srv.bin(),
            &format!("key {key} after {after} (max bytes {})", self.max_bytes),
            server.as_deref(),
            ours,
        );
        self.comparisons += 1;
    }

    fn store(&mut self, key: &'static str, v: Vec<u8>) {
        let was_sparse = self.model.get(key).is_some_and(|o| o[4] == 1);
        if was_sparse && v[4] == 0 {
            self.promotions += 1;
        }
        if v[4] == 1 {
            let longest = self.longest_sparse.entry(self.max_bytes).or_default();
            *longest = (*longest).max(v.len());
        }
        self.model.insert(key, v);
    }

    fn pfadd(&mut self) {
        let key = self.key();
        let elements = self.elements();
        let refs: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
        let (v, changed) = hll::pfadd(
            self.model.get(key).map(Vec::as_slice),
            &refs,
            self.max_bytes,
        )
        .unwrap_or_else(|e| panic!("our pfadd on {key}: {e}"));
        let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
        args.extend(&refs);
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert_eq!(r, Reply::Int(changed.into()), "{}: {what}", self.srv.bin());
        self.store(key, v);
        self.check(key, &what);
    }

    fn pfmerge(&mut self) {
        let dest = self.key();
        let n = self.rng.range(1, 3);
        let sources: Vec<&'static str> = (0..n).map(|_| self.key()).collect();
        let values: Vec<&[u8]> = sources
            .iter()
            .filter_map(|k| self.model.get(k).map(Vec::as_slice))
            .collect();
        let v = hll::pfmerge(
            self.model.get(dest).map(Vec::as_slice),
            &values,
            self.max_bytes,
        )
        .unwrap_or_else(|e| panic!("our pfmerge into {dest}: {e}"));
        let mut args: Vec<&[u8]> = vec![b"PFMERGE", dest.as_bytes()];
        args.extend(sources.iter().map(|k| k.as_bytes()));
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert!(r.is_ok(), "{}: {what} answered {r:?}", self.srv.bin());
        self.store(dest, v);
        self.check(dest, &what);
        for s in sources {
            self.check(s, &what);
        }
    }

    fn pfcount_one(&mut self) {
        let key = self.key();
        let current = self.model.get(key).cloned();
        let expect = hll::pfcount(&[current.as_deref()]).expect("our pfcount");
        if let Some(v) = &current {
            if let Some(updated) = hll::pfcount_update(v).expect("our pfcount_update") {
                self.model.insert(key, updated);
            }
        }
        let what = format!("PFCOUNT {key}");
        let r = send(self.srv, &[b"PFCOUNT", key.as_bytes()]);
        assert_eq!(r, Reply::Int(expect as i64), "{}: {what}", self.srv.bin());
        self.check(key, &what);
    }

    fn pfcount_many(&mut self) {
        let n = self.rng.range(2, 4);
        let keys: Vec<&'static str> = (0..n).map(|_| self.key()).collect();
        let values: Vec<Option<&[u8]>> = keys
            .iter()
            .map(|k| self.model.get(k).map(Vec::as_slice))
            .collect();
        let expect = hll::pfcount(&values).expect("our pfcount");
        let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        let what = show_args(&args);
        let r = send(self.srv, &args);
        assert_eq!(r, Reply::Int(expect as i64), "{}: {what}", self.srv.bin());
        for k in keys {
            self.check(k, &what); // unchanged
        }
    }

    fn todense(&mut self) {
        let key = self.key();
        let Some(current) = self.model.get(key).cloned() else {
            return; // the server refuses a missing key; nothing to replay
        };
        let converted = hll::to_dense(&current).expect("our to_dense");
        let what = format!("PFDEBUG TODENSE {key}");
        let r = send(self.srv, &[b"PFDEBUG", b"TODENSE", key.as_bytes()]);
        assert_eq!(
            r,
            Reply::Int(converted.is_some().into()),
            "{}: {what}",
            self.srv.bin()
        );
        if let Some(v) = converted {
            self.store(key, v);
        }
        self.check(key, &what);
    }

    fn del(&mut self) {
        let key = self.key();
        send(self.srv, &[b"DEL", key.as_bytes()]);
        self.model.remove(key);
        self.check(key, "DEL");
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=54 => self.pfadd(),
            55..=69 => self.pfmerge(),
            70..=84 => self.pfcount_one(),
            85..=91 => self.pfcount_many(),
            92..=95 => self.todense(),
            _ => self.del(),
        }
        self.commands += 1;
    }
}

/// Registers reached by crafted elements are what we asked for, as the server sees them.
fn check_crafted_elements(srv: &TestServer, rng: &mut Rng) {
    for (index, count) in [(0usize, 1u8), (1, 32), (77, 33), (16383, 50), (9000, 51)] {
        let e = crafted(rng, index, count);
        send(srv, &[b"DEL", b"probe"]);
        send(srv, &[b"PFADD", b"probe", &e]);
        let regs = send(srv, &[b"PFDEBUG", b"GETREG", b"probe"]);
        let regs = regs.as_array().expect("GETREG array");
        assert_eq!(regs.len(), REGISTERS);
        assert_eq!(
            regs[index],
            Reply::Int(count.into()),
            "{}: register {index}",
            srv.bin()
        );
    }
    send(srv, &[b"DEL", b"probe"]);
}

#[test]
fn workload_matches_servers() {
    let seed = env_u64("HLL_SEED", DEFAULT_SEED);
    let per_phase = env_u64("HLL_COMMANDS", 400);
    let mut summary = Vec::new();
    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut rng = Rng::new(seed ^ 0x9e37_79b9);
        check_crafted_elements(&srv, &mut rng);
        assert_eq!(
            srv.config_get("hll-sparse-max-bytes").as_deref(),
            Some("3000"),
            "{bin}: default hll-sparse-max-bytes"
        );
        assert_eq!(hll::DEFAULT_SPARSE_MAX_BYTES, 3000);
        let pool = (0..32u8).map(|i| vec![i; usize::from(i % 9)]).collect();
        let mut w = Workload {
            srv: &srv,
            rng: Rng::new(seed),
            model: BTreeMap::new(),
            max_bytes: 3000,
            pool,
            commands: 0,
            comparisons: 0,
            promotions: 0,
            longest_sparse: BTreeMap::new(),
            high_ok: false,
        };
        // Keys carry over between phases, so a lower limit meets sparse values already past
        // it, and a higher one lets fresh keys grow long.
        for max in [3000usize, 200, 20, 12000, 3000] {
            set_max_bytes(&srv, max);
            w.max_bytes = max;
            for _ in 0..per_phase {
                w.step();
            }
        }
        let line = format!(
            "{bin}: {} commands, {} values compared byte for byte, {} sparse->dense \
             promotions, longest sparse value per max-bytes {:?}",
            w.commands, w.comparisons, w.promotions, w.longest_sparse
        );
        eprintln!("{line}");
        summary.push(line);
    }
    eprintln!("hll workload summary (seed {seed:#x}):");
    for l in &summary {
        eprintln!("  {l}");
    }
}

// ---------------------------------------------------------------------------------------------
// Corrupt and hand-made values
// ---------------------------------------------------------------------------------------------

/// A valid sparse value with random, non-canonical opcodes (XZERO of 1, unfused equal VALs,
/// adjacent zero runs): the servers accept and edit such values, so must we, identically.
fn odd_sparse(rng: &mut Rng) -> Vec<u8> {
    let mut v = b"HYLL\x01".to_vec();
    v.extend(rng.bytes(3)); // the unused bytes are never checked
    v.extend(rng.bytes(8)); // any cached cardinality, stale or not
    let mut left = REGISTERS;
    let val_bias = rng.below(90);
    while left > 0 {
        let r = rng.below(100);
        if r < val_bias {
            let len = (rng.range(1, 4) as usize).min(left);
            let value = rng.range(1, 32) as u8;
            v.push(0x80 | ((value - 1) << 2) | (len as u8 - 1));
            left -= len;
        } else if r < 95 {
            let len = (rng.range(1, 64) as usize).min(left);
            v.push(len as u8 - 1);
            left -= len;
        } else {
            let len = (rng.range(1, 3000) as usize).min(left);
            v.push(0x40 | ((len - 1) >> 8) as u8);
            v.push(((len - 1) & 0xff) as u8);
            left -= len;
        }
    }
    v
}

/// A dense value with arbitrary registers (0..=63, including 51 and the unreachable 52..63).
fn odd_dense(rng: &mut Rng) -> Vec<u8> {
    let mut v = b"HYLL\x00".to_vec();
    v.extend(rng.bytes(11));
    let style = rng.below(4);
    let body: Vec<u8> = match style {
        0 => rng.bytes(DENSE_LEN - HEADER_LEN), // every register random
        1 => vec![0xff; DENSE_LEN - HEADER_LEN], // every register 63: infinite estimate
        _ => {
            // mostly small values, a few at 51 (the tau term) or above
            let mut regs = vec![0u8; REGISTERS];
            for r in regs.iter_mut() {
                *r = match rng.below(1000) {
                    0..=4 => 51,
                    5..=6 => rng.range(52, 63) as u8,
                    7..=400 => rng.range(1, 12) as u8,
                    _ => 0,
                };
            }
            let mut body = vec![0u8; DENSE_LEN - HEADER_LEN];
            for (i, &r) in regs.iter().enumerate() {
                let bit = i * 6;
                let (byte, shift) = (bit / 8, bit % 8);
                let x = u16::from(r) << shift;
                body[byte] |= x as u8;
                if byte + 1 < body.len() {
                    body[byte + 1] |= (x >> 8) as u8;
                }
            }
            body
        }
    };
    v.extend(body);
    if rng.chance(50) {
        v[15] |= 0x80; // stale, so PFCOUNT recomputes
    }
    v
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 3) {
        let n = v.len() as u64;
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n) as usize;
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                // bytes of the body more often than the header
                let i = rng.range(HEADER_LEN.min(n as usize - 1) as u64, n - 1) as usize;
                v[i] = rng.next() as u8;
            }
            2 if n > 0 => v.truncate(rng.below(n) as usize),
            3 => {
                let extra = rng.range(1, 4) as usize;
                v.extend(rng.bytes(extra));
            }
            4 if n > HEADER_LEN as u64 => {
                let i = rng.range(HEADER_LEN as u64, n - 1) as usize;
                v.remove(i);
            }
            5 if n > 4 => v[4] = rng.below(3) as u8,
            _ if n > HEADER_LEN as u64 => {
                let i = rng.range(HEADER_LEN as u64, n - 1) as usize;
                v.insert(i, rng.next() as u8);
            }
            _ => {}
        }
    }
}

/// The server's verdict on one command: its error code, or the bytes it stored at `key`.
enum Outcome {
    Refused(String),
    Stored(Option<Vec<u8>>),
}

fn outcome(srv: &TestServer, args: &[&[u8]], key: &str) -> Outcome {
    match send(srv, args) {
        Reply::Error(e) => Outcome::Refused(e.split(' ').next().unwrap_or("").to_string()),
        _ => Outcome::Stored(get(srv, key)),
    }
}

/// Tally of one server's corrupt-value trials.
#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: u64,
    unknowable: u64,
    /// Refused by this server although we (and releases before the CVE-2025-32023 bounds
    /// checks) accept: a sparse value covering exactly 16384 registers followed by a VAL.
    strict_refusals: u64,
}

/// A sparse value whose runs reach exactly register 16384 and then go on with a VAL: older
/// releases stop at that VAL when converting or merging and accept the value; releases with
/// the CVE-2025-32023 bounds checks refuse it.
fn val_past_the_end(v: &[u8]) -> bool {
    if v.len() < HEADER_LEN || v[4] != 1 {
        return false;
    }
    let mut idx = 0usize;
    let mut p = HEADER_LEN;
    while p < v.len() {
        let b = v[p];
        if b & 0x80 != 0 {
            let span = usize::from(b & 0x03) + 1;
            if idx + span > REGISTERS {
                return idx == REGISTERS;
            }
            idx += span;
            p += 1;
        } else if b & 0x40 != 0 {
            let Some(&lo) = v.get(p + 1) else {
                return false;
            };
            idx += ((usize::from(b & 0x3f) << 8) | usize::from(lo)) + 1;
            p += 2;
        } else {
            idx += usize::from(b & 0x3f) + 1;
            p += 1;
        }
        if idx > REGISTERS {
            return false;
        }
    }
    false
}

fn compare_outcome(
    bin: &ServerBin,
    tally: &mut Tally,
    what: &str,
    input: &[u8],
    server: Outcome,
    ours: Result<Option<Vec<u8>>, HllError>,
) {
    match (server, ours) {
        (_, Err(HllError::CutOff)) => tally.unknowable += 1,
        (Outcome::Refused(code), Err(e)) => {
            assert_eq!(
                Some(code.as_str()),
                e.server_error_code(),
                "{bin}: {what}: server refused with {code}, we with {e} ({})",
                describe(Some(input))
            );
            tally.refused += 1;
        }
        (Outcome::Stored(stored), Ok(ours)) => {
            assert_same(bin, what, stored.as_deref(), ours.as_deref());
            tally.accepted += 1;
        }
        (Outcome::Refused(code), Ok(_)) if code == "INVALIDOBJ" && val_past_the_end(input) => {
            tally.strict_refusals += 1;
        }
        (Outcome::Refused(code), Ok(_)) => panic!(
            "{bin}: {what}: server refused with {code}, we accepted ({})\n{}",
            describe(Some(input)),
            hex(input)
        ),
        (Outcome::Stored(_), Err(e)) => panic!(
            "{bin}: {what}: server accepted, we refused: {e} ({})",
            describe(Some(input))
        ),
    }
}

#[test]
fn corrupt_values_match_servers() {
    let seed = env_u64("HLL_SEED", DEFAULT_SEED);
    let trials = env_u64("HLL_COMMANDS", 400) * 3;
    let mut rng = Rng::new(seed);
    // Valid values of every shape to start from.
    let mut bases: Vec<Vec<u8>> = Vec::new();
    for n in [1usize, 5, 60, 400, 1200, 3000] {
        let e: Vec<Vec<u8>> = (0..n).map(|_| rng.bytes(8)).collect();
        let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
        bases.push(hll::pfadd(None, &refs, usize::MAX).expect("sparse base").0);
        bases.push(hll::pfadd(None, &refs, 0).expect("dense base").0);
    }
    let mut summary = Vec::new();
    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut tally = Tally::default();
        for _ in 0..trials {
            let mut v = match rng.below(10) {
                0..=2 => odd_sparse(&mut rng),
                3..=4 => odd_dense(&mut rng),
                _ => bases[rng.below(bases.len() as u64) as usize].clone(),
            };
            if rng.chance(70) {
                mutate(&mut rng, &mut v);
            }
            let max = [3000usize, 3000, 200, 20, 100_000][rng.below(5) as usize];
            set_max_bytes(&srv, max);
            send(&srv, &[b"DEL", b"m", b"d"]);
            send(&srv, &[b"SET", b"m", &v]);
            let other = bases[rng.below(bases.len() as u64) as usize].clone();
            let (what, server, ours) = match rng.below(7) {
                0 | 1 => {
                    let e: Vec<Vec<u8>> = (0..rng.range(1, 40))
                        .map(|_| {
                            let i = rng.below(REGISTERS as u64) as usize;
                            let c = rng.range(1, 40) as u8;
                            crafted(&mut rng, i, c)
                        })
                        .collect();
                    let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
                    let mut args: Vec<&[u8]> = vec![b"PFADD", b"m"];
                    args.extend(&refs);
                    let ours = hll::pfadd(Some(&v), &refs, max).map(|(v, _)| Some(v));
                    ("PFADD m ...", outcome(&srv, &args, "m"), ours)
                }
                2 => {
                    let ours =
                        hll::pfcount_update(&v).map(|u| Some(u.unwrap_or_else(|| v.clone())));
                    ("PFCOUNT m", outcome(&srv, &[b"PFCOUNT", b"m"], "m"), ours)
                }
                3 => {
                    send(&srv, &[b"SET", b"d", &other]);
                    let ours = hll::pfmerge(Some(&other), &[&v], max).map(Some);
                    (
                        "PFMERGE d m",
                        outcome(&srv, &[b"PFMERGE", b"d", b"m"], "d"),
                        ours,
                    )
                }
                4 => {
                    let ours = hll::pfmerge(Some(&v), &[&other, &v], max).map(Some);
                    send(&srv, &[b"SET", b"d", &other]);
                    (
                        "PFMERGE m d m",
                        outcome(&srv, &[b"PFMERGE", b"m", b"d", b"m"], "m"),
                        ours,
                    )
                }
                5 => {
                    let ours = hll::to_dense(&v).map(|d| Some(d.unwrap_or_else(|| v.clone())));
                    let args: &[&[u8]] = &[b"PFDEBUG", b"TODENSE", b"m"];
                    ("PFDEBUG TODENSE m", outcome(&srv, args, "m"), ours)
                }
                _ => {
                    // Multi-key count: compare the reply, and that nothing was written.
                    send(&srv, &[b"SET", b"d", &other]);
                    let ours = hll::pfcount(&[Some(&v), Some(&other), None]);
                    let r = send(&srv, &[b"PFCOUNT", b"m", b"d", b"missing"]);
                    let server = match r {
                        Reply::Error(e) => {
                            Outcome::Refused(e.split(' ').next().unwrap_or("").into())
                        }
                        Reply::Int(n) => {
                            if let Ok(c) = &ours {
                                assert_eq!(n, *c as i64, "{bin}: PFCOUNT m d missing");
                            }
                            Outcome::Stored(get(&srv, "m"))
                        }
                        r => panic!("{bin}: PFCOUNT answered {r:?}"),
                    };
                    ("PFCOUNT m d missing", server, ours.map(|_| Some(v.clone())))
                }
            };
            compare_outcome(&bin, &mut tally, what, &v, server, ours);
        }
        let line = format!(
            "{bin}: {} trials: {} accepted with equal bytes, {} refused with the same error, \
             {} refused by this version only (VAL past register 16384), \
             {} cut-off XZERO (server reads past the value; not compared)",
            trials, tally.accepted, tally.refused, tally.strict_refusals, tally.unknowable
        );
        eprintln!("{line}");
        summary.push(line);
    }
    eprintln!("hll corrupt-value summary (seed {seed:#x}):");
    for l in &summary {
        eprintln!("  {l}");
    }
}

/// Dense bytes for the given registers (one byte each, 0..=63).
fn dense_from(regs: &[u8], header: &[u8]) -> Vec<u8> {
    let mut v = header[..HEADER_LEN].to_vec();
    v[4] = 0;
    let mut body = vec![0u8; DENSE_LEN - HEADER_LEN];
    for (i, &r) in regs.iter().enumerate() {
        let (byte, shift) = (i * 6 / 8, i * 6 % 8);
        let x = u16::from(r) << shift;
        body[byte] |= x as u8;
        if byte + 1 < body.len() {
            body[byte + 1] |= (x >> 8) as u8;
        }
    }
    v.extend(body);
    v
}

/// The edge cases, each on every server, so they do not depend on the random draw.
#[test]
fn edge_cases_match_servers() {
    let stale_header = b"HYLL\x00\x00\x00\x00\x11\x22\x33\x44\x55\x66\x77\xf8";
    // Every register 63: the estimate is 1/0; the server stores 0x8000000000000000.
    let all63 = dense_from(&[63; REGISTERS], stale_header);
    // Some registers at 51 (the tau term of the estimator) and above 51 (ignored).
    let mut regs = vec![0u8; REGISTERS];
    for (i, r) in regs.iter_mut().enumerate() {
        *r = match i % 97 {
            0 => 51,
            1 => 52 + (i % 12) as u8,
            2..=40 => 1 + (i % 20) as u8,
            _ => 0,
        };
    }
    let tau = dense_from(&regs, stale_header);
    // A valid sparse value followed by a VAL past the last register.
    let mut trailing = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
    trailing.extend([0x84, 0x7f, 0xfe, 0x88]); // VAL 2 x1, XZERO 16383, VAL 3 x1 (extra)

    for bin in servers() {
        let srv = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        for (name, v) in [("all registers 63", &all63), ("registers at 51", &tau)] {
            send(&srv, &[b"SET", b"k", v]);
            let expect = hll::pfcount_update(v).unwrap().expect("stale");
            let reply = send(&srv, &[b"PFCOUNT", b"k"]);
            let card = hll::pfcount(&[Some(&expect)]).unwrap();
            assert_eq!(reply, Reply::Int(card as i64), "{bin}: PFCOUNT of {name}");
            assert_same(&bin, name, get(&srv, "k").as_deref(), Some(&expect));
            // Multi-key: the raw-register path of the same estimator.
            let reply = send(&srv, &[b"PFCOUNT", b"k", b"nokey"]);
            let union = hll::pfcount(&[Some(v), None]).unwrap();
            assert_eq!(
                reply,
                Reply::Int(union as i64),
                "{bin}: union count of {name}"
            );
        }
        assert_eq!(hll::pfcount(&[Some(&all63), None]).unwrap(), 1 << 63);

        send(&srv, &[b"DEL", b"k", b"d"]);
        send(&srv, &[b"PFADD", b"k"]);
        let (created, _) = hll::pfadd(None, &[], 3000).unwrap();
        assert_same(
            &bin,
            "PFADD k (no elements)",
            get(&srv, "k").as_deref(),
            Some(&created),
        );
        send(&srv, &[b"PFMERGE", b"d", b"nokey"]);
        let merged = hll::pfmerge(None, &[], 3000).unwrap();
        assert_same(
            &bin,
            "PFMERGE d nokey",
            get(&srv, "d").as_deref(),
            Some(&merged),
        );

        // Grow a sparse value one element at a time up to the size limit and over it: every
        // step, and the promotion itself, must match.
        let mut rng = Rng::new(DEFAULT_SEED);
        for max in [3000usize, 200] {
            set_max_bytes(&srv, max);
            send(&srv, &[b"DEL", b"g"]);
            let mut ours: Option<Vec<u8>> = None;
            let mut steps = 0;
            let mut longest = 0;
            while ours.as_ref().is_none_or(|v| v[4] == 1) {
                let i = rng.below(REGISTERS as u64) as usize;
                let c = rng.range(1, 32) as u8;
                let e = crafted(&mut rng, i, c);
                let (v, changed) = hll::pfadd(ours.as_deref(), &[&e], max).unwrap();
                let reply = send(&srv, &[b"PFADD", b"g", &e]);
                assert_eq!(
                    reply,
                    Reply::Int(changed.into()),
                    "{bin}: growth step {steps}"
                );
                assert_same(&bin, "growth", get(&srv, "g").as_deref(), Some(&v));
                if v[4] == 1 {
                    longest = longest.max(v.len());
                }
                ours = Some(v);
                steps += 1;
            }
            assert!(
                longest + 3 > max,
                "{bin}: promoted at {longest} bytes, limit {max}"
            );
            eprintln!(
                "{bin}: grew sparse to {longest} bytes, promoted at step {steps} (limit {max})"
            );
        }
        set_max_bytes(&srv, 3000);

        send(&srv, &[b"SET", b"k", &trailing]);
        let ours = hll::to_dense(&trailing).unwrap().expect("sparse");
        let verdict = match send(&srv, &[b"PFDEBUG", b"TODENSE", b"k"]) {
            Reply::Error(e) => {
                assert!(e.starts_with("INVALIDOBJ"), "{bin}: {e}");
                "refuses (CVE-2025-32023 bounds checks)"
            }
            _ => {
                assert_same(
                    &bin,
                    "TODENSE trailing VAL",
                    get(&srv, "k").as_deref(),
                    Some(&ours),
                );
                "accepts, same bytes"
            }
        };
        eprintln!("{bin}: edge cases equal; a VAL past register 16384: {verdict}");
    }
}

// ---------------------------------------------------------------------------------------------
// Propagation, seen from a real replica
// ---------------------------------------------------------------------------------------------

#[test]
fn count_and_todense_propagate() {
    for bin in support::require_matrix() {
        let master = TestServer::start(&bin, &[]).unwrap_or_else(|e| panic!("{e}"));
        let port = master.port().to_string();
        let replica = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port])
            .unwrap_or_else(|e| panic!("{e}"));
        support::wait_for(
            &format!("{bin} replica link"),
            Duration::from_secs(20),
            || {
                replica
                    .info_field("replication", "master_link_status")
                    .as_deref()
                    == Some("up")
            },
        );
        let sync = || {
            let r = master.must(&["WAIT", "1", "5000"]);
            assert_eq!(r.as_int(), Some(1), "{bin}: WAIT");
        };
        let both = |key: &str| (get(&master, key), get(&replica, key));

        master.must(&["PFADD", "a", "x", "y", "z"]);
        master.must(&["PFADD", "b", "p", "q"]);
        sync();
        let (m, r) = both("a");
        let stale = m.clone().expect("a exists");
        assert_eq!(
            stale[15] & 0x80,
            0x80,
            "{bin}: PFADD leaves the cache stale"
        );
        assert_eq!(m, r);

        // Several keys: nothing is written, anywhere.
        master.must(&["PFCOUNT", "a", "b"]);
        sync();
        let (m, r) = both("a");
        assert_eq!(
            m.as_deref(),
            Some(stale.as_slice()),
            "{bin}: multi-key PFCOUNT wrote"
        );
        assert_eq!(r.as_deref(), Some(stale.as_slice()));

        // One key with a stale cache: written on the master and propagated.
        master.must(&["PFCOUNT", "a"]);
        sync();
        let (m, r) = both("a");
        let counted = hll::pfcount_update(&stale)
            .unwrap()
            .expect("stale cache is recomputed");
        assert_eq!(
            m.as_deref(),
            Some(counted.as_slice()),
            "{bin}: master after PFCOUNT"
        );
        assert_eq!(
            r.as_deref(),
            Some(counted.as_slice()),
            "{bin}: PFCOUNT not propagated"
        );

        // PFDEBUG TODENSE (and GETREG) on a sparse value: converted and propagated.
        let b_before = get(&master, "b").expect("b exists");
        master.must(&["PFDEBUG", "TODENSE", "a"]);
        master.must(&["PFDEBUG", "GETREG", "b"]);
        sync();
        for (key, before) in [("a", counted), ("b", b_before)] {
            let (m, r) = both(key);
            let dense = hll::to_dense(&before).unwrap();
            let dense = dense.as_deref().unwrap_or(&before);
            assert_eq!(
                m.as_deref(),
                Some(dense),
                "{bin}: master {key} after PFDEBUG"
            );
            assert_eq!(
                r.as_deref(),
                Some(dense),
                "{bin}: PFDEBUG on {key} not propagated"
            );
        }
        eprintln!("{bin}: PFCOUNT (one key, stale) and PFDEBUG TODENSE/GETREG reach the replica");
    }
}

// ---------------------------------------------------------------------------------------------
// No server: garbage in, error out, never a panic
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(env_u64("HLL_SEED", DEFAULT_SEED) ^ 0xabcdef);
    let mut errors = 0u64;
    let mut bases = Vec::new();
    for n in [3usize, 300, 2000] {
        let e: Vec<Vec<u8>> = (0..n).map(|_| rng.bytes(6)).collect();
        let refs: Vec<&[u8]> = e.iter().map(Vec::as_slice).collect();
        bases.push(hll::pfadd(None, &refs, usize::MAX).unwrap().0);
        bases.push(hll::pfadd(None, &refs, 0).unwrap().0);
    }
    // Plain garbage and truncations of the header.
    for len in 0..40 {
        let g = rng.bytes(len);
        assert!(hll::pfcount_update(&g).is_err() || g.starts_with(b"HYLL"));
        for cut in 0..HEADER_LEN.min(len) {
            assert!(hll::pfadd(Some(&bases[0][..cut]), &[b"x"], 3000).is_err());
        }
    }
    assert!(matches!(
        hll::pfadd(Some(&bases[1][..DENSE_LEN - 1]), &[], 3000),
        Err(HllError::BadDenseLength { .. })
    ));
    for round in 0..20_000u64 {
        let mut v = if round % 5 == 0 {
            odd_sparse(&mut rng)
        } else {
            bases[(round % bases.len() as u64) as usize].clone()
        };
        mutate(&mut rng, &mut v);
        let e = rng.bytes(5);
        let results = [
            hll::pfadd(Some(&v), &[&e, b""], rng.range(0, 5000) as usize).map(|_| ()),
            hll::pfmerge(Some(&v), &[&bases[0]], 3000).map(|_| ()),
            hll::pfmerge(None, &[&bases[1], &v], 3000).map(|_| ()),
            hll::pfcount_update(&v).map(|_| ()),
            hll::pfcount(&[Some(&v), None]).map(|_| ()),
            hll::to_dense(&v).map(|_| ()),
        ];
        errors += results.iter().filter(|r| r.is_err()).count() as u64;
    }
    assert!(errors > 0);
    eprintln!("garbage: 20000 mutated values, {errors} operations refused, no panic");
}
