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
    let their_cow = bgsave_under_writes(&master);
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
        if writes.is_multiple_of(1000) {
            peak = peak.max(rss_kb() - base);
        }
    }
    let (written, walk_s) = walker.join().expect("walker");
    let (their_writes, their_s, cow) = their_cow;
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
    println!(
        "redis-server 7.0 BGSAVE of the same data under the same writes ({their_writes} writes in {their_s:.2} s): its fork copied {:.0} MB, resident peak {:.2}x its steady {:.0} MB",
        cow as f64 / 1e6,
        (their_rss + cow) as f64 / their_rss as f64,
        their_rss as f64 / 1e6
    );
}

/// BGSAVE on `master` while one pipelined client sends the same five writes per round as
/// the walk above gets, as fast as the server takes them: (writes, seconds, the fork's
/// copy-on-write bytes as the server reports them in `rdb_last_cow_size`).
fn bgsave_under_writes(master: &TestServer) -> (u64, f64, u64) {
    use std::io::{BufReader, Write};
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let rounds = rounds.clone();
        let port = master.port();
        std::thread::spawn(move || {
            let conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            let mut out = conn.try_clone().expect("clone");
            let mut replies = BufReader::new(conn);
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                for _ in 0..200 {
                    let i = round.to_string();
                    let member = format!("member:{}", round * 7919 % 3_000_000);
                    let field = format!("field:{}", round * 31 % 2_000_000);
                    let set_member = format!("w{i}");
                    for c in [
                        &[&b"SADD"[..], b"big:set", set_member.as_bytes()][..],
                        &[b"HSET", b"big:hash", field.as_bytes(), i.as_bytes()],
                        &[b"ZINCRBY", b"big:zset", b"1", member.as_bytes()],
                        &[b"RPUSH", b"big:list", i.as_bytes()],
                        &[b"LPOP", b"big:list"],
                    ] {
                        batch.extend_from_slice(&support::resp::encode_command(c));
                    }
                    round += 1;
                }
                out.write_all(&batch).expect("send");
                for _ in 0..200 * 5 {
                    let r = support::resp::read_reply(&mut replies).expect("reply");
                    assert!(!r.is_error(), "{r:?}");
                }
                rounds.store(round, Ordering::Relaxed);
            }
        })
    };
    // Writes are flowing before the fork, as they are before our snapshot.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t = Instant::now();
    let before = rounds.load(Ordering::Relaxed);
    master.must(&["BGSAVE"]);
    while master
        .info("persistence")
        .contains("rdb_bgsave_in_progress:1")
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let secs = t.elapsed().as_secs_f64();
    let writes = (rounds.load(Ordering::Relaxed) - before) * 5;
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let cow = master
        .info_field("persistence", "rdb_last_cow_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (writes, secs, cow)
}
