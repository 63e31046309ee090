//! Benchmark (not a test): candidate designs for the replica's own keyspace and its fork-free
//! snapshot, measured side by side on one dataset, next to redis-server 7.0 holding the same data.
//!
//! Run: `cargo bench --bench keyspace_designs`
//!   env KSBENCH_SIZES=1000000,10000000   string-key counts (default both)
//!       KSBENCH_HASH=1000000             small-hash key count (0 = skip)
//!       KSBENCH_DESIGNS=a,b              only these designs (names below)
//!       KSBENCH_REDIS=0                  skip the redis-server comparison
//!       KSBENCH_BIGHASH=0                skip the 1 M-member hash spike test
//!
//! Needs (Cargo.toml):
//!   [dev-dependencies]  imbl = "6"  hashbrown = "0.15"  foldhash = "0.1"
//!   [[bench]] name = "keyspace_designs"  harness = false
//! and the installed servers (scripts/install-test-servers.sh) for the redis column.
//!
//! Every design runs in a fresh child process (this binary re-executed with `child ...`), so
//! resident memory (VmRSS / VmHWM from /proc/self/status) and the allocator never mix.
//! The allocator is mimalloc, as in the daemon.
//!
//! Designs (all apply on one thread; the snapshot is walked by a second thread):
//! - `cow4k-vec`: 4096 copy-on-write shards of hashbrown maps, `Vec<u8>` keys and the
//!   decoder's `replisnap::rdb::value::Value` as is (a shard copy deep-copies).
//! - `cow4k-box`: same, `Box<[u8]>` keys, values `Val` (inline ≤ 22 B or one `Arc<[u8]>`).
//! - `cow4k-inline`: same, keys `IStr` (inline ≤ 22 B, else one `Arc<[u8]>`), values `Val`.
//! - `cow64k-inline`: 65536 shards.
//! - `cow4k-packed`: 4096 shards of `HashTable<Arc<[u8]>>`: key + type + value in ONE allocation.
//! - `hamt-inline`: `imbl::HashMap<IStr, Val>` (persistent HAMT), snapshot = clone.
//! - `btree-inline`: `imbl::OrdMap<IStr, Val>` (persistent B-tree), snapshot = clone.
//! - `record4k-inline`: iterate-and-record: 4096 shards each behind a Mutex, no copy at rest;
//!   the snapshot is an epoch; before the apply thread changes a key in a shard the walker has
//!   not visited yet, it records the old value handle in that shard; the walker, shard by shard
//!   under the lock, emits old values where recorded, skips keys created after the snapshot,
//!   and clears the record.
//! - `record64k-inline`: the same with 65536 shards.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replisnap::rdb::value::{HashField, Value};

/// mimalloc, counting live heap bytes and their peak (RSS alone hides copies that land in
/// pages the allocator kept resident after earlier frees).
struct Counting;
static LIVE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static PEAK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(l) };
        let now = LIVE.fetch_add(l.size() as u64, Ordering::Relaxed) + l.size() as u64;
        PEAK.fetch_max(now, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size() as u64, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let q = unsafe { mimalloc::MiMalloc.realloc(p, l, new) };
        if new >= l.size() {
            let now = LIVE.fetch_add((new - l.size()) as u64, Ordering::Relaxed)
                + (new - l.size()) as u64;
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub((l.size() - new) as u64, Ordering::Relaxed);
        }
        q
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;
fn live() -> u64 {
    LIVE.load(Ordering::Relaxed)
}
fn reset_peak() -> u64 {
    let l = live();
    PEAK.store(l, Ordering::Relaxed);
    l
}
fn peak_heap() -> u64 {
    PEAK.load(Ordering::Relaxed)
}

type S = foldhash::fast::FixedState;
fn hasher() -> S {
    foldhash::fast::FixedState::with_seed(0x5eed_1234_abcd_9876)
}
fn hash_bytes(b: &[u8]) -> u64 {
    hasher().hash_one(b)
}

// ---------------------------------------------------------------------------------------------
// Process memory
// ---------------------------------------------------------------------------------------------

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            let v = rest.trim_start_matches(':').trim();
            return v
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
        }
    }
    0
}
fn rss() -> u64 {
    status_kb("VmRSS") * 1024
}
fn hwm() -> u64 {
    status_kb("VmHWM") * 1024
}
/// Reset VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Data: deterministic keys and values, identical for every design and for redis-server
// ---------------------------------------------------------------------------------------------

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

static VALBUF: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| (0..512u64).map(|i| b'a' + (mix(i) % 26) as u8).collect());

