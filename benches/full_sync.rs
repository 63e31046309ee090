//! Benchmark (not a test): time to full-sync a ≥ 1 GB dataset from a redis-server 7.0
//! master (diskless, as 7.0 defaults to), replisnap next to a real redis-server 7.0 replica
//! attached to the same master, and the resident memory each ends with.
//!
//! `cargo bench --bench full_sync` (BENCH_RDB_GB=1.0 by default; `BENCH_DATASET=big` for a
//! few collections of 2–5 M members instead, see `common::big_dataset`).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{big_dataset, dataset, rss_kb};
use replisnap::replication::{Replica, Settings};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let gb: f64 = std::env::var("BENCH_RDB_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let path = if std::env::var("BENCH_DATASET").is_ok_and(|d| d == "big") {
        big_dataset(&bin)
    } else {
        dataset(&bin, gb)
    };
    let master = TestServer::start_with_rdb(
        &bin,
        &path,
        &[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
    .expect("master loads the dataset");
    let keys = master.dbsize_all();

    // A real replica.
    let replica = TestServer::start(&bin, &[]).expect("replica");
    let port = master.port().to_string();
    let t = Instant::now();
    replica.must(&["REPLICAOF", "127.0.0.1", &port]);
    loop {
        let info = replica.info("replication");
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let theirs = t.elapsed().as_secs_f64();
    let their_rss: u64 = replica
        .info_field("memory", "used_memory_rss")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    drop(replica);

    // replisnap.
    let base = rss_kb();
    let (r, h) = Replica::new(Settings {
        address: master.addr(),
        username: None,
        password: None,
        announce_port: 6399,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(30),
        tls: None,
    });
    let t = Instant::now();
    let thread = std::thread::spawn(move || r.run());
    while !h.status.ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ours = t.elapsed().as_secs_f64();
    let our_rss = (rss_kb() - base) * 1024;
    h.stop();
    let _ = thread.join();

    let mb = |b: u64| b as f64 / 1e6;
    println!("dataset: {} ({keys} keys)", path.display());
    println!(
        "redis-server {} replica full sync: {theirs:.2} s, used_memory_rss {:.0} MB",
        bin.version,
        mb(their_rss)
    );
    println!(
        "replisnap full sync:               {ours:.2} s, resident {:.0} MB",
        mb(our_rss)
    );
    println!(
        "time ratio (ours / redis replica): {:.2}x; memory ratio: {:.2}x",
        ours / theirs,
        our_rss as f64 / their_rss as f64
    );
}
