//! Benchmark (not a test): big collections during a snapshot. A dataset of a few
//! collections of millions of members (`common::big_dataset`; `BENCH_BIG_SCALE=5` gives
//! 10–25 M members each) is loaded the way a full sync loads it; then a snapshot is taken
//! (the apply loop's pause, next to the fork a redis-server `BGSAVE` of the same data costs),
//! the first and second write to each big value are timed during a snapshot (median of
//! `BENCH_COW_ROUNDS`, default 7, snapshots), then a snapshot is written
//! (the first copies one chunk of the value, never the value), writes go on for the whole
//! walk, and resident memory during it is compared with steady state.
//!
//! `cargo bench --bench native_cow`.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{big_dataset, peak_rss_kb, rss_kb};
use replisnap::commands::{apply, StreamState};
use replisnap::keyspace::{load_rdb, write_snapshot, Keyspace};
use replisnap::rdb::writer::{Target, WriteOptions};
use replisnap::rdb::{Options, RdbReader};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cmd(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let path = big_dataset(&bin);

    // What a master pays for BGSAVE of the same data.
    let master = TestServer::start_with_rdb(&bin, &path, &[]).expect("server loads the dataset");
    let sizes: Vec<String> = [
        "SCARD big:set",
        "HLEN big:hash",
        "ZCARD big:zset",
        "LLEN big:list",
    ]
    .iter()
    .map(|c| {
        let parts: Vec<&str> = c.split(' ').collect();
        format!("{:?}", master.must(&parts))
    })
    .collect();
    master.must(&["BGSAVE"]);
    while master
        .info("persistence")
        .contains("rdb_bgsave_in_progress:1")
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let fork_us: f64 = master
        .info_field("stats", "latest_fork_usec")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let their_rss: u64 = master
        .info_field("memory", "used_memory_rss")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    drop(master);

    let base = rss_kb();
    let mut ks = Keyspace::new();
    let len = std::fs::metadata(&path).expect("stat").len();
    let f = std::fs::File::open(&path).expect("open");
    let t = Instant::now();
    load_rdb(
        &mut ks,
        &mut RdbReader::new(f, Some(len), Options::default()).expect("header"),
        None,
    )
    .expect("load");
    let load_s = t.elapsed().as_secs_f64();
    let steady = rss_kb() - base;
    // A replica applies the stream between its full sync and a snapshot: some ordinary
    // writes first (the allocator's first medium allocations after a big load cost ~5 ms
    // once, whatever the data structure: measured, see docs/decisions.md).
    let mut st = StreamState::default();
    for i in 0..20_000 {
        let c = cmd(&["HSET", "small", &format!("f{}", i % 100), &i.to_string()]);
        apply(&mut ks, &mut st, &c).expect("apply");
        apply(
            &mut ks,
            &mut st,
            &cmd(&["SET", &format!("k{}", i % 1000), "v"]),
        )
        .expect("apply");
    }

    // First writes during a snapshot, over several snapshots: one op's wall time on a
    // shared 2-core machine can include a preemption, so the median is the figure, with
    // the worst beside it.
    let rounds: usize = std::env::var("BENCH_COW_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let writes_of = |round: usize| {
        let r = round.to_string();
        [
            (
                "set (SADD)",
                cmd(&["SADD", "big:set", &format!("new-member-{r}")]),
            ),
            (
                "hash (HSET)",
                cmd(&["HSET", "big:hash", &format!("field:{r}"), "changed"]),
            ),
            (
                "zset (ZADD)",
                cmd(&["ZADD", "big:zset", "-5", &format!("member:{r}")]),
            ),
            (
                "list (LSET)",
                cmd(&[
                    "LSET",
                    "big:list",
                    &(1000 + round * 7919).to_string(),
                    "changed",
                ]),
            ),
        ]
    };
    let mut first: Vec<(&str, Vec<f64>, Vec<f64>)> = writes_of(0)
        .iter()
        .map(|(n, _)| (*n, Vec::new(), Vec::new()))
        .collect();
    for round in 0..rounds {
        let snap = ks.snapshot().expect("no snapshot running");
        for (i, (_, c)) in writes_of(round).into_iter().enumerate() {
            let mut times = Vec::new();
            for _ in 0..2 {
                let t = Instant::now();
                apply(&mut ks, &mut st, &c).expect("apply");
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            first[i].1.push(times[0]);
            first[i].2.push(times[1]);
        }
        drop(snap);
    }

    let t = Instant::now();
    let snap = ks.snapshot().expect("no snapshot running");
    let pause_us = t.elapsed().as_secs_f64() * 1e6;
    let done = Arc::new(AtomicBool::new(false));
    let walker = {
        let done = done.clone();
        let target = Target::for_server("redis-7.0".parse().expect("name")).expect("target");
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = write_snapshot(
                snap,
                &[],
                std::io::sink(),
                target,
                &[],
                WriteOptions::default(),
            );
            done.store(true, Ordering::Relaxed);
            (r.map(|(_, n)| n), t.elapsed().as_secs_f64())
        })
    };
    // Writes go on while the walk lasts: every value keeps changing.
    let mut writes = 0u64;
    let mut peak = rss_kb() - base;
    while !done.load(Ordering::Relaxed) {
        let i = writes.to_string();
        let member = format!("member:{}", writes * 7919 % 3_000_000);
        for c in [
            cmd(&["SADD", "big:set", &format!("w{i}")]),
            cmd(&[
                "HSET",
                "big:hash",
                &format!("field:{}", writes * 31 % 2_000_000),
                &i,
            ]),
            cmd(&["ZINCRBY", "big:zset", "1", &member]),
            cmd(&["RPUSH", "big:list", &i]),
            cmd(&["LPOP", "big:list"]),
        ] {
            apply(&mut ks, &mut st, &c).expect("apply");
        }
        writes += 1;
        if writes % 1000 == 0 {
            peak = peak.max(rss_kb() - base);
        }
    }
    let (written, walk_s) = walker.join().expect("walker");
    let written = written.expect("snapshot written");

    println!("dataset: {} ({})", path.display(), sizes.join(", "));
    println!(
        "loaded as a full sync does in {load_s:.2} s; resident {:.0} MB (redis-server 7.0: {:.0} MB, {:.2}x)",
        steady as f64 / 1024.0,
        their_rss as f64 / 1e6,
        steady as f64 * 1024.0 / their_rss as f64
    );
    println!(
        "snapshot pause {pause_us:.1} µs vs BGSAVE's fork {fork_us:.0} µs ({:.0}x less)",
        fork_us / pause_us
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, a, b) in &mut first {
        let worst = a.iter().copied().fold(0.0, f64::max);
        println!(
            "  first write to the big {name} during a snapshot: median {:.1} µs (worst {worst:.1} µs of {rounds} snapshots), second write median {:.1} µs",
            median(a),
            median(b)
        );
    }
    println!(
        "snapshot written ({:.0} MB) in {walk_s:.2} s under {} writes; resident peak {:.0} MB vs steady {:.0} MB ({:.2}x); process peak {:.0} MB",
        written as f64 / 1e6,
        writes * 5,
        peak as f64 / 1024.0,
        steady as f64 / 1024.0,
        peak as f64 / steady as f64,
        peak_rss_kb() as f64 / 1024.0
    );
}