/// `key:00001234` (12 bytes; 8 digits, more when i ≥ 10^8).
fn key(i: u64, buf: &mut [u8; 24]) -> usize {
    buf[..4].copy_from_slice(b"key:");
    let s = format!("{i:08}");
    buf[4..4 + s.len()].copy_from_slice(s.as_bytes());
    4 + s.len()
}
/// String value of 10–100 bytes; `gen` changes it on rewrites.
fn strval(i: u64, gen: u64) -> &'static [u8] {
    let h = mix(i ^ (gen << 40));
    let len = 10 + (h % 91) as usize;
    let off = ((h >> 8) % 256) as usize;
    &VALBUF[off..off + len]
}
/// Small hash: 10 fields `f1..f10`, values 10–30 bytes (listpack-encoded in redis).
fn hashval(i: u64, gen: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    (1..=10u64)
        .map(|j| {
            let h = mix(i.wrapping_mul(31) ^ j ^ (gen << 40));
            let len = 10 + (h % 21) as usize;
            let off = ((h >> 8) % 256) as usize;
            (
                format!("f{j}").into_bytes(),
                VALBUF[off..off + len].to_vec(),
            )
        })
        .collect()
}

enum Obj<'a> {
    Str(&'a [u8]),
    Hash(&'a [(Vec<u8>, Vec<u8>)]),
}

#[path = "keyspace_designs/designs.rs"]
mod designs;
use designs::*;

// ---------------------------------------------------------------------------------------------
// The measurement, in a child process per (design, dataset, n)
// ---------------------------------------------------------------------------------------------

const DESIGNS: &[&str] = &[
    "cow4k-vec",
    "cow4k-box",
    "cow4k-inline",
    "cow64k-inline",
    "cow4k-packed",
    "hamt-inline",
    "btree-inline",
    "record4k-inline",
    "record64k-inline",
];

fn child(design: &str, data: &str, n: u64) {
    match design {
        "cow4k-vec" => run(Cow::<Vec<u8>, Value>::new(4096), data, n),
        "cow4k-box" => run(Cow::<Box<[u8]>, Val>::new(4096), data, n),
        "cow4k-inline" => run(Cow::<IStr, Val>::new(4096), data, n),
        "cow64k-inline" => run(Cow::<IStr, Val>::new(65536), data, n),
        "cow4k-packed" => run(Packed::new(4096), data, n),
        "hamt-inline" => run(Hamt(imbl::GenericHashMap::with_hasher(hasher())), data, n),
        "btree-inline" => run(BTree(imbl::OrdMap::new()), data, n),
        "record4k-inline" => run(Record::<IStr, Val>::new(4096), data, n),
        "record64k-inline" => run(Record::<IStr, Val>::new(65536), data, n),
        _ => panic!("unknown design {design}"),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        mix(self.0)
    }
}

fn write_one<K: Keyspace>(ks: &mut K, data: &str, i: u64, gen: u64, kb: &mut [u8; 24]) {
    let kl = key(i, kb);
    if data == "hash" {
        let fs = hashval(i, gen);
        ks.set(&kb[..kl], &Obj::Hash(&fs));
    } else {
        ks.set(&kb[..kl], &Obj::Str(strval(i, gen)));
    }
}

fn walk_sum<K: Keyspace>(s: &K::Snap) -> (u64, u64) {
    let mut bytes = 0u64;
    let mut x = 0u64;
    let n = K::walk(s, &mut |b: &[u8]| {
        bytes += b.len() as u64;
        x = x.wrapping_add(b.first().copied().unwrap_or(0) as u64);
    });
    std::hint::black_box(x);
    (n, bytes)
}

fn run<K: Keyspace>(mut ks: K, data: &str, n: u64) {
    let base = rss();
    let mut kb = [0u8; 24];
    let t = Instant::now();
    for i in 0..n {
        write_one(&mut ks, data, i, 0, &mut kb);
    }
    let load_s = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let rss_load = rss();

    // Snapshot pause: several rounds, with writes in between so the structure is not pristine.
    let mut rng = Rng(42);
    let mut pauses = Vec::new();
    let mut gen = 1;
    let mut last = None;
    for _ in 0..7 {
        for _ in 0..20_000 {
            let i = rng.next() % n;
            write_one(&mut ks, data, i, gen, &mut kb);
        }
        gen += 1;
        let t = Instant::now();
        let s = ks.snapshot();
        pauses.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(old) = last.replace(s) {
            drop(old); // (in the daemon the writer thread drops it)
        }
    }
    drop(last.take());
    pauses.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pause_max = *pauses.last().unwrap();
    let pause_med = pauses[pauses.len() / 2];

    let w = (n / 10).max(100_000);
    // Apply throughput with no snapshot.
    let t = Instant::now();
    for _ in 0..w {
        let i = rng.next() % n;
        write_one(&mut ks, data, i, gen, &mut kb);
    }
    let idle_rate = w as f64 / t.elapsed().as_secs_f64();
    gen += 1;
    std::thread::sleep(Duration::from_millis(200));

    // Under a snapshot: the writer thread walks it while the apply thread rewrites 10 % of keys
    // (the snapshot is held until both are done, as a real RDB write outlasts such a burst).
    // Reference for the consistency check: a snapshot walked with no writes in between.
    let r = ks.snapshot();
    let expect = walk_sum::<K>(&r);
    drop(r);
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = rss();
    reset_hwm();
    let heap_before = reset_peak();
    let s = ks.snapshot();
    let walking = Arc::new(AtomicBool::new(true));
    let w2 = walking.clone();
    let walker = std::thread::spawn(move || {
        let t = Instant::now();
        let r = walk_sum::<K>(&s);
        let el = t.elapsed().as_secs_f64();
        w2.store(false, Ordering::Release);
        (r, el, s)
    });
    let t = Instant::now();
    let mut during = 0u64;
    let mut max_op = 0f64;
    let mut hist = [0u64; 64]; // by log2(ns)
    let mut peak = rss_before;
    for j in 0..w {
        let i = rng.next() % n;
        let t1 = Instant::now();
        write_one(&mut ks, data, i, gen, &mut kb);
        let d = t1.elapsed().as_secs_f64();
        if d > max_op {
            max_op = d;
        }
        hist[(64 - ((d * 1e9) as u64).leading_zeros()) as usize] += 1;
        if walking.load(Ordering::Relaxed) {
            during += 1;
        }
        if j % 16384 == 0 {
            peak = peak.max(rss());
        }
    }
    let snap_secs = t.elapsed().as_secs_f64();
    let snap_rate = w as f64 / snap_secs;
    let (got, walk_s, s) = walker.join().unwrap();
    peak = peak.max(rss()).max(hwm());
    let heap_extra = peak_heap().saturating_sub(heap_before);
    drop(s);
    let consistent = got == expect;
    // p99.9 op latency (upper bound of its log2 bucket).
    let mut acc = 0u64;
    let mut p999 = 0f64;
    for (b, c) in hist.iter().enumerate() {
        acc += c;
        if acc * 1000 >= w * 999 {
            p999 = (1u64 << b) as f64 / 1e3;
            break;
        }
    }

    println!(
        "RESULT design={} data={} n={} base={} rss={} load_s={:.2} pause_max_us={:.1} pause_med_us={:.1} \
         idle_rate={:.0} snap_rate={:.0} during={} writes={} walk_s={:.2} extra={} heap_extra={} heap={} max_op_us={:.1} p999_us={:.1} \
         consistent={} entries={} expect_entries={}",
        std::env::args().nth(2).unwrap_or_default(),
        data,
        n,
        base,
        rss_load,
        load_s,
        pause_max,
        pause_med,
        idle_rate,
        snap_rate,
        during,
        w,
        walk_s,
        peak.saturating_sub(rss_before),
        heap_extra,
        heap_before,
        max_op * 1e6,
        p999,
        consistent,
        got.0,
        expect.0
    );
}

#[path = "keyspace_designs/huge_and_redis.rs"]
mod huge_and_redis;
use huge_and_redis::*;

// ---------------------------------------------------------------------------------------------
// Orchestration
// ---------------------------------------------------------------------------------------------

fn kv(line: &str) -> std::collections::HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

fn spawn_self(args: &[&str], tag: &str) -> Option<std::collections::HashMap<String, String>> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().find(|l| l.starts_with(tag));
    if line.is_none() {
        eprintln!("child {args:?} failed: {}", out.status);
    }
    line.map(kv)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("child") => return child(&args[1], &args[2], args[3].parse().unwrap()),
        Some("bighash") => return bighash_child(&args[1], args[2].parse().unwrap()),
        _ => {}
    }
    let sizes: Vec<u64> = env_list("KSBENCH_SIZES", "1000000,10000000")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let hash_n: u64 = std::env::var("KSBENCH_HASH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let designs = env_list("KSBENCH_DESIGNS", &DESIGNS.join(","));
    let with_redis = std::env::var("KSBENCH_REDIS")
        .map(|v| v != "0")
        .unwrap_or(true);
    let with_big = std::env::var("KSBENCH_BIGHASH")
        .map(|v| v != "0")
        .unwrap_or(true);

    println!(
        "sizes: IStr {} B, Val {} B, Value {} B, (IStr,Val) {} B, (Vec<u8>,Value) {} B",
        std::mem::size_of::<IStr>(),
        std::mem::size_of::<Val>(),
        std::mem::size_of::<Value>(),
        std::mem::size_of::<(IStr, Val)>(),
        std::mem::size_of::<(Vec<u8>, Value)>()
    );
    let mut runs: Vec<(&str, u64)> = sizes.iter().map(|&n| ("str", n)).collect();
    if hash_n > 0 {
        runs.push(("hash", hash_n));
    }
    println!(
        "\n{:<17} {:<4} {:>5} | {:>7} {:>6} {:>6} | {:>15} | {:>9} {:>9} {:>5} {:>6} | {:>7} {:>6} {:>8} {:>8} | {:>4}",
        "design", "data", "keys", "RSS MB", "B/key", "/redis", "pause µs med/max", "set/s", "set/s+sn",
        "%walk", "walk s", "+RSS MB", "+heap%", "p999 µs", "max µs", "ok"
    );
    for (data, n) in runs {
        let redis = if with_redis {
            redis_measure(data, n)
        } else {
            None
        };
        let redis_bpk = redis.map(|(e, r, _)| (r.saturating_sub(e)) as f64 / n as f64);
        if let Some((e, r, used)) = redis {
            println!(
                "{:<17} {:<4} {:>4}M | {:>7.0} {:>6.0} {:>6} | used_memory {:.0} MB (empty rss {:.0} MB)",
                "redis-7.0",
                data,
                n / 1_000_000,
                mb(r),
                (r - e) as f64 / n as f64,
                "1.00",
                mb(used),
                mb(e)
            );
        }
        for d in &designs {
            let Some(r) = spawn_self(&["child", d, data, &n.to_string()], "RESULT") else {
                continue;
            };
            let g = |k: &str| {
                r.get(k)
                    .map(|s| s.parse::<f64>().unwrap_or(0.0))
                    .unwrap_or(0.0)
            };
            let bpk = (g("rss") - g("base")) / n as f64;
            let ratio = redis_bpk
                .map(|b| format!("{:.2}", bpk / b))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<17} {:<4} {:>4}M | {:>7.0} {:>6.0} {:>6} | {:>7.1}/{:>7.1} | {:>9.0} {:>9.0} {:>4.0}% {:>6.2} | {:>7.0} {:>5.0}% {:>8.1} {:>8.0} | {:>4}",
                d,
                data,
                n / 1_000_000,
                mb(g("rss") as u64),
                bpk,
                ratio,
                g("pause_med_us"),
                g("pause_max_us"),
                g("idle_rate"),
                g("snap_rate"),
                100.0 * g("during") / g("writes"),
                g("walk_s"),
                mb(g("extra") as u64),
                100.0 * g("heap_extra") / g("heap"),
                g("p999_us"),
                g("max_op_us"),
                if r.get("consistent").map(String::as_str) == Some("true") { "yes" } else { "NO" }
            );
        }
    }
    if with_big {
        println!(
            "\n1 M-member hash stored as ONE value; first HSET after a snapshot (the snapshot holds the old version)"
        );
        let redis = if with_redis {
            redis_measure("bighash", 1_000_000)
        } else {
            None
        };
        if let Some((e, r, _)) = redis {
            println!(
                "{:<10} RSS {:>5.0} MB  {:>5.0} B/member",
                "redis-7.0",
                mb(r),
                (r - e) as f64 / 1e6
            );
        }
        println!(
            "{:<10} {:>9} {:>8} {:>9} | {:>10} {:>12} {:>11} | {:>13} {:>14}",
            "inner",
            "RSS MB",
            "B/memb",
            "iter s",
            "HSET µs",
            "1st after sn",
            "2nd µs",
            "+RSS on 1st MB",
            "+heap on 1st MB"
        );
        for kind in ["flat", "hamt", "chunked"] {
            let Some(r) = spawn_self(&["bighash", kind, "1000000"], "BIGHASH") else {
                continue;
            };
            let g = |k: &str| {
                r.get(k)
                    .map(|s| s.parse::<f64>().unwrap_or(0.0))
                    .unwrap_or(0.0)
            };
            println!(
                "{:<10} {:>9.0} {:>8.0} {:>9.3} | {:>10.1} {:>12.1} {:>11.1} | {:>13.1} {:>14.2}",
                kind,
                mb(g("rss") as u64),
                (g("rss") - g("base")) / 1e6,
                g("iter_s"),
                g("idle_us"),
                g("first_us"),
                g("second_us"),
                mb(g("extra") as u64),
                mb(g("heap_extra") as u64)
            );
        }
    }
    println!(
        "\npause = time the apply thread spends taking the snapshot (max of 7); set/s+sn = random SETs \
         while the snapshot is held and walked (10 % of keys rewritten; %walk = share of those done while the walker was still running); \
         p999/max = per-SET latency then; +RSS = peak RSS during that \
         minus RSS before; +heap% = peak extra live heap bytes (counting allocator) as % of the \
         live heap at the snapshot; ok = the walker saw exactly the data as of the snapshot."
    );
}
