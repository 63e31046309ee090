//! Shared by the benchmarks: a deterministic mixed-type dataset written by a real server.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::support::{self, Reply, TestServer};

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

/// Lua that rewrites every `step`-th key of each kind of the mixed dataset (`gb` units):
/// a new string, a field set, an element pushed, a member added: what a busy master does
/// to a share of its keys between two snapshots.
const TOUCH: &str = r#"
local gb, step = tonumber(ARGV[1]), tonumber(ARGV[2])
local plan = {{'str', 8000000}, {'int', 4000000}, {'hash', 800000}, {'list', 600000},
  {'set', 600000}, {'iset', 400000}, {'zset', 480000}, {'bighash', 2400}}
local n = 0
for _, p in ipairs(plan) do
  local kind, total = p[1], math.floor(p[2] * gb)
  for i = 0, total - 1, step do
    local k = kind .. ':' .. i
    if kind == 'str' then redis.call('SET', k, 'touched' .. i)
    elseif kind == 'int' then redis.call('INCR', k)
    elseif kind == 'hash' or kind == 'bighash' then redis.call('HSET', k, 'f1', 'touched')
    elseif kind == 'list' then redis.call('RPUSH', k, 'touched')
    elseif kind == 'set' then redis.call('SADD', k, 'touched')
    elseif kind == 'iset' then redis.call('SADD', k, 7)
    elseif kind == 'zset' then redis.call('ZADD', k, 0.25, 'touched')
    end
    n = n + 1
  end
end
return n
"#;

/// Rewrite one key in `step` of each kind of the mixed dataset of `gb` units on `s`
/// (see [`dataset`]); returns how many keys were written.
pub fn touch(s: &TestServer, gb: f64, step: u64) -> u64 {
    match cmd(s, &["EVAL", TOUCH, "0", &gb.to_string(), &step.to_string()]) {
        Reply::Int(n) => n as u64,
        r => panic!("touch: {r:?}"),
    }
}

/// Lua that adds members `first .. first+n` to one big collection of `kind`.
const POPULATE_BIG: &str = r#"
local kind, first, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local a = {}
for i = first, first + n - 1 do
  if kind == 'set' then a[#a+1] = 'member:' .. i
  elseif kind == 'hash' then a[#a+1] = 'field:' .. i; a[#a+1] = 'value-' .. (i * 7)
  elseif kind == 'zset' then a[#a+1] = (i % 100003) * 0.5; a[#a+1] = 'member:' .. i
  else a[#a+1] = 'element-' .. i end
end
local cmd = ({set = 'SADD', hash = 'HSET', zset = 'ZADD', list = 'RPUSH'})[kind]
redis.call(cmd, 'big:' .. kind, unpack(a))
return n
"#;

/// Where generated datasets are kept: $BENCH_DATA, default $CARGO_TARGET_DIR/bench-data.
fn data_dir() -> PathBuf {
    std::env::var_os("BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
            target.join("bench-data")
        })
}

/// A dataset of a few big collections: a set of 3 M members, a hash and a sorted set of 2 M,
/// a list of 5 M elements (`BENCH_BIG_SCALE` multiplies them), generated once by `bin`.
pub fn big_dataset(bin: &support::ServerBin) -> PathBuf {
    let scale: f64 = std::env::var("BENCH_BIG_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let dir = data_dir();
    let path = dir.join(format!("big-collections-{}-{scale}.rdb", bin.name));
    if path.exists() {
        return path;
    }
    let s = TestServer::start(bin, &[]).expect("start the server");
    let t = Instant::now();
    for (kind, members) in [("set", 3e6), ("hash", 2e6), ("zset", 2e6), ("list", 5e6)] {
        let total = (members * scale) as u64;
        let mut first = 0;
        while first < total {
            let n = 1000.min(total - first);
            cmd(
                &s,
                &[
                    "EVAL",
                    POPULATE_BIG,
                    "0",
                    kind,
                    &first.to_string(),
                    &n.to_string(),
                ],
            );
            first += n;
        }
    }
    cmd(&s, &["SAVE"]);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(s.dir().join("dump.rdb"), &path).expect("copy dump");
    eprintln!(
        "generated {} ({:.2} GB) in {:.1} s",
        path.display(),
        std::fs::metadata(&path).expect("stat").len() as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    path
}

pub fn cmd(s: &TestServer, args: &[&str]) -> Reply {
    let r = s.cmd_str(args).expect("command");
    assert!(!r.is_error(), "{args:?}: {r:?}");
    r
}

fn generate(bin: &support::ServerBin, out: &Path, gb: f64) {
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

/// The dataset file for `gb` units (about 1 GB of RDB per unit), generated once by `bin`
/// and kept in $BENCH_DATA (default $CARGO_TARGET_DIR/bench-data).
pub fn dataset(bin: &support::ServerBin, gb: f64) -> PathBuf {
    let dir = data_dir();
    let path = dir.join(format!("mixed-{}-{gb}gb.rdb", bin.name));
    if !path.exists() {
        generate(bin, &path, gb);
    }
    path
}

pub fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

pub fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
