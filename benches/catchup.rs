//! Benchmark (not a test): redis-benchmark's own write tests against a master with a
//! redis-server replica and replisnap attached side by side; how long each takes after the
//! benchmark ends to reach the master's offset, the resident memory each ends with, and
//! whether a snapshot taken afterwards has the master's `DEBUG DIGEST`.
//!
//! The scenario of issue 10: `redis-benchmark -q -P 16 -r 200000 -n 300000 -t
//! lpush,rpush,sadd,hset,zadd,lpop,rpop,spop,zpopmin` grows `mylist`, `myset`, `myhash` and
//! `myzset` past 100 k members. `cargo bench --bench catchup` (`BENCH_SERVER` default
//! redis-7.0, `BENCH_R`, `BENCH_N`; needs `redis-benchmark` on the PATH).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::rss_kb;
use replisnap::keyspace::digest_snapshot_as_held;
use replisnap::replication::{Replica, Settings};
use support::TestServer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn offset(s: &TestServer, field: &str) -> i64 {
    s.info_field("replication", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let name = env("BENCH_SERVER", "redis-7.0");
    let Some(bin) = support::require(&name) else {
        return;
    };
    let master = TestServer::start(&bin, &[]).expect("master");
    let port = master.port().to_string();
    let replica = TestServer::start(&bin, &["--replicaof", "127.0.0.1", &port]).expect("replica");
    let base = rss_kb();
    let (r, h) = Replica::new(Settings {
        address: master.addr(),
        username: None,
        password: None,
        announce_port: 6398,
        psync_command: "PSYNC".into(),
        connect_timeout: Duration::from_secs(10),
        tls: None,
    });
    let thread = std::thread::spawn(move || r.run());
    let t = Instant::now();
    while !h.status.ready.load(Ordering::Relaxed)
        || !replica
            .info("replication")
            .contains("master_link_status:up")
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "replicas did not sync"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let (rr, n) = (env("BENCH_R", "200000"), env("BENCH_N", "300000"));
    let tests = env(
        "BENCH_TESTS",
        "lpush,rpush,sadd,hset,zadd,lpop,rpop,spop,zpopmin",
    );
    let t = Instant::now();
    let child = std::process::Command::new("redis-benchmark")
        .args([
            "-p", &port, "-q", "-P", "16", "-r", &rr, "-n", &n, "-t", &tests,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-benchmark runs (is it on the PATH?)");
    // While it runs: the largest lag (bytes behind the master) each replica shows.
    let (mut their_lag, mut our_lag) = (0i64, 0i64);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiter = {
        let done = done.clone();
        std::thread::spawn(move || {
            let out = child.wait_with_output();
            done.store(true, Ordering::Relaxed);
            out
        })
    };
    while !done.load(Ordering::Relaxed) {
        let m = offset(&master, "master_repl_offset");
        their_lag = their_lag.max(m - offset(&replica, "slave_repl_offset"));
        our_lag = our_lag.max(m - h.status.offset.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = waiter
        .join()
        .expect("waiter")
        .expect("redis-benchmark output");
    let bench_s = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "redis-benchmark failed");
    let end = Instant::now();
    let target = offset(&master, "master_repl_offset");
    let (mut theirs, mut ours) = (None, None);
    while theirs.is_none() || ours.is_none() {
        if theirs.is_none() && offset(&replica, "slave_repl_offset") >= target {
            theirs = Some(end.elapsed().as_secs_f64());
        }
        if ours.is_none() && h.status.offset.load(Ordering::Relaxed) >= target {
            ours = Some(end.elapsed().as_secs_f64());
        }
        if end.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let their_rss: u64 = replica
        .info_field("memory", "used_memory_rss")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let our_rss = (rss_kb().saturating_sub(base)) * 1024;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (snap, _, _, _) = h.snapshot(Duration::from_secs(30)).expect("snapshot");
    let digest =
        digest_snapshot_as_held(snap, name.parse().expect("a server name"), now).expect("digest");
    let master_digest = master.digest();
    h.stop();
    let _ = thread.join();

    let mb = |b: u64| b as f64 / 1e6;
    let show = |x: Option<f64>| x.map_or("not within 600 s".to_string(), |s| format!("{s:.3} s"));
    for line in String::from_utf8_lossy(&out.stdout).split('\r') {
        if line.contains("requests per second") {
            println!("  {}", line.trim());
        }
    }
    println!("redis-benchmark -P 16 -r {rr} -n {n} -t {tests} on {name}: {bench_s:.2} s");
    for k in ["mylist", "myset", "myhash", "myzset"] {
        let len = master.must(&[
            match k {
                "mylist" => "LLEN",
                "myset" => "SCARD",
                "myhash" => "HLEN",
                _ => "ZCARD",
            },
            k,
        ]);
        println!("  {k}: {len:?} members on the master");
    }
    println!(
        "largest lag while it ran (sampled every 20 ms): redis-server replica {:.1} MB, replisnap {:.1} MB",
        their_lag as f64 / 1e6,
        our_lag as f64 / 1e6
    );
    println!(
        "caught up after the benchmark: redis-server replica {}, replisnap {}",
        show(theirs),
        show(ours)
    );
    println!(
        "resident memory: redis-server replica {:.1} MB (used_memory_rss), replisnap {:.1} MB",
        mb(their_rss),
        mb(our_rss)
    );
    if let (Some(a), Some(b)) = (theirs, ours) {
        println!(
            "ratio (ours / redis replica): catch-up {:.2}x, memory {:.2}x",
            b.max(0.005) / a.max(0.005),
            our_rss as f64 / their_rss as f64
        );
    }
    println!(
        "snapshot digest {} the master's ({digest} vs {master_digest})",
        if digest == master_digest {
            "equals"
        } else {
            "DIFFERS FROM"
        }
    );
    assert_eq!(
        digest, master_digest,
        "a snapshot after the benchmark has the master's digest"
    );
}
