//! Benchmark (not a test): the apply loop's pause for a snapshot under continuous writes,
//! next to the fork a redis-server `BGSAVE` of the same data costs the master
//! (`latest_fork_usec`), and our resident memory while a snapshot is written under writes
//! against steady state.
//!
//! `cargo bench --bench snapshot_pause` (BENCH_SNAPSHOT_KEYS=1000000,10000000 by default;
//! BENCH_SNAPSHOTS=50 snapshots per size). Keys are `DEBUG POPULATE` strings of 100 bytes
//! on redis-server 7.0; a client rewrites random keys without pause meanwhile.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::rss_kb;
use replisnap::replication::{Replica, Settings};
use replisnap::retention::{Count, Policy};
use replisnap::snapshot::{JobState, NoEvents, Options, Reason, Snapshotter};
use replisnap::storage::LocalStorage;
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let Some(bin) = support::require("redis-7.0") else {
        return;
    };
    let rounds = env_list("BENCH_SNAPSHOTS", "50")
        .first()
        .copied()
        .unwrap_or(50);
    for keys in env_list("BENCH_SNAPSHOT_KEYS", "1000000,10000000") {
        run(&bin, keys, rounds as usize);
    }
}

fn run(bin: &support::ServerBin, keys: u64, rounds: usize) {
    let m = TestServer::start(bin, &["--repl-diskless-sync-delay", "0"]).expect("master");
    let t = Instant::now();
    m.must(&["DEBUG", "POPULATE", &keys.to_string(), "key", "100"]);
    eprintln!(
        "{keys} keys populated in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The master's cost for the same data: the fork of a BGSAVE.
    m.must(&["BGSAVE"]);
    support::wait_for("BGSAVE", Duration::from_secs(600), || {
        m.info_field("persistence", "rdb_bgsave_in_progress")
            .as_deref()
            == Some("0")
    });
    let fork_us: f64 = m
        .info_field("stats", "latest_fork_usec")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);

    let base_rss = rss_kb();
    let (replica, h) = Replica::new(Settings {
        address: m.addr(),
        username: None,
        password: None,
        announce_port: 6399,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(5),
        tls: None,
    });
    let replica_thread = std::thread::spawn(move || replica.run());
    support::wait_for("full sync", Duration::from_secs(600), || {
        h.status.ready.load(Ordering::Relaxed)
    });

    // Writes without pause for the rest of the run.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let mut c = m.connect().expect("writer connection");
        let (stop, writes) = (stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let value = vec![b'w'; 100];
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = format!("key:{}", x % keys);
                if c.cmd(&[b"SET", k.as_bytes(), &value]).is_err() {
                    break;
                }
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Resident memory, sampled every 10 ms: steady state first, then during snapshots.
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    std::thread::sleep(Duration::from_secs(2));
    let steady_kb = (0..20)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            rss_kb()
        })
        .max()
        .unwrap_or(0);
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let dir = tempfile::tempdir().expect("storage dir");
    let snap = Snapshotter::start(
        h.clone(),
        Arc::new(LocalStorage::new(dir.path())),
        Options {
            address: m.addr(),
            compress: false,
            // Two kept: the disk holds at most three files of this size at once.
            retention: Some(Policy {
                last: Some(Count::Limit(2)),
                ..Policy::default()
            }),
        },
        Arc::new(NoEvents),
    )
    .expect("snapshotter");
    let mut pauses = Vec::new();
    let mut write_s = Vec::new();
    let w0 = (writes.load(Ordering::Relaxed), Instant::now());
    for _ in 0..rounds {
        let id = snap.take(Reason::Manual).expect("take");
        let st = snap.wait(&id, Duration::from_secs(3600)).expect("status");
        assert_eq!(st.state, JobState::Stored, "{st:?}");
        pauses.push(st.pause_seconds * 1e6);
        if let Some(f) = st.finished_at {
            write_s.push((f - st.started_at).num_milliseconds() as f64 / 1e3);
        }
    }
    let rate = (writes.load(Ordering::Relaxed) - w0.0) as f64 / w0.1.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    snap.shutdown();
    h.stop();
    replica_thread.join().expect("replica");

    pauses.sort_by(f64::total_cmp);
    write_s.sort_by(f64::total_cmp);
    let max = pauses.last().copied().unwrap_or(0.0);
    let mb = |kb: u64| kb.saturating_sub(base_rss) as f64 / 1024.0;
    let peak_kb = peak.load(Ordering::Relaxed);
    println!(
        "{keys} keys, {rounds} snapshots under {rate:.0} writes/s: pause p50 {:.1} µs, \
         p99 {:.1} µs, max {max:.1} µs; redis-server {} BGSAVE fork {fork_us:.0} µs \
         (fork / our max pause = {:.0}×); snapshot to stored p50 {:.2} s",
        percentile(&pauses, 0.5),
        percentile(&pauses, 0.99),
        bin.version,
        fork_us / max.max(0.001),
        percentile(&write_s, 0.5),
    );
    println!(
        "{keys} keys: our RSS steady {:.0} MB, peak while snapshotting under writes {:.0} MB \
         (+{:.1} %)",
        mb(steady_kb),
        mb(peak_kb),
        (mb(peak_kb) / mb(steady_kb).max(1.0) - 1.0) * 100.0
    );
}
