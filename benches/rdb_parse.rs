//! Benchmark (not a test): parse throughput of a ≥ 1 GB mixed-type RDB written by
//! redis-server 7.0, next to that server's own load time of the same file, as a ratio.
//!
//! `cargo bench --bench rdb_parse` (env: BENCH_RDB_GB=1.0 target size, BENCH_DATA=dir to
//! keep the generated file between runs, default $CARGO_TARGET_DIR/bench-data).

#[path = "../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::time::Instant;

use replisnap::rdb::{Item, Options, RdbReader};
use support::TestServer;

mod common;
use common::{dataset, peak_rss_kb};

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
    let path = dataset(&bin, gb);
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
