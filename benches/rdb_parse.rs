//! Benchmark (not a test): parse throughput of a ≥ 1 GB mixed-type RDB written by
//! redis-server 7.0, next to that server's own load time of the same file, as a ratio.
//!
//! `cargo bench --bench rdb_parse` (env: BENCH_RDB_GB=1.0 target size, BENCH_DATA=dir to
//! keep the generated file between runs, default $CARGO_TARGET_DIR/bench-data).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use replisnap::rdb::{Item, Options, RdbReader};
use support::{Reply, TestServer};

/// Lua that writes `n` keys of one type, `batch` at a time, deterministic from `seed`.
const POPULATE: &str = r#"
local kind, first, n, fields, vlen = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local pad = string.rep('v', vlen)
for i = first, first + n - 1 do
  local k = kind .. ':' .. i
  if kind == 'str' then redis.call('SET', k, pad .. i)
  elseif kind == 'int' then redis.call('SET', k, i * 7919)
  elseif kind == 'hash' then
    local a = {}
    for j = 1, fields do a[#a+1] = 'f' .. j; a[#a+1] = pad .. j end
    redis.call('HSET', k, unpack(a))
  elseif kind == 'list' then
    local a = {}
    for j = 1, fields do a[#a+1] = pad .. (i + j) end
    redis.call('RPUSH', k, unpack(a))
  elseif kind == 'set' then
    local a = {}
    for j = 1, fields do a[#a+1] = 'm' .. (i * 31 + j) end
    redis.call('SADD', k, unpack(a))
  elseif kind == 'iset' then
    local a = {}
    for j = 1, fields do a[#a+1] = i * 1000 + j end
    redis.call('SADD', k, unpack(a))
  elseif kind == 'zset' then
    local a = {}
    for j = 1, fields do a[#a+1] = (j * 1.5); a[#a+1] = 'z' .. j .. pad end
    redis.call('ZADD', k, unpack(a))
  elseif kind == 'bighash' then
    local a = {}
    for j = 1, fields do a[#a+1] = 'field:' .. j; a[#a+1] = pad .. j end
    redis.call('HSET', k, unpack(a))
  end
end
return n
"#;

fn cmd(s: &TestServer, args: &[&str]) -> Reply {
    let r = s.cmd_str(args).expect("command");
    assert!(!r.is_error(), "{args:?}: {r:?}");
    r
}

fn generate(bin: &support::ServerBin, out: &std::path::Path, gb: f64) {
    let s = TestServer::start(bin, &[]).expect("start redis 7.0");
    // (kind, keys per GB, elements, value bytes): roughly a third strings, the rest collections
    // in both compact (listpack/intset) and large (hashtable/quicklist/skiplist) encodings.
    let plan: &[(&str, f64, u32, u32)] = &[
        ("str", 8_000_000.0, 0, 90),
        ("int", 4_000_000.0, 0, 0),
        ("hash", 800_000.0, 20, 40),
        ("list", 600_000.0, 30, 40),
        ("set", 600_000.0, 20, 0),
        ("iset", 400_000.0, 50, 0),
        ("zset", 480_000.0, 20, 20),
        ("bighash", 2_400.0, 1000, 60),
    ];
    let t = Instant::now();
    for &(kind, per_gb, fields, vlen) in plan {
        let total = (per_gb * gb) as u64;
        let batch = if fields > 100 { 50 } else { 5_000 };
        let mut first = 0;
        while first < total {
            let n = batch.min(total - first);
            cmd(
                &s,
                &[
                    "EVAL",
                    POPULATE,
                    "0",
                    kind,
                    &first.to_string(),
                    &n.to_string(),
                    &fields.to_string(),
                    &vlen.to_string(),
                ],
            );
            first += n;
        }
    }
    cmd(&s, &["SAVE"]);
    let dump = s.dir().join("dump.rdb");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    std::fs::copy(&dump, out).expect("copy dump");
    eprintln!(
        "generated {} ({:.2} GB) in {:.1} s",
        out.display(),
        std::fs::metadata(out).expect("stat").len() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn parse(path: &std::path::Path) -> (f64, u64) {
    let f = File::open(path).expect("open");
    let len = f.metadata().expect("stat").len();
    let t = Instant::now();
    let mut r = RdbReader::new(f, Some(len), Options::default()).expect("header");
    let mut keys = 0u64;
    while let Some(item) = r.next_item().expect("parse") {
        match item {
            Item::Key(_) => keys += 1,
            Item::End { checksum, .. } => assert!(checksum.ok(), "checksum"),
            _ => {}
        }
    }
    (t.elapsed().as_secs_f64(), keys)
}

/// The server's own account of its load time, from its log line "DB loaded from disk: X seconds".
fn server_load_seconds(bin: &support::ServerBin, path: &std::path::Path) -> (f64, f64) {
    let t = Instant::now();
    let s = TestServer::start_with_rdb(bin, path, &[]).expect("server loads the file");
    let wall = t.elapsed().as_secs_f64();
    let log = s.log();
    let secs = log
        .lines()
        .find_map(|l| l.split("DB loaded from disk: ").nth(1))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .expect("load time in the server log");
    (secs, wall)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; this is a benchmark only.
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let gb: f64 = std::env::var("BENCH_RDB_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let dir = std::env::var_os("BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("bench-data")
        });
    let path = dir.join(format!("mixed-redis7.0-{gb}gb.rdb"));
    if !path.exists() {
        generate(&bin, &path, gb);
    }
    let bytes = std::fs::metadata(&path).expect("stat").len();
    // Warm the page cache (in chunks, not held) so both sides read from memory, then
    // measure each side twice and keep the best.
    if let Ok(mut f) = File::open(&path) {
        let _ = std::io::copy(&mut f, &mut std::io::sink());
    }
    let mut ours = f64::MAX;
    let mut keys = 0;
    for _ in 0..2 {
        let (t, k) = parse(&path);
        ours = ours.min(t);
        keys = k;
    }
    let mut theirs = f64::MAX;
    let mut wall = 0.0;
    for _ in 0..2 {
        let (t, w) = server_load_seconds(&bin, &path);
        if t < theirs {
            theirs = t;
            wall = w;
        }
    }
    let mb = bytes as f64 / 1e6;
    println!(
        "file: {} ({mb:.0} MB, {keys} keys, written by redis-server {})",
        path.display(),
        bin.version
    );
    println!(
        "replisnap parse:         {ours:.2} s  {:.0} MB/s  peak RSS {} MB",
        mb / ours,
        peak_rss_kb() / 1024
    );
    println!(
        "redis-server {} load: {theirs:.2} s  {:.0} MB/s  (log; {wall:.2} s wall to ready)",
        bin.version,
        mb / theirs
    );
    println!(
        "ratio (server load time / our parse time): {:.1}x",
        theirs / ours
    );
}
