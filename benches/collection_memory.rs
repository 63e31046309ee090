//! Benchmark (not a test): resident memory of each big collection of
//! `common::big_dataset` (a set of 3 M members, a hash and a sorted set of 2 M, a list of
//! 5 M; `BENCH_BIG_SCALE` scales them) loaded alone the way a full sync loads it, next to
//! what redis-server 7.0 holds for the same key (`used_memory` with only that key, and
//! `MEMORY USAGE`).
//!
//! `cargo bench --bench collection_memory`. Each of our loads runs in a fresh process (this
//! binary again, given the file), so one load's freed pages never count in the next.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use common::{big_dataset, rss_kb};
use replisnap::keyspace::{load_rdb, Keyspace};
use replisnap::rdb::{Options, RdbReader};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: [&str; 4] = ["big:set", "big:hash", "big:zset", "big:list"];

/// Our resident bytes after loading `path` into an empty keyspace.
fn load_alone(path: &str) -> u64 {
    let base = rss_kb();
    let mut ks = Keyspace::new();
    let len = std::fs::metadata(path).expect("stat").len();
    let f = std::fs::File::open(path).expect("open");
    load_rdb(
        &mut ks,
        &mut RdbReader::new(f, Some(len), Options::default()).expect("header"),
        None,
    )
    .expect("load");
    let bytes = (rss_kb() - base) * 1024;
    assert!(!ks.is_empty(), "{path} loaded nothing");
    bytes
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    if let Some(p) = args.iter().find(|a| a.ends_with(".rdb")) {
        println!("{}", load_alone(p));
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let path = big_dataset(&bin);
    let mut ours_total = 0u64;
    let mut theirs_total = 0u64;
    for k in KEYS {
        let s = TestServer::start(&bin, &[]).expect("empty server");
        let empty: u64 = s
            .info_field("memory", "used_memory")
            .and_then(|v| v.parse().ok())
            .expect("used_memory");
        drop(s);
        let s = TestServer::start_with_rdb(&bin, &path, &[]).expect("server loads the dataset");
        for o in KEYS.iter().filter(|o| **o != k) {
            s.must(&["DEL", o]);
        }
        let usage = s
            .must(&["MEMORY", "USAGE", k, "SAMPLES", "0"])
            .as_int()
            .expect("MEMORY USAGE") as u64;
        let used: u64 = s
            .info_field("memory", "used_memory")
            .and_then(|v| v.parse().ok())
            .expect("used_memory");
        let theirs = used - empty;
        s.must(&["SAVE"]);
        let alone = s.dir().with_file_name(format!("{}-alone.rdb", &k[4..]));
        std::fs::copy(s.dir().join("dump.rdb"), &alone).expect("copy dump");
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .arg(&alone)
            .output()
            .expect("run the loader");
        assert!(out.status.success(), "loader failed: {out:?}");
        let ours: u64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("loader prints bytes");
        let _ = std::fs::remove_file(&alone);
        println!(
            "{k}: replisnap {:.1} MB resident, redis-server {} {:.1} MB used_memory ({:.1} MB MEMORY USAGE): {:.2}x",
            ours as f64 / 1e6,
            bin.version,
            theirs as f64 / 1e6,
            usage as f64 / 1e6,
            ours as f64 / theirs as f64
        );
        ours_total += ours;
        theirs_total += theirs;
    }
    println!(
        "all four: {:.0} MB vs {:.0} MB: {:.2}x",
        ours_total as f64 / 1e6,
        theirs_total as f64 / 1e6,
        ours_total as f64 / theirs_total as f64
    );
}
